"""The loaders: a sharded, resumable grain loader of training batches, and padded eval batches.

Training batches come from a grain loader (shuffled, augmented, sharded by
host, resumable). Eval batches are the eval split once, in order, without
augmentation, the last batch padded and flagged with `example_mask` so that
every example counts exactly once whatever the batch size and device count.
The transforms that make an example of a record are the approach's
(`jaxpose.data.augment`).
"""

from collections.abc import Iterator
import os

from absl import flags
import grain.python as grain
import jax
import ml_collections
import numpy as np


def default_read_threads(worker_count: int, cpu_count: int | None = None) -> int:
  """Reading threads per process: the machine's cores shared by the processes that decode, 0 to 16.

  Decoding is CPU-bound, so threads beyond the cores only contend: grain's
  default of 16 per worker, with 2 workers on 2 cores, fed 0.41-0.51 of the
  bare decoding rate where 1 thread fed 0.61-0.67 (scripts/bench_input.py,
  BENCHMARKS.md). A worker with one core to itself reads in its own thread
  (0 threads, as grain's `ReadOptions` recommends against GIL contention): its
  process is already the prefetcher, and handing each record between threads
  cost it 4-8 % of its rate. Without workers the training process keeps at
  least one reading thread, so that reading overlaps the train step. 16,
  grain's default, stays the ceiling for large hosts.
  """
  cpu_count = cpu_count or os.cpu_count() or 1
  cores_each = cpu_count // max(worker_count, 1)
  if worker_count > 0 and cores_each <= 1:
    return 0
  return int(np.clip(cores_each, 1, 16))


def make_loader(source, transform: grain.Transformation, *, global_batch_size: int,
                seed: int, shuffle: bool = True, num_epochs: int | None = None,
                worker_count: int = 0, drop_remainder: bool = True,
                read_threads: int | None = None) -> grain.DataLoader:
  """Source and transform -> grain DataLoader of this host's batches (dicts of [B, ...] arrays).

  Each JAX process reads only its own slice of the source (grain's
  `ShardByJaxProcess`, with the remainder dropped so that every process takes
  the same number of steps) and batches global_batch_size /
  jax.process_count() examples. `iter(loader)` has `get_state()` and
  `set_state()`: an iterator given a saved state goes on from exactly that
  batch, augmentation included.

  A record's augmentation depends only on the seed and its place in the
  sampled stream, but how records are grouped into batches depends on
  `worker_count` (grain gives each worker every n-th record), so a saved
  state resumes only with the worker count it was saved with (grain raises
  otherwise).

  Args:
    source: grain random-access source (`__len__`, `__getitem__`).
    transform: a grain MapTransform or RandomMapTransform.
    global_batch_size: examples per step over all processes.
    seed: seeds the shuffle and the augmentation.
    shuffle: shuffle the records (anew each epoch).
    num_epochs: passes over the data; None repeats forever.
    worker_count: grain worker processes; 0 reads in this process.
    drop_remainder: drop the last, smaller batch of a finite stream.
    read_threads: threads reading (and so decoding) records in each worker;
      None gives `default_read_threads(worker_count)`.

  Returns:
    A grain DataLoader.
  """
  if len(source) == 0:
    raise ValueError(f'{source!r} is empty: nothing to load')
  process_count = jax.process_count()
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(f'global_batch_size {global_batch_size} is not a positive multiple of '
                     f'the number of processes {process_count}')
  if len(source) < process_count:
    raise ValueError(f'{source!r} has {len(source)} records, fewer than the '
                     f'{process_count} processes that share it')
  sampler = grain.IndexSampler(
      num_records=len(source),
      shard_options=grain.ShardByJaxProcess(drop_remainder=True),
      shuffle=shuffle,
      num_epochs=num_epochs,
      seed=seed)
  batch = grain.Batch(global_batch_size // process_count, drop_remainder=drop_remainder)
  if read_threads is None:
    read_threads = default_read_threads(worker_count)
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    # grain reads its absl flags when it starts workers, and raises if a
    # program that never parsed flags (a script, a notebook) asks for them;
    # their defaults are what such a program wants.
    flags.FLAGS.mark_as_parsed()
  read_options = grain.ReadOptions(num_threads=read_threads)
  return grain.DataLoader(data_source=source, sampler=sampler,
                          operations=[transform, batch], worker_count=worker_count,
                          read_options=read_options)


def train_loader(source, transform: grain.Transformation,
                 config: ml_collections.ConfigDict) -> grain.DataLoader:
  """Infinite, shuffled, augmented training batches of this host, as the config says."""
  return make_loader(source, transform, global_batch_size=config.batch_size, seed=config.seed,
                     worker_count=config.data.worker_count,
                     read_threads=config.data.read_threads)


def eval_batches(source, transform: grain.RandomMapTransform, host_batch: int
                 ) -> Iterator[dict]:
  """This host's share of the eval split, in batches of `host_batch` padded with `example_mask`."""
  indices = np.arange(jax.process_index(), len(source), jax.process_count())
  # Hosts must run the same number of eval steps: pad every host to the longest.
  num_batches = -(-(-(-len(source) // jax.process_count())) // host_batch)
  rng = np.random.default_rng(0)  # unused without augmentation
  for b in range(num_batches):
    chunk = indices[b * host_batch:(b + 1) * host_batch]
    examples = [transform.random_map(source[int(i)], rng) for i in chunk]
    if not examples:
      examples = [transform.random_map(source[0], rng)]
      real = 0
    else:
      real = len(examples)
    examples += [examples[-1]] * (host_batch - len(examples))
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch['example_mask'] = np.arange(host_batch) < real
    yield batch
