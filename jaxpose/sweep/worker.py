"""One point of a sweep in its own process: `python -m jaxpose.sweep.worker SWEEP WORKDIR RUN`.

`jaxpose.sweep.scheduler` starts one of these per point. It keeps to the CPU
cores the scheduler gave it (`scheduler.CPUS_VARIABLE`), then plans the sweep
again (`runner.plan`, so that it trains exactly the config the sequential path
would) and trains the run named RUN (`runner.train_run`).

The affinity has to be set before jax is imported, since jax sizes its thread
pools to the cores it may use: so this module imports only the scheduler
(standard library only) at its top, the runner (which imports jax through the
trainer) inside `main`, and the package `jaxpose.sweep`, which Python imports
first, loads its submodules lazily.
"""

import os
import sys

from jaxpose.sweep import scheduler

USAGE = 'usage: python -m jaxpose.sweep.worker SWEEP_FILE WORKDIR RUN_NAME'


def main(argv: list[str]) -> None:
  """Trains one run of a sweep file.

  Args:
    argv: [program, SWEEP_FILE, WORKDIR, RUN_NAME], as `sys.argv`.

  Raises:
    SystemExit: with `USAGE` for other arguments, or naming the runs when the
      sweep has none named RUN_NAME (exit status 1 either way).
  """
  if len(argv) != 4:
    raise SystemExit(USAGE)
  _, sweep_path, workdir, name = argv
  if os.environ.get(scheduler.CPUS_VARIABLE):
    os.sched_setaffinity(0, [int(c) for c in os.environ[scheduler.CPUS_VARIABLE].split(',')])
  # Only now, under the affinity: the runner imports the trainer, and with it jax.
  from jaxpose.sweep import runner  # pylint: disable=g-import-not-at-top
  _, _, runs = runner.plan(sweep_path, workdir)
  chosen = [r for r in runs if r['name'] == name]
  if not chosen:
    raise SystemExit(f'{sweep_path}: no run named {name!r}; runs: {[r["name"] for r in runs]}')
  runner.train_run(chosen[0])


if __name__ == '__main__':
  main(sys.argv)
