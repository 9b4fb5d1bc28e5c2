"""Lightweight OpenPose's post-processing, per peak and per person in Python.

A transcription (written for this project) of the algorithm of upstream's
Daniil-Osokin/lightweight-human-pose-estimation.pytorch, commit
d23c284b09acf27a163e1febd511e7482cac25ed: `modules/keypoints.py`
(`extract_keypoints`, `connections_nms`, `group_keypoints`; its
BODY_PARTS_KPT_IDS / BODY_PARTS_PAF_IDS, peak threshold 0.1, 10 points per
limb, min PAF score 0.05, success ratio > 0.8, and the final filter of
fewer than 3 keypoints or a mean score under 0.2 checked against that file),
the map upsampling of its `demo.py` and the multi-scale map averaging of its
`val.py` (`infer_like_val`), kept in the same
shape, Python loops included, as the baseline that
`scripts/bench_grouping.py` times `jaxpose.codecs.paf.decode` against, and
that the tests compare its results with. Not part of the package.

`decode_like_upstream` returns what `paf.decode` returns, so the two can be
compared number for number. `coco_people` gives the people whose targets
both are run on: COCO annotations as upstream's dataset converts them
(`ConvertKeypoints`: the neck added, keypoints outside the image dropped).
"""

from collections.abc import Sequence
import math
from typing import Any

import cv2
import numpy as np

from jaxpose import skeletons

