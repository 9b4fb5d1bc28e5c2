"""Benchmark: the top-down training input pipeline against bare JPEG decoding of the same files.

Prints, measured in one run on the bundled COCO sample (tests/data/coco: 4
images, 12 labelled people) repeated to `--records` person records:
- bare decoding: `cv2.imread` of each record's image file, in this process
  and in a pool of 2 processes (the floor a 2-worker pipeline can reach),
  and in 2 processes whose malloc keeps freed memory as jaxpose's workers'
  does (`jaxpose.data.worker_process`), to show what that setting alone is
  worth to decoding;
- the pipeline: `loader.make_loader` over `coco.CocoPersons` with the
  augmenting `TopDownTransform` (scale, rotation, flip; 256x256 crops),
  batches of 32, with 0, 1 and 2 grain workers, each with grain's default
  16 reading threads and with jaxpose's default (the cores shared by the
  decoding processes, `loader.default_read_threads`; 0 for a worker with
  one core), and 2 workers with 1 thread each;
Rounds interleave the readers (worker start-up excluded), each reading
`--batches` batches' worth of images; the table shows the best and median
rates, and each reader's rate as a fraction of bare decoding with as many
processes as it has decoders, in the same round (median over rounds). Then
the cost per record of each stage in a process set up as a worker is:
decoding, reading a record (decoding to RGB), the augmenting crop, those
with the copy into a batch, and with the batch in a new shared-memory block
as grain's workers hand each batch over. Their ratio to decoding is the most
a loader of that shape can feed.

With --designs, two loader designs jaxpose does not use, each with 2 workers
reading in their own thread: grain batches record indices and one transform
reads and crops the whole batch into one array ('decode after batching'),
and the same with the sampler drawing whole fixed batches
('batch-granular sampling', which shuffles batches, not records).

Usage: python scripts/bench_input.py [--records 1024] [--batches 16] [--rounds 3] [--designs]
"""

import argparse
from multiprocessing import shared_memory
import multiprocessing
import os
import pathlib
import time

from absl import flags
import cv2
import grain.python as grain
import numpy as np

from jaxpose.data import augment, coco, loader, worker_process

COCO_DIR = pathlib.Path(__file__).resolve().parent.parent / 'tests' / 'data' / 'coco'
BATCH_SIZE = 32
INPUT_SIZE = (256, 256)


class Repeated:
  """A random-access source whose record i is `source[i % len(source)]`, `length` records in all."""

  def __init__(self, source, length: int):
    self.source = source
    self.length = length

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index) -> dict:
    return self.source[int(index) % len(self.source)]

  def __repr__(self) -> str:
    return f'Repeated({self.source!r}, {self.length})'


def record_paths(persons: coco.CocoPersons, length: int) -> list[str]:
  """The image file of each of the repeated source's `length` records."""
  starts = persons._starts  # pylint: disable=protected-access
  paths = []
  for index in range(length):
    image_index = int(np.searchsorted(starts, index % len(persons), side='right')) - 1
    paths.append(persons.images.records[image_index].path)
  return paths


def decode(path: str) -> int:
  """Decodes one JPEG as the source does before its colour conversion; returns its height."""
  return cv2.imread(path, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION).shape[0]


def images_per_second(fn, count: int) -> float:
  """Images/s of `fn()`, which handles `count` images."""
  start = time.perf_counter()
  fn()
  return count / (time.perf_counter() - start)


def pipeline_rate(source, worker_count: int, read_threads: int | None, batches: int,
                  seed: int) -> float:
  """Images/s of the augmenting top-down loader with `worker_count` grain workers, after a warm-up."""
  transform = augment.TopDownTransform(INPUT_SIZE, augment=True)
  batches_of = loader.make_loader(source, transform, global_batch_size=BATCH_SIZE, seed=seed,
                                  worker_count=worker_count, read_threads=read_threads)
  return loader_rate(batches_of, worker_count, batches)


def loader_rate(loader: grain.DataLoader, worker_count: int, batches: int) -> float:
  """Images/s of a loader of augmented batches, after a warm-up."""
  iterator = iter(loader)
  # Warm-up: workers start and fill their buffers; only the steady state counts.
  for _ in range(max(2, 2 * worker_count)):
    next(iterator)

  def read():
    for _ in range(batches):
      batch = next(iterator)
    assert batch['image'].shape == (BATCH_SIZE, INPUT_SIZE[1], INPUT_SIZE[0], 3)
  return images_per_second(read, batches * BATCH_SIZE)


