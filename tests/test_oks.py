"""jaxpose.metrics.oks: OKS-NMS as mmpose's `oks_nms` (OKS itself is tested with the tracker that uses it)."""

import numpy as np

from jaxpose import skeletons
from jaxpose.metrics import oks


def test_oks_nms_drops_the_lower_scored_duplicate():
  people = np.random.default_rng(0).uniform(0, 100, (3, 17, 2))
  people[1] = people[0] + 1.0  # nearly the same person
  people[2] = people[0] + 40.0  # someone else, overlapping
  areas = np.array([100.0 * 100.0, 60.0 * 60.0, 100.0 * 100.0])
  kept = oks.oks_nms(people, np.array([0.5, 0.9, 0.7]), areas)
  np.testing.assert_array_equal(kept, [1, 2])
  # By hand (mmpose's oks_iou): OKS of 0 and 1 over their mean area, and of 1 and 2.
  variances = (2 * np.array(skeletons.COCO.sigmas)) ** 2
  def by_hand(a, b):
    squared = ((people[a] - people[b]) ** 2).sum(-1)
    return np.exp(-squared / variances / ((areas[a] + areas[b]) / 2 + np.spacing(1)) / 2).mean()
  assert by_hand(1, 0) > oks.OKS_NMS_THRESHOLD >= by_hand(1, 2)
  # A threshold between the two OKS keeps person 0 as well.
  middle = (by_hand(1, 0) + 1) / 2
  np.testing.assert_array_equal(oks.oks_nms(people, np.array([0.5, 0.9, 0.7]), areas,
                                            threshold=middle), [1, 2, 0])
