"""bearpaw/pytorch-pose's MPII evaluation protocol: its box, crop, flip test and `final_preds`.

Read at bearpaw/pytorch-pose commit 7ce6642f777e9da6249bd5b05330d57fa09ea37a.
`jaxpose eval --protocol=bearpaw_mpii` evaluates a top-down MPII model as
bearpaw's `example/main.py -e` does, so that a converted bearpaw checkpoint
scores what bearpaw's `evaluation/eval_PCKh.py` reports for it:

- box (`pose/datasets/mpii.py`, validation): MPII's `objpos` in its 1-based
  pixels, as a float32 tensor, moved down by 15 x scale (in float32); the
  scale times 1.25 (float64);
- crop (`pose/utils/transforms.py` `crop`): the RGB image as float32 in
  [0, 1]; when the box is at least twice the input (200 x scale / input >= 2)
  the image is first shrunk by that factor (cv2 bilinear, sizes floored);
  the corners of the input mapped back to the image by its `transform`
  (truncated to integers, 1-based), the image pasted into a black canvas of
  that size (float64), resized bilinearly to the input. The network gets
  that crop x 255 as pixels (its normalisation, RGB / 255 minus the MPII
  mean, is the model description's);
- flip test (`example/main.py` `validate`, `flip_back`): the input mirrored
  as is (no shift), its heatmaps mirrored back with left and right swapped
  and *added* to the unflipped ones;
- `final_preds` (`pose/utils/evaluation.py`): the first maximum of each map
  (1-based; (0, 0) where the maximum is not positive), a quarter pixel
  towards the higher neighbour along each axis if the peak is at least 2
  pixels inside, + 0.5, mapped back by the inverse of `transform`, whose
  result is truncated to an integer and + 1: bearpaw's predictions are
  whole 1-based pixels. Here 1 is subtracted, for jaxpose's 0-based ground
  truth.

`pck.pckh(..., strict=True)` then counts a joint within *strictly* less than
half the head size, as `eval_PCKh.py` does. Where the box lies wholly outside
the image, bearpaw's crop swaps its ranges and fails; here the crop is black.
"""

from collections.abc import Callable

import cv2
import numpy as np

from jaxpose import skeletons
from jaxpose.approaches import records
from jaxpose.data import mpii

NAME = 'bearpaw_mpii'
APPROACH = 'top-down'
PCKH_STRICT = True  # eval_PCKh.py counts a joint strictly within half the head size
SCALE_PADDING = 1.25  # bearpaw's s * 1.25 for validation