# Two other designs (--designs), measured to show what the loader's structure
# costs; jaxpose does not use them. Both read and crop a whole batch in one
# transform, straight into one array, so grain's per-record work shrinks.


class _Indices:
  """Record i -> i: a source that leaves the reading to the batch transform."""

  def __init__(self, length: int):
    self.length = length

  def __len__(self) -> int:
    return self.length

  def __getitem__(self, index) -> int:
    return int(index)


class _BatchesOfIndices(_Indices):
  """Record i -> the record indices of batch i, fixed: shuffling moves whole batches."""

  def __getitem__(self, index) -> range:
    return range(int(index) * BATCH_SIZE, (int(index) + 1) * BATCH_SIZE)


class _ReadAndCropBatch(grain.RandomMapTransform):
  """A batch of record indices -> {'image': [B, H, W, 3] uint8, 'joints', 'visible'}."""

  def __init__(self, source):
    self.source = source
    self.transform = augment.TopDownTransform(INPUT_SIZE, augment=True)

  def random_map(self, indices, rng: np.random.Generator) -> dict:
    images = np.empty((len(indices), INPUT_SIZE[1], INPUT_SIZE[0], 3), np.uint8)
    joints, visible = [], []
    for slot, index in enumerate(indices):
      example = self.transform.random_map(self.source[index], rng)
      images[slot] = example['image']
      joints.append(example['joints'])
      visible.append(example['visible'])
    return {'image': images, 'joints': np.stack(joints), 'visible': np.stack(visible)}


