"""PoseTrack's metrics as its official evaluation, poseval, computes them: MOTA and AP per joint.

poseval: github.com/leonid-pishchulin/poseval at 4258a1575b9f2ddd0bdb85f74557235ab5df0f52,
poseval/eval_helpers.py (`assignGTmulti`, `computeRPC`, `VOCap`, ignore regions),
evaluateAP.py, evaluateTracking.py, convert.py (PoseTrack18 -> its 15 joints).
Ground truth and predictions are `jaxpose.data.posetrack.PoseTrackVideo`s; a
prediction video pairs with the ground-truth video of its name, frame by
frame in order (poseval pairs them so; the counts must agree).

Its rules, kept here so that the numbers compare with published ones:
- Joints: poseval's 15 (`JOINT_NAMES`, its order): PoseTrack18's 17 without
  the ears.
- Frames: a ground-truth frame with no person is not scored, nor its
  predictions. Keypoints strictly inside a ground-truth frame's ignore
  regions are dropped from both sides; in a frame that has ignore regions a
  person left with no keypoint is dropped.
- Distance of a predicted to a ground-truth joint: the pixel distance over
  the ground-truth person's head size, 0.6 x the diagonal of its `bbox_head`;
  a joint is found within `MATCH_THRESHOLD` = 0.5 (PCKh@0.5).
- AP, per joint, over all scored frames: each prediction goes to the ground-
  truth person with which it shares the largest fraction of that person's
  joints found; of the predictions that chose a person, the one with the
  largest fraction keeps it. A predicted joint is a true positive when its
  person kept a ground-truth person and the joint is found on it. Joints are
  ranked by their keypoint score (`MISSING_SCORE` where there is none); AP
  is the area under the precision envelope (VOC, every point).
- MOTA, per joint: CLEAR MOT per video, with py-motmetrics' accumulator
  rules: the objects are the ground-truth people that have the joint, the
  hypotheses the predictions that have it, paired only when found; a pair
  matched in an earlier frame is kept while it is found, the rest are paired
  by the largest assignment of least total distance, and an object paired
  with another hypothesis than its last is a switch. MOTA = 1 - (misses +
  switches + false positives) / objects, summed over videos.
- poseval's quirks, kept: the last scored frame of each video is left out of
  MOTA; a scored frame without predicted people (or whose ground-truth
  people were all ignored) counts, for every joint, as one object missed and
  one false positive, however many people it has.
- MOTP = 1 - the mean distance of the matched pairs (0 without any). (poseval
  sums `events['D']`, which with py-motmetrics >= 1.2 also holds every pair's
  distance as a RAW event; with the py-motmetrics it was written against it
  held the matched pairs only, as here.)
- Totals: the mean over the joints that are not NaN. A joint without ground
  truth has MOTA and recall NaN, and AP NaN if it has predictions; a joint
  without predictions has AP 0.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np
import scipy.optimize

from jaxpose.data.posetrack import KEYPOINT_NAMES, PoseTrackFrame, PoseTrackVideo

JOINT_NAMES = (
    'right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle',
    'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder', 'left_elbow', 'left_wrist',
    'head_bottom', 'nose', 'head_top')
# Each of poseval's joints' index among PoseTrack18's 17 keypoints.
JOINT_KEYPOINTS = np.array([KEYPOINT_NAMES.index(name) for name in JOINT_NAMES])
NUM_JOINTS = len(JOINT_NAMES)
MATCH_THRESHOLD = 0.5
HEAD_SIZE_PER_DIAGONAL = 0.6
# poseval's score of a predicted keypoint given none.
MISSING_SCORE = -9999.0
# The columns of poseval's printed tables: body parts and their joints.
PARTS = {'head': ('head_top', 'head_bottom', 'nose'),
         'shoulder': ('right_shoulder', 'left_shoulder'),
         'elbow': ('right_elbow', 'left_elbow'), 'wrist': ('right_wrist', 'left_wrist'),
         'hip': ('right_hip', 'left_hip'), 'knee': ('right_knee', 'left_knee'),
         'ankle': ('right_ankle', 'left_ankle')}


def total(per_joint: np.ndarray) -> float:
  """poseval's total: the mean of the joints' values that are not NaN (NaN if none is)."""
  values = np.asarray(per_joint, np.float64)
  values = values[~np.isnan(values)]
  return float(values.mean()) if values.size else float('nan')


def by_part(per_joint: np.ndarray) -> dict[str, float]:
  """[15] values -> poseval's table: the mean of each part's joints (`PARTS`), then 'total'."""
  per_joint = np.asarray(per_joint, np.float64)
  table = {part: float(per_joint[[JOINT_NAMES.index(j) for j in joints]].mean())
           for part, joints in PARTS.items()}
  return table | {'total': total(per_joint)}


@dataclasses.dataclass(frozen=True)
class TrackingMetrics:
  """Per joint [15] in `JOINT_NAMES` order: percentages and the event counts they come from."""
  mota: np.ndarray
  motp: np.ndarray
  precision: np.ndarray
  recall: np.ndarray
  num_objects: np.ndarray
  num_misses: np.ndarray
  num_switches: np.ndarray
  num_false_positives: np.ndarray
  num_detections: np.ndarray

  def totals(self) -> dict[str, float]:
    """{'mota', 'motp', 'precision', 'recall'}: poseval's 'total' column of each."""
    return {name: total(getattr(self, name)) for name in ('mota', 'motp', 'precision', 'recall')}


