"""Tracking people across frames: one track life cycle, matched by pose (OKS, box IoU) or by STAF's temporal affinity fields.

  tracker = tracking.Tracker(sigmas, frame_rate=30)
  track_ids = tracker.update(keypoints, scores, boxes)   # per frame

`Tracker` (`tracker.py`) owns the life cycle every tracker shares: tracks
start, match, miss, expire and are optionally smoothed (`smoothing.py`,
One-Euro); `TafTracker` (`taf_tracker.py`) matches by the fields first and
falls back to the pose similarity of `Tracker`.
"""

from jaxpose.tracking.smoothing import OneEuroFilter, OneEuroSettings
from jaxpose.tracking.taf_tracker import TafTracker, taf_similarity
from jaxpose.tracking.tracker import Tracker, box_iou, match, similarity_matrix

__all__ = ['OneEuroFilter', 'OneEuroSettings', 'TafTracker', 'Tracker', 'box_iou', 'match',
           'similarity_matrix', 'taf_similarity']
