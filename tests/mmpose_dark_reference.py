"""mmpose's DARK heatmap decoding, transcribed in numpy + cv2 as the test reference.

A transcription (written for this project) of open-mmlab/mmpose at commit
759b39c13fea6ba094afc1fa932f51dc1b11cbf9, read from its files:
- `mmpose/codecs/utils/post_processing.py`: `get_heatmap_maximum` (the (K, H, W)
  case), `gaussian_blur`;
- `mmpose/codecs/utils/refinement.py`: `refine_keypoints_dark`;
- `mmpose/codecs/msra_heatmap.py`: `MSRAHeatmap.decode` with `unbiased=True`
  (a copy of the heatmaps, the argmax of the unblurred copy, then the
  refinement, which blurs that copy in place).
Same loops, shapes and dtypes as upstream: heatmaps are (K, H, W) float32,
keypoints (N, K, 2) with N = 1, in (x, y) heatmap pixels; the rescale by
`scale_factor` at the end of `MSRAHeatmap.decode` is left out (factor 1).
Not part of the package.
"""

from itertools import product

import cv2
import numpy as np


def get_heatmap_maximum(heatmaps):
  """(K, H, W) -> (locs (K, 2) float32 (x, y), vals (K,)); locs -1 where vals <= 0."""
  assert isinstance(heatmaps, np.ndarray)
  assert heatmaps.ndim == 3, heatmaps.shape
  K, H, W = heatmaps.shape
  heatmaps_flatten = heatmaps.reshape(K, -1)
  y_locs, x_locs = np.unravel_index(np.argmax(heatmaps_flatten, axis=1), shape=(H, W))
  locs = np.stack((x_locs, y_locs), axis=-1).astype(np.float32)
  vals = np.amax(heatmaps_flatten, axis=1)
  locs[vals <= 0.] = -1
  return locs, vals


def gaussian_blur(heatmaps, kernel=11):
  """(K, H, W) -> the same array, each map blurred and rescaled to its own maximum, in place."""
  assert kernel % 2 == 1
  border = (kernel - 1) // 2
  K, H, W = heatmaps.shape
  for k in range(K):
    origin_max = np.max(heatmaps[k])
    dr = np.zeros((H + 2 * border, W + 2 * border), dtype=np.float32)
    dr[border:-border, border:-border] = heatmaps[k].copy()
    dr = cv2.GaussianBlur(dr, (kernel, kernel), 0)
    heatmaps[k] = dr[border:-border, border:-border].copy()
    heatmaps[k] *= origin_max / np.max(heatmaps[k])
  return heatmaps


def refine_keypoints_dark(keypoints, heatmaps, blur_kernel_size):
  """keypoints (N, K, 2), heatmaps (K, H, W) -> keypoints moved by one Newton step, in place."""
  N, K = keypoints.shape[:2]
  H, W = heatmaps.shape[1:]

  heatmaps = gaussian_blur(heatmaps, blur_kernel_size)
  np.maximum(heatmaps, 1e-10, out=heatmaps)
  np.log(heatmaps, heatmaps)

  for n, k in product(range(N), range(K)):
    x, y = keypoints[n, k, :2].astype(int)
    if 1 < x < W - 2 and 1 < y < H - 2:
      dx = 0.5 * (heatmaps[k, y, x + 1] - heatmaps[k, y, x - 1])
      dy = 0.5 * (heatmaps[k, y + 1, x] - heatmaps[k, y - 1, x])
      dxx = 0.25 * (heatmaps[k, y, x + 2] - 2 * heatmaps[k, y, x] + heatmaps[k, y, x - 2])
      dxy = 0.25 * (heatmaps[k, y + 1, x + 1] - heatmaps[k, y - 1, x + 1] -
                    heatmaps[k, y + 1, x - 1] + heatmaps[k, y - 1, x - 1])
      dyy = 0.25 * (heatmaps[k, y + 2, x] - 2 * heatmaps[k, y, x] + heatmaps[k, y - 2, x])
      derivative = np.array([[dx], [dy]])
      hessian = np.array([[dxx, dxy], [dxy, dyy]])
      if dxx * dyy - dxy**2 != 0:
        hessianinv = np.linalg.inv(hessian)
        offset = -hessianinv @ derivative
        offset = np.squeeze(np.array(offset.T), axis=0)
        keypoints[n, k, :2] += offset
  return keypoints


def decode(encoded, blur_kernel_size=11):
  """`MSRAHeatmap(unbiased=True).decode`: (K, H, W) -> (keypoints (1, K, 2), scores (1, K)).

  Keypoints in heatmap pixels (x, y); -1 for a map whose maximum is not positive.
  """
  heatmaps = encoded.copy()
  keypoints, scores = get_heatmap_maximum(heatmaps)
  keypoints, scores = keypoints[None], scores[None]
  keypoints = refine_keypoints_dark(keypoints, heatmaps, blur_kernel_size=blur_kernel_size)
  return keypoints, scores
