"""Benchmark: the real training loop against its bare compiled step called in a loop, steps/s.

The loop is `jaxpose.training.trainer.train_and_evaluate` itself (the quick start's
model, optimizer and batch) fed from an in-memory source: the config's
training examples made once, before timing, and handed to the loop's grain
loader with an identity transform, so that what the loop adds to the step
is the input plumbing (grain's batching, `prefetch_to_device`), the metrics
it keeps and its log steps, not augmentation. Its rate is the one it logs:
steps over the wall time of each log window (eval, checkpoints and
compiling are left out of the windows), the first window (warm-up) dropped;
`train/input_wait_fraction` says which share of that time it waited for
input.

The bare step is the same compiled `train_step` for the same mode, called
back to back on one batch already on the devices, with nothing else
(`jax.block_until_ready` once at the end), as many steps as the loop's
timed windows. Repeats alternate loop and bare runs, so that a load change
on a shared machine hits both; each repeat's ratio is taken within the
repeat, and the table gives their median, and the best rates. A persistent
compilation cache spares the loop's runs after the first their compiling.

Usage: python scripts/bench_train_loop.py [--mode none|pmap|shard_map] [--steps 60]
  [--log-every 20] [--repeats 3] [--batch-size 32] [--num-stacks 2] [--num-features 32]
  [--read-threads 0]
pmap and shard_map run on 8 CPU devices (`--xla_force_host_platform_device_count`)
where no accelerator is present.
"""

import argparse
import csv
import functools
import os
import statistics
import sys
import tempfile
import time
from unittest import mock

if '--mode' in sys.argv and sys.argv[sys.argv.index('--mode') + 1] != 'none':
  # Set before JAX starts: 8 CPU devices for the data-parallel modes.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_force_host_platform_device_count=8').strip()

import grain.python as grain  # pylint: disable=g-import-not-at-top
import jax
import numpy as np

from jaxpose import approaches, sweep
from jaxpose.training import parallel
from jaxpose.training import trainer

QUICKSTART = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs',
                          'quickstart.py')
EXAMPLES = 256  # in-memory training examples: 8 batches of 32


class _Examples:
  """A grain source of examples made beforehand."""

  def __init__(self, examples: list[dict]):
    self.examples = examples

  def __len__(self) -> int:
    return len(self.examples)

  def __getitem__(self, index: int) -> dict:
    return self.examples[index]


class _AsIs(grain.MapTransform):
  """The in-memory examples are already what the loop batches."""

  def map(self, element):
    return element


def make_config(args):
  config = sweep.load_config_file(QUICKSTART)
  config.parallel = args.mode
  config.model.num_stacks = args.num_stacks
  config.model.num_features = args.num_features
  config.batch_size = args.batch_size
  config.num_train_steps = args.steps
  config.log_every_steps = args.log_every
  config.eval_every_steps = config.checkpoint_every_steps = 10 ** 6  # only at the end
  config.data.num_eval_examples = 8
  # Nothing to decode: grain's reading threads would only hand the examples
  # over (2 threads: 10 ms per batch of 16 on this machine, 0 threads: 2 ms).
  config.data.read_threads = args.read_threads
  config.warmup_steps = 0
  return config


def in_memory_source(config) -> tuple[_Examples, object]:
  """The config's training examples, augmented once, in memory; and its eval source."""
  train_source, eval_source = trainer.create_sources(config)
  transform = trainer.create_transform(config, train=True)
  rng = np.random.default_rng(0)
  examples = [transform.random_map(train_source[i], rng) for i in range(EXAMPLES)]
  return _Examples(examples), eval_source