# Upstream's grouping order: (keypoint a, keypoint b) and the PAF channels
# (x, y) of each limb.
LIMB_KEYPOINTS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8),
                  (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0),
                  (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
LIMB_PAF_CHANNELS = ((12, 13), (20, 21), (14, 15), (16, 17), (22, 23),
                     (24, 25), (0, 1), (2, 3), (4, 5), (6, 7), (8, 9),
                     (10, 11), (28, 29), (30, 31), (34, 35), (32, 33),
                     (36, 37), (18, 19), (26, 27))
NUM_KEYPOINTS = 18
ENTRY_SIZE = NUM_KEYPOINTS + 2  # keypoint ids, then total score, then count


def find_peaks(heatmap, first_id, threshold=0.1, min_distance=6):
  """One channel [H, W] -> list of (x, y, score, id), ids from `first_id`.

  Strict maxima over the 4 neighbours (zero outside the map) of the map with
  values under `threshold` zeroed; in order of x (then y), each peak removes
  the later ones closer than `min_distance`.
  """
  heatmap = np.where(heatmap < threshold, 0, heatmap)
  padded = np.pad(heatmap, 1)
  centre = padded[1:-1, 1:-1]
  is_peak = ((centre > padded[1:-1, :-2]) & (centre > padded[1:-1, 2:]) &
             (centre > padded[:-2, 1:-1]) & (centre > padded[2:, 1:-1]))
  ys, xs = np.nonzero(is_peak)
  candidates = sorted(zip(xs.tolist(), ys.tolist()), key=lambda p: p[0])
  removed = [False] * len(candidates)
  peaks = []
  for i, (x, y) in enumerate(candidates):
    if removed[i]:
      continue
    for j in range(i + 1, len(candidates)):
      other_x, other_y = candidates[j]
      if ((x - other_x)**2 + (y - other_y)**2)**0.5 < min_distance:
        removed[j] = True
    peaks.append((x, y, heatmap[y, x], first_id + len(peaks)))
  return peaks


def best_connections(a_index, b_index, scores):
  """Greedy one-to-one choice of candidate limbs, best score first."""
  order = scores.argsort()[::-1]
  used_a, used_b, chosen = set(), set(), []
  for t in order:
    if a_index[t] not in used_a and b_index[t] not in used_b:
      chosen.append(t)
      used_a.add(a_index[t])
      used_b.add(b_index[t])
  chosen = np.asarray(chosen, np.int64)
  return a_index[chosen], b_index[chosen], scores[chosen]


def group(peaks_by_type, pafs, min_paf_score=0.05, samples=10):
  """Peaks per keypoint type and upsampled PAFs [H, W, 38] -> (entries [N, 20], all peaks [M, 4])."""
  entries = []
  all_peaks = np.array([p for peaks in peaks_by_type for p in peaks])
  steps = np.arange(samples, dtype=np.float32).reshape(1, -1, 1)
  peaks_by_type = [np.array(peaks, np.float32) for peaks in peaks_by_type]
  for part, ((kpt_a, kpt_b), channels) in enumerate(
      zip(LIMB_KEYPOINTS, LIMB_PAF_CHANNELS)):
    field_map = pafs[:, :, channels]
    peaks_a, peaks_b = peaks_by_type[kpt_a], peaks_by_type[kpt_b]
    n, m = len(peaks_a), len(peaks_b)
    if n == 0 or m == 0:
      continue
    # Every (b, a) pair, b major: the candidate limbs.
    start = np.broadcast_to(peaks_a[None, :, :2], (m, n, 2))
    vector = (peaks_b[:, None, :2] - start).reshape(-1, 1, 2)
    points = (vector * (1 / (samples - 1))) * steps + start.reshape(-1, 1, 2)
    points = points.round().astype(np.int32)
    field = field_map[points[..., 1].ravel(), points[..., 0].ravel()]
    field = field.reshape(-1, samples, 2)
    unit = vector / (np.linalg.norm(vector, axis=-1, keepdims=True) + 1e-6)
    projection = (field * unit).sum(-1).reshape(-1, samples)
    counted = projection > min_paf_score
    num_counted = counted.sum(1)
    score = (projection * counted).sum(1) / (num_counted + 1e-6)
    accepted = np.nonzero((score > 0) & (num_counted / samples > 0.8))[0]
    if len(accepted) == 0:
      continue
    b_index, a_index = np.divmod(accepted, n)
    a_index, b_index, limb_scores = best_connections(a_index, b_index, score[accepted])
    connections = list(zip(peaks_a[a_index, 3].astype(np.int32),
                           peaks_b[b_index, 3].astype(np.int32), limb_scores))
    if not connections:
      continue
    if part == 0:
      entries = []
      for id_a, id_b, limb_score in connections:
        entry = np.full(ENTRY_SIZE, -1.0)
        entry[kpt_a], entry[kpt_b] = id_a, id_b
        entry[-1] = 2
        entry[-2] = all_peaks[id_a, 2] + all_peaks[id_b, 2] + limb_score
        entries.append(entry)
    elif part >= len(LIMB_KEYPOINTS) - 2:
      for id_a, id_b, _ in connections:
        for entry in entries:
          if entry[kpt_a] == id_a and entry[kpt_b] == -1:
            entry[kpt_b] = id_b
          elif entry[kpt_b] == id_b and entry[kpt_a] == -1:
            entry[kpt_a] = id_a
    else:
      for id_a, id_b, limb_score in connections:
        found = 0
        for entry in entries:
          if entry[kpt_a] == id_a:
            entry[kpt_b] = id_b
            found += 1
            entry[-1] += 1
            entry[-2] += all_peaks[id_b, 2] + limb_score
        if not found:
          entry = np.full(ENTRY_SIZE, -1.0)
          entry[kpt_a], entry[kpt_b] = id_a, id_b
          entry[-1] = 2
          entry[-2] = all_peaks[id_a, 2] + all_peaks[id_b, 2] + limb_score
          entries.append(entry)
  kept = [e for e in entries if e[-1] >= 3 and e[-2] / e[-1] >= 0.2]
  return np.asarray(kept), all_peaks


def decode_like_upstream(heatmaps, pafs, stride=8, upsample=4):
  """Maps [H, W, 19], [H, W, 38] -> (people [N, 18, 3], person scores [N]) as `paf.decode`."""
  heatmaps = cv2.resize(np.asarray(heatmaps, np.float32), (0, 0), fx=upsample,
                        fy=upsample, interpolation=cv2.INTER_CUBIC)
  pafs = cv2.resize(np.asarray(pafs, np.float32), (0, 0), fx=upsample,
                    fy=upsample, interpolation=cv2.INTER_CUBIC)
  peaks_by_type, total = [], 0
  for k in range(NUM_KEYPOINTS):
    peaks = find_peaks(heatmaps[:, :, k], total)
    peaks_by_type.append(peaks)
    total += len(peaks)
  entries, all_peaks = group(peaks_by_type, pafs)
  people = np.zeros((len(entries), NUM_KEYPOINTS, 3), np.float32)
  people[..., :2] = -1
  for n, entry in enumerate(entries):
    for k in range(NUM_KEYPOINTS):
      if entry[k] != -1:
        x, y, score, _ = all_peaks[int(entry[k])]
        people[n, k] = (x * stride / upsample, y * stride / upsample, score)
  scores = np.array([e[-2] for e in entries], np.float32)
  return people, scores


def infer_like_val(net, image, scales, base_height=368, stride=8):
  """RGB image [H, W, 3] -> (heatmaps [H, W, 19], pafs [H, W, 38]) averaged over scales, as val.py's `infer`.

  `net` takes one normalised image [h, w, 3] ((pixel - 128) / 256, as
  upstream feeds its network) and returns its last stage's (heatmaps
  [h / stride, w / stride, 19], pafs [..., 38]).
  """
  normalised = (np.asarray(image, np.float32) - 128) / 256
  height, width = normalised.shape[:2]
  average_heatmaps = np.zeros((height, width, 19), np.float32)
  average_pafs = np.zeros((height, width, 38), np.float32)
  for scale in scales:
    ratio = scale * base_height / height
    scaled = cv2.resize(normalised, (0, 0), fx=ratio, fy=ratio, interpolation=cv2.INTER_CUBIC)
    # pad_width: the height is padded up to the base height (a scaled image
    # higher than that is not), the width to at least the base height; both
    # to multiples of the stride, the image centred, with 0.
    rows = min(base_height, scaled.shape[0])
    padded_height = math.ceil(base_height / stride) * stride
    padded_width = math.ceil(max(scaled.shape[1], base_height) / stride) * stride
    top = (padded_height - rows) // 2
    left = (padded_width - scaled.shape[1]) // 2
    bottom = padded_height - rows - top
    right = padded_width - scaled.shape[1] - left
    padded = cv2.copyMakeBorder(scaled, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(0, 0, 0))
    for maps, average in zip(net(padded), (average_heatmaps, average_pafs)):
      maps = cv2.resize(np.asarray(maps, np.float32), (0, 0), fx=stride, fy=stride,
                        interpolation=cv2.INTER_CUBIC)
      maps = maps[top:maps.shape[0] - bottom, left:maps.shape[1] - right]
      average += cv2.resize(maps, (width, height), interpolation=cv2.INTER_CUBIC) / len(scales)
  return average_heatmaps, average_pafs


def coco_people(annotations: Sequence[dict[str, Any]], *,
                image_size: tuple[int, int] | None = None,
                max_people: int | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """COCO person annotations of one image -> `paf.encode`'s (keypoints, visible, person_mask).

  Args:
    annotations: COCO annotation dicts with a 'keypoints' list of 17 (x, y, v).
    image_size: (width, height); if given, keypoints outside the image count
      as not annotated (upstream's `ConvertKeypoints`), the neck included.
    max_people: pad the people axis to this length (an error if there are
      more annotations); None: one row per annotation.

  Returns:
    keypoints [P, 18, 2] float32 and visible [P, 18] float32 (COCO's v, the
    neck's the smaller of the shoulders') in OPENPOSE order, and
    person_mask [P] bool, False on padding rows.
  """
  coco = np.array([a['keypoints'] for a in annotations], np.float32).reshape(
      -1, skeletons.COCO.num_keypoints, 3)
  keypoints, visible = skeletons.openpose_from_coco(coco[..., :2], coco[..., 2])
  if image_size is not None:
    width, height = image_size
    inside = ((keypoints[..., 0] >= 0) & (keypoints[..., 0] < width) &
              (keypoints[..., 1] >= 0) & (keypoints[..., 1] < height))
    visible = np.where(inside, visible, 0).astype(np.float32)
  count = len(annotations)
  size = count if max_people is None else max_people
  if count > size:
    raise ValueError(f'coco_people: {count} annotations for max_people={size}')
  padded_keypoints = np.zeros((size, NUM_KEYPOINTS, 2), np.float32)
  padded_visible = np.zeros((size, NUM_KEYPOINTS), np.float32)
  padded_keypoints[:count], padded_visible[:count] = keypoints, visible
  return padded_keypoints, padded_visible, np.arange(size) < count
