"""`jaxpose sweep --config configs/sweeps/X.py --workdir DIR [--print_only]`: run a sweep's points."""

from absl import flags
from ml_collections import config_flags

from jaxpose import sweep

CONFIG_DRIVEN = True


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_bool('print_only', False,
                    'Print one `jaxpose train` command per point instead of running them.',
                    flag_values=flag_values)


def main(flag_values: flags.FlagValues) -> None:
  sweep.run(config_flags.get_config_filename(flag_values['config']), flag_values.workdir,
            print_only=flag_values.print_only)
