"""The `jaxpose` command: `jaxpose train|sweep|eval|score|convert|export|infer ...`.

Every subcommand is parsed the same way: absl flags of its own (a
`flags.FlagValues` per command, so a flag of another command is an error),
with ml_collections config files for the config-driven ones (train, sweep,
eval), as the flax examples do. Flag names may be written with dashes or
underscores (`--flip-test` = `--flip_test`, `--no-track` = `--notrack`).

The contract a script can rely on:
- exit status 0 on success; 2 for a usage error (an unknown command or
  flag, a missing or broken config file, an output that cannot be written);
  1 for input that fails while the command runs (a file with a bad field);
- a failure is one line on stderr naming what was wrong and what was
  expected, never a traceback (a bug in jaxpose still shows its traceback);
- `eval`, `score`, `infer`, `export`, `convert` and `train` print one JSON
  object as the last line of stdout; progress and logs go to stderr.
"""

import json
import logging as python_logging
import os
import sys

from absl import flags
from absl import logging

from jaxpose import commands
from jaxpose import config as config_lib
from jaxpose.commands import convert, evaluate, export, infer, score, sweep, train
from jaxpose.training import preemption

COMMANDS = {
    'train': train,
    'sweep': sweep,
    'eval': evaluate,
    'score': score,
    'convert': convert,
    'export': export,
    'infer': infer,
}
# absl verbosity of each --verbosity level (0, the default, shows warnings only).
_VERBOSITY = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}
_HELP_ARGUMENTS = ('-h', '--help', '--helpshort', '--helpfull', '-help')
# Exceptions of input that fails while a command runs: reported in one line.
_INPUT_ERRORS = (OSError, ValueError, FloatingPointError)


class CommandFailed(SystemExit):
  """A command's failure: its one-line `message` for stderr and its exit `status`."""

  def __init__(self, message: str, status: int):
    super().__init__(message)
    self.message = message
    self.status = status


def main(argv: list[str] | None = None) -> int:
  """The console script: runs `jaxpose ARGV...`; returns the exit status (see the module docstring)."""
  try:
    run(argv)
  except CommandFailed as e:
    print(e.message, file=sys.stderr)
    return e.status
  except preemption.Preempted as e:  # saved where every process agreed: rerunning resumes
    print(e.message, file=sys.stderr)
    print(json.dumps({'preempted': True, 'step': e.step, 'checkpoint': e.checkpoint}))
    return 0
  except KeyboardInterrupt:
    print('jaxpose: interrupted', file=sys.stderr)
    return 130
  return 0


def run(argv: list[str] | None = None):
  """Runs `jaxpose ARGV...` in this process; returns what the command's main returns.

  Raises `CommandFailed` (a SystemExit) with the one-line message and status
  that `main` reports.
  """
  argv = _old_eval_spelling(list(sys.argv[1:] if argv is None else argv))
  if not argv or argv[0] in _HELP_ARGUMENTS + ('help',):
    print(_usage())
    return None
  name = argv[0]
  if name not in COMMANDS:
    raise CommandFailed(f'jaxpose: unknown command {name!r}; expected one of '
                        f'{", ".join(COMMANDS)} (jaxpose --help describes them)', 2)
  command = COMMANDS[name]
  arguments = [_absl_spelling(a) for a in _verbosity_spelling(argv[1:])]
  flag_values = _define_flags(command, [f'jaxpose {name}'] + arguments)
  if any(a in _HELP_ARGUMENTS for a in arguments):
    print(command_help(name, flag_values))
    return None
  config_driven = getattr(command, 'CONFIG_DRIVEN', False)
  if config_driven:
    _check_config_file(name, arguments)
  rest = _parse(name, flag_values, [f'jaxpose {name}'] + arguments)
  if len(rest) > 1:
    raise CommandFailed(f'jaxpose {name}: unexpected arguments {rest[1:]}; every value goes '
                        f'with a flag (jaxpose {name} --help lists them)', 2)
  if not flags.FLAGS.is_parsed():
    # absl's own flags (logging, grain's) keep their defaults.
    flags.FLAGS.mark_as_parsed()
  _set_verbosity(flag_values.verbosity)
  try:
    for flag, kind in getattr(command, 'OUTPUT_FLAGS', {}).items():
      if flag_values[flag].value is not None:
        commands.check_writable(flag_values[flag].value, f'--{flag}', folder=kind == 'folder')
    result = command.main(flag_values)
  except commands.UsageError as e:
    raise CommandFailed(f'jaxpose {name}: {e}', 2) from None
  except _INPUT_ERRORS as e:
    raise CommandFailed(f'jaxpose {name}: {_one_line(e)}', 1) from None
  if result is not None:
    print(json.dumps(result, default=_jsonable))
  return result


