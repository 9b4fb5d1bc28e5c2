"""jaxpose.inference.drawing: skeletons colored by track id, part affinity fields as arrows."""

import numpy as np
import pytest

from jaxpose import skeletons
from jaxpose.inference import drawing


def test_people_colored_by_track_id():
  image = np.zeros((100, 200, 3), np.uint8)
  keypoints = np.zeros((2, 17, 2))
  keypoints[0, :] = (50, 50)
  keypoints[1, :] = (150, 50)
  scores = np.ones((2, 17))
  scores[1, :] = 0.1  # below the threshold: not drawn
  drawn = drawing.draw_people(image, keypoints, scores, np.array([7, 3]), skeletons.COCO)
  # RGB image: the BGR color of id 7, reversed, at its keypoint.
  np.testing.assert_array_equal(drawn[50, 50], drawing.color_for(7)[::-1])
  np.testing.assert_array_equal(drawn[50, 150], (0, 0, 0))
  assert (image == 0).all()  # the input is left as it was
  bgr = drawing.draw_people(image, keypoints, scores, np.array([7, 3]), skeletons.COCO,
                              rgb=False)
  np.testing.assert_array_equal(bgr[50, 50], drawing.color_for(7))


def test_pafs_are_drawn_where_the_field_is_and_along_it():
  image = np.zeros((80, 80, 3), np.uint8)
  pafs = np.zeros((10, 10, 4), np.float32)
  pafs[5, 2:8, 0] = 1.0  # limb 0 points right along row 5
  drawn = drawing.draw_pafs(image, pafs, color=(255, 255, 255))
  changed = np.argwhere(drawn.any(axis=-1))
  # Only row 5's cells (image rows 40-47, arrows horizontal) are touched,
  # from cell 2's centre (x = 20) to one cell past cell 7's (x = 68), give
  # or take the anti-aliased pixel at either end.
  assert changed[:, 0].min() >= 40 - 3 and changed[:, 0].max() <= 47 + 3
  assert abs(changed[:, 1].min() - 20) <= 1 and abs(changed[:, 1].max() - 68) <= 1
  assert not drawing.draw_pafs(image, np.zeros_like(pafs)).any()
  with pytest.raises(ValueError, match='2L'):
    drawing.draw_pafs(image, np.zeros((10, 10, 3)))
