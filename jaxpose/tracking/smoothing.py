"""One-Euro smoothing of noisy per-frame values (keypoints of a tracked person).

Casiez, Roussel and Vogel, "1 Euro Filter", CHI 2012: an exponential
low-pass filter whose cutoff rises with the signal's speed, so that still
values lose their jitter and fast ones keep up. Times are in seconds, cutoffs
in Hz. Host-side numpy; `tracking.Tracker` runs one filter per track.
"""

import dataclasses
import math

import numpy as np

DEFAULT_FRAME_RATE = 30.0


def smoothing_factor(cutoff: np.ndarray | float, elapsed: np.ndarray | float) -> np.ndarray:
  """Cutoff (Hz), time step (s) -> exponential smoothing factor 1 / (1 + 1 / (2 pi cutoff dt))."""
  rate = 2 * math.pi * np.asarray(cutoff, np.float64) * np.asarray(elapsed, np.float64)
  return rate / (rate + 1)


class OneEuroFilter:
  """One-Euro filter (Casiez et al. 2012) over arrays of values, each element filtered on its own.

  Each call takes the next sample of values [...] (e.g. a pose [J, 2]) and
  returns the filtered values [...]. Per element: the derivative is smoothed
  with cutoff `d_cutoff`, and the value with cutoff
  `min_cutoff + beta * |smoothed derivative|`, so a still keypoint is smoothed
  hard (less jitter) and a fast one lightly (less lag). With beta = 0 this is
  a first-order low-pass filter with cutoff `min_cutoff`.

  Elements marked not `valid` (an undetected keypoint) are passed through
  unfiltered and leave their state untouched; an element's first valid sample
  starts its state. Time steps are per element, so one that missed frames
  resumes with the right, longer step.
  """

  def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0,
               frame_rate: float = DEFAULT_FRAME_RATE):
    """Configures the filter.

    Args:
      min_cutoff: cutoff frequency (Hz) for still values; lower smooths more.
      beta: how fast the cutoff rises with speed (Hz per unit/s).
      d_cutoff: cutoff frequency (Hz) for the derivative.
      frame_rate: samples per second, for calls without a timestamp.
    """
    if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0 or frame_rate <= 0:
      raise ValueError(f'OneEuroFilter: expected min_cutoff > 0, d_cutoff > 0, beta >= 0, '
                       f'frame_rate > 0, got {min_cutoff}, {d_cutoff}, {beta}, {frame_rate}')
    self.min_cutoff = min_cutoff
    self.beta = beta
    self.d_cutoff = d_cutoff
    self.frame_rate = frame_rate
    self._value = None  # filtered values [...]
    self._derivative = None  # filtered derivative [...]
    self._time = None  # [...] time of each element's last valid sample, nan if none
    self._clock = None  # time of the last call

  def __call__(self, values: np.ndarray, timestamp: float | None = None,
               valid: np.ndarray | None = None) -> np.ndarray:
    """Values [...], optional time (s) and valid mask [...] -> filtered values [...]."""
    values = np.asarray(values, np.float64)
    if timestamp is None:
      timestamp = 0. if self._clock is None else self._clock + 1 / self.frame_rate
    if self._clock is not None and timestamp <= self._clock:
      raise ValueError(f'OneEuroFilter: timestamps must increase, got {timestamp} '
                       f'after {self._clock}')
    if self._value is None:
      self._value = np.zeros_like(values)
      self._derivative = np.zeros_like(values)
      self._time = np.full(values.shape, np.nan)
    if values.shape != self._value.shape:
      raise ValueError(f'OneEuroFilter: expected values of shape {self._value.shape}, '
                       f'got {values.shape}')
    valid = np.ones(values.shape, bool) if valid is None else np.broadcast_to(valid, values.shape)
    self._clock = timestamp
    started = valid & ~np.isnan(self._time)
    elapsed = np.where(started, timestamp - np.nan_to_num(self._time), 1.)
    derivative = (values - self._value) / elapsed
    derivative = self._derivative + smoothing_factor(self.d_cutoff, elapsed) * (
        derivative - self._derivative)
    cutoff = self.min_cutoff + self.beta * np.abs(derivative)
    filtered = self._value + smoothing_factor(cutoff, elapsed) * (values - self._value)
    # First valid sample of an element: the filter starts at it, derivative 0.
    filtered = np.where(started, filtered, values)
    derivative = np.where(started, derivative, 0.)
    self._value = np.where(valid, filtered, self._value)
    self._derivative = np.where(valid, derivative, self._derivative)
    self._time = np.where(valid, timestamp, self._time)
    return np.where(valid, filtered, values)


@dataclasses.dataclass(frozen=True)
class OneEuroSettings:
  """The One-Euro filter's parameters for `Tracker` smoothing (see `OneEuroFilter`)."""
  min_cutoff: float = 1.0
  beta: float = 0.0
  d_cutoff: float = 1.0
