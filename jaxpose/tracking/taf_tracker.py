"""Persistent person ids from temporal affinity fields (STAF), OKS / box IoU where the fields are silent.

A bottom-up STAF model outputs, with each frame's keypoint maps and PAFs, the
frame's TAFs (`jaxpose.codecs.taf`): fields linking a person's keypoints in
the previous frame to their keypoints in this one. `TafTracker` is
`jaxpose.tracking.tracker.Tracker` (same calls, same track life cycle:
birth, `min_hits`, `patience`, never reused ids, smoothing) whose matching
first asks the fields:

1. TAF matching: between the people of frame t and the tracks matched in the
   previous call (the frame the fields start from), `taf_similarity`: the
   mean over the links whose two keypoints are present (the track's at t-1,
   the person's at t) of the link's `taf.score`, negative scores (no link)
   counting 0. People and tracks are paired by the Hungarian method
   (maximum total), pairs under `min_taf_similarity` left out.
2. Fallback: the people and tracks the fields did not pair (no field, a track
   missed in the previous frame, a person whose fields are silent) are
   matched as `Tracker` matches everyone, by OKS / box IoU.

Upstream's tracker (soulslicer/STAF, branch staf, commit
6c674c9e7c4bce03944f893344035e732904c39c,
src/openpose/pose/poseTracker.cpp) decides otherwise: for each link, each of
a person's keypoints votes for the track with the best positive link score;
the person joins the track with most votes if it has at least 5, else starts
a new one (if it has more than 5 keypoints); two people electing the same
track are settled by their vote counts, the loser starting a new track; a
track not updated in a frame is deleted at once, and there is no fallback.
Here the assignment is one-to-one and optimal over all people at once (the
issue asks for the Hungarian method), a track's evidence is the mean score
of its links rather than a count of won keypoints (a person with few
keypoints can still be linked), and tracks survive misses and fall back to
pose similarity, as `Tracker`'s do; the link scores are upstream's.
"""

from typing import Sequence

import numpy as np

from jaxpose.codecs import taf
from jaxpose.tracking import tracker
from jaxpose.metrics import oks as oks_lib

# Mean link score under which the fields do not pair a person with a track;
# as tracking's pose threshold, not tuned on a benchmark.
DEFAULT_MIN_TAF_SIMILARITY = 0.3


def taf_similarity(link_scores: np.ndarray, scores_prev: np.ndarray, scores: np.ndarray,
                   keypoint_threshold: float = taf.KEYPOINT_THRESHOLD) -> np.ndarray:
  """Link scores [Q, P, 33] of people at t-1 [Q, 17] and t [P, 17] (keypoint scores) -> [Q, P].

  The mean of max(score, 0) over the links whose keypoints are present in
  both (scored at least `keypoint_threshold`); 0 for a pair with none. At
  most 1 where the link scores are (`taf.score`).
  """
  present = ((np.asarray(scores_prev)[:, None, taf.LINK_PREV] >= keypoint_threshold) &
             (np.asarray(scores)[None, :, taf.LINK_NOW] >= keypoint_threshold))
  support = np.where(present, np.maximum(link_scores, 0), 0).sum(axis=-1)
  return support / np.maximum(present.sum(axis=-1), 1)


