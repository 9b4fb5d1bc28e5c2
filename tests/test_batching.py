"""GatheredNetwork: the network calls of a round's streams run as one call per input shape, padded to a slot per stream."""

import threading
import time

import numpy as np
import pytest

from jaxpose.inference import batching


class RecordingNetwork:
  """Images [N, H, W, 3] -> {'sum': per-image pixel sums [N], 'first': [N, 3]}; records each call's shape."""

  approach = 'the approach'

  def __init__(self):
    self.shapes = []

  def __call__(self, images):
    self.shapes.append(images.shape)
    images = np.asarray(images, np.float64)
    return {'sum': images.sum(axis=(1, 2, 3)), 'first': images[:, 0, 0, :]}


def _images(value: float, count: int = 1, size: int = 4) -> np.ndarray:
  return np.full((count, size, size, 3), value, np.float32)


def test_one_call_per_round_and_each_stream_gets_its_rows():
  network = RecordingNetwork()
  gathered = batching.GatheredNetwork(network, slots=3)
  try:
    results = gathered.run_round([lambda v=v: gathered(_images(v, count=v))['sum']
                                  for v in (1, 2, 3)])
  finally:
    gathered.close()
  assert network.shapes == [(6, 4, 4, 3)]  # 1 + 2 + 3 images, one call
  for value, sums in zip((1, 2, 3), results):
    np.testing.assert_array_equal(sums, np.full(value, value * 48.0))


def test_a_round_with_a_missing_stream_is_padded_to_a_slot_per_stream():
  network = RecordingNetwork()
  gathered = batching.GatheredNetwork(network, slots=3)
  try:
    results = gathered.run_round([lambda: gathered(_images(5))['sum'],
                                  lambda: gathered(_images(7))['sum']])
  finally:
    gathered.close()
  assert network.shapes == [(3, 4, 4, 3)]  # the same compiled shape as a full round
  assert [float(r[0]) for r in results] == [5 * 48.0, 7 * 48.0]


def test_inputs_of_other_shapes_run_in_their_own_call():
  network = RecordingNetwork()
  gathered = batching.GatheredNetwork(network, slots=2)
  try:
    results = gathered.run_round([lambda: gathered(_images(1, size=4))['sum'],
                                  lambda: gathered(_images(2, size=8))['sum']])
  finally:
    gathered.close()
  assert sorted(network.shapes) == [(2, 4, 4, 3), (2, 8, 8, 3)]
  assert [float(r[0]) for r in results] == [48.0, 2 * 192.0]


def test_a_stream_that_calls_twice_or_never_does_not_stall_the_others():
  network = RecordingNetwork()
  gathered = batching.GatheredNetwork(network, slots=3)

  def twice():
    first = gathered(_images(1))['sum']
    time.sleep(0.05)
    return first + gathered(_images(10))['sum']

  try:
    results = gathered.run_round([twice, lambda: 'no network',
                                  lambda: gathered(_images(2))['sum']])
  finally:
    gathered.close()
  # Round one: the first calls of streams 0 and 2; then stream 0's second call
  # alone (stream 2 has finished): three images in two calls, not three.
  assert network.shapes == [(3, 4, 4, 3), (1, 4, 4, 3)]
  assert float(results[0][0]) == 48.0 + 480.0
  assert results[1] == 'no network'
  assert float(results[2][0]) == 96.0


def test_an_error_of_the_network_reaches_every_stream_of_its_call():
  def failing(images):
    raise RuntimeError(f'no memory for {len(images)} images')

  gathered = batching.GatheredNetwork(failing, slots=2)
  outcomes = []

  def predict(value):
    try:
      gathered(_images(value))
    except RuntimeError as error:
      outcomes.append(str(error))

  try:
    gathered.run_round([lambda: predict(1), lambda: predict(2)])
  finally:
    gathered.close()
  assert outcomes == ['no memory for 2 images'] * 2


def test_attributes_are_the_networks_and_a_lone_prediction_runs_in_this_thread():
  network = RecordingNetwork()
  gathered = batching.GatheredNetwork(network, slots=4)
  assert gathered.approach == 'the approach'
  thread = gathered.run_round([threading.current_thread])[0]
  assert thread is threading.current_thread()
  np.testing.assert_array_equal(gathered(_images(3, count=2))['first'], np.full((2, 3), 3.0))
  assert network.shapes == [(2, 4, 4, 3)]  # outside a round: as it is, unpadded


def test_an_error_of_a_prediction_is_raised_by_run_round():
  gathered = batching.GatheredNetwork(RecordingNetwork(), slots=2)

  def broken():
    raise ValueError('bad frame')

  try:
    with pytest.raises(ValueError, match='bad frame'):
      gathered.run_round([broken, lambda: gathered(_images(1))])
  finally:
    gathered.close()
