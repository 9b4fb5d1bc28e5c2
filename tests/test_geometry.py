"""jaxpose.data.transforms: crop matrices, their inverses, flips, on points and on a real image."""

import pathlib

import cv2
import numpy as np
import pytest

from jaxpose import skeletons
from jaxpose.data import geometry

COCO_IMAGE = pathlib.Path(__file__).parent / 'data' / 'coco' / '000000000785.jpg'
COCO_FLIP = skeletons.COCO.flip_permutation()
LEFT_WRIST, RIGHT_WRIST = 9, 10


def _random_crop(rng, output_size, box_low=(0, 0), box_high=(600, 400), box_sizes=(20, 300)):
  """A random box crop, rotated by up to 180 degrees and mirrored half the time: [2, 3]."""
  x, y = rng.uniform(box_low, box_high)
  w, h = rng.uniform(*box_sizes, size=2)
  center, size = geometry.box_to_center_scale(np.array([x, y, w, h]),
                                                output_size[0] / output_size[1])
  matrix = geometry.crop_matrix(center, size, output_size, rng.uniform(-180, 180))
  if rng.random() < 0.5:
    matrix = geometry.compose(geometry.horizontal_flip_matrix(output_size[0]), matrix)
  return matrix


def test_invert_affine_matches_the_inverse_of_the_3x3_matrix():
  rng = np.random.default_rng(0)
  for _ in range(10):
    matrix = _random_crop(rng, (192, 256))
    square = np.vstack([matrix, [0, 0, 1]])
    np.testing.assert_allclose(geometry.invert_affine(matrix), np.linalg.inv(square)[:2],
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(geometry.compose(geometry.invert_affine(matrix), matrix),
                               np.eye(2, 3), atol=1e-12)


def test_invert_affine_rejects_a_singular_matrix():
  with pytest.raises(ValueError, match='singular'):
    geometry.invert_affine(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 1.0]]))


@pytest.mark.parametrize('output_size', [(192, 256), (256, 256), (288, 384), (256, 192)])
def test_crop_then_uncrop_returns_the_joints(output_size):
  rng = np.random.default_rng(sum(output_size))
  for _ in range(20):
    matrix = _random_crop(rng, output_size)
    joints = rng.uniform((-50, -50), (700, 500), (17, 2))
    in_crop = geometry.apply_affine(joints, matrix)
    back = geometry.apply_affine(in_crop, geometry.invert_affine(matrix))
    np.testing.assert_allclose(back, joints, atol=1e-3)
    assert np.abs(in_crop - joints).max() > 1  # the crop did move them


def test_crop_maps_the_box_centre_to_the_crop_centre_at_the_box_scale():
  box = np.array([100.0, 40.0, 60.0, 200.0])  # narrower than 3:4: the width grows
  center, size = geometry.box_to_center_scale(box, 192 / 256)
  np.testing.assert_allclose(center, (130, 140))
  np.testing.assert_allclose(size, (150 * 1.25, 200 * 1.25))
  matrix = geometry.crop_matrix(center, size, (192, 256), rotation_degrees=90)
  np.testing.assert_allclose(geometry.apply_affine(center, matrix), (96, 128), atol=1e-9)
  # cv2's positive angle turns counter-clockwise on screen: a point 10 px to
  # the right of the centre lands 10 * 192 / 187.5 px above the crop's centre.
  np.testing.assert_allclose(geometry.apply_affine(center + (10, 0), matrix),
                             (96, 128 - 10 * 192 / 187.5), atol=1e-9)


def test_flip_joints_twice_is_identity_and_once_swaps_sides():
  rng = np.random.default_rng(1)
  joints = rng.uniform(0, 100, (3, 17, 2))
  once = geometry.flip_joints(joints, 64, COCO_FLIP)
  np.testing.assert_allclose(once[:, RIGHT_WRIST], np.stack(
      [63 - joints[:, LEFT_WRIST, 0], joints[:, LEFT_WRIST, 1]], -1), atol=1e-12)
  np.testing.assert_allclose(once[:, 0, 0], 63 - joints[:, 0, 0], atol=1e-12)  # the nose
  np.testing.assert_allclose(geometry.flip_joints(once, 64, COCO_FLIP), joints, atol=1e-12)