class TafTracker(tracker.Tracker):
  """`tracker.Tracker` that matches people to tracks by their TAFs first (module docstring).

  Call `update` once per frame, in order, with that frame's people and TAFs;
  it returns one id per person (-1 while a track is tentative).
  """

  def __init__(self, sigmas: Sequence[float], *, stride: int = 8, upsample: int = 1,
               min_taf_similarity: float = DEFAULT_MIN_TAF_SIMILARITY, **tracker_options):
    """Configures the tracker.

    Args:
      sigmas: COCO's 17 OKS sigmas (`jaxpose.skeletons.COCO.sigmas`), for the
        fallback.
      stride: input pixels per TAF map cell.
      upsample: bicubic upsampling of the TAFs before scoring (`taf.score`).
      min_taf_similarity: pairs with a lower `taf_similarity` are left to the
        fallback.
      **tracker_options: `tracker.Tracker`'s options (min_similarity,
        patience, min_hits, predict_motion, smoothing, ...); its
        score_threshold also marks keypoints absent for the TAF scores.
    """
    super().__init__(sigmas, **tracker_options)
    if len(self.sigmas) != taf.NUM_KEYPOINTS:
      raise ValueError(f'TafTracker: expected {taf.NUM_KEYPOINTS} sigmas (COCO keypoints), '
                       f'got {len(self.sigmas)}')
    self.stride = stride
    self.upsample = upsample
    self.min_taf_similarity = min_taf_similarity

  def update(self, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray | None = None,
             timestamp: float | None = None, tafs: np.ndarray | None = None) -> np.ndarray:
    """One frame's keypoints [P, 17, 2], scores [P, 17], boxes [P, 4] or None, TAFs [H, W, 66] -> ids [P].

    `tafs` are the frame's fields (from the previous frame to this one);
    without them (None, e.g. on a clip's first frame) matching is
    `Tracker`'s. Boxes and `timestamp` are as in `Tracker.update`.
    """
    keypoints, scores = oks_lib.checked_people(keypoints, scores, 'TafTracker.update')
    if keypoints.shape[1] != taf.NUM_KEYPOINTS:
      raise ValueError(f'TafTracker.update: expected {taf.NUM_KEYPOINTS} keypoints per person, '
                       f'got {keypoints.shape[1]}')
    if boxes is None:
      boxes = tracker.boxes_from_keypoints(keypoints, scores, self.score_threshold)
    boxes = tracker._boxes(boxes, len(keypoints), 'TafTracker.update: boxes')  # pylint: disable=protected-access
    time = self._frame / self.frame_rate if timestamp is None else float(timestamp)
    if self._time is not None and time <= self._time:
      raise ValueError(f'TafTracker.update: timestamps must increase, got {time} after {self._time}')
    self._frame += 1
    self._time = time
    person_track = self._match_by_fields(keypoints, scores, tafs)
    person_track.update(self._match_by_pose(keypoints, scores, boxes, time, person_track))
    return self._settle(person_track, keypoints, scores, boxes, time)

  def _match_by_fields(self, keypoints: np.ndarray, scores: np.ndarray,
                       tafs: np.ndarray | None) -> dict[int, int]:
    """Person -> track index pairs chosen by the TAFs, among the tracks seen in the previous frame."""
    # A track was matched (or born) in the previous call iff it has no miss.
    recent = [i for i, track in enumerate(self._tracks) if track.misses == 0]
    if tafs is None or not recent or not len(keypoints):
      return {}
    previous = np.array([np.concatenate([self._tracks[i].keypoints, self._tracks[i].scores[:, None]],
                                        axis=-1) for i in recent])  # [T, 17, 3]
    people = np.concatenate([keypoints, scores[..., None]], axis=-1)
    link_scores = taf.score(tafs, previous, people, stride=self.stride, upsample=self.upsample,
                            keypoint_threshold=self.score_threshold)
    similarity = taf_similarity(link_scores, previous[..., 2], scores, self.score_threshold)
    people_index, tracks_index = tracker.match(similarity.T, self.min_taf_similarity)
    return {int(p): recent[t] for p, t in zip(people_index, tracks_index)}

  def _match_by_pose(self, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray,
                     time: float, taken: dict[int, int]) -> dict[int, int]:
    """Person -> track index pairs by `Tracker`'s OKS / IoU, among those not in `taken`."""
    people = np.array([p for p in range(len(keypoints)) if p not in taken], np.int64)
    tracks = np.array([t for t in range(len(self._tracks)) if t not in taken.values()], np.int64)
    reference_keypoints, reference_boxes = self._references(time)
    track_scores = np.array([t.scores for t in self._tracks]).reshape(-1, taf.NUM_KEYPOINTS)
    similarity = tracker.similarity_matrix(
        keypoints[people], scores[people], boxes[people], reference_keypoints[tracks],
        track_scores[tracks], reference_boxes[tracks], self.sigmas,
        score_threshold=self.score_threshold, min_shared_keypoints=self.min_shared_keypoints)
    rows, columns = tracker.match(similarity, self.min_similarity)
    return {int(people[r]): int(tracks[c]) for r, c in zip(rows, columns)}

  def _settle(self, person_track: dict[int, int], keypoints: np.ndarray, scores: np.ndarray,
              boxes: np.ndarray, time: float) -> np.ndarray:
    """Applies the matches (observe, miss, birth, death) and returns each person's id."""
    for person, index in person_track.items():
      self._observe(self._tracks[index], keypoints[person], scores[person], boxes[person], time)
    unmatched = set(range(len(self._tracks))) - set(person_track.values())
    for index in unmatched:
      self._miss(self._tracks[index])
    tracks = [track for track in self._tracks if self._alive(track)]
    people_tracks = []
    for person in range(len(keypoints)):
      if person in person_track:
        people_tracks.append(self._tracks[person_track[person]])
      else:
        people_tracks.append(self._start(keypoints[person], scores[person], boxes[person], time))
        tracks.append(people_tracks[-1])
    self._tracks = tracks
    self.smoothed_keypoints = self._smooth(people_tracks, keypoints, scores, time)
    return np.array([track.track_id for track in people_tracks], np.int64)
