"""jaxpose.visualize.draw_people: skeletons colored by track id."""

import numpy as np

from jaxpose import skeletons, visualize


def test_people_colored_by_track_id():
  image = np.zeros((100, 200, 3), np.uint8)
  keypoints = np.zeros((2, 17, 2))
  keypoints[0, :] = (50, 50)
  keypoints[1, :] = (150, 50)
  scores = np.ones((2, 17))
  scores[1, :] = 0.1  # below the threshold: not drawn
  drawn = visualize.draw_people(image, keypoints, scores, np.array([7, 3]), skeletons.COCO)
  # RGB image: the BGR color of id 7, reversed, at its keypoint.
  np.testing.assert_array_equal(drawn[50, 50], visualize.color_for(7)[::-1])
  np.testing.assert_array_equal(drawn[50, 150], (0, 0, 0))
  assert (image == 0).all()  # the input is left as it was
  bgr = visualize.draw_people(image, keypoints, scores, np.array([7, 3]), skeletons.COCO,
                              rgb=False)
  np.testing.assert_array_equal(bgr[50, 50], visualize.color_for(7))