def loop_rate(config, sources) -> tuple[float, float]:
  """(steps/s, input-wait fraction) of train_and_evaluate's logged windows, the first left out."""
  real_transform = trainer.create_transform

  def transform(config, train):  # pylint: disable=redefined-outer-name
    return _AsIs() if train else real_transform(config, train)
  with tempfile.TemporaryDirectory() as workdir, \
      mock.patch.object(trainer, 'create_sources', lambda config: sources), \
      mock.patch.object(trainer, 'create_transform', transform):
    trainer.train_and_evaluate(config, workdir)
    with open(os.path.join(workdir, 'metrics.csv')) as f:
      rows = list(csv.DictReader(f))
  rates = [float(r['value']) for r in rows if r['name'] == 'train/images_per_second'][1:]
  waits = [float(r['value']) for r in rows if r['name'] == 'train/input_wait_fraction'][1:]
  # Equal windows: the mean rate is the rate over their total time, as harmonic means go.
  seconds_per_step = statistics.mean(config.batch_size / rate for rate in rates)
  return 1 / seconds_per_step, statistics.mean(waits)


class BareStep:
  """The loop's compiled train step, state and one device batch, for calling back to back."""

  def __init__(self, config, sources):
    self.data = parallel.DataParallel(config.parallel)
    learning_rate_fn = trainer.create_learning_rate_fn(config)
    tx = trainer.create_optimizer(config, learning_rate_fn)
    step = self.data.compile(functools.partial(
        trainer.train_step, approach=approaches.for_config(config),
        model=trainer.create_model(config, self.data.axis_name), teacher=None, tx=tx,
        learning_rate_fn=learning_rate_fn, config=config, axis_name=self.data.axis_name),
        num_replicated_args=1)
    examples = sources[0].examples[:self.data.host_batch_size(config.batch_size)]
    host_batch = {key: np.stack([e[key] for e in examples]) for key in examples[0]}
    self.batch = self.data.shard_batch(host_batch)
    self.state = self.data.replicate(
        trainer.create_train_state(config, trainer.create_model(config), tx))
    self.step = step.lower(self.state, self.batch, None).compile()
    self.run(2)  # warm-up

  def run(self, steps: int) -> float:
    """Steps/s over `steps` calls."""
    start = time.perf_counter()
    for _ in range(steps):
      self.state, metrics = self.step(self.state, self.batch, None)
    jax.block_until_ready((self.state, metrics))
    return steps / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--mode', default='none', choices=parallel.MODES)
  parser.add_argument('--steps', type=int, default=60)
  parser.add_argument('--log-every', type=int, default=20)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--num-stacks', type=int, default=2, help="the quick start's 2")
  parser.add_argument('--num-features', type=int, default=32, help="the quick start's 32")
  parser.add_argument('--read-threads', type=int, default=0,
                      help='config.data.read_threads (unset: 2 on 2 cores)')
  args = parser.parse_args()
  if args.steps < 2 * args.log_every:
    parser.error('--steps: at least two log windows (2 x --log-every), the first is warm-up')
  config = make_config(args)
  cache = tempfile.TemporaryDirectory()
  jax.config.update('jax_compilation_cache_dir', cache.name)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  sources = in_memory_source(config)
  bare = BareStep(config, sources)
  loops, bares, waits = [], [], []
  for repeat in range(args.repeats):
    rate, wait = loop_rate(config, sources)
    loops.append(rate)
    waits.append(wait)
    # The loop's timed steps: all but the first window.
    bares.append(bare.run(args.steps - args.log_every))
    print(f'repeat {repeat + 1}: loop {loops[-1]:.3f} steps/s (input wait {wait:.3f}), '
          f'bare step {bares[-1]:.3f} steps/s, ratio {loops[-1] / bares[-1]:.3f}', flush=True)
  print(f'\n{jax.device_count()} {jax.devices()[0].platform} device(s), mode {args.mode}, '
        f'hourglass {args.num_stacks}x{args.num_features}, batch {args.batch_size}, '
        f'{args.steps} steps, {args.repeats} repeats, read_threads {args.read_threads}')
  ratios = [loop / bare for loop, bare in zip(loops, bares)]
  print('| loop steps/s, best | bare step steps/s, best | loop / bare, median of repeats '
        '(min-max) | input wait, median |')
  print('| ---: | ---: | ---: | ---: |')
  print(f'| {max(loops):.3f} | {max(bares):.3f} | {statistics.median(ratios):.3f} '
        f'({min(ratios):.3f}-{max(ratios):.3f}) | {statistics.median(waits):.3f} |')


if __name__ == '__main__':
  main()