def design_loader(source, seed: int, batch_granular: bool) -> grain.DataLoader:
  """2 workers reading in their own thread; records read after batching, and with
  `batch_granular` sampled a whole fixed batch at a time."""
  if batch_granular:
    records = _BatchesOfIndices(len(source) // BATCH_SIZE)
    operations = [_ReadAndCropBatch(source)]
  else:
    records = _Indices(len(source))
    operations = [grain.Batch(BATCH_SIZE, drop_remainder=True, batch_fn=list),
                  _ReadAndCropBatch(source)]
  sampler = grain.IndexSampler(num_records=len(records), shard_options=grain.NoSharding(),
                               shuffle=True, num_epochs=None, seed=seed)
  return grain.DataLoader(data_source=records, sampler=sampler, operations=operations,
                          worker_count=2, read_options=grain.ReadOptions(num_threads=0))


def stage_milliseconds(repeats: int) -> dict:
  """Best per-record milliseconds of each stage of a worker's work (module docstring)."""
  worker_process.keep_freed_memory()  # as in a worker
  persons = coco.CocoPersons(str(COCO_DIR / 'test_coco.json'), str(COCO_DIR))
  paths = record_paths(persons, len(persons))
  transform = augment.TopDownTransform(INPUT_SIZE, augment=True)
  examples = [persons[i] for i in range(len(persons))]
  rng = np.random.default_rng(0)
  shape = (len(persons), INPUT_SIZE[1], INPUT_SIZE[0], 3)
  batch = np.empty(shape, np.uint8)

  def read_crop_and_batch(out: np.ndarray):
    for i in range(len(persons)):
      out[i] = transform.random_map(persons[i], rng)['image']

  def into_new_shared_memory():
    block = shared_memory.SharedMemory(create=True, size=batch.nbytes)
    try:
      read_crop_and_batch(np.ndarray(shape, np.uint8, buffer=block.buf))
    finally:
      block.close()
      block.unlink()

  stages = {
      'cv2.imread': lambda: [decode(path) for path in paths],
      'CocoPersons[i] (read, decode to RGB)': lambda: [persons[i] for i in range(len(persons))],
      'TopDownTransform (affine crop)': lambda: [transform.random_map(e, rng) for e in examples],
      'read, crop, copy into a batch': lambda: read_crop_and_batch(batch),
      # grain's workers stack each batch into a new shared-memory block, whose
      # pages the kernel must supply afresh: this is the least a worker does.
      '... the batch in new shared memory': into_new_shared_memory,
  }
  return {name: 1e3 / max(images_per_second(fn, len(persons)) for _ in range(repeats))
          for name, fn in stages.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--records', type=int, default=1024)
  parser.add_argument('--batches', type=int, default=16, help='timed batches per round')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--designs', action='store_true',
                      help='also measure two loader designs jaxpose does not use')
  args = parser.parse_args()
  # grain's workers read absl flags, which this argparse script never parses.
  flags.FLAGS.mark_as_parsed()
  persons = coco.CocoPersons(str(COCO_DIR / 'test_coco.json'), str(COCO_DIR))
  source = Repeated(persons, args.records)
  paths = record_paths(persons, args.records)
  sizes = {cv2.imread(p).shape[1::-1] for p in set(paths)}
  piped_paths = paths[:args.batches * BATCH_SIZE]  # as many images as a pipeline round

  # Rounds interleave the readers, so that a change in the machine's load
  # hits all of them; ratios are taken within a round.
  loaders = [(workers, threads) for threads in (16, None) for workers in (0, 1, 2)]
  loaders.append((2, 1))  # the default before a one-core worker read in its own thread
  # Label -> design_loader's batch_granular.
  designs = ({'decode after batching': False, 'batch-granular sampling': True}
             if args.designs else {})
  names = ['bare1', 'bare2', 'bare2_kept'] + [f'workers{w}_threads{t}' for w, t in loaders] + list(designs)
  rates = {name: [] for name in names}
  spawn = multiprocessing.get_context('spawn')
  with spawn.Pool(2) as pool, spawn.Pool(2, worker_process.keep_freed_memory) as kept_pool:
    pool.map(decode, paths[:8])  # start-up and first imports
    kept_pool.map(decode, paths[:8])
    for round_index in range(args.rounds):
      rates['bare1'].append(images_per_second(
          lambda: [decode(path) for path in piped_paths], len(piped_paths)))
      rates['bare2'].append(images_per_second(
          lambda: pool.map(decode, piped_paths, chunksize=8), len(piped_paths)))
      rates['bare2_kept'].append(images_per_second(
          lambda: kept_pool.map(decode, piped_paths, chunksize=8), len(piped_paths)))
      for workers, threads in loaders:
        rates[f'workers{workers}_threads{threads}'].append(
            pipeline_rate(source, workers, threads, args.batches, seed=round_index))
      for design, batch_granular in designs.items():
        loader = design_loader(source, seed=round_index, batch_granular=batch_granular)
        rates[design].append(loader_rate(loader, 2, args.batches))
    # In one of the pool's processes, set up as a worker is.
    stages = pool.apply(stage_milliseconds, (args.rounds,))

  rates = {name: np.array(values) for name, values in rates.items()}
  print(f'{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; '
        f'{len(persons)} persons in {len(set(paths))} images {sorted(sizes)}, repeated to '
        f'{args.records}; batch {BATCH_SIZE}, {INPUT_SIZE[0]}x{INPUT_SIZE[1]} crops; '
        f'{args.rounds} rounds of {len(piped_paths)} images')
  print(f'| {"reader":60s} | {"best images/s":>13s} | {"median images/s":>15s} | '
        f'{"/ bare decoding (median of rounds)":>34s} |')
  print(f'| {"-" * 60} | {"-" * 13} | {"-" * 15} | {"-" * 34} |')
  labels = {'bare1': 'bare cv2.imread, 1 process', 'bare2': 'bare cv2.imread, 2 processes',
            'bare2_kept': 'bare cv2.imread, 2 processes keeping freed memory'}
  floors = {'bare1': 'bare1', 'bare2': 'bare2', 'bare2_kept': 'bare2'}
  for workers, threads in loaders:
    name = f'workers{workers}_threads{threads}'
    threads = {16: '16 (grain default)',
               None: f'{loader.default_read_threads(workers)} (jaxpose default)'}.get(
                   threads, threads)
    labels[name] = f'pipeline, worker_count={workers}, read_threads={threads}'
    floors[name] = 'bare2' if workers == 2 else 'bare1'
  for design in designs:
    labels[design] = f'other design: {design}, 2 workers'
    floors[design] = 'bare2'
  for name in names:
    floor = floors[name]
    ratio = f'{np.median(rates[name] / rates[floor]):.2f} of {labels[floor][5:]}'
    print(f'| {labels[name]:60s} | {rates[name].max():13.1f} | {np.median(rates[name]):15.1f} '
          f'| {ratio:>34s} |')
  print('Per record, in one process set up as a worker (best of rounds):')
  for name, milliseconds in stages.items():
    print(f'  {name:42s} {milliseconds:6.2f} ms')
  for stage in ('read, crop, copy into a batch', '... the batch in new shared memory'):
    print(f'Ceiling of a loader doing {stage!r} and nothing else: '
          f'{stages["cv2.imread"] / stages[stage]:.2f} of bare decoding')


if __name__ == '__main__':
  main()
