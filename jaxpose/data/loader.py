"""The loaders: a grain loader of training batches, and padded eval batches.

Training batches come from a grain loader over one global stream
(`GlobalBatchSampler`): step s's global batch is the same records, augmented
the same way, whatever the number of processes, devices and grain workers;
each process reads its contiguous share of it. The data position is the step,
so a run resumes by building its loader at the restored step, on any
topology. Eval batches are the eval split once, in order, without
augmentation, the last batch padded and flagged with `example_mask` so that
every example counts exactly once whatever the batch size and device count.
The transforms that make an example of a record are the approach's
(`jaxpose.data.augment`). `TimedIterator` measures how long the loop waits
for its input.
"""

from collections.abc import Callable, Iterator
import functools
import os
import sys
import time

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


@functools.lru_cache(maxsize=4)
def _epoch_order(num_records: int, seed: int, epoch: int) -> np.ndarray:
  """The order in which an epoch reads the records: a permutation seeded by (seed, epoch) only."""
  order = np.random.default_rng([seed, epoch]).permutation(num_records)
  order.flags.writeable = False  # shared by every call through the cache
  return order


class GlobalBatchSampler:
  """grain Sampler: loader index -> record of one global stream, the same on any topology.

  Global position g = step * G + i (G the global batch, i < G) reads record
  order(epoch)[g mod N] of epoch g // N, where order(epoch) is a permutation of
  range(N) seeded by (seed, epoch) (the identity without shuffling), and
  augments it with a generator seeded by (seed, g) only. At every step process
  p of P reads positions p * B .. p * B + B - 1 (B = G / P) of that step's
  global batch, so the P host batches of a step, concatenated in process
  order, are the batch one process reads alone. The first batch is step
  `start_step`'s.

  grain's DataLoader with W > 0 workers gives worker w the loader indices w,
  w + W, w + 2W, ..., which that worker batches itself, and its output batch
  j is worker j mod W's batch j // W (grain 0.2.18,
  grain/_src/python/dataset/transformations/process_prefetch.py,
  `multiprocess_prefetch`: `slice(i, None, num_workers)` per worker, then a
  round-robin `InterleaveIterDataset`). `__getitem__` inverts that map, so
  that output batch j is step start_step + j's share whatever W.
  """

  def __init__(self, num_records: int, *, global_batch_size: int, seed: int,
               process_index: int, process_count: int, shuffle: bool = True,
               start_step: int = 0, worker_count: int = 0):
    self.num_records = num_records
    self.global_batch_size = global_batch_size
    self.host_batch_size = global_batch_size // process_count
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self.shuffle = shuffle
    self.start_step = start_step
    self.worker_count = worker_count

  def __len__(self) -> int:
    return sys.maxsize  # an endless stream

  def __repr__(self) -> str:
    return (f'GlobalBatchSampler(num_records={self.num_records}, '
            f'global_batch_size={self.global_batch_size}, seed={self.seed}, '
            f'process_index={self.process_index}, process_count={self.process_count}, '
            f'shuffle={self.shuffle}, start_step={self.start_step}, '
            f'worker_count={self.worker_count})')

  def global_position(self, index: int) -> int:
    """Loader index -> its position in the global stream."""
    workers = max(self.worker_count, 1)
    worker, index_in_worker = index % workers, index // workers
    batch_of_worker, row = divmod(index_in_worker, self.host_batch_size)
    step = self.start_step + batch_of_worker * workers + worker
    return step * self.global_batch_size + self.process_index * self.host_batch_size + row

  def __getitem__(self, index: int) -> grain.RecordMetadata:
    if index < 0:
      raise IndexError(f'{self!r}: negative index {index}')
    position = self.global_position(index)
    epoch, offset = divmod(position, self.num_records)
    record_key = int(_epoch_order(self.num_records, self.seed, epoch)[offset]
                     if self.shuffle else offset)
    rng = np.random.Generator(np.random.Philox(key=[position, self.seed]))
    return grain.RecordMetadata(index=index, record_key=record_key, rng=rng)


