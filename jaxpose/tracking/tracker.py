"""Persistent person ids across video frames: OKS / box-IoU matching and the track life cycle.

Pose estimators see one frame at a time; `Tracker` links the people of
consecutive frames so that each person keeps one id while in view. It works on
the output of either approach (bottom-up people, or top-down boxes + keypoints)
and on host-side numpy arrays; nothing here is jitted.

Similarity between a person of the current frame (a) and a track (b, its last
known pose, moved forward when motion prediction is on):

- OKS, the COCO keypoint similarity mean_j exp(-d_j^2 / (2 area (2 sigma_j)^2))
  over the keypoints scored above `score_threshold` in both, where a pair
  shares at least `min_shared_keypoints` of them. The area (the scale) is the
  larger of the two boxes' (w * h): a person only partly in view (walking in
  at the image's edge, coming out from behind someone) has a small box for
  its size, and OKS at that scale would call its own next step a stranger.
- For pairs sharing fewer keypoints, the better of OKS and box IoU: OKS over
  a few keypoints, often swinging limbs, can miss where the box still
  overlaps, and the reverse when a partial box jumps as new keypoints appear.
  Pairs sharing enough keypoints are judged on the pose alone, which tells
  apart two people whose boxes overlap (one crossing in front of another).

People are assigned to tracks by the Hungarian method on these similarities
(maximum total similarity); an assigned pair below `min_similarity` is left
unmatched. Setting those pairs to zero before the assignment keeps it optimal
over the admissible pairs.

Life cycle of a track:

- birth: an unmatched person starts a track. With `min_hits` = 1 (the default)
  it gets its id at once. With `min_hits` = n > 1 the track is tentative
  (its person is reported as -1) until it has been matched in n consecutive
  frames, and it is dropped at its first miss, so a one-frame false positive
  never takes an id;
- a confirmed track survives `patience` consecutive frames without a match
  (occlusion, a missed detection) and is removed at the next one;
- ids count up from 0 and are never reused.

Tracks are matched against their last matched pose. With `predict_motion` the
pose and box are first moved by the track's velocity times the time since it
was last seen. The velocity is that of the body (the mean displacement of the
keypoints present in its last two observations, else the box centre's),
not per keypoint: limbs swing back and forth within each stride, so a
keypoint's own velocity overshoots where the body's translation does not.

Smoothing, off by default, runs a One-Euro filter (`jaxpose.tracking.smoothing`)
on each track's keypoint coordinates; matching always uses the raw
keypoints, since a smoothed pose lags behind the person it is matched to.
Times are in seconds (the filter's cutoffs are in Hz): the caller's
timestamps, else the frame index divided by `frame_rate`.

The defaults below keep every id on the tests' simulated walk of real
PoseTrack18 people (crossings, people entering and leaving the image,
occlusion, with and without detector boxes); they are not tuned on a
tracking benchmark.
"""

import dataclasses
from typing import Sequence

import numpy as np
from scipy import optimize

from jaxpose.metrics import oks as oks_lib
from jaxpose.metrics.oks import boxes_from_keypoints, oks, shared_keypoints
# Tracker smooths with these; they live in their own module.
from jaxpose.tracking.smoothing import DEFAULT_FRAME_RATE, OneEuroFilter, OneEuroSettings

DEFAULT_SCORE_THRESHOLD = oks_lib.DEFAULT_SCORE_THRESHOLD
# Pairs sharing at least this many keypoints are compared on the pose alone.
DEFAULT_MIN_SHARED_KEYPOINTS = 4
# SORT's IoU gate; on OKS, a pose shifted by about a fifth of its size scores 0.3.
DEFAULT_MIN_SIMILARITY = 0.3
DEFAULT_PATIENCE = 10


