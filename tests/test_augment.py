"""jaxpose.data.augment: the top-down and bottom-up transforms."""

import dataclasses

import numpy as np
import pytest

from jaxpose import skeletons
from jaxpose.data import augment, geometry, synthetic

COCO_FLIP = skeletons.COCO.flip_permutation()
LEFT_WRIST, RIGHT_WRIST = 9, 10


def _person(image, keypoints, visible=None, box=None):
  """A one-person example in the sources' schema."""
  keypoints = np.asarray(keypoints, np.float32)
  if visible is None:
    visible = np.full(len(keypoints), 2.0)
  if box is None:
    low, high = keypoints.min(0), keypoints.max(0)
    box = np.concatenate([low, high - low])
  return {'image': image, 'keypoints': keypoints[None],
          'visible': np.asarray(visible, np.float32)[None],
          'boxes': np.asarray(box, np.float32)[None], 'image_id': 0}


def _random_keypoints(rng, low, high, num=17):
  return rng.uniform(low, high, (num, 2)).astype(np.float32)


def test_top_down_crop_without_augmentation():
  keypoints = np.zeros((17, 2), np.float32)
  keypoints[0] = (56, 52)  # the box centre
  keypoints[1] = (40, 20)  # the box's top-left corner
  keypoints[2] = (72, 84)  # its bottom-right corner
  example = _person(np.zeros((120, 100, 3), np.uint8), keypoints, box=(40, 20, 32, 64))
  transform = augment.TopDownTransform((64, 128), augment=False)
  out = transform.random_map(example, np.random.default_rng(0))
  assert out['image'].shape == (128, 64, 3) and out['image'].dtype == np.uint8
  assert out['joints'].shape == (17, 2) and out['joints'].dtype == np.float32
  assert out['visible'].shape == (17,) and out['visible'].dtype == np.float32
  # The box (32 x 64, already 1:2) padded 1.25x is 40 x 80 pixels; the crop is
  # 64 x 128, so scale 1.6 about the centre, which lands at (32, 64).
  np.testing.assert_allclose(out['joints'][:3], [(32, 64), (6.4, 12.8), (57.6, 115.2)],
                             atol=1e-4)


def _dot_image(size, point, sigma=1.5):
  """uint8 [h, w, 3] black image with a Gaussian dot at sub-pixel `point` (x, y)."""
  w, h = size
  y, x = np.mgrid[:h, :w]
  dot = np.exp(-((x - point[0]) ** 2 + (y - point[1]) ** 2) / (2 * sigma ** 2))
  return np.repeat(np.round(255 * dot).astype(np.uint8)[..., None], 3, axis=-1)


def _centroid(image):
  weight = image[..., 0].astype(np.float64)
  y, x = np.mgrid[:image.shape[0], :image.shape[1]]
  return np.array([(weight * x).sum(), (weight * y).sum()]) / weight.sum()


@pytest.mark.parametrize('seed', range(4))
def test_top_down_dot_follows_its_joint_through_rotation_and_flip(seed):
  rng = np.random.default_rng(seed)
  keypoints = _random_keypoints(rng, (50, 40), (110, 120))
  # Away from the box centre, so that rotating about it moves the wrist,
  # but near enough to stay in the crop.
  centre = (keypoints.min(0) + keypoints.max(0)) / 2
  angle = rng.uniform(0, 2 * np.pi)
  keypoints[LEFT_WRIST] = centre + rng.uniform(12, 18) * np.array([np.cos(angle), np.sin(angle)])
  example = _person(_dot_image((160, 150), keypoints[LEFT_WRIST]), keypoints)
  transform = augment.TopDownTransform((48, 64), rotation_probability=1.0, flip_probability=1.0)
  out = transform.random_map(example, np.random.default_rng(100 + seed))
  dot = _centroid(out['image'])
  # Mirrored, the left wrist's point is labelled as the right wrist.
  assert np.linalg.norm(dot - out['joints'][RIGHT_WRIST]) < 0.5
  assert np.linalg.norm(dot - out['joints'][LEFT_WRIST]) > 2
  # The rotation really happened: unrotated, the dot would be elsewhere.
  plain = augment.TopDownTransform((48, 64), augment=False).random_map(
      example, np.random.default_rng(0))
  plain_dot = _centroid(plain['image'])
  assert np.linalg.norm(plain_dot - plain['joints'][LEFT_WRIST]) < 0.5
  assert np.linalg.norm((48 - 1 - dot[0], dot[1]) - plain_dot) > 1


