"""The seed's `generate_target`, transcribed as a free function, as the reference.

Only `self` became arguments; the body is the seed's
(../shared/seed/pose-extraction-in-retail.md), so that `jaxpose.codecs.heatmap`
is compared with exactly what it replaces. Also SimpleBaseline's argmax +
quarter-offset decoding, written out per joint as the reference for `decode`.
"""

import numpy as np


def generate_target(joints, joints_vis, *, num_joints, image_size, heatmap_size, sigma):
  """joints [J, 3], joints_vis [J, 3] -> (target [J, H, W], target_weight [J, 1])."""
  image_size = np.asarray(image_size)
  heatmap_size = np.asarray(heatmap_size)
  target_weight = np.ones((num_joints, 1), dtype=np.float32)
  target_weight[:, 0] = joints_vis[:, 0]

  target = np.zeros((num_joints, heatmap_size[1], heatmap_size[0]), dtype=np.float32)

  tmp_size = sigma * 3

  for joint_id in range(num_joints):
    feat_stride = image_size / heatmap_size
    mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
    mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
    # Check that any part of the gaussian is in-bounds
    ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
    br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
    if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] \
            or br[0] < 0 or br[1] < 0:
      target_weight[joint_id] = 0
      continue

    size = 2 * tmp_size + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, np.newaxis]
    x0 = y0 = size // 2
    g = np.exp(- ((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))

    g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
    g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
    img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
    img_y = max(0, ul[1]), min(br[1], heatmap_size[1])

    v = target_weight[joint_id]
    if v > 0.5:
      target[joint_id][img_y[0]:img_y[1], img_x[0]:img_x[1]] = \
          g[g_y[0]:g_y[1], g_x[0]:g_x[1]]

  return target, target_weight


def decode_argmax_quarter_offset(heatmaps):
  """heatmaps [J, H, W] -> (coords [J, 2], maxvals [J]), one joint at a time."""
  num_joints, height, width = heatmaps.shape
  coords = np.zeros((num_joints, 2), np.float32)
  maxvals = np.zeros((num_joints,), np.float32)
  for j in range(num_joints):
    flat = heatmaps[j].reshape(-1)
    idx = int(np.argmax(flat))
    maxvals[j] = flat[idx]
    if maxvals[j] <= 0:
      continue  # coords stay (0, 0)
    px, py = idx % width, idx // width
    coords[j] = px, py
    if 1 < px < width - 1 and 1 < py < height - 1:
      hm = heatmaps[j]
      diff = np.array([hm[py][px + 1] - hm[py][px - 1], hm[py + 1][px] - hm[py - 1][px]])
      coords[j] += np.sign(diff) * .25
  return coords, maxvals