def _rgb(path):
  return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_flip_image_twice_is_identity_and_once_is_cv2_flip():
  image = _rgb(COCO_IMAGE)
  height, width = image.shape[:2]
  flip = geometry.horizontal_flip_matrix(width)
  once = geometry.warp(image, flip, (width, height))
  # An integer matrix samples pixel centres exactly: no interpolation at all.
  np.testing.assert_array_equal(once, cv2.flip(image, 1))
  np.testing.assert_array_equal(geometry.warp(once, flip, (width, height)), image)


def _round_trip(image, matrix, output_size):
  """Image -> crop under `matrix` -> warped back to the image's size."""
  height, width = image.shape[:2]
  crop = geometry.warp(image, matrix, output_size)
  return geometry.warp(crop, geometry.invert_affine(matrix), (width, height))


def _inside_crop(image_shape, matrix, output_size):
  """[H, W] bool: pixels one pixel or more inside both the image and the crop's rectangle."""
  height, width = image_shape[:2]
  ys, xs = np.mgrid[:height, :width]
  in_crop = geometry.apply_affine(np.stack([xs, ys], -1), matrix)
  return ((in_crop[..., 0] >= 1) & (in_crop[..., 0] <= output_size[0] - 2) &
          (in_crop[..., 1] >= 1) & (in_crop[..., 1] <= output_size[1] - 2) &
          (xs >= 1) & (xs <= width - 2) & (ys >= 1) & (ys <= height - 2))


def test_uncropping_a_crop_reproduces_a_linear_image_exactly():
  # Bilinear interpolation reproduces a linear function, so warping there and
  # back returns the ramp but for where cv2 samples: it rounds each sample
  # position to 1/32 px (INTER_BITS = 5), a few hundredths of a grey level on
  # a ramp rising 0.3 + 0.2 per pixel. 0.05 is 0.1 px of misplacement: a
  # wrong inverse would be off by pixels.
  height, width = 300, 400
  ys, xs = np.mgrid[:height, :width]
  ramp = (0.3 * xs + 0.2 * ys + 5).astype(np.float32)
  rng = np.random.default_rng(2)
  for _ in range(5):
    matrix = _random_crop(rng, (192, 256), box_high=(300, 200), box_sizes=(40, 150))
    inside = _inside_crop(ramp.shape, matrix, (192, 256))
    assert inside.sum() > 1000
    back = _round_trip(ramp, matrix, (192, 256))
    np.testing.assert_allclose(back[inside], ramp[inside], atol=0.05)


def test_uncropping_a_crop_of_a_real_image_stays_within_each_pixels_neighbourhood():
  # Magnifying crops (at least 1.9x here) lose nothing, but resampling twice
  # is not the identity: the way back samples the crop between its pixels, and
  # each crop pixel is itself a bilinear blend, so a pixel comes back as a
  # convex blend of the image sampled within sqrt(2) / 1.9 < 1 px of it, i.e.
  # of its 3 x 3 neighbourhood. That is the tolerance: between the
  # neighbourhood's min and max, +-1 for the two uint8 roundings. A textured
  # JPEG differs by up to tens of grey levels from itself one pixel away, so
  # a flat tolerance would be either loose or content-dependent.
  image = _rgb(COCO_IMAGE)
  height, width = image.shape[:2]
  low = cv2.erode(image, np.ones((3, 3), np.uint8)).astype(int) - 1
  high = cv2.dilate(image, np.ones((3, 3), np.uint8)).astype(int) + 1
  rng = np.random.default_rng(3)
  output_size = (256, 192)
  for _ in range(6):
    matrix = _random_crop(rng, output_size, box_low=(-20, -20), box_high=(550, 350),
                          box_sizes=(40, 80))
    assert np.sqrt(abs(np.linalg.det(matrix[:, :2]))) >= 1.9
    inside = _inside_crop(image.shape, matrix, output_size)
    assert inside.sum() > 2000
    back = _round_trip(image, matrix, output_size).astype(int)
    outside_bound = ((back < low) | (back > high)).any(-1)
    assert not outside_bound[inside].any()
    assert np.abs(back - image)[inside].mean() < 4
    # Control: undone as if it were mirrored the other way, the crop breaks
    # the bound on many pixels, so the bound does test the inverse.
    mirrored = geometry.compose(geometry.horizontal_flip_matrix(output_size[0]), matrix)
    wrong = geometry.warp(geometry.warp(image, matrix, output_size),
                            geometry.invert_affine(mirrored), (width, height)).astype(int)
    assert ((wrong < low) | (wrong > high)).any(-1)[inside].mean() > 0.1
