"""CMU OpenPose body decoding as the PyTorch port runs it, per peak and per person in Python.

A transcription (written for this project) of `Body.__call__` in
Hzzone/pytorch-openpose, commit 5ee71dc10020403dc3def2bb68f9b77c40337ae2,
`src/body.py`, and of `padRightDownCorner` in its `src/util.py`, read from
those files: scale_search [0.5], boxsize 368, stride 8, padValue 128,
thre1 0.1, thre2 0.05, mid_num 10, the `heatmap_avg += heatmap_avg + ...`
accumulation, the limbSeq / mapIdx tables, the distance prior
min(0.5 H / norm - 1, 0), the merge rules and the final filter (fewer than 4
parts or a score per part under 0.4). The network call is replaced by `net`,
anything with the port's interface; everything else keeps the port's shape,
Python loops and float64 accumulators, as the reference that
tests/test_paf_body_py.py compares `jaxpose.codecs.paf_body_py` and the
protocol of `jaxpose.approaches.protocols.cmu_openpose` with, and the baseline of
scripts/bench_grouping.py. Not part of the package.
"""

import math

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

# body.py's tables, 1-based keypoints and PAF channels + 19, as it writes them.
LIMB_SEQ = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11],
            [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18],
            [3, 17], [6, 18]]
MAP_IDX = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22],
           [23, 24], [25, 26], [27, 28], [29, 30], [47, 48], [49, 50], [53, 54], [51, 52],
           [55, 56], [37, 38], [45, 46]]


def pad_right_down(image, stride, pad_value):
  """util.padRightDownCorner: pads the bottom and right to multiples of `stride`."""
  height, width = image.shape[:2]
  pad = [0, 0, 0 if height % stride == 0 else stride - height % stride,
         0 if width % stride == 0 else stride - width % stride]
  padded = image
  down = np.tile(padded[-2:-1, :, :] * 0 + pad_value, (pad[2], 1, 1))
  padded = np.concatenate((padded, down), axis=0)
  right = np.tile(padded[:, -2:-1, :] * 0 + pad_value, (1, pad[3], 1))
  padded = np.concatenate((padded, right), axis=1)
  return padded, pad


