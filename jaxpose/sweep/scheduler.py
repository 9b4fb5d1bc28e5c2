"""Running a sweep's points side by side: one process per point, each on its own GPUs or CPU cores.

`jaxpose sweep --parallel N` starts up to N processes at a time, each
`python -m jaxpose.sweep.worker SWEEP WORKDIR RUN`, which plans the sweep
again (so that it trains exactly the config the sequential path would) and
trains that one run. This module only slices the host and starts, watches
and stops processes: it imports nothing of jaxpose (the runner calls it, the
worker reads `CPUS_VARIABLE` from it before jax is imported). Each process
gets its own slice of this host:

- GPUs (`CUDA_VISIBLE_DEVICES`, or those `nvidia-smi -L` lists): N equal
  slices through `CUDA_VISIBLE_DEVICES`; fewer GPUs than N is an error.
- Otherwise CPU cores: N equal shares of this process's CPU affinity
  (the worker sets `os.sched_setaffinity` before it imports jax), one core each when N exceeds them.

A TPU host's chips belong to one process, so on TPU run points one at a time
or launch the `--print_only` commands on separate hosts. A process writes its
output to RUN_WORKDIR/sweep_log.txt; this one shows a line per point (its
step, read from the run's metrics.csv), redrawn in place on a terminal and
printed on change otherwise. Ctrl-C sends SIGTERM to the running points,
which save a checkpoint first (the trainer's preemption path), so that the
same command resumes them.
"""

from collections.abc import Callable
import csv
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, TextIO

LOG_FILE = 'sweep_log.txt'
# The CPU cores a point's process keeps to (comma-separated), read by `jaxpose.sweep.worker`
# before it imports jax.
CPUS_VARIABLE = 'JAXPOSE_SWEEP_CPUS'
# What each point's process runs (`python -m WORKER_MODULE SWEEP WORKDIR RUN`); named, not
# imported, since the worker imports the runner, which imports this module.
WORKER_MODULE = 'jaxpose.sweep.worker'


def local_gpus(environ: dict[str, str] | None = None) -> list[str]:
  """This host's GPU ids: CUDA_VISIBLE_DEVICES if set, else `nvidia-smi -L`'s GPUs, else []."""
  environ = os.environ if environ is None else environ
  if 'CUDA_VISIBLE_DEVICES' in environ:
    return [d.strip() for d in environ['CUDA_VISIBLE_DEVICES'].split(',') if d.strip()]
  if not shutil.which('nvidia-smi'):
    return []
  try:
    listing = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=30,
                             check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [str(i) for i, line in enumerate(l for l in listing.splitlines() if l.startswith('GPU'))]


