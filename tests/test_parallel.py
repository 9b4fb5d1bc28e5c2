"""jaxpose.training.parallel.prefetch_to_device: batches placed on the devices ahead of use."""

import jax
import numpy as np
import pytest

from jaxpose.training import parallel


class _Counting:
  """An iterator of host batches that counts how many were taken from it."""

  def __init__(self, batches):
    self._batches = iter(batches)
    self.taken = 0

  def __iter__(self):
    return self

  def __next__(self):
    batch = next(self._batches)
    self.taken += 1
    return batch


@pytest.mark.parametrize('mode', parallel.MODES)
def test_prefetch_places_batches_one_ahead_as_shard_batch_does(mode):
  assert jax.device_count() == 8
  data = parallel.DataParallel(mode)
  host = [{'image': np.arange(16 * 3, dtype=np.float32).reshape(16, 3) + 100 * i,
           'visible': np.full((16,), i, np.int32)} for i in range(4)]
  source = _Counting(host)
  device_batches = parallel.prefetch_to_device(source, data, size=2)
  assert source.taken == 0  # nothing is read before the loop asks
  for i, want in enumerate(host):
    got = next(device_batches)
    # The batch in use and the next one are on the devices, no more.
    assert source.taken == min(i + 2, len(host))
    reference = data.shard_batch(want)
    for key in want:
      assert isinstance(got[key], jax.Array)
      assert got[key].sharding == reference[key].sharding, key
      np.testing.assert_array_equal(np.asarray(got[key]), np.asarray(reference[key]))
      np.testing.assert_array_equal(np.asarray(got[key]).reshape(want[key].shape), want[key])
  with pytest.raises(StopIteration):
    next(device_batches)


def test_prefetch_size_must_be_positive():
  with pytest.raises(ValueError, match='prefetch size: expected >= 1, got 0'):
    parallel.prefetch_to_device(iter([]), parallel.DataParallel('none'), size=0)
