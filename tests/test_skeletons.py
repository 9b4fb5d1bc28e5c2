"""Keypoint layouts agree with the COCO annotation files and with each other."""

import json
import pathlib

import numpy as np
import pytest

from jaxpose import skeletons

DATA = pathlib.Path(__file__).parent / 'data'


def test_coco_matches_the_annotation_file():
  category = json.loads((DATA / 'coco' / 'test_coco.json').read_text())['categories'][0]
  assert skeletons.COCO.keypoint_names == tuple(category['keypoints'])
  assert skeletons.COCO.limbs == tuple((a - 1, b - 1) for a, b in category['skeleton'])
  assert skeletons.COCO.sigmas[5] == 0.079 and len(skeletons.COCO.sigmas) == 17


@pytest.mark.parametrize('skeleton', [skeletons.COCO, skeletons.MPII, skeletons.OPENPOSE])
def test_flip_pairs_swap_left_and_right_names(skeleton):
  perm = skeleton.flip_permutation()
  assert sorted(perm) == list(range(skeleton.num_keypoints))
  np.testing.assert_array_equal(perm[perm], np.arange(skeleton.num_keypoints))
  for i, j in enumerate(perm):
    name, mirrored = skeleton.keypoint_names[i], skeleton.keypoint_names[j]
    if i == j:
      assert 'left' not in name and 'right' not in name
    else:
      assert name.replace('left', 'X').replace('right', 'left').replace('X', 'right') == mirrored
  for a, b in skeleton.limbs:
    assert 0 <= a < skeleton.num_keypoints and 0 <= b < skeleton.num_keypoints


def test_openpose_layout_is_coco_plus_neck():
  assert skeletons.OPENPOSE.num_keypoints == 18 and len(skeletons.OPENPOSE.limbs) == 19
  for i, c in enumerate(skeletons.OPENPOSE_FROM_COCO):
    if c >= 0:
      assert skeletons.OPENPOSE.keypoint_names[i] == skeletons.COCO.keypoint_names[c]
      assert skeletons.OPENPOSE.sigmas[i] == skeletons.COCO.sigmas[c]
  assert skeletons.OPENPOSE.keypoint_names[skeletons.OPENPOSE_NECK] == 'neck'


def test_openpose_from_coco_and_back():
  rng = np.random.default_rng(0)
  coco = rng.uniform(0, 100, (3, 17, 2))
  visible = np.ones((3, 17))
  visible[1, skeletons.COCO_RIGHT_SHOULDER] = 0
  openpose, openpose_visible = skeletons.openpose_from_coco(coco, visible)
  assert openpose.shape == (3, 18, 2)
  np.testing.assert_allclose(openpose[:, 1], (coco[:, 5] + coco[:, 6]) / 2)
  np.testing.assert_array_equal(openpose_visible[:, 1], [1, 0, 1])
  np.testing.assert_array_equal(openpose[:, 2], coco[:, 6])  # right shoulder
  np.testing.assert_array_equal(skeletons.coco_from_openpose(openpose), coco)
  with pytest.raises(ValueError, match='17, 2'):
    skeletons.openpose_from_coco(coco[:, :16], visible[:, :16])


@pytest.mark.parametrize('left, right', [
    ('left_wrist', 'right_wrist'), ('Left Wrist', 'Right Wrist'), ('wrist_l', 'wrist_r'),
    ('LWrist', 'RWrist'), ('leftWrist', 'rightWrist'), ('L-Wrist', 'R-Wrist'),
    ('wrist.left', 'wrist.right'), ('LEFT WRIST', 'RIGHT WRIST')])
def test_flip_pairs_are_found_from_names_in_any_spelling(left, right):
  names = ['head', right, 'neck', left, 'Lantern']  # 'Lantern' starts with L but has no side
  assert skeletons.flip_pairs_from_names(names) == ((3, 1),)


def test_a_name_without_its_other_side_has_no_pair():
  assert skeletons.flip_pairs_from_names(['left_eye', 'nose', 'right_ear']) == ()