def _boxes(boxes: np.ndarray, count: int, name: str = 'boxes') -> np.ndarray:
  """Checks and converts boxes [count, 4] (x, y, w, h) to float64."""
  boxes = np.asarray(boxes, np.float64)
  if boxes.shape != (count, 4):
    raise ValueError(f'{name}: expected [{count}, 4] boxes (x, y, w, h), got {boxes.shape}')
  return boxes


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
  """Boxes [A, 4], [B, 4] (x, y, w, h) -> IoU [A, B]; 0 where the union is empty.

  Coordinates are continuous (no +1 on widths), as pycocotools' box IoU.
  """
  boxes_a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
  boxes_b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
  low_a, size_a = boxes_a[:, None, :2], boxes_a[:, None, 2:]
  low_b, size_b = boxes_b[None, :, :2], boxes_b[None, :, 2:]
  overlap = np.clip(np.minimum(low_a + size_a, low_b + size_b) - np.maximum(low_a, low_b),
                    0, None).prod(axis=-1)
  union = size_a.prod(axis=-1) + size_b.prod(axis=-1) - overlap
  return np.where(union > 0, overlap / np.where(union > 0, union, 1.), 0.)


def similarity_matrix(keypoints_a: np.ndarray, scores_a: np.ndarray, boxes_a: np.ndarray,
                      keypoints_b: np.ndarray, scores_b: np.ndarray, boxes_b: np.ndarray,
                      sigmas: Sequence[float], *,
                      score_threshold: float = DEFAULT_SCORE_THRESHOLD,
                      min_shared_keypoints: int = DEFAULT_MIN_SHARED_KEYPOINTS) -> np.ndarray:
  """People a ([A, J, 2], [A, J], boxes [A, 4]) vs tracks b (same, B) -> similarity [A, B].

  OKS, at the scale of the larger of the pair's boxes (x, y, w, h), where a
  pair shares at least `min_shared_keypoints` keypoints scored above
  `score_threshold`; else the larger of that OKS and the boxes' IoU.
  """
  keypoints_a, scores_a = oks_lib.checked_people(keypoints_a, scores_a,
                                                  'similarity_matrix: people a')
  keypoints_b, scores_b = oks_lib.checked_people(keypoints_b, scores_b,
                                                  'similarity_matrix: people b')
  boxes_a = _boxes(boxes_a, len(keypoints_a), 'similarity_matrix: boxes a')
  boxes_b = _boxes(boxes_b, len(keypoints_b), 'similarity_matrix: boxes b')
  areas = np.maximum((boxes_a[:, 2] * boxes_a[:, 3])[:, None],
                     (boxes_b[:, 2] * boxes_b[:, 3])[None, :])
  pose = oks(keypoints_a, scores_a, keypoints_b, scores_b, areas, sigmas, score_threshold)
  enough = shared_keypoints(scores_a, scores_b, score_threshold).sum(-1) >= min_shared_keypoints
  return np.where(enough, pose, np.maximum(pose, box_iou(boxes_a, boxes_b)))


def match(similarity: np.ndarray, min_similarity: float = DEFAULT_MIN_SIMILARITY
          ) -> tuple[np.ndarray, np.ndarray]:
  """Similarity [A, B] -> pairs (rows [M], columns [M]) of maximum total, each >= min_similarity."""
  similarity = np.asarray(similarity, np.float64)
  if similarity.ndim != 2:
    raise ValueError(f'match: expected a [A, B] similarity matrix, got shape {similarity.shape}')
  admissible = similarity >= min_similarity
  rows, columns = optimize.linear_sum_assignment(np.where(admissible, similarity, 0.),
                                                 maximize=True)
  keep = admissible[rows, columns]
  return rows[keep], columns[keep]


@dataclasses.dataclass
class _Track:
  """One person followed over frames: the last matched observation and its bookkeeping."""
  track_id: int  # -1 while tentative
  keypoints: np.ndarray  # [J, 2]
  scores: np.ndarray  # [J]
  box: np.ndarray  # [4] x, y, w, h
  time: float  # of the last match (s)
  velocity: np.ndarray  # [2] body velocity, pixels per second
  hits: int  # consecutive frames matched
  misses: int  # consecutive frames not matched
  smoother: OneEuroFilter | None