def test_top_down_flip_twice_is_identity():
  rng = np.random.default_rng(7)
  image = rng.integers(0, 256, (90, 80, 3), dtype=np.uint8)
  keypoints = _random_keypoints(rng, (10, 10), (70, 80))
  visible = rng.integers(0, 3, 17)
  example = _person(image, keypoints, visible)
  options = dict(rotation_probability=1.0, scale_factor=0.25)
  unflipped = augment.TopDownTransform((64, 64), flip_probability=0.0, **options).random_map(
      example, np.random.default_rng(3))
  flipped = augment.TopDownTransform((64, 64), flip_probability=1.0, **options).random_map(
      example, np.random.default_rng(3))
  # Mirroring the flipped output (and swapping its left and right back)
  # gives the unflipped one: the same rotation and scale, only mirrored.
  back_image = flipped['image'][:, ::-1]
  # OpenCV 4 rounds bilinear sample positions to 1/32 px, and a mirrored
  # matrix rounds them the other way: on white noise a pixel can move by up
  # to 255/32 levels; on average far less.
  difference = np.abs(back_image.astype(int) - unflipped['image'])
  assert difference.max() <= 8 and difference.mean() < 1
  back_joints = flipped['joints'][COCO_FLIP]
  np.testing.assert_allclose(63 - back_joints[:, 0], unflipped['joints'][:, 0], atol=1e-4)
  np.testing.assert_allclose(back_joints[:, 1], unflipped['joints'][:, 1], atol=1e-4)
  np.testing.assert_array_equal(flipped['visible'][COCO_FLIP], unflipped['visible'])
  assert not np.allclose(flipped['joints'], unflipped['joints'], atol=1)
  np.testing.assert_allclose(
      geometry.compose(geometry.horizontal_flip_matrix(64),
                         geometry.horizontal_flip_matrix(64)),
      [[1, 0, 0], [0, 1, 0]])


def test_top_down_joints_outside_the_crop_are_not_visible():
  keypoints = np.full((17, 2), 50, np.float32)
  keypoints[15] = (50, 200)  # far below the box
  keypoints[16] = (-30, 50)  # far to the left
  keypoints[5] = (45, 45)
  keypoints[6] = (55, 55)
  visible = np.full(17, 2.0)
  visible[5] = 1  # labelled but occluded: still a target
  visible[6] = 0  # not labelled
  example = _person(np.zeros((100, 100, 3), np.uint8), keypoints, visible,
                    box=(40, 40, 20, 20))
  out = augment.TopDownTransform((64, 64), augment=False).random_map(
      example, np.random.default_rng(0))
  # Box 20 x 20 -> 25 x 25 crop at scale 64 / 25 about (50, 50) -> (32, 32).
  scale = 64 / 25
  np.testing.assert_allclose(out['joints'][15], (32, 32 + 150 * scale), rtol=1e-5)
  np.testing.assert_allclose(out['joints'][16], (32 - 80 * scale, 32), rtol=1e-5)
  expected = np.ones(17)
  expected[[6, 15, 16]] = 0
  np.testing.assert_array_equal(out['visible'], expected)


def test_top_down_needs_one_person():
  example = synthetic.SyntheticPeople(1)[0]
  example['keypoints'] = np.zeros((2, 17, 2), np.float32)
  with pytest.raises(ValueError, match=r'one person.*\(2, 17, 2\)'):
    augment.TopDownTransform().random_map(example, np.random.default_rng(0))


def _people(image_size, keypoints, visible, boxes=None, ignore_mask=None):
  """A whole-image example with P people."""
  w, h = image_size
  keypoints = np.asarray(keypoints, np.float32)
  if boxes is None:
    low, high = keypoints.min(1), keypoints.max(1)
    boxes = np.concatenate([low, high - low], axis=-1)
  example = {'image': np.zeros((h, w, 3), np.uint8), 'keypoints': keypoints,
             'visible': np.asarray(visible, np.float32), 'boxes': np.asarray(boxes, np.float32),
             'image_id': 0}
  if ignore_mask is not None:
    example['ignore_mask'] = ignore_mask
  return example