def boxes(center: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """0-based MPII centres [P, 2], scales [P] -> bearpaw's (centres [P, 2] float32 1-based, scales [P] float64)."""
  center = (np.asarray(center, np.float64) + 1).astype(np.float32)  # objpos as a float32 tensor
  scale = np.asarray(scale, np.float64)
  placed = center[:, 0] != -1  # bearpaw's test for a missing objpos
  shifted = center[:, 1] + (mpii.CENTER_SHIFT * scale).astype(np.float32)
  center[:, 1] = np.where(placed, shifted, center[:, 1])
  return center, np.where(placed, scale * SCALE_PADDING, scale)


def _affine(center, scale: float, res: int) -> np.ndarray:
  """bearpaw's `get_transform` (no rotation): 1-based image pixels -> [0, res) crop pixels, [3, 3]."""
  side = mpii.SCALE_UNIT * scale
  t = np.zeros((3, 3))
  t[0, 0] = float(res) / side
  t[1, 1] = float(res) / side
  t[0, 2] = res * (-float(center[0]) / side + .5)
  t[1, 2] = res * (-float(center[1]) / side + .5)
  t[2, 2] = 1
  return t


def _transform(point, center, scale: float, res: int, invert: bool = False) -> np.ndarray:
  """bearpaw's `transform`: a 1-based point -> the other frame's, truncated to an integer, 1-based."""
  t = _affine(center, scale, res)
  if invert:
    t = np.linalg.inv(t)
  moved = t @ np.array([point[0] - 1, point[1] - 1, 1.])
  return moved[:2].astype(int) + 1


def crop(image: np.ndarray, center, scale: float, res: int) -> np.ndarray:
  """RGB uint8 image [H, W, 3], one bearpaw box -> the network input [res, res, 3] float32 in [0, 1]."""
  pixels = image.astype(np.float32) / np.float32(255)
  height, width = pixels.shape[:2]
  center = np.asarray(center, np.float32)
  factor = scale * mpii.SCALE_UNIT / res
  if factor >= 2:
    new_height, new_width = int(np.floor(height / factor)), int(np.floor(width / factor))
    if int(np.floor(max(height, width) / factor)) < 2:
      return np.zeros((res, res, 3), np.float32)
    pixels = cv2.resize(pixels, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    center = center * 1.0 / np.float32(factor)  # a float32 tensor over a Python float
    scale = scale / factor
    height, width = new_height, new_width
  upper_left = _transform([0, 0], center, scale, res, invert=True)
  lower_right = _transform([res, res], center, scale, res, invert=True)
  canvas = np.zeros((lower_right[1] - upper_left[1], lower_right[0] - upper_left[0], 3))
  x0, x1 = max(0, upper_left[0]), min(width, lower_right[0])
  y0, y1 = max(0, upper_left[1]), min(height, lower_right[1])
  if x1 > x0 and y1 > y0:
    canvas[y0 - upper_left[1]:y1 - upper_left[1],
           x0 - upper_left[0]:x1 - upper_left[0]] = pixels[y0:y1, x0:x1]
  return cv2.resize(canvas, (res, res), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def final_preds(score_maps: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """Heatmaps [P, h, w, J] (h = w), bearpaw boxes -> bearpaw's predictions [P, J, 2], 1-based whole pixels."""
  maps = np.asarray(score_maps, np.float32)
  people, size, _, joints = maps.shape
  flat = maps.reshape(people, size * size, joints)
  index = flat.argmax(1)  # the first maximum, as torch.max
  peak = np.take_along_axis(flat, index[:, None], 1)[:, 0]
  coords = np.stack([index % size + 1, index // size + 1], -1).astype(np.float32)
  coords *= (peak > 0)[..., None]
  px, py = coords[..., 0].astype(int), coords[..., 1].astype(int)  # 1-based
  inside = (px > 1) & (px < size) & (py > 1) & (py < size)
  p, j = np.nonzero(inside)
  x, y = px[p, j] - 1, py[p, j] - 1  # 0-based
  dx = maps[p, y, x + 1, j] - maps[p, y, x - 1, j]
  dy = maps[p, y + 1, x, j] - maps[p, y - 1, x, j]
  coords[p, j] += np.sign(np.stack([dx, dy], -1)) * np.float32(.25)
  coords += np.float32(0.5)
  return np.array([[_transform(point, center[n], scale[n], size, invert=True)
                    for point in coords[n]] for n in range(people)], np.float64)


def predict_mpii(heatmaps_fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray,
                 center: np.ndarray, scale: np.ndarray, input_size: tuple[int, int],
                 flip_permutation: np.ndarray, flip_test: bool = True) -> np.ndarray:
  """Image [H, W, 3] uint8, MPII centres [P, 2] (0-based), scales [P] -> joints [P, J, 2], 0-based.

  `heatmaps_fn`: RGB pixels [P, h, w, 3] (float32 0-255) -> heatmaps [P, h', w', J].
  """
  width, height = input_size
  if width != height:
    raise ValueError(f'bearpaw MPII protocol: the input is square (its inp_res), got '
                     f'{width}x{height}')
  centers, scales = boxes(center, scale)
  crops = np.stack([crop(image, c, s, width) for c, s in zip(centers, scales)])
  pixels = crops * np.float32(255)
  score_maps = np.asarray(heatmaps_fn(pixels), np.float32)
  if flip_test:
    flipped = np.asarray(heatmaps_fn(pixels[:, :, ::-1]), np.float32)
    score_maps = score_maps + flipped[:, :, ::-1][..., flip_permutation]
  return final_preds(score_maps, centers, scales) - 1


# --- the protocol's interface (`approaches.protocols.TopDownProtocol`) ------------

def predict(heatmaps_fn, image, boxes, input_size, skeleton, options):
  """Not defined: bearpaw's crop is made from MPII's centre and scale, not from a box."""
  del heatmaps_fn, image, boxes, input_size, skeleton, options
  raise ValueError(f'--protocol {NAME} reproduces bearpaw\'s MPII evaluation (MPII\'s centres and '
                   'scales); on person boxes use jaxpose_topdown')


def coco_results(heatmaps_fn, image, image_id, boxes, box_scores, input_size, skeleton, options,
                 detected):
  """Not defined: bearpaw evaluates MPII only."""
  del heatmaps_fn, image, image_id, boxes, box_scores, input_size, skeleton, options, detected
  raise ValueError(f'--protocol {NAME} evaluates MPII (PCKh); for COCO use jaxpose_topdown or '
                   'mmpose_topdown')


def mpii_keypoints(heatmaps_fn, image: np.ndarray, record, input_size: tuple[int, int],
                   skeleton: skeletons.Skeleton, options: records.Options) -> np.ndarray:
  """One MPII image (`mpii.MpiiRecord`: its people's centres and scales) -> keypoints [P, J, 2], 0-based."""
  if options.dark_kernel is not None:
    raise ValueError(f"--dark_kernel: DARK is an option of jaxpose_topdown, not of {NAME}")
  return predict_mpii(heatmaps_fn, image, record.center, record.scale, input_size,
                      skeleton.flip_permutation(), flip_test=options.flip_test)
