"""jaxpose.inference.topdown: crops, flip test and keypoints back in the image, against exact targets."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from jaxpose import approaches, skeletons
from jaxpose.codecs import heatmap
from jaxpose.data import geometry
from jaxpose.approaches.protocols import jaxpose_topdown

COCO_DIR = pathlib.Path(__file__).parent / 'data' / 'coco'
COCO_FLIP = skeletons.COCO.flip_permutation()
STRIDE = 4
SIGMA = 2.0


class _TargetRenderer:
  """A perfect 'model': for each image it was told about, the codec's exact target heatmaps.

  Images are recognised by their bytes, so an input the test did not expect
  (a crop cut or mirrored differently) fails loudly instead of giving
  plausible heatmaps.
  """

  BATCH = 8

  def __init__(self, input_size):
    self.input_size = tuple(input_size)
    self.heatmap_size = (input_size[0] // STRIDE, input_size[1] // STRIDE)
    self.known = {}

  def add(self, image, joints, visible):
    """Image [h, w, 3]; its joints [J, 2] (x, y pixels) and visibility [J]."""
    self.known[np.ascontiguousarray(image).tobytes()] = (np.asarray(joints, np.float32),
                                                         np.asarray(visible, np.float32))

  def __call__(self, images):
    joints, visible = zip(*(self.known[np.ascontiguousarray(image).tobytes()]
                            for image in images))
    # Padded to a fixed batch: one compilation of the eager ops per input size.
    padding = ((0, self.BATCH - len(images)), (0, 0))
    joints = np.pad(np.stack(joints), padding + ((0, 0),))
    visible = np.pad(np.stack(visible), padding)
    target, _ = heatmap.encode(joints, visible, image_size=self.input_size,
                               heatmap_size=self.heatmap_size, sigma=SIGMA)
    return np.asarray(target)[:len(images)]


def _mirror_by_index(crop, offset):
  """Crop [h, w, 3] -> the image whose pixel x is the crop's w - 1 - offset - x (black if none)."""
  width = crop.shape[1]
  source = width - 1 - offset - np.arange(width)
  out = np.zeros_like(crop)
  out[:, source >= 0] = crop[:, source[source >= 0]]
  return out


def _mirror_joints(joints, width, offset):
  """Joints [J, 2] -> where `_mirror_by_index(crop, offset)` shows them, left and right swapped."""
  return np.stack([width - 1 - offset - joints[:, 0], joints[:, 1]], -1)[COCO_FLIP]


def _nearest_heatmap_pixel(points):
  """The codec's Gaussian centre: int(x / stride + 0.5), for points at x >= 0."""
  return np.floor(points / STRIDE + 0.5)


def test_crop_people_cuts_each_box_at_its_padded_aspect():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
  boxes = np.array([[30.0, 20.0, 40.0, 80.0], [100.0, 10.0, 50.0, 20.0]])
  crops, matrices = jaxpose_topdown.crop_people(image, boxes, (48, 64))
  assert crops.shape == (2, 64, 48, 3) and crops.dtype == np.uint8
  # Box 0 is 40 x 80: already 3:4 after widening to 60 x 80, padded 1.25x to
  # 75 x 100 about (50, 60); box 1, 50 x 20, becomes 62.5 x 83.3 about (125, 20).
  for matrix, centre, side in zip(matrices, [(50, 60), (125, 20)], [75, 62.5]):
    np.testing.assert_allclose(geometry.apply_affine(np.array(centre), matrix), (24, 32),
                               atol=1e-9)
    np.testing.assert_allclose(matrix[:, :2], np.eye(2) * 48 / side, atol=1e-12)
    np.testing.assert_array_equal(crops[matrices.tolist().index(matrix.tolist())],
                                  cv2.warpAffine(image, matrix, (48, 64)))
  empty, no_matrices = jaxpose_topdown.crop_people(image, np.zeros((0, 4)), (48, 64))
  assert empty.shape == (0, 64, 48, 3) and no_matrices.shape == (0, 2, 3)


def test_mirror_crops_maps_x_to_width_minus_stride_minus_x():
  rng = np.random.default_rng(1)
  crops = rng.integers(1, 256, (2, 8, 16, 3), dtype=np.uint8)
  mirrored = jaxpose_topdown.mirror_crops(crops, STRIDE)
  for crop, got in zip(crops, mirrored):
    np.testing.assert_array_equal(got, _mirror_by_index(crop, STRIDE - 1))
  np.testing.assert_array_equal(mirrored[:, :, 16 - 3:], 0)
  twice = jaxpose_topdown.mirror_crops(mirrored, STRIDE)
  np.testing.assert_array_equal(twice[:, :, :16 - 3], crops[:, :, :16 - 3])
  np.testing.assert_array_equal(jaxpose_topdown.mirror_crops(crops, 1), crops[:, :, ::-1])


def _subpixel_joints(rng, input_size, num_people, fractions):
  """[P, 17, 2] joints whose x / stride has each of `fractions` as its fractional part."""
  heatmap_w, heatmap_h = input_size[0] // STRIDE, input_size[1] // STRIDE
  whole = rng.integers(3, heatmap_w - 3, (num_people, 17))
  fraction = rng.choice(fractions, (num_people, 17))
  x = (whole + fraction) * STRIDE
  y = rng.uniform(3, heatmap_h - 3, (num_people, 17)) * STRIDE
  return np.stack([x, y], -1)