def test_bottom_up_fits_pads_and_converts_to_openpose():
  rng = np.random.default_rng(0)
  keypoints = _random_keypoints(rng, (1, 1), (126, 62), 2 * 17).reshape(2, 17, 2)
  visible = np.full((2, 17), 2.0)
  visible[0, 5] = 0  # a left shoulder: the neck goes with it
  visible[1, 3] = 1  # an occluded left ear
  example = _people((128, 64), keypoints, visible)
  transform = augment.BottomUpTransform(64, stride=8, max_people=3, augment=False)
  out = transform.random_map(example, np.random.default_rng(0))
  assert out['image'].shape == (64, 64, 3) and out['image'].dtype == np.uint8
  assert out['keypoints'].shape == (3, 18, 2) and out['keypoints'].dtype == np.float32
  assert out['visible'].shape == (3, 18) and out['visible'].dtype == np.float32
  assert out['person_mask'].dtype == bool and out['mask'].shape == (8, 8)
  # 128 x 64 fits 64 x 64 at half size, centred: (63.5, 31.5) -> (32, 32).
  moved = (keypoints - (63.5, 31.5)) * 0.5 + 32
  for openpose, coco in enumerate(skeletons.OPENPOSE_FROM_COCO):
    if coco >= 0:
      np.testing.assert_allclose(out['keypoints'][:2, openpose], moved[:, coco], atol=1e-4)
      np.testing.assert_array_equal(out['visible'][:2, openpose], visible[:, coco] > 0)
  np.testing.assert_allclose(out['keypoints'][:2, 1], (moved[:, 5] + moved[:, 6]) / 2, atol=1e-4)
  np.testing.assert_array_equal(out['visible'][:2, 1], [0, 1])
  np.testing.assert_array_equal(out['person_mask'], [True, True, False])
  assert not out['keypoints'][2].any() and not out['visible'][2].any()
  np.testing.assert_array_equal(out['mask'], np.ones((8, 8)))


def test_bottom_up_drops_unlabelled_people_and_masks_overflow():
  rng = np.random.default_rng(1)
  keypoints = np.stack([_random_keypoints(rng, (x, 10), (x + 20, 50)) for x in (5, 40, 75, 100)])
  visible = np.full((4, 17), 2.0)
  visible[1] = 0  # no labelled joint: not a person to the network
  example = _people((128, 64), keypoints, visible)
  out = augment.BottomUpTransform(64, stride=8, max_people=2, augment=False).random_map(
      example, np.random.default_rng(0))
  np.testing.assert_array_equal(out['person_mask'], [True, True])
  np.testing.assert_allclose(out['keypoints'][:, 0],
                             (keypoints[[0, 2], 0] - (63.5, 31.5)) * 0.5 + 32, atol=1e-4)
  # Person 3 (x 100..120 -> 50..60 in the input, y 10..50 -> 21..41) has no
  # slot: its box is masked out, the rest is not.
  box = example['boxes'][3]
  x0, y0 = np.floor(((box[:2] - (63.5, 31.5)) * 0.5 + 32) / 8).astype(int)
  x1, y1 = np.ceil(((box[:2] + box[2:] - (63.5, 31.5)) * 0.5 + 32) / 8).astype(int)
  expected = np.ones((8, 8))
  expected[y0:y1, x0:x1] = 0
  np.testing.assert_array_equal(out['mask'], expected)
  assert 0 < (1 - expected).sum() < 16


def test_bottom_up_mask_follows_ignore_mask_and_flip():
  ignore = np.zeros((64, 128), np.uint8)
  ignore[:, :64] = 1  # the image's left half is unannotated
  example = _people((128, 64), np.full((1, 17, 2), 100), np.full((1, 17), 2.0),
                    ignore_mask=ignore)
  plain = augment.BottomUpTransform(64, stride=8, augment=False).random_map(
      example, np.random.default_rng(0))
  flipped = augment.BottomUpTransform(
      64, stride=8, scale_factor=0.0, rotation_probability=0.0, flip_probability=1.0
  ).random_map(example, np.random.default_rng(0))
  # The image fills rows 16..47 of the 64 x 64 input: mask rows 2..5. Its left
  # half, columns 0..31: mask columns 0..3. Cells on those borders are partly
  # ignored; the padding above and below is annotated.
  mask = plain['mask']
  np.testing.assert_array_equal(mask[3:5, 1:4], 0)
  np.testing.assert_array_equal(mask[3:5, 5:], 1)
  np.testing.assert_array_equal(mask[[0, 1, 7]], 1)
  assert 0 < mask[3, 4] < 1 and 0 < mask[2, 2] < 1
  np.testing.assert_allclose(mask.sum(), 64 - 16, atol=1.5)
  np.testing.assert_allclose(flipped['mask'], mask[:, ::-1], atol=0.02)


