"""The `jaxpose` command: `jaxpose train|sweep|eval|score|convert|export|infer ...`.

Every subcommand is parsed the same way: absl flags of its own (a
`flags.FlagValues` per command, so a flag of another command is an error),
with ml_collections config files for the config-driven ones (train, sweep,
eval), as the flax examples do. Flag names may be written with dashes or
underscores (`--flip-test` = `--flip_test`, `--no-track` = `--notrack`).
Errors of the input are one line naming the file, field and expectation.
"""

import sys

from absl import flags
from absl import logging

from jaxpose import commands
from jaxpose.commands import convert, evaluate, export, infer, score, sweep, train

COMMANDS = {
    'train': train,
    'sweep': sweep,
    'eval': evaluate,
    'score': score,
    'convert': convert,
    'export': export,
    'infer': infer,
}


def _usage() -> str:
  lines = [__doc__.splitlines()[0], '', 'commands:']
  lines += [f'  {name:8s} {module.__doc__.splitlines()[0]}' for name, module in COMMANDS.items()]
  lines += ['', 'jaxpose COMMAND --help lists its flags.']
  return '\n'.join(lines)


def _absl_spelling(argument: str) -> str:
  """--flip-test -> --flip_test, --no-track -> --notrack; --config.x=... and values untouched."""
  if not argument.startswith('--') or argument.startswith('--config.'):
    return argument
  name, equals, value = argument[2:].partition('=')
  if name.startswith('no-'):
    name = 'no' + name[3:]
  return '--' + name.replace('-', '_') + equals + value


def _old_eval_spelling(argv: list[str]) -> list[str]:
  """`jaxpose eval --coco-annotations A --results R` (before `score`) -> `jaxpose score ...`, with a warning."""
  if argv[:1] == ['eval'] and any(a.split('=')[0] in ('--coco-annotations', '--coco_annotations')
                                  for a in argv[1:]):
    print('jaxpose eval --coco-annotations is deprecated: use jaxpose score', file=sys.stderr)
    return ['score'] + argv[1:]
  return argv


def main(argv: list[str] | None = None):
  """Runs `jaxpose ARGV...`; returns what the command's main returns."""
  argv = _old_eval_spelling(list(sys.argv[1:] if argv is None else argv))
  if not argv or argv[0] in ('-h', '--help', 'help'):
    print(_usage())
    return None
  name = argv[0]
  if name not in COMMANDS:
    sys.exit(f'jaxpose: unknown command {name!r}\n\n{_usage()}')
  command = COMMANDS[name]
  flag_values = flags.FlagValues()
  flags.DEFINE_bool('help', False, 'Show this help.', flag_values=flag_values)
  flags.DEFINE_bool('verbose', False, 'Log at INFO (Orbax logs every save there).',
                    flag_values=flag_values)
  command_line = [f'jaxpose {name}'] + [_absl_spelling(a) for a in argv[1:]]
  if getattr(command, 'CONFIG_DRIVEN', False):
    commands.define_config_flags(flag_values, command_line)
  command.define_flags(flag_values)
  try:
    rest = flag_values(command_line)
  except (flags.Error, AttributeError, KeyError) as e:
    if '--help' in argv[1:]:
      print(f'jaxpose {name}: {command.__doc__}\n{flag_values.get_help()}')
      return None
    overrides = [a for a in argv if a.startswith('--config.')]
    if isinstance(e, flags.Error) and not (overrides and "'config." in str(e)):
      sys.exit(f'jaxpose {name}: {e}')
    # config_flags applies --config.X=... while parsing; a misspelt field
    # surfaces as a KeyError or AttributeError from ConfigDict, or as an
    # unknown flag `config.X`.
    text = str(e).replace('\\n', '\n')
    hint = next((line.strip(' \'"') for line in text.splitlines() if 'Did you mean' in line), '')
    sys.exit(f'jaxpose {name}: unknown config field in {" ".join(overrides)}. {hint}'.strip())
  if flag_values.help:
    print(f'jaxpose {name}: {command.__doc__}\n{flag_values.get_help()}')
    return None
  if len(rest) > 1:
    sys.exit(f'jaxpose {name}: unexpected arguments {rest[1:]}')
  if not flags.FLAGS.is_parsed():
    # absl's own flags (logging, grain's) keep their defaults.
    flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.INFO if flag_values.verbose else logging.WARNING)
  try:
    return command.main(flag_values)
  except (FileNotFoundError, ValueError, FloatingPointError) as e:
    sys.exit(f'jaxpose {name}: {e}')


if __name__ == '__main__':
  main()
