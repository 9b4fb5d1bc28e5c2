"""The `jaxpose` subcommands: one module each, with `define_flags(flag_values)` and `main(flag_values)`.

`jaxpose.cli` parses each command's own absl flags (a `flags.FlagValues` per
command, so a command accepts only its flags) and calls its `main`, which
turns them into typed arguments of the library. A command whose module sets
`CONFIG_DRIVEN = True` also gets --config (an ml_collections config file,
with --config.FIELD=VALUE overrides) and --workdir, as the flax examples.
"""

from absl import flags
from ml_collections import config_flags


def define_config_flags(flag_values: flags.FlagValues, argv: list[str]) -> None:
  """--config and --workdir; `argv` (the command line) names the --config.FIELD overrides."""
  config_flags.DEFINE_config_file('config', None, 'Config file (configs/*.py).',
                                  flag_values=flag_values, lock_config=True, sys_argv=argv)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and the config.',
                      flag_values=flag_values)
  flags.mark_flags_as_required(['config', 'workdir'], flag_values=flag_values)
