"""CMU's STAF code, transcribed one cell and one sample at a time, as the references of jaxpose.codecs.taf.

(a) `upstream_taf_targets`: the TAF part of the training data layer,
    repository soulslicer/openpose_caffe_train, branch new_commits_fix,
    commit 72a828b56d4b38feaa564957f14c4e7ed3dd4cf1, file
    src/caffe/openpose/oPDataTransformer.cpp: the TAF loop of
    `generateLabelMap` (for every link, one `count` map shared by all people;
    a person drawn when its keypoint a at t and b at t-1 are labelled) and
    `putVectorMaps` (box, distance test, running mean). The link pairs are
    taf_topology 2 of src/caffe/openpose/poseModel.cpp (`TAF_MAP_A`,
    `TAF_MAP_B`), restricted to COCO's 17 points.
(b) `upstream_taf_scores`: the tracker's link score, repository
    soulslicer/STAF, branch staf, commit
    6c674c9e7c4bce03944f893344035e732904c39c, file
    src/openpose/net/bodyPartConnectorBase.cu: `tafScoreKernel` and the
    `process` it calls with interThreshold 0.05, interMinAboveThreshold 0.95
    and defaultNmsThreshold 0.05 (set in `tafScoreGPU`).

Arithmetic is Python's float64 where upstream's is float32; upstream's
integer conversions (int(std::round(v)), int(v + 0.5)) are kept as they are.
One deviation, in (b): upstream reads samples left of or above the map out of
bounds; they are clipped to 0 here (as jaxpose does).
"""

import math

import numpy as np

# STAF's TAF model 0 on BODY_25B, (a at t, b at t-1) flattened: `TAF_PART_PAIRS[0]`
# of src/openpose/pose/poseParameters.cpp (soulslicer/STAF at the commit above),
# the same pairs as the data layer's taf_topology 2.
TAF_MODEL_0 = [
    0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
    14, 14, 15, 15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 22, 22, 23, 23, 24, 24,
    0, 1, 0, 2, 1, 3, 2, 4, 0, 5, 0, 6, 5, 7, 6, 8, 7, 9, 8, 10, 5, 11, 6, 12, 11, 13, 12, 14,
    13, 15, 14, 16, 15, 19, 19, 20, 15, 21, 16, 22, 22, 23, 16, 24, 5, 17, 5, 18, 6, 17, 6, 18]
# Its links between COCO's points 0..16 (BODY_25B's first 17), in its order.
_COCO_LINKS = [(a, b) for a, b in zip(TAF_MODEL_0[0::2], TAF_MODEL_0[1::2]) if a < 17 and b < 17]
LINKS_NOW = [a for a, _ in _COCO_LINKS]
LINKS_PREV = [b for _, b in _COCO_LINKS]


def _std_round(value):
  """C++ std::round: halves away from zero."""
  return math.copysign(math.floor(abs(value) + 0.5), value)


def _put_vector_map(entry_x, entry_y, count, center_a, center_b, stride, threshold):
  """putVectorMaps: the unit vector a -> b into entry_x, entry_y [H, W] around the segment."""
  grid_y, grid_x = entry_x.shape
  ax, ay = center_a[0] / stride, center_a[1] / stride
  bx, by = center_b[0] / stride, center_b[1] / stride
  distance_ab = math.sqrt((bx - ax)**2 + (by - ay)**2)
  if distance_ab == 0:  # upstream's direction is then NaN and it draws nothing
    return
  dx, dy = (bx - ax) / distance_ab, (by - ay) / distance_ab
  min_x = max(0, int(_std_round(min(ax, bx) - threshold)))
  max_x = min(grid_x, int(_std_round(max(ax, bx) + threshold)))
  min_y = max(0, int(_std_round(min(ay, by) - threshold)))
  max_y = min(grid_y, int(_std_round(max(ay, by) + threshold)))
  for g_y in range(min_y, max_y):
    for g_x in range(min_x, max_x):
      if abs((g_x - ax) * dy - (g_y - ay) * dx) <= threshold:
        counter = count[g_y, g_x]
        if counter == 0:
          entry_x[g_y, g_x], entry_y[g_y, g_x] = dx, dy
        else:
          entry_x[g_y, g_x] = (entry_x[g_y, g_x] * counter + dx) / (counter + 1)
          entry_y[g_y, g_x] = (entry_y[g_y, g_x] * counter + dy) / (counter + 1)
        count[g_y, g_x] = counter + 1


