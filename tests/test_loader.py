"""jaxpose.data.loader: one global stream of batches, on any number of hosts and workers."""

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


def test_a_loader_started_at_a_step_reads_that_step_s_batch_first():
  # A resumed run builds its loader at the restored step: nothing else of the
  # iterator is saved.
  straight = iter(_top_down_loader())
  expected = [next(straight) for _ in range(5)]
  resumed = iter(_top_down_loader(start_step=3))
  for want in expected[3:]:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  assert not np.array_equal(expected[3]['joints'], expected[0]['joints'])


class _ReportingTopDown(augment.TopDownTransform):
  """TopDownTransform whose examples also say which process made them and whether it keeps freed memory."""

  def random_map(self, element, rng):
    example = super().random_map(element, rng)
    example['pid'] = np.int64(os.getpid())
    example['keeps_freed_memory'] = np.bool_(worker_process.configured())
    return example


def test_two_workers_make_the_batches_of_none():
  # grain gives each worker every other record and the batches come from the
  # workers in turn; the sampler undoes that, so the batches (composition,
  # order and augmentation) are those read in this process, from any step on.
  persons = synthetic.SyntheticPersons(synthetic.SyntheticPeople(40, image_size=(64, 64)))
  def make(workers, start_step):
    return loader_lib.make_loader(persons, _ReportingTopDown((32, 48)), global_batch_size=4,
                                  seed=11, worker_count=workers, start_step=start_step)
  in_process = iter(make(0, 0))
  expected = [next(in_process) for _ in range(5)]
  with_workers = iter(make(2, 1))
  got = [next(with_workers) for _ in range(4)]
  for want, batch in zip(expected[1:], got):
    for key in ('image', 'joints', 'visible'):
      np.testing.assert_array_equal(batch[key], want[key])
  # Made in two worker processes, which keep freed memory; this process does not.
  pids = {int(pid) for batch in got for pid in batch['pid']}
  assert len(pids) == 2 and os.getpid() not in pids
  assert all(batch['keeps_freed_memory'].all() for batch in got)
  assert not any(batch['keeps_freed_memory'].any() for batch in expected)
  assert not worker_process.configured()


class _Draw(grain.RandomMapTransform):
  """Record -> the record and a number drawn from its augmentation generator."""

  def random_map(self, element, rng):
    return dict(element, draw=rng.integers(1 << 62))


def _global_batches(process_count, steps, start_step=0, **options):
  """`steps` global batches of _Indices(10), each the processes' host batches concatenated."""
  hosts = []
  for process in range(process_count):
    batches = iter(loader_lib.make_loader(
        _Indices(10), _Draw(), global_batch_size=4, seed=5, start_step=start_step,
        process_index=process, process_count=process_count, **options))
    hosts.append([next(batches) for _ in range(steps)])
  return [{key: np.concatenate([host[step][key] for host in hosts]) for key in hosts[0][step]}
          for step in range(steps)]


@pytest.mark.parametrize('shuffle', [False, True])
def test_one_two_and_four_hosts_read_the_same_global_batches(shuffle):
  one_host = _global_batches(1, 6, shuffle=shuffle)
  records = np.concatenate([batch['index'] for batch in one_host])  # 24 positions: 2.4 epochs
  assert sorted(records[:10]) == sorted(records[10:20]) == list(range(10))  # each epoch once
  assert (records[:10].tolist() == list(range(10))) == (not shuffle)
  assert (records[:10].tolist() == records[10:20].tolist()) == (not shuffle)  # reshuffled
  draws = np.concatenate([batch['draw'] for batch in one_host])
  assert len(set(draws)) == len(draws)  # an augmentation of its own at every position
  for process_count in (2, 4):
    for batch, want in zip(_global_batches(process_count, 6, shuffle=shuffle), one_host):
      np.testing.assert_array_equal(batch['index'], want['index'])
      np.testing.assert_array_equal(batch['draw'], want['draw'])
  # A run saved at step 4 on one host resumes on two at the same place.
  for batch, want in zip(_global_batches(2, 2, start_step=4, shuffle=shuffle), one_host[4:]):
    np.testing.assert_array_equal(batch['draw'], want['draw'])


@pytest.mark.parametrize('workers', [1, 2, 3])
def test_sampler_undoes_grain_s_worker_interleaving(workers):
  # grain's order with W workers, without starting them: worker w takes the
  # loader indices w, w + W, ... and batches them; output batch j is worker
  # j mod W's batch j // W.
  host_batch = 3
  sampler = loader_lib.GlobalBatchSampler(50, global_batch_size=6, seed=0, process_index=1,
                                          process_count=2, start_step=2, worker_count=workers)
  per_worker = [[sampler.global_position(w + workers * t) for t in range(4 * host_batch)]
                for w in range(workers)]
  batches = [per_worker[j % workers][(j // workers) * host_batch:][:host_batch]
             for j in range(4)]
  # Step 2 + j's global batch is positions 6 (2 + j) .. 6 (2 + j) + 5; host 1 holds the last 3.
  assert batches == [[6 * (2 + j) + 3 + row for row in range(3)] for j in range(4)]


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
  with pytest.raises(ValueError, match=r'seed -1 and start_step 0: expected both >= 0'):
    loader_lib.make_loader(_Indices(10), _Identity(), global_batch_size=3, seed=-1)


def test_timed_iterator_adds_up_the_waits_in_next():
  ticks = iter([0.0, 0.5, 2.0, 2.25, 10.0, 10.0])
  timed = loader_lib.TimedIterator(iter('abc'), clock=lambda: next(ticks))
  assert next(timed) == 'a' and next(timed) == 'b'
  assert timed.take_waited() == 0.75
  assert next(timed) == 'c' and timed.take_waited() == 0.0 and timed.take_waited() == 0.0