def test_flip_test_heatmaps_equal_the_unflipped_ones_for_exact_targets():
  input_size = (48, 64)
  width = input_size[0]
  rng = np.random.default_rng(2)
  crops = rng.integers(1, 256, (6, 64, 48, 3), dtype=np.uint8)
  # Every sub-pixel position, away from the codec's half-way rounding points.
  fractions = np.arange(1, 16, 2) / 16
  joints = _subpixel_joints(rng, input_size, len(crops), fractions)
  visible = np.ones((len(crops), 17))
  model = _TargetRenderer(input_size)
  for crop, crop_joints, crop_visible in zip(crops, joints, visible):
    model.add(crop, crop_joints, crop_visible)
    for offset in (0, STRIDE - 1):  # the plain mirror, and ours
      model.add(_mirror_by_index(crop, offset), _mirror_joints(crop_joints, width, offset),
                crop_visible)

  plain = model(crops)
  averaged = jaxpose_topdown.flip_test_heatmaps(model, crops, COCO_FLIP)
  np.testing.assert_array_equal(averaged, plain)
  plain_peaks, plain_scores = heatmap.decode(plain)
  flip_peaks, flip_scores = heatmap.decode(averaged)
  np.testing.assert_array_equal(flip_peaks, plain_peaks)
  np.testing.assert_array_equal(flip_scores, 1.0)
  np.testing.assert_array_equal(plain_peaks, _nearest_heatmap_pixel(joints))

  # What upstream does instead: mirror the crop as an image, reverse the
  # heatmaps, then shift them one pixel right (shift_heatmap=True) or not.
  # Against exact targets the peaks then agree with the unflipped ones only
  # for 6 (shifted) or 2 (unshifted) of the 8 sub-pixel positions.
  reversed_back = model(crops[:, :, ::-1])[:, :, ::-1, COCO_FLIP]
  shifted = np.zeros_like(reversed_back)
  shifted[:, :, 1:] = reversed_back[:, :, :-1]
  plain_x = np.argmax(plain.max(axis=1), axis=1)
  fraction = joints[..., 0] / STRIDE % 1
  for upstream, agreeing in ((shifted, fractions[[0, 1, 4, 5, 6, 7]]),
                             (reversed_back, fractions[[2, 3]])):
    same_peak = np.argmax(upstream.max(axis=1), axis=1) == plain_x
    np.testing.assert_array_equal(same_peak, np.isin(fraction, agreeing))


def test_flip_test_heatmaps_checks_the_model_output():
  crops = np.zeros((2, 64, 48, 3), np.uint8)
  with pytest.raises(ValueError, match='48 is not a whole multiple of the heatmap width 10'):
    jaxpose_topdown.flip_test_heatmaps(lambda x: np.zeros((len(x), 16, 10, 17)), crops, COCO_FLIP)
  with pytest.raises(ValueError, match='16 heatmap channels but a flip permutation of 17'):
    jaxpose_topdown.flip_test_heatmaps(lambda x: np.zeros((len(x), 16, 12, 16)), crops, COCO_FLIP)


def test_keypoints_in_image_by_hand():
  heatmaps = np.zeros((1, 16, 12, 17), np.float32)
  heatmaps[0, 7, 5, 3] = 1.0
  heatmaps[0, 7, 6, 3] = 0.5  # right neighbour higher than the left: +0.25 in x
  heatmaps[0, 6, 5, 3] = 0.2  # the one above higher than the one below: -0.25 in y
  # The crop: a 24 x 32 box about (100, 50), magnified 2x into 48 x 64.
  matrix = geometry.crop_matrix(np.array([100.0, 50.0]), np.array([24.0, 32.0]), (48, 64))
  keypoints, scores = jaxpose_topdown.keypoints_in_image(heatmaps, matrix[None], (48, 64))
  # Heatmap (5.25, 6.75) -> input (21, 27) -> image (100 + (21 - 24) / 2, 50 + (27 - 32) / 2).
  np.testing.assert_allclose(keypoints[0, 3], (98.5, 47.5), atol=1e-9)
  assert scores[0, 3] == 1.0 and scores[0, 0] == 0.0
  # No positive value: decode's (0, 0), the crop's top-left corner (88, 34).
  np.testing.assert_allclose(keypoints[0, 0], (88, 34), atol=1e-9)


def _coco_people():
  """(image path, boxes [P, 4], joints [P, 17, 2], labelled [P, 17]) of each bundled image."""
  dataset = json.loads((COCO_DIR / 'test_coco.json').read_text())
  for image in dataset['images']:
    people = [a for a in dataset['annotations']
              if a['image_id'] == image['id'] and a['num_keypoints'] > 0]
    keypoints = np.array([a['keypoints'] for a in people], np.float64).reshape(-1, 17, 3)
    yield (COCO_DIR / image['file_name'], np.array([a['bbox'] for a in people]),
           keypoints[..., :2], keypoints[..., 2] > 0)