def upstream_taf_targets(keypoints_prev, visible_prev, keypoints, visible, *, grid_x, grid_y,
                         stride, threshold=1.0):
  """People at t-1 and t ([P, 17, 2], [P, 17]) -> upstream's TAF targets [grid_y, grid_x, 2 L].

  Person p is the same track in both frames. As upstream, the vector of link
  (a, b) points from keypoint a at t to keypoint b at t-1.
  """
  maps = np.zeros((2 * len(LINKS_NOW), grid_y, grid_x), np.float64)
  for i, (a, b) in enumerate(zip(LINKS_NOW, LINKS_PREV)):
    count = np.zeros((grid_y, grid_x), np.int64)
    for p in range(len(keypoints)):
      if visible[p][a] > 0 and visible_prev[p][b] > 0:
        _put_vector_map(maps[2 * i], maps[2 * i + 1], count,
                        [float(v) for v in keypoints[p][a]],
                        [float(v) for v in keypoints_prev[p][b]], stride, threshold)
  return maps.transpose(1, 2, 0)


def _process(part_a, part_b, map_x, map_y, width, height, scale, inter_threshold=0.05,
             inter_min_above_threshold=0.95, default_nms_threshold=0.05):
  """bodyPartConnectorBase.cu `process`: the field's score along part_a -> part_b (x, y)."""
  vector_x = (part_b[0] - part_a[0]) * scale
  vector_y = (part_b[1] - part_a[1]) * scale
  vector_max = max(abs(vector_x), abs(vector_y))
  points_in_line = max(5, min(25, int(math.sqrt(5 * vector_max) + 0.5)))
  vector_norm = math.sqrt(vector_x * vector_x + vector_y * vector_y)
  if vector_norm > 1e-6:
    s_x, s_y = part_a[0] * scale, part_a[1] * scale
    norm_x, norm_y = vector_x / vector_norm, vector_y / vector_norm
    total, count = 0.0, 0
    step_x, step_y = vector_x / points_in_line, vector_y / points_in_line
    for lm in range(points_in_line):
      m_x = max(0, min(width - 1, int(s_x + lm * step_x + 0.5)))
      m_y = max(0, min(height - 1, int(s_y + lm * step_y + 0.5)))
      value = norm_x * map_x[m_y, m_x] + norm_y * map_y[m_y, m_x]
      if value > inter_threshold:
        total += value
        count += 1
    if count / points_in_line > inter_min_above_threshold:
      return total / count
    if vector_norm < math.sqrt(width * height) / 150:
      return default_nms_threshold + 1e-6
  return -1.0


def upstream_taf_scores(tafs, pose, tracklet, scale):
  """tafScoreKernel: fields [2 L, H, W], people at t [P, 17, 3], tracks at t-1 [T, 17, 3] -> [L, P, T].

  Link i = (a, b) scores the segment from the track's keypoint b to the
  person's keypoint a (process(bodyPartB, bodyPartA, ...)).
  """
  _, height, width = tafs.shape
  scores = np.zeros((len(LINKS_NOW), len(pose), len(tracklet)))
  for i, (a, b) in enumerate(zip(LINKS_NOW, LINKS_PREV)):
    for p in range(len(pose)):
      for t in range(len(tracklet)):
        if pose[p][a][2] < 0.05 or tracklet[t][b][2] < 0.05:
          scores[i, p, t] = -1
        else:
          scores[i, p, t] = _process(tracklet[t][b], pose[p][a], tafs[2 * i], tafs[2 * i + 1],
                                     width, height, scale)
  return scores