def averaged_maps(net, image_bgr, scale_search=(0.5,), box_size=368, stride=8, pad_value=128):
  """BGR uint8 image -> (heatmap_avg [H, W, 19], paf_avg [H, W, 38]) float64, as body.py.

  `net`: float32 [1, 3, h, w] ((BGR / 256) - 0.5) -> (PAFs [1, 38, h/8, w/8],
  heatmaps [1, 19, h/8, w/8]) numpy, the port's (Mconv7_stage6_L1, _L2).
  """
  height, width = image_bgr.shape[:2]
  multipliers = [s * box_size / height for s in scale_search]
  heatmap_avg = np.zeros((height, width, 19))
  paf_avg = np.zeros((height, width, 38))
  for scale in multipliers:
    resized = cv2.resize(image_bgr, (0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    padded, pad = pad_right_down(resized, stride, pad_value)
    im = np.transpose(np.float32(padded[:, :, :, np.newaxis]), (3, 2, 0, 1)) / 256 - 0.5
    pafs, heatmaps = net(np.ascontiguousarray(im))
    outputs = []
    for maps in (heatmaps, pafs):
      maps = np.transpose(np.squeeze(maps), (1, 2, 0))
      maps = cv2.resize(maps, (0, 0), fx=stride, fy=stride, interpolation=cv2.INTER_CUBIC)
      maps = maps[:padded.shape[0] - pad[2], :padded.shape[1] - pad[3], :]
      outputs.append(cv2.resize(maps, (width, height), interpolation=cv2.INTER_CUBIC))
    heatmap, paf = outputs
    heatmap_avg += heatmap_avg + heatmap / len(multipliers)  # sic
    paf_avg += + paf / len(multipliers)
  return heatmap_avg, paf_avg


def decode(heatmap_avg, paf_avg, thre1=0.1, thre2=0.05, mid_num=10):
  """Averaged maps -> (candidate [M, 4] (x, y, score, id), subset [N, 20]), body.py's return."""
  height = heatmap_avg.shape[0]
  all_peaks = []
  peak_counter = 0
  for part in range(18):
    map_ori = heatmap_avg[:, :, part]
    smooth = gaussian_filter(map_ori, sigma=3)
    shifted = []
    for axis, forward in ((0, True), (0, False), (1, True), (1, False)):
      neighbour = np.zeros(smooth.shape)
      if axis == 0 and forward:
        neighbour[1:, :] = smooth[:-1, :]
      elif axis == 0:
        neighbour[:-1, :] = smooth[1:, :]
      elif forward:
        neighbour[:, 1:] = smooth[:, :-1]
      else:
        neighbour[:, :-1] = smooth[:, 1:]
      shifted.append(smooth >= neighbour)
    binary = np.logical_and.reduce(shifted + [smooth > thre1])
    peaks = list(zip(np.nonzero(binary)[1], np.nonzero(binary)[0]))  # (x, y)
    with_score = [p + (map_ori[p[1], p[0]],) for p in peaks]
    ids = range(peak_counter, peak_counter + len(peaks))
    all_peaks.append([with_score[i] + (ids[i],) for i in range(len(ids))])
    peak_counter += len(peaks)

  connection_all = []
  special_k = []
  for k in range(len(MAP_IDX)):
    score_mid = paf_avg[:, :, [x - 19 for x in MAP_IDX[k]]]
    cand_a = all_peaks[LIMB_SEQ[k][0] - 1]
    cand_b = all_peaks[LIMB_SEQ[k][1] - 1]
    n_a, n_b = len(cand_a), len(cand_b)
    if n_a != 0 and n_b != 0:
      candidates = []
      for i in range(n_a):
        for j in range(n_b):
          vec = np.subtract(cand_b[j][:2], cand_a[i][:2])
          norm = math.sqrt(vec[0] * vec[0] + vec[1] * vec[1])
          norm = max(0.001, norm)
          vec = np.divide(vec, norm)
          points = list(zip(np.linspace(cand_a[i][0], cand_b[j][0], num=mid_num),
                            np.linspace(cand_a[i][1], cand_b[j][1], num=mid_num)))
          vec_x = np.array([score_mid[int(round(p[1])), int(round(p[0])), 0] for p in points])
          vec_y = np.array([score_mid[int(round(p[1])), int(round(p[0])), 1] for p in points])
          midpoint_scores = np.multiply(vec_x, vec[0]) + np.multiply(vec_y, vec[1])
          with_prior = sum(midpoint_scores) / len(midpoint_scores) + min(
              0.5 * height / norm - 1, 0)
          criterion1 = len(np.nonzero(midpoint_scores > thre2)[0]) > 0.8 * len(midpoint_scores)
          criterion2 = with_prior > 0
          if criterion1 and criterion2:
            candidates.append([i, j, with_prior, with_prior + cand_a[i][2] + cand_b[j][2]])
      candidates = sorted(candidates, key=lambda c: c[2], reverse=True)
      connection = np.zeros((0, 5))
      for c in range(len(candidates)):
        i, j, s = candidates[c][0:3]
        if i not in connection[:, 3] and j not in connection[:, 4]:
          connection = np.vstack([connection, [cand_a[i][3], cand_b[j][3], s, i, j]])
          if len(connection) >= min(n_a, n_b):
            break
      connection_all.append(connection)
    else:
      special_k.append(k)
      connection_all.append([])

  subset = -1 * np.ones((0, 20))
  candidate = np.array([item for sublist in all_peaks for item in sublist])
  for k in range(len(MAP_IDX)):
    if k in special_k:
      continue
    part_as = connection_all[k][:, 0]
    part_bs = connection_all[k][:, 1]
    index_a, index_b = np.array(LIMB_SEQ[k]) - 1
    for i in range(len(connection_all[k])):
      found = 0
      subset_idx = [-1, -1]
      for j in range(len(subset)):
        if subset[j][index_a] == part_as[i] or subset[j][index_b] == part_bs[i]:
          subset_idx[found] = j  # the port: IndexError on a third
          found += 1
      if found == 1:
        j = subset_idx[0]
        if subset[j][index_b] != part_bs[i]:
          subset[j][index_b] = part_bs[i]
          subset[j][-1] += 1
          subset[j][-2] += candidate[part_bs[i].astype(int), 2] + connection_all[k][i][2]
      elif found == 2:
        j1, j2 = subset_idx
        membership = ((subset[j1] >= 0).astype(int) + (subset[j2] >= 0).astype(int))[:-2]
        if len(np.nonzero(membership == 2)[0]) == 0:
          subset[j1][:-2] += (subset[j2][:-2] + 1)
          subset[j1][-2:] += subset[j2][-2:]
          subset[j1][-2] += connection_all[k][i][2]
          subset = np.delete(subset, j2, 0)
        else:
          subset[j1][index_b] = part_bs[i]
          subset[j1][-1] += 1
          subset[j1][-2] += candidate[part_bs[i].astype(int), 2] + connection_all[k][i][2]
      elif not found and k < 17:
        row = -1 * np.ones(20)
        row[index_a] = part_as[i]
        row[index_b] = part_bs[i]
        row[-1] = 2
        row[-2] = sum(candidate[connection_all[k][i, :2].astype(int), 2]) + connection_all[k][i][2]
        subset = np.vstack([subset, row])
  delete = [i for i in range(len(subset))
            if subset[i][-1] < 4 or subset[i][-2] / subset[i][-1] < 0.4]
  subset = np.delete(subset, delete, axis=0)
  return candidate, subset


def people(candidate, subset):
  """body.py's (candidate, subset) -> (people [N, 18, 3] (x, y, score; -1, -1, 0 if none), scores [N])."""
  result = np.zeros((len(subset), 18, 3))
  result[..., :2] = -1
  for n, row in enumerate(subset):
    for part in range(18):
      if row[part] >= 0:
        result[n, part] = candidate[int(row[part]), :3]
  return result, subset[:, -2] if len(subset) else np.zeros(0)