@pytest.mark.parametrize('flip_test', [False, True])
@pytest.mark.parametrize('input_size', [(192, 256), (256, 256), (288, 384), (256, 192)])
def test_predict_topdown_returns_ground_truth_within_the_codec_quantisation(input_size,
                                                                            flip_test):
  width, height = input_size
  checked = 0
  for path, boxes, joints, labelled in _coco_people():
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    # The 'model' output: exact targets for the joints where each crop shows them.
    model = _TargetRenderer(input_size)
    expected = np.zeros_like(joints)
    bound = np.zeros(len(boxes))
    for p, box in enumerate(boxes):
      center, size = geometry.box_to_center_scale(box, width / height)
      matrix = geometry.crop_matrix(center, size, input_size)
      crop = cv2.warpAffine(image, matrix, input_size)
      in_crop = geometry.apply_affine(joints[p], matrix)
      model.add(crop, in_crop, labelled[p])
      model.add(_mirror_by_index(crop, STRIDE - 1),
                _mirror_joints(in_crop, width, STRIDE - 1), labelled[p][COCO_FLIP])
      # Decoding returns the nearest heatmap pixel (an exact Gaussian has
      # equal neighbours: no quarter shift), i.e. the joint rounded to the
      # stride in the crop: off by at most stride / 2 input pixels per axis,
      # size / width image pixels each.
      expected[p] = geometry.apply_affine(_nearest_heatmap_pixel(in_crop) * STRIDE,
                                            geometry.invert_affine(matrix))
      bound[p] = STRIDE / 2 * size[0] / width

    keypoints, scores = jaxpose_topdown.predict_topdown(model, image, boxes, input_size, COCO_FLIP,
                                                flip_test=flip_test)
    assert keypoints.shape == joints.shape and scores.shape == labelled.shape
    np.testing.assert_allclose(keypoints[labelled], expected[labelled], atol=1e-3)
    error = np.abs(keypoints - joints).max(-1)
    assert np.all(error[labelled] <= np.broadcast_to(bound[:, None], error.shape)[labelled] + 1e-6)
    np.testing.assert_array_equal(scores[labelled], 1.0)
    np.testing.assert_array_equal(scores[~labelled], 0.0)
    checked += labelled.sum()
  assert checked == 181  # the labelled joints of the 12 people with keypoints


def test_predict_topdown_without_people():
  keypoints, scores = jaxpose_topdown.predict_topdown(
      lambda x: pytest.fail('no crops, no model call'), np.zeros((10, 10, 3), np.uint8),
      np.zeros((0, 4)), (48, 64), COCO_FLIP)
  assert keypoints.shape == (0, 17, 2) and scores.shape == (0, 17)


def test_keypoints_in_image_with_dark_find_sub_pixel_peaks():
  # Gaussians (sigma 2) centred between heatmap pixels, in a crop that is the
  # image itself: DARK recovers the centre, the quarter-pixel shift cannot.
  rng = np.random.default_rng(4)
  centres = rng.uniform(8, 40, (3, 5, 2))  # [P, J, 2] heatmap pixels
  cols, rows = np.meshgrid(np.arange(48), np.arange(64))
  maps = np.exp(-((cols[None, :, :, None] - centres[:, None, None, :, 0]) ** 2 +
                  (rows[None, :, :, None] - centres[:, None, None, :, 1]) ** 2) / 8)
  identity = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (3, 1, 1))
  truth = centres * 4  # input (= image) pixels, stride 4
  dark, _ = jaxpose_topdown.keypoints_in_image(maps, identity, (192, 256), dark_kernel=11)
  plain, _ = jaxpose_topdown.keypoints_in_image(maps, identity, (192, 256))
  assert np.abs(dark - truth).max() < 0.05 * 4
  assert np.median(np.abs(plain - truth)) > 5 * np.median(np.abs(dark - truth))


class _FixedSizeNetwork:
  """A predictor stand-in of input 64x64 that must not be called."""
  input_size = (64, 64)
  source = '<stand-in>'

  def __call__(self, images):
    pytest.fail('no call')


def test_dark_is_refused_with_an_upstream_protocol():
  approach = approaches.for_description({'arch': 'hourglass', 'num_joints': 17})
  image = np.zeros((10, 10, 3), np.uint8)
  with pytest.raises(ValueError, match='--dark_kernel: DARK is an option of jaxpose_topdown, '
                     'not of mmpose_topdown'):
    approach.predict(_FixedSizeNetwork(), [image],
                     approaches.Options(protocol='mmpose_topdown', flip_test=False,
                                        dark_kernel=11), [(np.zeros((1, 4)), np.ones(1))])
  with pytest.raises(ValueError, match='--protocol lightweight_openpose is a bottom-up protocol'):
    approach.predict(_FixedSizeNetwork(), [image], approaches.Options(
        protocol='lightweight_openpose'), [(np.zeros((1, 4)), np.ones(1))])
  with pytest.raises(ValueError, match='top-down prediction needs person boxes'):
    approach.predict(_FixedSizeNetwork(), [image], approaches.Options())
