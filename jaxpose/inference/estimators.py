"""Frames to people: a model's approach on each frame of a stream, with its person boxes, tracking and records.

  estimator = make_estimator(predictor.load(workdir='workdirs/hg'), detections='dets.json')
  people = estimator(frame)
  track_ids = frame_tracker('oks', estimator, frame_rate=25.0)(people)

`Estimator` runs the approach's `predict` (with the protocol of
`approaches.Options`) on one frame at a time and keeps the video's state
between frames (STAF's previous maps); a top-down model gets its person
boxes from a detections file, a bottom-up model's people or OpenCV's HOG
detector (`make_estimator`). Each stream of `jaxpose infer` has its own
estimator (`Estimator.with_network`) and its own tracker.
"""

import logging

import numpy as np

from jaxpose import approaches, tracking
from jaxpose.data.detections import DetectionsFile
from jaxpose.deploy import predictor as predictor_lib
from jaxpose.inference import detect, frame_sources
from jaxpose.metrics import coco_ap

# OKS sigma for every joint of a layout that has none (MPII): COCO's for
# shoulders, about the middle of COCO's range.
DEFAULT_SIGMA = 0.079


class Estimator:
  """Frame -> People: the model's approach on each frame, in order, with the video's state between frames."""

  def __init__(self, network: predictor_lib.Predictor, options: approaches.Options,
               boxes_fn=None):
    """`boxes_fn(frame) -> (boxes [P, 4], scores [P])` for an approach that needs person boxes."""
    self.network = network
    self.approach = network.approach
    self.options = options
    self.boxes_fn = boxes_fn
    self.state = self.approach.new_video_state(network, options)
    self.skeleton = self.approach.skeleton(network)

  def with_network(self, network) -> 'Estimator':
    """The same estimator on another network (the streams' `GatheredNetwork`), with a video state of its own."""
    return Estimator(network, self.options, self.boxes_fn)

  def __call__(self, frame: frame_sources.Frame) -> approaches.People:
    boxes = [self.boxes_fn(frame)] if self.approach.per_person else None
    return self.approach.predict(self.network, [frame.image], self.options, boxes,
                                 self.state)[0]


def frame_tracker(kind: str | None, estimator: Estimator, frame_rate: float):
  """'oks', 'taf' or None (no tracking) -> people -> track ids [P] (-1 everywhere without tracking)."""
  sigmas = estimator.skeleton.sigmas or (DEFAULT_SIGMA,) * estimator.skeleton.num_keypoints
  if kind is None:
    return lambda people: np.full(len(people.scores), -1, np.int64)
  if kind not in ('oks', 'taf'):
    raise ValueError(f"tracker: expected 'oks' or 'taf', got {kind!r}")
  if kind not in estimator.approach.trackers:
    raise ValueError(f'--tracker {kind}: a {estimator.approach.name} model tracks by '
                     f'{" or ".join(estimator.approach.trackers)}; TAF tracking needs a STAF model '
                     '(a workdir of one that predicts temporal affinity fields)')
  if kind == 'oks':
    tracker = tracking.Tracker(sigmas, frame_rate=frame_rate)
    return lambda people: tracker.update(people.keypoints, people.keypoint_scores, people.boxes)
  # The TAFs lie on the network input: the tracker reads the people there.
  tracker = tracking.TafTracker(sigmas, stride=estimator.approach.stride, frame_rate=frame_rate)
  return lambda people: tracker.update(people.links.input_keypoints, people.keypoint_scores,
                                       tafs=people.links.tafs)


def frame_records(frame: frame_sources.Frame, people: approaches.People, track_ids: np.ndarray
                  ) -> list[dict]:
  """One frame's people -> COCO result records with bbox, frame and track_id."""
  records = coco_ap.coco_results(np.full(len(people.scores), frame.image_id),
                                  people.keypoints, people.keypoint_scores, people.scores)
  for record, box, track_id in zip(records, people.boxes, track_ids):
    record.update(bbox=[float(v) for v in box], frame=frame.index, track_id=int(track_id))
  return records


def make_estimator(model: predictor_lib.Predictor, *, detections: str | None = None,
                   detection_threshold: float = 0.0,
                   boxes_from: predictor_lib.Predictor | None = None,
                   options: approaches.Options = approaches.Options(flip_test=False)
                   ) -> Estimator:
  """A model and, for top-down, where its person boxes come from -> a frame estimator.

  Top-down boxes: a COCO results-format `detections` file, else the people
  of the bottom-up model `boxes_from` (`Approach.person_boxes`, at
  `options.height`), else OpenCV's HOG people detector. `options`: the
  protocol, flip test, crop size, bottom-up input height
  (`approaches.Options`).
  """
  if not model.approach.per_person:
    if options.flip_test or detections or boxes_from:
      logging.warning('%s is a %s model: --flip_test, --detections and --boxes_from are '
                      'ignored', model.source, model.approach.name)
    return Estimator(model, options)
  if detections and boxes_from:
    raise ValueError('give --detections or --boxes-from, not both: they are two sources of the '
                     'same person boxes')
  if detections:
    boxes = DetectionsFile(detections, detection_threshold)
    boxes_fn = lambda frame: boxes.boxes(frame.image_id)
  elif boxes_from is not None:
    if boxes_from.approach.per_person:
      raise ValueError(f'--boxes-from {boxes_from.source}: expected a bottom-up model (Lightweight '
                       f'or CMU OpenPose), got a {boxes_from.approach.name} one')
    box_options = approaches.Options(height=options.height)

    def boxes_fn(frame):
      boxes, scores = boxes_from.approach.person_boxes(boxes_from, frame.image, box_options)
      keep = scores >= detection_threshold
      return boxes[keep], scores[keep]
  else:
    hog = detect.HogPeopleDetector(score_threshold=detection_threshold)
    boxes_fn = lambda frame: hog(frame.image)
  return Estimator(model, options, boxes_fn)