def command_help(name: str, flag_values: flags.FlagValues) -> str:
  """`jaxpose NAME --help`: the command's docstring, then one line per flag."""
  command = COMMANDS[name]
  lines = [command.__doc__.strip(), '', 'flags:']
  for flag_name in flag_values:
    flag = flag_values[flag_name]
    if flag_name != flag.name or flag_name in ('help', 'verbosity'):
      continue  # a short alias, or a flag every command has (listed last)
    spelling = f'--[no]{flag.name}' if flag.boolean else f'--{flag.name}'
    text = ' '.join(str(flag.help).split())  # enums' help starts with <a|b|c>:
    if flag.default is not None:
      text += f' (default: {flag.default_as_str if not flag.boolean else flag.default})'
    lines.append(f'  {spelling:24s} {text}')
  if getattr(command, 'CONFIG_DRIVEN', False):
    lines.append(f'  {"--config.FIELD=VALUE":24s} Override one field of the config '
                 '(any number of them, e.g. --config.num_train_steps=10).')
  lines.append(f'  {"-v, --verbosity=N":24s} Log more: 1 info, 2 debug (default 0: warnings '
               'only).')
  lines.append(f'  {"-h, --help":24s} Show this help.')
  return '\n'.join(lines)


def _usage() -> str:
  lines = [__doc__.splitlines()[0], '', 'commands:']
  lines += [f'  {name:8s} {module.__doc__.splitlines()[0]}' for name, module in COMMANDS.items()]
  lines += ['', 'jaxpose COMMAND --help lists its flags.']
  return '\n'.join(lines)


def _define_flags(command, command_line: list[str]) -> flags.FlagValues:
  """A FlagValues holding the command's flags, --verbosity and --help."""
  flag_values = flags.FlagValues()
  flags.DEFINE_bool('help', False, 'Show this help.', flag_values=flag_values)
  flags.DEFINE_integer('verbosity', 0, 'Log more: 1 info, 2 debug (-v is 1, -vv 2).',
                       lower_bound=0, flag_values=flag_values)
  if getattr(command, 'CONFIG_DRIVEN', False):
    commands.define_config_flags(flag_values, command_line)
  command.define_flags(flag_values)
  return flag_values


def _parse(name: str, flag_values: flags.FlagValues, command_line: list[str]) -> list[str]:
  """Parses the command line into `flag_values`; CommandFailed (status 2) in one line on any mistake."""
  try:
    return flag_values(command_line)
  except Exception as e:  # pylint: disable=broad-except
    # The config file runs while its flag parses: an error in it surfaces
    # here, as itself or wrapped by absl; name its file and line.
    located = _config_error(e, command_line)
    if located:
      raise CommandFailed(f'jaxpose {name}: {located}', 2) from None
    overrides = [a for a in command_line if a.startswith('--config.')]
    if isinstance(e, flags.Error) and not (overrides and "'config." in str(e)):
      raise CommandFailed(f'jaxpose {name}: {_one_line(e)} (jaxpose {name} --help lists its '
                          'flags)', 2) from None
    if not isinstance(e, (flags.Error, AttributeError, KeyError, ValueError, TypeError)):
      raise
    # config_flags applies --config.X=... while parsing; a misspelt field
    # surfaces as a KeyError or AttributeError from ConfigDict, or as an
    # unknown flag `config.X`; a value of the wrong type as a ValueError.
    text = str(e).replace('\\n', '\n')
    hint = next((line.strip(' \'"') for line in text.splitlines() if 'Did you mean' in line), '')
    if isinstance(e, (flags.Error, AttributeError, KeyError)):
      raise CommandFailed(f'jaxpose {name}: unknown config field in {" ".join(overrides)}. '
                          f'{hint}'.strip(), 2) from None
    raise CommandFailed(f'jaxpose {name}: {" ".join(overrides)}: {_one_line(e)}', 2) from None