def test_bottom_up_flip_mirrors_and_swaps_left_and_right():
  example = synthetic.SyntheticPeople(4, image_size=(96, 64), max_people=3)[1]
  options = dict(stride=8, max_people=3, rotation_probability=1.0)
  unflipped = augment.BottomUpTransform(96, flip_probability=0.0, **options).random_map(
      example, np.random.default_rng(5))
  flipped = augment.BottomUpTransform(96, flip_probability=1.0, **options).random_map(
      example, np.random.default_rng(5))
  # As in the top-down case: OpenCV 4's 1/32 px sample positions round the
  # other way under a mirror (drawn edges are sharp, so up to 255/32 levels).
  difference = np.abs(flipped['image'][:, ::-1].astype(int) - unflipped['image'])
  assert difference.max() <= 8 and difference.mean() < 1
  back = flipped['keypoints'][:, skeletons.OPENPOSE.flip_permutation()]
  people = unflipped['person_mask']
  np.testing.assert_array_equal(flipped['person_mask'], people)
  np.testing.assert_allclose(95 - back[people, :, 0], unflipped['keypoints'][people, :, 0],
                             atol=1e-4)
  np.testing.assert_allclose(back[people, :, 1], unflipped['keypoints'][people, :, 1], atol=1e-4)
  np.testing.assert_array_equal(flipped['visible'][:, skeletons.OPENPOSE.flip_permutation()],
                                unflipped['visible'])


def test_bottom_up_synthetic_example():
  example = synthetic.SyntheticPeople(4, image_size=(96, 64), max_people=3)[2]
  out = augment.BottomUpTransform(128, stride=8, max_people=5).random_map(
      example, np.random.default_rng(0))
  people = int(out['person_mask'].sum())
  assert 1 <= people <= example['keypoints'].shape[0]
  assert set(np.unique(out['visible'])) <= {0.0, 1.0}
  assert out['visible'][:people].any(axis=-1).all() and not out['visible'][people:].any()
  labelled = out['visible'] > 0
  assert np.all((out['keypoints'][labelled] >= -0.5) & (out['keypoints'][labelled] < 127.5))


def _half_body_person():
  """A COCO person in a 200 x 220 image: upper body in x 100..140, y 40..120, legs below."""
  keypoints = np.zeros((17, 2), np.float32)
  keypoints[:11] = [(120, 40), (115, 45), (125, 45), (110, 50), (130, 50), (105, 70),
                    (135, 70), (102, 90), (138, 90), (100, 100), (140, 120)]
  # Hips just below the upper body, then knees and ankles: x 110..130, y 125..195.
  keypoints[11:] = [(110, 125), (130, 125), (111, 160), (129, 160), (110, 195), (130, 195)]
  return _person(np.zeros((220, 200, 3), np.uint8), keypoints, box=(95, 35, 50, 165))


# Upper body: extent 40 x 80, widened to 1:1 and enlarged 1.5x: 120 px about
# (120, 80). Lower body: 20 x 70 -> 105 px about (120, 160).
_UPPER_CROP = ((120, 80), 120)
_LOWER_CROP = ((120, 160), 105)


def _expected_crop(keypoints, crop, input_side=64):
  centre, side = crop
  return (keypoints - np.array(centre)) * input_side / side + input_side / 2


@pytest.mark.parametrize('seed', range(8))
def test_half_body_crops_the_drawn_half(seed):
  example = _half_body_person()
  keypoints = example['keypoints'][0]
  transform = augment.TopDownTransform((64, 64), scale_factor=0.0, rotation_probability=0.0,
                                        flip_probability=0.0, half_body_probability=0.5)
  out = transform.random_map(example, np.random.default_rng(seed))
  # The documented draw order: the fifth number decides whether, the sixth
  # which half.
  draws = np.random.default_rng(seed).random(6)
  if draws[4] >= 0.5:
    plain = augment.TopDownTransform((64, 64), augment=False).random_map(
        example, np.random.default_rng(0))
    np.testing.assert_allclose(out['joints'], plain['joints'], atol=1e-4)
    return
  upper = draws[5] < 0.5
  expected = _expected_crop(keypoints, _UPPER_CROP if upper else _LOWER_CROP)
  np.testing.assert_allclose(out['joints'], expected, atol=1e-4)
  chosen = np.arange(17) < 11 if upper else np.arange(17) >= 11
  assert np.all((out['joints'][chosen] >= 0) & (out['joints'][chosen] < 63.5))
  np.testing.assert_array_equal(out['visible'][chosen], 1)
  # The other half: visible exactly where inside the crop. From the upper
  # crop (y 20..140) the hips (y 125) are in, knees and ankles out; from the
  # lower one (y 107.5..212.5) only the right wrist (y 120) is.
  other_visible = np.flatnonzero(out['visible'][~chosen]) + (11 if upper else 0)
  assert other_visible.tolist() == ([11, 12] if upper else [10])