def make_loader(source, transform: grain.Transformation, *, global_batch_size: int,
                seed: int, shuffle: bool = True, start_step: int = 0, worker_count: int = 0,
                read_threads: int | None = None, process_index: int | None = None,
                process_count: int | None = None) -> grain.DataLoader:
  """Source and transform -> endless grain DataLoader of this host's batches (dicts of [B, ...]).

  The batches are this process's shares of one global stream of
  global_batch_size examples per step (`GlobalBatchSampler`): the same
  global batches, augmentation included, on any number of processes,
  devices and workers. Batch j is step start_step + j's, so a run resumes
  by building its loader at the restored step; nothing else of the
  iterator needs saving.

  Args:
    source: grain random-access source (`__len__`, `__getitem__`).
    transform: a grain MapTransform or RandomMapTransform.
    global_batch_size: examples per step over all processes.
    seed: seeds the shuffle and the augmentation; >= 0.
    shuffle: shuffle the records (anew each epoch).
    start_step: the step whose batch comes first.
    worker_count: grain worker processes; 0 reads in this process.
    read_threads: threads reading (and so decoding) records in each worker;
      None gives `default_read_threads(worker_count)`.
    process_index: this process's index; None gives `jax.process_index()`.
    process_count: the number of processes; None gives `jax.process_count()`.

  Returns:
    A grain DataLoader.
  """
  if len(source) == 0:
    raise ValueError(f'{source!r} is empty: nothing to load')
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(f'global_batch_size {global_batch_size} is not a positive multiple of '
                     f'the number of processes {process_count}')
  if seed < 0 or start_step < 0:
    raise ValueError(f'seed {seed} and start_step {start_step}: expected both >= 0')
  sampler = GlobalBatchSampler(len(source), global_batch_size=global_batch_size, seed=seed,
                               process_index=process_index, process_count=process_count,
                               shuffle=shuffle, start_step=start_step,
                               worker_count=worker_count)
  batch = grain.Batch(sampler.host_batch_size, drop_remainder=True)
  if read_threads is None:
    read_threads = default_read_threads(worker_count)
  if worker_count > 0 and not flags.FLAGS.is_parsed():
    # grain reads its absl flags when it starts workers, and raises if a
    # program that never parsed flags (a script, a notebook) asks for them;
    # their defaults are what such a program wants.
    flags.FLAGS.mark_as_parsed()
  read_options = grain.ReadOptions(num_threads=read_threads)
  # The sampler shards by process itself: grain's loader index is its index.
  return grain.DataLoader(data_source=source, sampler=sampler,
                          operations=[transform, batch], worker_count=worker_count,
                          shard_options=grain.NoSharding(), read_options=read_options)


def train_loader(source, transform: grain.Transformation,
                 config: ml_collections.ConfigDict, start_step: int = 0) -> grain.DataLoader:
  """Endless, shuffled, augmented training batches of this host from `start_step` on."""
  return make_loader(source, transform, global_batch_size=config.batch_size, seed=config.seed,
                     start_step=start_step, worker_count=config.data.worker_count,
                     read_threads=config.data.read_threads)


class TimedIterator:
  """Wraps an iterator and adds up the time its consumer waits in `next` (the input wait)."""

  def __init__(self, iterator: Iterator, clock: Callable[[], float] = time.perf_counter):
    self._iterator = iterator
    self._clock = clock
    self._waited = 0.0

  def __iter__(self) -> 'TimedIterator':
    return self

  def __next__(self):
    start = self._clock()
    try:
      return next(self._iterator)
    finally:
      self._waited += self._clock() - start

  def take_waited(self) -> float:
    """Seconds spent in `next` since the last call."""
    waited, self._waited = self._waited, 0.0
    return waited


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