def _config_path(arguments: list[str]) -> str | None:
  """The value of --config in `arguments` (--config=F or --config F), or None."""
  for index, argument in enumerate(arguments):
    if argument.startswith('--config='):
      return argument.split('=', 1)[1]
    if argument == '--config' and index + 1 < len(arguments):
      return arguments[index + 1]
  return None


def _check_config_file(name: str, arguments: list[str]) -> None:
  """CommandFailed (status 2) naming --config's file when it is missing or not Python."""
  path = _config_path(arguments)
  if path is None:
    return  # absl names the missing required flag
  try:
    config_lib.check_config_file(path.split(':', 1)[0])  # config_flags' FILE:ARG form
  except (FileNotFoundError, ValueError) as e:
    raise CommandFailed(f'jaxpose {name}: --config {e}', 2) from None


def _config_error(error: BaseException, command_line: list[str]) -> str | None:
  """An exception raised while --config's file ran -> '--config FILE:LINE: Type: message', else None."""
  path = _config_path(command_line[1:])
  if path is None:
    return None
  located = config_lib.config_file_error(error, path.split(':', 1)[0])
  return f'--config {located}' if located else None


def _jsonable(value):
  """json.dumps' fallback: numpy scalars and arrays, paths."""
  if hasattr(value, 'tolist'):
    return value.tolist()
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  raise TypeError(f'{type(value).__name__} is not JSON serialisable')


def _one_line(error: BaseException) -> str:
  """An exception's message on one line."""
  return ' '.join(str(error).split()) or type(error).__name__


def _absl_spelling(argument: str) -> str:
  """--flip-test -> --flip_test, --no-track -> --notrack; --config.x=... and values untouched."""
  if not argument.startswith('--') or argument.startswith('--config.'):
    return argument
  name, equals, value = argument[2:].partition('=')
  if name.startswith('no-'):
    name = 'no' + name[3:]
  return '--' + name.replace('-', '_') + equals + value


def _verbosity_spelling(arguments: list[str]) -> list[str]:
  """-v -> --verbosity=1, -vv -> --verbosity=2; --verbose (the flag before --verbosity) -> --verbosity=1."""
  spelled = []
  for argument in arguments:
    if argument == '--verbose':
      argument = '--verbosity=1'
    elif len(argument) > 1 and argument[0] == '-' and set(argument[1:]) == {'v'}:
      argument = f'--verbosity={len(argument) - 1}'
    spelled.append(argument)
  return spelled


def _set_verbosity(level: int) -> None:
  """absl's verbosity for --verbosity, and the third-party chatter that only -v shows."""
  logging.set_verbosity(_VERBOSITY.get(level, logging.DEBUG))
  if level == 0:
    # Orbax logs warnings for every read-only manager it opens (eval, export
    # and infer open checkpoints read-only on purpose, so that they can never
    # change a run) and absl routes them to stderr: harmless, and
    # indistinguishable from a real problem to a user.
    python_logging.getLogger('absl').addFilter(_drop_orbax_read_only)


def _drop_orbax_read_only(record: python_logging.LogRecord) -> bool:
  """False for Orbax's notices about a read-only manager ('Given directory is read only', 'read_only=True, setting ...')."""
  message = record.getMessage()
  return not ('orbax' in record.pathname and ('read only' in message or 'read_only' in message))


def _old_eval_spelling(argv: list[str]) -> list[str]:
  """`jaxpose eval --coco-annotations A --results R` (before `score`) -> `jaxpose score ...`, with a warning."""
  if argv[:1] == ['eval'] and any(a.split('=')[0] in ('--coco-annotations', '--coco_annotations')
                                  for a in argv[1:]):
    print('jaxpose eval --coco-annotations is deprecated: use jaxpose score', file=sys.stderr)
    return ['score'] + argv[1:]
  return argv


if __name__ == '__main__':
  sys.exit(main())
