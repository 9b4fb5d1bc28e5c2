"""CMU OpenPose's decoding as its PyTorch port does it: maps over the image -> people.

The protocol of Hzzone/pytorch-openpose's `src/body.py` ("the port" below),
the decoder the published `body_pose_model.pth` is used with, beside
Lightweight OpenPose's (`paf.decode`, `paf_grouping`). It differs from that
one in every step:

- peaks: each keypoint map is smoothed with a Gaussian (sigma 3, scipy's
  `gaussian_filter`); a peak is a smoothed value above 0.1 and at least
  (not strictly above) its 4 neighbours; no suppression of close peaks. Its
  score is the unsmoothed map's value. Peaks are numbered by type, then
  row (y), then x.
- limbs: every (a, b) pair of a limb's two keypoint types, a major, gets the
  PAF read at 10 points of `np.linspace(a, b)` (rounded half to even) and
  projected on the unit vector a -> b (length at least 0.001); its score is
  the mean projection plus a prior that penalises limbs longer than half the
  image height, min(0.5 H / length - 1, 0). It is a candidate if more than 8
  of the 10 projections exceed 0.05 and the score is positive. Per limb,
  candidates are taken best first (ties: candidate order) unless one of
  their peaks is taken, until there are as many as the smaller type has peaks.
- people: in the port's limb order (that of `paf_grouping`), a connection
  joins the people holding either of its peaks in the slot of that limb: one
  person gets the second peak (replacing any other there); two disjoint
  people are merged; of two that overlap, the first gets the second peak
  and counts it, even if it held it already; none starts a person, unless
  the limb is one of the two redundant ear-shoulder limbs, which only join.
  People with fewer than 4 keypoints or a score per keypoint under
  0.4 are dropped. The port indexes a fixed pair of matches and fails on a
  third (a peak held in one slot by two people, which only the overlapping
  case can leave behind); here the first two are used.

Sums are float64 and in the port's order, so the results are its results
bit for bit (tests/test_paf_body_py.py, against a transcription of the port,
scripts/upstream_body_py.py). The port's scales, padding and map resizing,
which bring the network's maps to the image, are
`jaxpose.approaches.protocols.cmu_openpose`.
"""

import cv2
import numpy as np
from scipy import ndimage

from jaxpose.codecs import paf_grouping

NUM_KEYPOINTS = paf_grouping.NUM_KEYPOINTS  # 18
# The port's limbSeq, in its order, as indices into skeletons.OPENPOSE.limbs
# (whose PAF channels 2i, 2i + 1 are the port's mapIdx - 19): the same order
# as Lightweight OpenPose's grouping.
LIMB_ORDER = np.array(paf_grouping._GROUPING_ORDER)  # pylint: disable=protected-access
LIMB_A = paf_grouping.LIMB_A[LIMB_ORDER]
LIMB_B = paf_grouping.LIMB_B[LIMB_ORDER]
# Limbs after the first 17 (the ear-shoulder ones) never start a person.
_STARTING_LIMBS = 17

SMOOTHING_SIGMA = 3.0  # body.py's gaussian_filter sigma
PEAK_THRESHOLD = 0.1  # thre1
PAF_THRESHOLD = 0.05  # thre2
LIMB_SAMPLES = 10  # mid_num
MIN_COUNTED_FRACTION = 0.8
MIN_KEYPOINTS = 4
MIN_SCORE_PER_KEYPOINT = 0.4


