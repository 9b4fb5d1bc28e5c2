"""Geometric transforms shared by top-down cropping and evaluation (numpy/cv2, host side)."""

import cv2
import numpy as np

# Top-down crops are the person box enlarged by this factor (SimpleBaseline, mmpose).
BOX_PADDING = 1.25


def box_to_center_scale(box_xywh: np.ndarray, aspect_ratio: float,
                        padding: float = BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
  """COCO box [4] (x, y, w, h) -> (center [2], size [2] in pixels) with the crop's aspect ratio (w / h)."""
  x, y, w, h = np.asarray(box_xywh, np.float64)
  center = np.array([x + w / 2, y + h / 2])
  if w > aspect_ratio * h:
    h = w / aspect_ratio
  else:
    w = h * aspect_ratio
  return center, np.array([w, h]) * padding


def crop_matrix(center: np.ndarray, size: np.ndarray, output_size: tuple[int, int],
                rotation_degrees: float = 0.0) -> np.ndarray:
  """[2, 3] affine matrix taking the box (center, size in pixels, rotated) to an output image (width, height)."""
  out_w, out_h = output_size
  scale = out_w / size[0]
  # Rotate about the box center, scale to the output, move the center to the
  # output's center. cv2's angle is counter-clockwise in image coordinates.
  matrix = cv2.getRotationMatrix2D((float(center[0]), float(center[1])),
                                   rotation_degrees, float(scale))
  matrix[:, 2] += np.array([out_w / 2, out_h / 2]) - center
  return matrix


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
  """Points [..., 2] (x, y) -> [..., 2] under a [2, 3] affine matrix."""
  points = np.asarray(points, np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
  """Image [H, W, C] -> [out_h, out_w, C] under `matrix` (bilinear, black outside)."""
  return cv2.warpAffine(image, matrix, output_size, flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def horizontal_flip_matrix(width: int) -> np.ndarray:
  """[2, 3] affine matrix mirroring an image `width` pixels wide (x -> width - 1 - x, as cv2.flip)."""
  return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
  """[2, 3] affine matrix applying `inner`, then `outer`."""
  matrix = outer[:, :2] @ inner
  matrix[:, 2] += outer[:, 2]
  return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
  """[2, 3] affine matrix -> the [2, 3] matrix undoing it (e.g. crop -> image coordinates)."""
  matrix = np.asarray(matrix, np.float64)
  linear = matrix[:, :2]
  if abs(np.linalg.det(linear)) < 1e-12:
    raise ValueError(f'invert_affine: the matrix {matrix.tolist()} is singular')
  inverse = np.linalg.inv(linear)
  return np.concatenate([inverse, -inverse @ matrix[:, 2:]], axis=1)


def flip_joints(joints: np.ndarray, width: int, flip_permutation: np.ndarray) -> np.ndarray:
  """Joints [..., J, 2] of an image `width` pixels wide -> [..., J, 2] in its mirror image, left and right swapped."""
  mirrored = apply_affine(joints, horizontal_flip_matrix(width))
  return mirrored[..., flip_permutation, :]