def test_half_body_draws_both_halves_over_seeds():
  example = _half_body_person()
  transform = augment.TopDownTransform((64, 64), scale_factor=0.0, rotation_probability=0.0,
                                        flip_probability=0.0, half_body_probability=1.0)
  nose_y = [transform.random_map(example, np.random.default_rng(seed))['joints'][0, 1]
            for seed in range(8)]
  # The nose is at the upper crop's y 40 -> 32 - 40 * 64 / 120, and above the
  # lower crop at 32 - 120 * 64 / 105.
  np.testing.assert_allclose(sorted(set(np.round(nose_y, 3))),
                             [32 - 120 * 64 / 105, 32 - 40 * 64 / 120], atol=1e-3)


def test_half_body_needs_enough_labelled_joints():
  example = _half_body_person()
  transform = augment.TopDownTransform((64, 64), scale_factor=0.0, rotation_probability=0.0,
                                        flip_probability=0.0, half_body_probability=1.0)
  lower_seed = next(s for s in range(20) if np.random.default_rng(s).random(6)[5] >= 0.5)
  # 8 labelled joints (< 9): the whole box, as without half-body.
  few = dict(example, visible=np.where(np.arange(17) < 8, 2.0, 0.0)[None])
  plain = augment.TopDownTransform((64, 64), augment=False).random_map(
      few, np.random.default_rng(0))
  out = transform.random_map(few, np.random.default_rng(lower_seed))
  np.testing.assert_allclose(out['joints'], plain['joints'], atol=1e-4)
  # The lower half drawn but only its two hips labelled: the upper half instead.
  hips_only = dict(example, visible=np.where(np.arange(17) < 13, 2.0, 0.0)[None])
  out = transform.random_map(hips_only, np.random.default_rng(lower_seed))
  np.testing.assert_allclose(out['joints'], _expected_crop(example['keypoints'][0], _UPPER_CROP),
                             atol=1e-4)


@pytest.mark.parametrize('seed', range(6))
def test_half_body_keeps_the_chosen_half_inside_under_scale_and_flip(seed):
  rng = np.random.default_rng(seed)
  keypoints = _random_keypoints(rng, (20, 20), (180, 200))
  example = _person(rng.integers(0, 256, (220, 200, 3), dtype=np.uint8), keypoints)
  transform = augment.TopDownTransform((48, 64), scale_factor=0.25, rotation_probability=0.0,
                                        flip_probability=0.5, half_body_probability=1.0)
  out = transform.random_map(example, np.random.default_rng(seed))
  draws = np.random.default_rng(seed).random(6)
  chosen = np.arange(17) < 11 if draws[5] < 0.5 else np.arange(17) >= 11
  if draws[3] < 0.5:  # mirrored: the outputs are in the flipped order
    chosen = chosen[COCO_FLIP]
  np.testing.assert_array_equal(out['visible'][chosen], 1)
  # The chosen joints' extent fills the crop's shorter side to 1 / 1.5 of it,
  # times the scale drawn (0.75..1.25).
  extent = np.ptp(out['joints'][chosen], axis=0)
  scale = 0.75 + 0.5 * draws[0]
  fill = np.max(extent / (48, 64))
  np.testing.assert_allclose(fill, 1 / (1.5 * scale), rtol=1e-4)


def test_half_body_needs_the_skeletons_upper_body():
  other = dataclasses.replace(skeletons.COCO, name='other')
  with pytest.raises(ValueError, match=r"upper-body joints of skeleton 'other'"):
    augment.TopDownTransform(skeleton=other, half_body_probability=0.3)
  augment.TopDownTransform(skeleton=other)  # off: nothing needed