def test_sigmas_are_cocos_for_coco_keypoints_and_the_default_otherwise():
  sigmas, defaulted = skeletons.sigmas_for_names(['Left Wrist', 'NOSE', 'tail', 'r_knee'])
  assert sigmas == (0.062, 0.026, skeletons.DEFAULT_SIGMA, 0.087) and defaulted == ['tail']


def test_a_coco_format_category_gives_its_layout(caplog):
  hand = json.loads((DATA / 'onehand10k' / 'test_onehand10k.json').read_text())['categories'][0]
  layout = skeletons.from_coco_category(hand, 'hands.json')
  assert layout.name == 'hand' and layout.num_keypoints == 21 and layout.flip_pairs == ()
  assert layout.limbs == tuple((a - 1, b - 1) for a, b in hand['skeleton'])  # 0-based
  assert layout.sigmas == (skeletons.DEFAULT_SIGMA,) * 21
  assert 'hands.json: 21 keypoints are not COCO keypoints' in caplog.text
  person = json.loads((DATA / 'coco' / 'test_coco.json').read_text())['categories'][0]
  assert skeletons.from_coco_category(person, 'coco.json') is skeletons.COCO


@pytest.mark.parametrize('category, message', [
    ({'name': 'x', 'keypoints': [], 'skeleton': []},
     r"f.json: categories\[0\].keypoints: expected a list of keypoint names, got \[\]"),
    ({'keypoints': ['a', 'b', 'a'], 'skeleton': []},
     r"categories\[0\].keypoints: names must be unique, these repeat: \['a'\]"),
    ({'keypoints': ['a', 'b'], 'skeleton': [[1, 2], [2, 3]]},
     r'categories\[0\].skeleton\[1\] is \[2, 3\]: expected two 1-based keypoint indices in 1..2'),
    ({'keypoints': ['a', 'b'], 'skeleton': [[0, 1]]},
     r'categories\[0\].skeleton\[0\] is \[0, 1\]: expected two 1-based'),
    ('person', r'categories\[0\]: expected a category object'),
])
def test_a_broken_category_is_named_in_one_line(category, message):
  with pytest.raises(ValueError, match=message):
    skeletons.from_coco_category(category, 'f.json')


def test_overrides_replace_parts_of_a_layout_checked_against_its_keypoints():
  layout = skeletons.with_overrides(skeletons.MPII, sigmas=[0.05] * 16, limbs=[[0, 1], [1, 2]],
                                    flip_pairs=((0, 5),))
  assert layout.sigmas == (0.05,) * 16 and layout.limbs == ((0, 1), (1, 2))
  assert layout.flip_pairs == ((0, 5),) and layout.keypoint_names == skeletons.MPII.keypoint_names
  assert skeletons.with_overrides(skeletons.COCO) is skeletons.COCO
  with pytest.raises(ValueError, match=r'config.data.skeleton.sigmas: expected 16 positive '
                     r'numbers \(one per keypoint of mpii\), got 2'):
    skeletons.with_overrides(skeletons.MPII, sigmas=(0.1, 0.2))
  with pytest.raises(ValueError, match=r'config.data.skeleton.limbs: \[\(3, 16\)\] are not pairs '
                     r'of keypoint indices in 0..15'):
    skeletons.with_overrides(skeletons.MPII, limbs=((0, 1), (3, 16)))
  with pytest.raises(ValueError, match='flip_pairs: a keypoint is in more than one pair'):
    skeletons.with_overrides(skeletons.MPII, flip_pairs=((0, 5), (5, 1)))


def test_a_layout_travels_as_a_dict_and_comes_back_the_same():
  custom = skeletons.Skeleton('hand', ('a', 'b', 'c'), ((0, 2),), ((0, 1), (1, 2)), (0.1, 0.2, 0.3))
  for layout in (custom, skeletons.COCO, skeletons.MPII):
    fields = json.loads(json.dumps(skeletons.to_dict(layout)))
    assert skeletons.from_dict(fields) == layout
  assert skeletons.from_dict(skeletons.to_dict(skeletons.COCO)) is skeletons.COCO