@dataclasses.dataclass(frozen=True)
class PoseMetrics:
  """Per joint [15] in `JOINT_NAMES` order: AP, and precision and recall over all predictions (percent)."""
  ap: np.ndarray
  precision: np.ndarray
  recall: np.ndarray

  def totals(self) -> dict[str, float]:
    """{'ap', 'precision', 'recall'}: poseval's 'total' column of each."""
    return {name: total(getattr(self, name)) for name in ('ap', 'precision', 'recall')}


@dataclasses.dataclass(frozen=True)
class _People:
  """The people of one side of a scored frame, in poseval's 15 joints (N people)."""
  xy: np.ndarray  # float64 [N, 15, 2]
  present: np.ndarray  # bool [N, 15]
  track_ids: np.ndarray  # int64 [N]
  scores: np.ndarray  # float64 [N, 15]
  head_sizes: np.ndarray  # float64 [N], NaN without a head box

  def subset(self, keep: np.ndarray, present: np.ndarray) -> '_People':
    return _People(self.xy[keep], present[keep], self.track_ids[keep], self.scores[keep],
                   self.head_sizes[keep])


def _strictly_inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
  """Points [N, 2], polygon [V, 2] -> bool [N]: inside by the even-odd rule, not on an edge (shapely's `contains`)."""
  x, y = points[:, :1], points[:, 1:]
  x1, y1 = polygon[:, 0], polygon[:, 1]
  x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
  cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
  on_edge = ((cross == 0) & (np.minimum(x1, x2) <= x) & (x <= np.maximum(x1, x2)) &
             (np.minimum(y1, y2) <= y) & (y <= np.maximum(y1, y2)))
  straddles = (y1 > y) != (y2 > y)
  with np.errstate(divide='ignore', invalid='ignore'):
    edge_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
  crossings = np.sum(straddles & (x < edge_x), axis=1)
  return (crossings % 2 == 1) & ~on_edge.any(axis=1)


def _people(frame: PoseTrackFrame, ignore_regions: tuple[np.ndarray, ...]) -> _People:
  """A frame's people in poseval's joints, less what lies in `ignore_regions`."""
  keypoints = frame.keypoints[:, JOINT_KEYPOINTS]
  scores = frame.keypoint_scores[:, JOINT_KEYPOINTS]
  head_boxes = frame.head_boxes
  people = _People(keypoints[..., :2], np.any(keypoints != 0, axis=-1), frame.track_ids,
                   np.where(np.isnan(scores), MISSING_SCORE, scores),
                   HEAD_SIZE_PER_DIAGONAL * np.hypot(head_boxes[:, 2], head_boxes[:, 3]))
  if not ignore_regions:
    return people
  points = people.xy.reshape(-1, 2)
  ignored = np.any([_strictly_inside(points, np.asarray(polygon, np.float64))
                    for polygon in ignore_regions], axis=0).reshape(people.present.shape)
  present = people.present & ~ignored
  return people.subset(present.any(axis=1), present)