def find_peaks(heatmaps: np.ndarray, threshold: float = PEAK_THRESHOLD,
               sigma: float = SMOOTHING_SIGMA
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Maps [H, W, >=18] -> peaks (x [M], y [M], type [M], score [M] float64), by type, y, x.

  The smoothing (scipy's `gaussian_filter`, mode 'reflect') is a weighted
  mean, positive weights summing to 1, of the map within its radius (4
  sigma, scipy's truncation; the reflected border samples lie within it
  too): it cannot exceed the threshold farther than the radius from a value
  above it. So it is computed only around those: the box of each connected
  region within the radius of a value above the threshold (less a margin
  for rounding) is filtered from a crop grown by the radius, and its peaks
  are found inside. A filtered value depends on the crop only through the
  samples within its radius, which the crop holds (scipy's sum for one
  value does not depend on where the line it is in starts), so each is bit
  for bit that of filtering the whole map, at a fraction of the cost where
  people cover a fraction of the image.
  """
  maps = np.asarray(heatmaps, np.float64)[..., :NUM_KEYPOINTS]
  height, width = maps.shape[:2]
  radius = int(4.0 * sigma + 0.5)  # scipy's default truncate=4.0
  window = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
  above = (maps > threshold - 1e-9 * abs(threshold)).view(np.uint8)
  xs, ys, kinds = [], [], []
  for kind in range(NUM_KEYPOINTS):
    near = cv2.dilate(np.ascontiguousarray(above[..., kind]), window)
    _, labels, boxes, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    for label, (left, top, box_width, box_height, _) in enumerate(boxes[1:], 1):
      # The box grown by one pixel (the peak test's neighbours): `smooth`
      # holds it, 0 outside the map (the port's neighbour there).
      x0, y0, x1, y1 = left - 1, top - 1, left + box_width + 1, top + box_height + 1
      cx0, cy0 = max(x0 - radius, 0), max(y0 - radius, 0)
      cx1, cy1 = min(x1 + radius, width), min(y1 + radius, height)
      filtered = ndimage.gaussian_filter(maps[cy0:cy1, cx0:cx1, kind], sigma)
      smooth = np.zeros((y1 - y0, x1 - x0))
      iy0, ix0 = max(y0, 0), max(x0, 0)
      iy1, ix1 = min(y1, height), min(x1, width)
      smooth[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = filtered[iy0 - cy0:iy1 - cy0,
                                                               ix0 - cx0:ix1 - cx0]
      centre = smooth[1:-1, 1:-1]
      is_peak = ((centre >= smooth[:-2, 1:-1]) & (centre >= smooth[2:, 1:-1]) &
                 (centre >= smooth[1:-1, :-2]) & (centre >= smooth[1:-1, 2:]) &
                 (centre > threshold) & (labels[top:top + box_height, left:left + box_width]
                                         == label))
      y, x = np.nonzero(is_peak)
      xs.append(x + left)
      ys.append(y + top)
      kinds.append(np.full(len(x), kind))
  if not xs:
    empty = np.zeros(0, np.int64)
    return empty, empty, empty, np.zeros(0)
  x, y, kind = np.concatenate(xs), np.concatenate(ys), np.concatenate(kinds)
  order = np.lexsort((x, y, kind))
  x, y, kind = x[order], y[order], kind[order]
  return x, y, kind, maps[y, x, kind]


def score_limbs(x: np.ndarray, y: np.ndarray, kind: np.ndarray, pafs: np.ndarray,
                image_height: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Peaks [M] (by type) and PAFs [H, W, 38] -> per limb in LIMB_ORDER, its connections.

  Returns:
    19 tuples (peak a [C], peak b [C], score [C] float64): the connections
    chosen, best first, as indices into the peaks.
  """
  pafs = np.asarray(pafs, np.float64)
  counts = np.bincount(kind, minlength=NUM_KEYPOINTS)
  first = np.concatenate([[0], np.cumsum(counts)[:-1]])
  n, m = counts[LIMB_A], counts[LIMB_B]
  limb = np.repeat(np.arange(len(LIMB_ORDER)), n * m)
  within = np.arange(len(limb)) - np.repeat(np.cumsum(n * m) - n * m, n * m)
  local_a, local_b = np.divmod(within, np.maximum(m[limb], 1))  # a major, as the port
  a = first[LIMB_A[limb]] + local_a
  b = first[LIMB_B[limb]] + local_b
  dx, dy = x[b] - x[a], y[b] - y[a]  # integers, as the port's
  norm = np.maximum(0.001, np.sqrt((dx * dx + dy * dy).astype(np.float64)))
  unit_x, unit_y = dx / norm, dy / norm
  # np.linspace(a, b, 10) of one pair, element for element: i * step + a,
  # the last point b itself.
  steps = np.arange(LIMB_SAMPLES, dtype=np.float64)
  sample_x = steps * (dx.astype(np.float64) / (LIMB_SAMPLES - 1))[:, None] + x[a, None]
  sample_y = steps * (dy.astype(np.float64) / (LIMB_SAMPLES - 1))[:, None] + y[a, None]
  sample_x[:, -1], sample_y[:, -1] = x[b], y[b]
  column = np.rint(sample_x).astype(np.int64)
  row = np.rint(sample_y).astype(np.int64)
  channel = 2 * LIMB_ORDER[limb][:, None]
  projection = (pafs[row, column, channel] * unit_x[:, None] +
                pafs[row, column, channel + 1] * unit_y[:, None])
  total = np.zeros(len(limb))
  for s in range(LIMB_SAMPLES):  # the port's sum(): left to right
    total = total + projection[:, s]
  score = total / LIMB_SAMPLES + np.minimum(0.5 * image_height / norm - 1, 0)
  counted = (projection > PAF_THRESHOLD).sum(1) > MIN_COUNTED_FRACTION * LIMB_SAMPLES
  accepted = counted & (score > 0)

  connections = []
  for k in range(len(LIMB_ORDER)):
    index = np.flatnonzero(accepted & (limb == k))
    index = index[np.argsort(-score[index], kind='stable')]
    chosen, used_a, used_b = [], set(), set()
    for c in index.tolist():
      if local_a[c] in used_a or local_b[c] in used_b:
        continue
      used_a.add(local_a[c])
      used_b.add(local_b[c])
      chosen.append(c)
      if len(chosen) >= min(n[k], m[k]):
        break
    chosen = np.array(chosen, np.int64)
    connections.append((a[chosen], b[chosen], score[chosen]))
  return connections


def assemble(connections, peak_score: np.ndarray) -> np.ndarray:
  """`score_limbs`'s connections, peak scores [M] -> people [N, 20] float64.

  A row holds the peak of each of the 18 keypoints (-1: none), then the
  person's score and keypoint count, as the port's `subset`.
  """
  people = np.zeros((0, NUM_KEYPOINTS + 2))
  for k, (peaks_a, peaks_b, scores) in enumerate(connections):
    slot_a, slot_b = LIMB_A[k], LIMB_B[k]
    for peak_a, peak_b, score in zip(peaks_a.tolist(), peaks_b.tolist(), scores.tolist()):
      holders = np.flatnonzero((people[:, slot_a] == peak_a) |
                               (people[:, slot_b] == peak_b))[:2]
      if len(holders) == 2:
        first, second = people[holders[0]], people[holders[1]]
        overlap = ((first[:-2] >= 0) & (second[:-2] >= 0)).any()
        if not overlap:
          first[:-2] += second[:-2] + 1  # -1 + (id + 1) = id
          first[-2:] += second[-2:]
          first[-2] += score
          people = np.delete(people, holders[1], 0)
        else:  # the first gets the second peak, counted even if it held it
          first[slot_b] = peak_b
          first[-1] += 1
          first[-2] += peak_score[peak_b] + score
      elif len(holders) == 1:
        person = people[holders[0]]
        if person[slot_b] != peak_b:
          person[slot_b] = peak_b
          person[-1] += 1
          person[-2] += peak_score[peak_b] + score
      elif k < _STARTING_LIMBS:
        row = np.full(NUM_KEYPOINTS + 2, -1.0)
        row[slot_a], row[slot_b] = peak_a, peak_b
        row[-1] = 2
        row[-2] = 0 + peak_score[peak_a] + peak_score[peak_b] + score
        people = np.vstack([people, row])
  keep = (people[:, -1] >= MIN_KEYPOINTS) & (people[:, -2] / np.maximum(people[:, -1], 1)
                                             >= MIN_SCORE_PER_KEYPOINT)
  return people[keep]


def decode(heatmaps: np.ndarray, pafs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Maps over the image [H, W, 19], [H, W, 38] -> (people [N, 18, 3] (x, y, score), scores [N]).

  The port's decoding of its averaged maps. x, y are image pixels (the maps'
  own), a keypoint not found is (-1, -1, 0); the person score is the port's
  (the sum of its peak and connection scores). float64, as the port's.
  """
  heatmaps = np.asarray(heatmaps)
  pafs = np.asarray(pafs)
  if (heatmaps.ndim != 3 or heatmaps.shape[-1] < NUM_KEYPOINTS or pafs.ndim != 3 or
      pafs.shape[-1] != 2 * len(LIMB_ORDER) or pafs.shape[:2] != heatmaps.shape[:2]):
    raise ValueError(f'paf_body_py.decode: expected heatmaps [H, W, 19] and pafs [H, W, 38] '
                     f'of one image, got {heatmaps.shape} and {pafs.shape}')
  x, y, kind, value = find_peaks(heatmaps)
  connections = score_limbs(x, y, kind, pafs, heatmaps.shape[0])
  rows = assemble(connections, value)
  ids = rows[:, :NUM_KEYPOINTS].astype(np.int64)
  found = ids >= 0
  people = np.zeros((len(rows), NUM_KEYPOINTS, 3))
  people[..., :2] = -1
  peak = ids[found]
  people[found] = np.stack([x[peak], y[peak], value[peak]], -1)
  return people, rows[:, -2]
