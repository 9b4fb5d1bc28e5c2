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