def _scored_frames(ground_truth: Sequence[PoseTrackVideo], predictions: Sequence[PoseTrackVideo]
                   ) -> list[list[tuple[_People, _People, str]]]:
  """Per ground-truth video, its scored frames: (ground truth, predictions, where)."""
  predicted = {video.name: video for video in predictions}
  videos = []
  for video in ground_truth:
    if video.name not in predicted:
      raise ValueError(f'predictions have no video {video.name!r} (they have '
                       f'{sorted(predicted)[:10]}); every ground-truth video needs one')
    frames = predicted[video.name].frames
    if len(frames) != len(video.frames):
      raise ValueError(f'video {video.name!r}: {len(frames)} predicted frames for '
                       f'{len(video.frames)} ground-truth frames; they pair up in order')
    videos.append([(_people(truth, truth.ignore_regions), _people(guess, truth.ignore_regions),
                    f'video {video.name!r}, frame {truth.file_name}')
                   for truth, guess in zip(video.frames, frames) if len(truth.track_ids)])
  return videos


def _distances(truth: _People, guess: _People, where: str) -> np.ndarray:
  """[P, G, 15]: each predicted joint's distance to each ground-truth one in head sizes; inf if either is absent."""
  missing = np.isnan(truth.head_sizes) & truth.present.any(axis=1)
  if missing.any():
    raise ValueError(f'{where}: ground-truth tracks {truth.track_ids[missing].tolist()} have '
                     'no `bbox_head`; the distances are in head sizes')
  distance = np.linalg.norm(guess.xy[:, None] - truth.xy[None], axis=-1)
  distance = distance / truth.head_sizes[None, :, None]
  return np.where(guess.present[:, None] & truth.present[None], distance, np.inf)


def _true_positives(truth: _People, found: np.ndarray) -> np.ndarray:
  """Ground truth, found [P, G, 15] -> bool [P, 15]: each predicted joint found on the person its pose kept."""
  num_labelled = truth.present.sum(axis=1)
  fraction = found.sum(axis=2) / np.maximum(num_labelled, 1)
  rows = np.arange(found.shape[0])
  best = fraction.argmax(axis=1)
  chosen = np.zeros_like(fraction)
  chosen[rows, best] = fraction[rows, best]
  keeper = chosen.argmax(axis=0)
  labels = np.zeros(found.shape[::2], bool)
  for person, guess in enumerate(keeper):
    if chosen[guess, person] > 0:
      labels[guess] = found[guess, person]
  return labels


def _voc_ap(scores: np.ndarray, labels: np.ndarray, num_truths: float) -> tuple[float, ...]:
  """One joint's scores [N], labels [N] -> (AP, final precision, final recall), poseval's `VOCap`."""
  if not scores.size:
    return 0.0, 0.0, 0.0
  order = np.argsort(scores)[::-1]  # poseval's order, ties included
  found = np.cumsum(labels[order])
  with np.errstate(divide='ignore', invalid='ignore'):
    recall = found / num_truths
  precision = found / np.arange(1, scores.size + 1)
  envelope = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
  steps = np.concatenate([[0.0], recall, [1.0]])
  rises = np.flatnonzero(steps[1:] != steps[:-1]) + 1
  ap = np.sum((steps[rises] - steps[rises - 1]) * envelope[rises])
  return 100 * ap, 100 * precision[-1], 100 * recall[-1]


def average_precision(ground_truth: Sequence[PoseTrackVideo],
                      predictions: Sequence[PoseTrackVideo]) -> PoseMetrics:
  """PoseTrack's per-frame pose AP per joint (poseval's evaluateAP); see the module docstring."""
  scores = [[] for _ in range(NUM_JOINTS)]
  labels = [[] for _ in range(NUM_JOINTS)]
  num_truths = np.zeros(NUM_JOINTS)
  for frames in _scored_frames(ground_truth, predictions):
    for truth, guess, where in frames:
      num_truths += truth.present.sum(axis=0)
      if not len(guess.track_ids):
        continue
      positive = np.zeros(guess.present.shape, bool)
      if len(truth.track_ids):
        positive = _true_positives(truth, _distances(truth, guess, where) <= MATCH_THRESHOLD)
      for joint in range(NUM_JOINTS):
        has = guess.present[:, joint]
        scores[joint].append(guess.scores[has, joint])
        labels[joint].append(positive[has, joint])
  results = np.array([_voc_ap(np.concatenate(s), np.concatenate(l), n)
                      for s, l, n in zip(scores, labels, num_truths)])
  return PoseMetrics(*results.T)