class Tracker:
  """Gives each person a persistent id across the frames of one video.

  Call `update` once per frame, in order, with that frame's people; it returns
  one id per person (-1 for a person whose track is still tentative, see
  `min_hits`). `smoothed_keypoints` holds the last frame's keypoints after
  One-Euro smoothing (the raw ones when smoothing is off).
  """

  def __init__(self, sigmas: Sequence[float], *,
               score_threshold: float = DEFAULT_SCORE_THRESHOLD,
               min_shared_keypoints: int = DEFAULT_MIN_SHARED_KEYPOINTS,
               min_similarity: float = DEFAULT_MIN_SIMILARITY,
               patience: int = DEFAULT_PATIENCE, min_hits: int = 1,
               predict_motion: bool = False, smoothing: OneEuroSettings | None = None,
               frame_rate: float = DEFAULT_FRAME_RATE):
    """Configures the tracker.

    Args:
      sigmas: the skeleton's per-keypoint OKS sigmas (e.g.
        `jaxpose.skeletons.COCO.sigmas`); fixes the number of keypoints J.
      score_threshold: keypoints scored at or below this are absent.
      min_shared_keypoints: pairs sharing at least this many present keypoints
        are compared by OKS alone, others by the better of OKS and box IoU.
      min_similarity: pairs less similar than this are never matched.
      patience: frames a track survives without a match.
      min_hits: consecutive matched frames before a new track gets its id.
      predict_motion: match against the pose moved at the track's velocity.
      smoothing: One-Euro parameters to smooth `smoothed_keypoints`, or None.
      frame_rate: frames per second, for updates without a timestamp.
    """
    if patience < 0 or min_hits < 1 or min_shared_keypoints < 1 or frame_rate <= 0:
      raise ValueError(f'Tracker: expected patience >= 0, min_hits >= 1, '
                       f'min_shared_keypoints >= 1, frame_rate > 0, got {patience}, '
                       f'{min_hits}, {min_shared_keypoints}, {frame_rate}')
    self.sigmas = tuple(float(s) for s in sigmas)
    self.score_threshold = score_threshold
    self.min_shared_keypoints = min_shared_keypoints
    self.min_similarity = min_similarity
    self.patience = patience
    self.min_hits = min_hits
    self.predict_motion = predict_motion
    self.smoothing = smoothing
    self.frame_rate = frame_rate
    self.smoothed_keypoints = np.zeros((0, len(self.sigmas), 2))
    self._tracks: list[_Track] = []
    self._next_id = 0
    self._frame = 0
    self._time = None

  @property
  def num_tracks(self) -> int:
    """Tracks alive now, tentative ones included."""
    return len(self._tracks)

  def update(self, keypoints: np.ndarray, scores: np.ndarray, boxes: np.ndarray | None = None,
             timestamp: float | None = None) -> np.ndarray:
    """One frame's keypoints [P, J, 2], scores [P, J], boxes [P, 4] or None -> track ids [P] int.

    Boxes, when absent, are those around each person's present keypoints.
    `timestamp` (seconds, increasing) defaults to frame index / frame rate.
    """
    keypoints, scores = oks_lib.checked_people(keypoints, scores, 'Tracker.update')
    if keypoints.shape[1] != len(self.sigmas):
      raise ValueError(f'Tracker.update: expected {len(self.sigmas)} keypoints per person '
                       f'(one per sigma), got {keypoints.shape[1]}')
    if boxes is None:
      boxes = boxes_from_keypoints(keypoints, scores, self.score_threshold)
    boxes = _boxes(boxes, len(keypoints), 'Tracker.update: boxes')
    time = self._frame / self.frame_rate if timestamp is None else float(timestamp)
    if self._time is not None and time <= self._time:
      raise ValueError(f'Tracker.update: timestamps must increase, got {time} after {self._time}')
    self._frame += 1
    self._time = time

    reference_keypoints, reference_boxes = self._references(time)
    similarity = similarity_matrix(
        keypoints, scores, boxes, reference_keypoints,
        np.array([t.scores for t in self._tracks]).reshape(-1, len(self.sigmas)),
        reference_boxes, self.sigmas, score_threshold=self.score_threshold,
        min_shared_keypoints=self.min_shared_keypoints)
    people, tracks = match(similarity, self.min_similarity)
    person_track = dict(zip(people.tolist(), tracks.tolist()))
    for person, track in person_track.items():
      self._observe(self._tracks[track], keypoints[person], scores[person], boxes[person], time)
    for i in set(range(len(self._tracks))) - set(person_track.values()):
      self._miss(self._tracks[i])
    survivors = [t for t in self._tracks if self._alive(t)]
    matched = [self._tracks[person_track[p]] if p in person_track else None
               for p in range(len(keypoints))]
    for p, track in enumerate(matched):
      if track is None:
        matched[p] = self._start(keypoints[p], scores[p], boxes[p], time)
        survivors.append(matched[p])
    self._tracks = survivors
    self.smoothed_keypoints = self._smooth(matched, keypoints, scores, time)
    return np.array([t.track_id for t in matched], np.int64)

  def _references(self, time: float) -> tuple[np.ndarray, np.ndarray]:
    """The tracks' poses [T, J, 2] and boxes [T, 4] to match against at `time`."""
    count = len(self._tracks)
    keypoints = np.array([t.keypoints for t in self._tracks]).reshape(count, len(self.sigmas), 2)
    boxes = np.array([t.box for t in self._tracks]).reshape(count, 4)
    if self.predict_motion and count:
      shift = np.array([t.velocity * (time - t.time) for t in self._tracks])  # [T, 2]
      keypoints = keypoints + shift[:, None, :]
      boxes = boxes + np.concatenate([shift, np.zeros_like(shift)], axis=-1)
    return keypoints, boxes

  def _observe(self, track: _Track, keypoints: np.ndarray, scores: np.ndarray,
               box: np.ndarray, time: float):
    """Moves a matched track to its new observation, updating velocity and counts."""
    both = (scores > self.score_threshold) & (track.scores > self.score_threshold)
    if both.any():
      displacement = (keypoints[both] - track.keypoints[both]).mean(axis=0)
    else:
      displacement = (box[:2] + box[2:] / 2) - (track.box[:2] + track.box[2:] / 2)
    track.velocity = displacement / (time - track.time)
    track.keypoints, track.scores, track.box, track.time = keypoints, scores, box, time
    track.hits += 1
    track.misses = 0
    if track.track_id < 0 and track.hits >= self.min_hits:
      track.track_id = self._new_id()

  def _miss(self, track: _Track):
    """Counts a frame in which the track was not matched."""
    track.misses += 1
    track.hits = 0

  def _alive(self, track: _Track) -> bool:
    """Whether the track lives on: matched now, or confirmed and missed <= `patience` frames."""
    # A tentative track must be matched in consecutive frames.
    return track.misses == 0 or (track.track_id >= 0 and track.misses <= self.patience)

  def _start(self, keypoints: np.ndarray, scores: np.ndarray, box: np.ndarray,
             time: float) -> _Track:
    """A new track for an unmatched person; it gets an id now if min_hits is 1."""
    smoother = None
    if self.smoothing is not None:
      smoother = OneEuroFilter(self.smoothing.min_cutoff, self.smoothing.beta,
                               self.smoothing.d_cutoff, self.frame_rate)
    track = _Track(track_id=-1, keypoints=keypoints, scores=scores, box=box, time=time,
                   velocity=np.zeros(2), hits=1, misses=0, smoother=smoother)
    if self.min_hits <= 1:
      track.track_id = self._new_id()
    return track

  def _new_id(self) -> int:
    """The next unused track id."""
    track_id = self._next_id
    self._next_id += 1
    return track_id

  def _smooth(self, tracks: list[_Track], keypoints: np.ndarray, scores: np.ndarray,
              time: float) -> np.ndarray:
    """Each person's keypoints [P, J, 2] through their track's One-Euro filter (raw without one)."""
    smoothed = keypoints.copy()
    for p, track in enumerate(tracks):
      if track.smoother is not None:
        valid = (scores[p] > self.score_threshold)[:, None]
        smoothed[p] = track.smoother(keypoints[p], time, valid)
    return smoothed
