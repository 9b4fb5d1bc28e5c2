"""`jaxpose sweep --config configs/sweeps/X.py --workdir DIR [--parallel N] [--print_only] [--metric M]`.

Runs a sweep's points, N at a time in separate processes with --parallel.
Rerunning the same command skips finished runs, resumes interrupted ones and
rebuilds the tables, plots and TensorBoard hparams.
"""

from absl import flags
from ml_collections import config_flags

from jaxpose.sweep import runner

CONFIG_DRIVEN = True
OUTPUT_FLAGS = {'workdir': 'folder'}


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_bool('print_only', False,
                    'Print one `jaxpose train` command per run instead of running them.',
                    flag_values=flag_values)
  flags.DEFINE_string('metric', None,
                      'Eval metric to plot against each swept field (default: the base '
                      "config's best_metric).", flag_values=flag_values)
  flags.DEFINE_integer('parallel', 1,
                       'Points trained at once, each in its own process on its own slice of '
                       "this host's GPUs or CPU cores.", flag_values=flag_values)
  flags.DEFINE_bool('plot', True, 'Write WORKDIR/sweep_plot_<field>.png and .csv.',
                    flag_values=flag_values)


def main(flag_values: flags.FlagValues) -> None:
  runner.run(config_flags.get_config_filename(flag_values['config']), flag_values.workdir,
             print_only=flag_values.print_only, metric=flag_values.metric,
             plot=flag_values.plot, parallel=flag_values.parallel)