class _JointAccumulator:
  """py-motmetrics' `MOTAccumulator.update` for one joint of one video, counting what poseval reads."""

  def __init__(self):
    self.last_hypothesis = {}  # object id -> the hypothesis it was last paired with
    self.counts = np.zeros(5, np.int64)  # objects, misses, switches, false positives, detections
    self.distance_sum = 0.0

  def update(self, objects: np.ndarray, hypotheses: np.ndarray, distances: np.ndarray) -> None:
    """Ids [O], [H], distances [O, H] (NaN: may not pair) of one frame."""
    distances = distances.copy()
    paired_objects = np.zeros(len(objects), bool)
    paired_hypotheses = np.zeros(len(hypotheses), bool)
    switches = 0
    if len(objects) and len(hypotheses):
      for row, track in enumerate(objects):  # an object keeps its latest pair while it is found
        if track not in self.last_hypothesis:
          continue
        previous = np.flatnonzero(~paired_hypotheses & (hypotheses == self.last_hypothesis[track]))
        if previous.size and np.isfinite(distances[row, previous[0]]):
          paired_objects[row] = paired_hypotheses[previous[0]] = True
          self.distance_sum += distances[row, previous[0]]
      distances[paired_objects] = np.nan
      distances[:, paired_hypotheses] = np.nan
      for row, column in zip(*_largest_cheapest_assignment(distances)):
        track, hypothesis = objects[row], hypotheses[column]
        switches += track in self.last_hypothesis and self.last_hypothesis[track] != hypothesis
        self.last_hypothesis[track] = hypothesis
        paired_objects[row] = paired_hypotheses[column] = True
        self.distance_sum += distances[row, column]
    self.counts += [len(objects), np.sum(~paired_objects), switches,
                    np.sum(~paired_hypotheses), np.sum(paired_objects)]

  def update_without_pairs(self) -> None:
    """poseval's stand-in for a frame without predictions: one object missed, one false positive."""
    self.counts += [1, 1, 0, 1, 0]


def _largest_cheapest_assignment(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Distances [O, H] (NaN: no edge) -> (rows, columns): py-motmetrics' scipy solve.

  Non-edges cost more than any assignment with one more edge could save, so
  the most pairs are made first, then the cheapest (`motmetrics.lap`).
  """
  valid = np.isfinite(distances)
  if not valid.any():
    return np.zeros(0, int), np.zeros(0, int)
  bound = np.abs(distances[valid]).max() + 1
  costs = np.where(valid, distances, 2 * min(distances.shape) * bound + 1)
  rows, columns = scipy.optimize.linear_sum_assignment(costs)
  kept = valid[rows, columns]
  return rows[kept], columns[kept]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
  """numerator / denominator, NaN where the denominator is 0 (poseval's `np.nan` count)."""
  with np.errstate(divide='ignore', invalid='ignore'):
    return numerator / np.where(denominator > 0, denominator, np.nan)


def mota(ground_truth: Sequence[PoseTrackVideo], predictions: Sequence[PoseTrackVideo]
         ) -> TrackingMetrics:
  """PoseTrack's MOTA, MOTP, precision and recall per joint (poseval's evaluateTracking); see the module docstring."""
  counts = np.zeros((NUM_JOINTS, 5), np.int64)
  distance_sums = np.zeros(NUM_JOINTS)
  for frames in _scored_frames(ground_truth, predictions):
    accumulators = [_JointAccumulator() for _ in range(NUM_JOINTS)]
    for truth, guess, where in frames[:-1]:  # poseval leaves each video's last frame out
      if not (len(truth.track_ids) and len(guess.track_ids)):
        for accumulator in accumulators:
          accumulator.update_without_pairs()
        continue
      distances = _distances(truth, guess, where)
      for joint, accumulator in enumerate(accumulators):
        has_truth, has_guess = truth.present[:, joint], guess.present[:, joint]
        pair = distances[has_guess][:, has_truth, joint].T
        accumulator.update(truth.track_ids[has_truth], guess.track_ids[has_guess],
                           np.where(pair <= MATCH_THRESHOLD, pair, np.nan))
    counts += [accumulator.counts for accumulator in accumulators]
    distance_sums += [accumulator.distance_sum for accumulator in accumulators]
  objects, misses, switches, false_positives, detections = counts.T
  return TrackingMetrics(
      mota=100 * (1 - _ratio(misses + switches + false_positives, objects)),
      motp=np.where(detections > 0, 100 * (1 - _ratio(distance_sums, detections)), 0.0),
      precision=100 * _ratio(detections, detections + false_positives),
      recall=100 * _ratio(detections, objects), num_objects=objects, num_misses=misses,
      num_switches=switches, num_false_positives=false_positives, num_detections=detections)