def resource_slices(parallel: int, gpus: list[str] | None = None,
                    cpus: list[int] | None = None) -> list[dict[str, Any]]:
  """`parallel` disjoint slices of this host: [{'env': {...}, 'cpus': [...] or None, 'label': str}]."""
  if parallel < 1:
    raise ValueError(f'--parallel: expected a positive number of processes, got {parallel}')
  gpus = local_gpus() if gpus is None else gpus
  if gpus:
    if len(gpus) < parallel:
      raise ValueError(f'--parallel {parallel}: this host has {len(gpus)} GPU(s) '
                       f'({",".join(gpus)}); run at most {len(gpus)} points at once')
    each = len(gpus) // parallel
    return [{'env': {'CUDA_VISIBLE_DEVICES': ','.join(gpus[i * each:(i + 1) * each])},
             'cpus': None, 'label': 'GPU ' + ','.join(gpus[i * each:(i + 1) * each])}
            for i in range(parallel)]
  if glob.glob('/dev/accel*') and parallel > 1:
    raise ValueError(f'--parallel {parallel}: TPU chips cannot be shared between processes '
                     'here; use --parallel 1, or --print_only and one host per point')
  cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus
  each = max(len(cpus) // parallel, 1)
  slices = []
  for i in range(parallel):
    share = cpus[i * each:(i + 1) * each] or [cpus[i % len(cpus)]]
    slices.append({'env': {}, 'cpus': share, 'label': 'CPU ' + ','.join(map(str, share))})
  return slices


def last_step(run_workdir: str) -> int | None:
  """The last step the run logged in its metrics.csv, or None before its first log."""
  try:
    with open(os.path.join(run_workdir, 'metrics.csv')) as f:
      steps = [int(row['step']) for row in csv.DictReader(f)]
  except (OSError, ValueError, KeyError):
    return None
  return max(steps) if steps else None


class _Lines:
  """One status line per point: redrawn in place on a terminal, printed on change elsewhere."""

  def __init__(self, names: list[str], out: TextIO):
    self.names, self.out = names, out
    self.shown: dict[str, str] = {}
    self.drawn = 0
    self.in_place = hasattr(out, 'isatty') and out.isatty()

  def update(self, status: dict[str, str]) -> None:
    lines = [f'[{i}/{len(self.names)}] {name}: {status[name]}'
             for i, name in enumerate(self.names, 1)]
    if self.in_place:
      self.out.write('\x1b[F' * self.drawn + ''.join(f'\x1b[K{line}\n' for line in lines))
      self.drawn = len(lines)
    else:
      for name, line in zip(self.names, lines):
        if self.shown.get(name) != status[name]:
          self.out.write(line + '\n')
    self.shown = dict(status)
    self.out.flush()


def _start(sweep_path: str, workdir: str, run: dict, resources: dict) -> subprocess.Popen:
  os.makedirs(run['workdir'], exist_ok=True)
  env = {**os.environ, **resources['env']}
  if resources['cpus']:  # set by the child itself: a preexec_fn would fork this multithreaded process
    env[CPUS_VARIABLE] = ','.join(map(str, resources['cpus']))
  with open(os.path.join(run['workdir'], LOG_FILE), 'a') as log:
    return subprocess.Popen(
        [sys.executable, '-m', WORKER_MODULE, sweep_path, workdir, run['name']],
        stdout=log, stderr=subprocess.STDOUT, env=env,
        # Its own session: a Ctrl-C here reaches it as the SIGTERM below, which it checkpoints on.
        start_new_session=True)


def run_side_by_side(sweep_path: str, workdir: str, runs: list[dict], parallel: int,
                     out: TextIO = sys.stdout, poll_seconds: float = 1.0,
                     start: Callable[..., subprocess.Popen] = _start) -> None:
  """Trains `runs` (from `jaxpose.sweep.runner.plan`) `parallel` at a time; raises naming any that failed."""
  slots = resource_slices(parallel)
  waiting = list(runs)
  active: dict[int, tuple[dict, subprocess.Popen, float]] = {}
  status = {r['name']: 'waiting' for r in runs}
  failed = []
  lines = _Lines([r['name'] for r in runs], out)
  try:
    while waiting or active:
      for slot, resources in enumerate(slots):
        if slot not in active and waiting:
          run = waiting.pop(0)
          active[slot] = (run, start(sweep_path, workdir, run, resources), time.perf_counter())
          status[run['name']] = f'started on {resources["label"]}'
      lines.update(status)
      time.sleep(poll_seconds)
      for slot, (run, process, began) in list(active.items()):
        code = process.poll()
        step = last_step(run['workdir'])
        total = run['config'].num_train_steps
        if code is None:
          if step is not None:
            status[run['name']] = f'step {step}/{total}'
          continue
        del active[slot]
        seconds = time.perf_counter() - began
        if code == 0:
          status[run['name']] = f'finished in {seconds:.0f} s'
        else:
          log = os.path.join(run['workdir'], LOG_FILE)
          status[run['name']] = f'FAILED (exit {code}) at step {step}; see {log}'
          failed.append(f'{run["name"]} (exit {code}, log {log})')
    lines.update(status)
  except KeyboardInterrupt:
    for _, process, _ in active.values():  # the trainer checkpoints on SIGTERM, then exits
      process.send_signal(signal.SIGTERM)
    for _, process, _ in active.values():
      process.wait()
    raise
  if failed:
    raise RuntimeError(f'{sweep_path}: {len(failed)} point(s) failed: {"; ".join(failed)}. '
                       'Rerun the same command to retry them; finished points are kept.')

