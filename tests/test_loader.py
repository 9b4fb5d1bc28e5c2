"""jaxpose.data.loader: the sharded, resumable grain loader, with and without worker processes."""

import os

import grain.python as grain
import jax
import numpy as np
import pytest

from jaxpose.data import augment, loader as loader_lib, synthetic, worker_process


class _Indices:
  """A source whose record i is {'index': i}."""

  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, index):
    return {'index': np.int64(index)}

  def __repr__(self):
    return f'_Indices({self.n})'


class _Identity(grain.MapTransform):

  def map(self, element):
    return element


def _top_down_loader(**kwargs):
  persons = synthetic.SyntheticPersons(synthetic.SyntheticPeople(40, image_size=(64, 64)))
  options = dict(global_batch_size=4, seed=11)
  options.update(kwargs)
  return loader_lib.make_loader(persons, augment.TopDownTransform((32, 48)), **options)


def test_loader_batches():
  batch = next(iter(_top_down_loader()))
  assert set(batch) == {'image', 'joints', 'visible'}
  assert batch['image'].shape == (4, 48, 32, 3) and batch['image'].dtype == np.uint8
  assert batch['joints'].shape == (4, 17, 2) and batch['joints'].dtype == np.float32
  assert batch['visible'].shape == (4, 17) and batch['visible'].dtype == np.float32
  assert set(np.unique(batch['visible'])) <= {0.0, 1.0} and batch['visible'].sum() > 20


def test_loader_resumes_from_saved_state():
  iterator = iter(_top_down_loader())
  first = [next(iterator) for _ in range(3)]
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(2)]
  resumed = iter(_top_down_loader())
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  assert not np.array_equal(expected[0]['joints'], first[0]['joints'])


class _ReportingTopDown(augment.TopDownTransform):
  """TopDownTransform whose examples also say which process made them and whether it keeps freed memory."""

  def random_map(self, element, rng):
    example = super().random_map(element, rng)
    example['pid'] = np.int64(os.getpid())
    example['keeps_freed_memory'] = np.bool_(worker_process.configured())
    return example


def test_two_workers_make_the_examples_of_none_and_resume():
  # With workers, grain hands each worker every other sampled record, so
  # batches are composed differently; but each record gets the same
  # augmentation, and the first 4 batches hold the same 16 examples.
  persons = synthetic.SyntheticPersons(synthetic.SyntheticPeople(40, image_size=(64, 64)))
  def make(workers):
    return loader_lib.make_loader(persons, _ReportingTopDown((32, 48)), global_batch_size=4,
                                seed=11, worker_count=workers)
  def examples(batches):
    return sorted(batch['image'][i].tobytes() + batch['joints'][i].tobytes()
                  for batch in batches for i in range(len(batch['image'])))
  in_process = iter(make(0))
  expected = [next(in_process) for _ in range(4)]
  straight = iter(make(2))
  with_workers = [next(straight) for _ in range(4)]
  assert examples(with_workers) == examples(expected)
  assert not np.array_equal(with_workers[0]['image'], expected[0]['image'])
  # Made in two worker processes, which keep freed memory; this process does not.
  pids = {int(pid) for batch in with_workers for pid in batch['pid']}
  assert len(pids) == 2 and os.getpid() not in pids
  assert all(batch['keeps_freed_memory'].all() for batch in with_workers)
  assert not any(batch['keeps_freed_memory'].any() for batch in expected)
  assert not worker_process.configured()
  # A state saved with workers resumes on the next batch.
  interrupted = iter(make(2))
  [next(interrupted) for _ in range(2)]
  resumed = iter(make(2))
  resumed.set_state(interrupted.get_state())
  for want in with_workers[2:]:
    got = next(resumed)
    for key in ('image', 'joints', 'visible'):
      np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize('shuffle', [False, True])
def test_loader_shards_by_process(monkeypatch, shuffle):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  seen = []
  for process in range(2):
    monkeypatch.setattr(jax, 'process_index', lambda process=process: process)
    batches = loader_lib.make_loader(_Indices(12), _Identity(), global_batch_size=4, seed=0,
                                     shuffle=shuffle, num_epochs=1)
    batches = [b['index'] for b in batches]
    assert [b.shape for b in batches] == [(2,)] * 3
    seen.append(np.concatenate(batches))
  assert not set(seen[0]) & set(seen[1])
  assert sorted(np.concatenate(seen)) == list(range(12))
  assert (seen[0].tolist() == list(range(6))) == (not shuffle)


def test_default_read_threads_share_the_cores_between_workers():
  assert loader_lib.default_read_threads(0, cpu_count=2) == 2
  assert loader_lib.default_read_threads(1, cpu_count=2) == 2
  # A worker with one core reads in its own thread.
  assert loader_lib.default_read_threads(2, cpu_count=2) == 0
  assert loader_lib.default_read_threads(3, cpu_count=2) == 0
  assert loader_lib.default_read_threads(0, cpu_count=1) == 1
  assert loader_lib.default_read_threads(4, cpu_count=96) == 16
  assert loader_lib.default_read_threads(32, cpu_count=96) == 3


def test_loader_errors(monkeypatch):
  with pytest.raises(ValueError, match=r'_Indices\(0\) is empty'):
    loader_lib.make_loader(_Indices(0), _Identity(), global_batch_size=4, seed=0)
  monkeypatch.setattr(jax, 'process_count', lambda: 3)
  with pytest.raises(ValueError, match=r'global_batch_size 8 .* processes 3'):
    loader_lib.make_loader(_Indices(10), _Identity(), global_batch_size=8, seed=0)
