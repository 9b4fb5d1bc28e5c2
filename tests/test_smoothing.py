"""jaxpose.tracking.smoothing: the One-Euro filter against closed forms and hand computation."""

import math

import numpy as np

from jaxpose.tracking import smoothing


def test_one_euro_with_beta_zero_is_a_first_order_low_pass_on_a_step():
  frame_rate, cutoff = 30., 1.5
  # Casiez et al.: alpha = 1 / (1 + tau / T_e), tau = 1 / (2 pi f_c).
  alpha = 1 / (1 + (1 / (2 * math.pi * cutoff)) * frame_rate)
  smoother = smoothing.OneEuroFilter(min_cutoff=cutoff, beta=0., d_cutoff=1., frame_rate=frame_rate)
  outputs = [smoother(np.array([0.]))[0]] + [smoother(np.array([1.]))[0] for _ in range(40)]
  expected = [0.] + [1 - (1 - alpha) ** n for n in range(1, 41)]
  np.testing.assert_allclose(outputs, expected, rtol=0, atol=1e-12)


def test_one_euro_follows_a_hand_computed_sequence():
  """min_cutoff = d_cutoff = beta = 1 / 2 pi, 1 s steps: alpha = r / (1 + r), r = 1 + |dx|.

  x = 0, 4, 4, 10:
  - 0 -> 0 (the first sample starts the filter, derivative 0);
  - 4: dx = 4, smoothed 0 + (4 - 0) / 2 = 2, alpha = 3 / 4 -> 3;
  - 4: dx = 1, smoothed 2 + (1 - 2) / 2 = 1.5, alpha = 5 / 7 -> 3 + 5 / 7 = 26 / 7;
  - 10: dx = 44 / 7, smoothed 1.5 + (44 / 7 - 1.5) / 2 = 109 / 28,
    alpha = 137 / 165 -> 26 / 7 + (137 / 165)(44 / 7) = 10318 / 1155.
  """
  expected = np.array([0., 3., 26 / 7, 10318 / 1155])
  rate = 1 / (2 * math.pi)
  offsets = np.array([[0., -5.], [100., 7.5]])  # the filter does not depend on position
  by_frame_rate = smoothing.OneEuroFilter(rate, rate, rate, frame_rate=1.)
  by_timestamp = smoothing.OneEuroFilter(rate, rate, rate)
  for step, value in enumerate([0., 4., 4., 10.]):
    np.testing.assert_allclose(by_frame_rate(value + offsets), expected[step] + offsets,
                               rtol=0, atol=1e-9)
    np.testing.assert_allclose(by_timestamp(value + offsets, timestamp=10. + step),
                               expected[step] + offsets, rtol=0, atol=1e-9)


def test_one_euro_passes_invalid_values_through_and_resumes_with_the_longer_step():
  rate = 1 / (2 * math.pi)
  smoother = smoothing.OneEuroFilter(rate, 0., rate, frame_rate=1.)
  assert smoother(np.array([0., 9.]), valid=np.array([True, False])).tolist() == [0., 9.]
  # Element 1's first valid sample starts it; element 0 misses a frame.
  assert smoother(np.array([50., 2.]), valid=np.array([False, True])).tolist() == [50., 2.]
  # Element 0: 2 s since its last sample, r = 2 pi (1 / 2 pi) 2 = 2, alpha = 2 / 3.
  # Element 1: 1 s, alpha = 1 / 2.
  np.testing.assert_allclose(smoother(np.array([3., 4.])), [2., 3.], atol=1e-12)
