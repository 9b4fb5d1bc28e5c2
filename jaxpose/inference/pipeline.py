"""`jaxpose infer`'s library: poses on an image, a folder of images or a video, tracked, drawn and saved.

  source = open_source(video_path='clip.mp4')
  estimator = make_estimator(predictor.load(workdir='workdirs/hg'), detections='dets.json')
  summary = run(source, estimator, 'out/')

The model's approach decides: a top-down model (a stacked hourglass) runs on
person boxes from a detections file (COCO results format, matched by image
id), or from the people a bottom-up model finds (`boxes_from`), or else
OpenCV's HOG people detector; a bottom-up model (Lightweight or CMU
OpenPose) runs on the whole frame, as its upstream's demo. People are linked across frames by
`jaxpose.tracking.tracker.Tracker` (OKS / box IoU, Hungarian matching).
A STAF model (a workdir) runs frame by frame, each frame given the previous
frame's maps (`StafEstimator`), and its people can be linked by its temporal
affinity fields instead (`tracker='taf'`, `TafTracker`; OKS where the fields
are silent).

Written to OUT:

- `results.json`: one COCO keypoint result per person and frame,
  {image_id, category_id, keypoints [x1, y1, s1, ...], score, bbox, frame,
  track_id}, keypoints in COCO-17 order (bottom-up people are converted from
  OpenPose-18; a 16-joint hourglass writes MPII order). `track_id` is -1 without
  tracking. `image_id` is the image file's number (COCO names) or else
  the frame index.
- `frames.json`: one entry per frame read, {frame, image_id, name, people},
  also for frames without anyone.
- the pictures: `<video name>.mp4` (mp4v, the input's size, frame rate and
  frame count) for `--video`, else one `<image name>.png` per image;
  skeletons colored by track id.
"""

import contextlib
import logging
import os
import sys
import pathlib
import time

import numpy as np
import tqdm

from jaxpose import approaches, files, models, skeletons
from jaxpose.training import checkpoint
from jaxpose.inference import drawing
from jaxpose.deploy import predictor as predictor_lib
from jaxpose.approaches import staf_tracking
from jaxpose.data.detections import DetectionsFile
from jaxpose.inference import detect
from jaxpose import tracking
from jaxpose.inference import frame_sources
from jaxpose.metrics import coco_ap

RESULTS_FILE = 'results.json'
FRAMES_FILE = 'frames.json'
# OKS sigma for every joint of a layout that has none (MPII): COCO's for
# shoulders, about the middle of COCO's range.
DEFAULT_SIGMA = 0.079


def skeleton_for_joints(num_joints: int, source: str) -> skeletons.Skeleton:
  """Heatmap channels of a top-down model -> its keypoint layout (17: COCO, 16: MPII)."""
  for skeleton in (skeletons.COCO, skeletons.MPII):
    if skeleton.num_keypoints == num_joints:
      return skeleton
  raise ValueError(f'{source}: the model has {num_joints} heatmap channels; top-down '
                   'inference knows COCO (17) and MPII (16)')


class TopDownEstimator:
  """Frame -> People with a stacked hourglass on person boxes."""

  def __init__(self, predictor: predictor_lib.Predictor, boxes_fn, flip_test: bool = False,
               input_size: tuple[int, int] | None = None,
               protocol: str = 'jaxpose', dark_kernel: int | None = None):
    """`boxes_fn(frame) -> (boxes [P, 4], scores [P])`; `input_size` (width, height) unless the model fixes it.

    The input size: an ONNX model's own, else `input_size`, else the size
    the model was trained at (`Approach.default_input_size`).

    `protocol`, `dark_kernel`: the crop, flip test and decoding of `TopDown.predict`.
    """
    self.protocol = protocol
    self.dark_kernel = dark_kernel
    self.predictor = predictor
    self.approach = predictor.approach
    self.boxes_fn = boxes_fn
    self.flip_test = flip_test
    self.input_size = tuple(predictor.input_size or input_size
                            or predictor.approach.default_input_size)
    width, height = self.input_size
    probe = predictor(np.zeros((1, height, width, 3), np.uint8))
    self.skeleton = skeleton_for_joints(self.approach.last_maps(probe).shape[-1],
                                        predictor.source)

  def _heatmaps(self, crops: np.ndarray) -> np.ndarray:
    return self.approach.last_maps(self.predictor(crops))

  def __call__(self, frame: frame_sources.Frame) -> approaches.People:
    boxes, box_scores = self.boxes_fn(frame)
    return self.approach.predict(self._heatmaps, frame.image, boxes, box_scores,
                                 self.input_size, self.skeleton, self.flip_test, self.protocol,
                                 self.dark_kernel)


class BottomUpEstimator:
  """Frame -> People (COCO-17) with a bottom-up model and its PAF decoding protocol."""

  skeleton = skeletons.COCO

  def __init__(self, predictor: predictor_lib.Predictor, height: int | None = None):
    self.predictor = predictor
    self.height = height

  def __call__(self, frame: frame_sources.Frame) -> approaches.People:
    return self.predictor.approach.predict(self.predictor, frame.image, self.height)


class StafEstimator:
  """Frame -> People (COCO-17) with a STAF model run frame by frame; `last` keeps the frame's TAFs."""

  skeleton = skeletons.COCO

  def __init__(self, workdir: str, step: int | None = None, height: int | None = None):
    """Restores the workdir's STAF model; the input is scaled to `height` (default the demo's 256)."""
    variables, description = checkpoint.restore_variables(workdir, step)
    models.check_variables(variables, description, source=checkpoint.checkpoint_dir(workdir))
    approach = approaches.for_description(description)
    if not isinstance(approach, approaches.StafBottomUp):
      raise ValueError(f'{workdir}: the model is {approach.name}, not STAF (no TAFs)')
    self.runner = approach.recurrent_runner(variables, height=height)
    self.last: staf_tracking.FramePeople | None = None

  def __call__(self, frame: frame_sources.Frame) -> approaches.People:
    self.last = self.runner(frame.image)
    return self.last.people


def frame_tracker(kind: str | None, estimator, frame_rate: float):
  """'oks', 'taf' or None (no tracking) -> people -> track ids [P] (-1 everywhere without tracking)."""
  sigmas = estimator.skeleton.sigmas or (DEFAULT_SIGMA,) * estimator.skeleton.num_keypoints
  if kind is None:
    return lambda people: np.full(len(people.scores), -1, np.int64)
  if kind == 'oks':
    tracker = tracking.Tracker(sigmas, frame_rate=frame_rate)
    return lambda people: tracker.update(people.keypoints, people.keypoint_scores, people.boxes)
  if kind != 'taf':
    raise ValueError(f"tracker: expected 'oks' or 'taf', got {kind!r}")
  if not isinstance(estimator, StafEstimator):
    raise ValueError('--tracker taf: the model must be a STAF model (a workdir of one that '
                     'predicts temporal affinity fields)')
  # The TAFs lie on the network input: the tracker reads the people there.
  tracker = tracking.TafTracker(sigmas, stride=estimator.runner.stride,
                                    frame_rate=frame_rate)
  return lambda people: tracker.update(estimator.last.input_keypoints, people.keypoint_scores,
                                       tafs=estimator.last.tafs)


def frame_records(frame: frame_sources.Frame, people: approaches.People, track_ids: np.ndarray
                  ) -> list[dict]:
  """One frame's people -> COCO result records with bbox, frame and track_id."""
  records = coco_ap.coco_results(np.full(len(people.scores), frame.image_id),
                                  people.keypoints, people.keypoint_scores, people.scores)
  for record, box, track_id in zip(records, people.boxes, track_ids):
    record.update(bbox=[float(v) for v in box], frame=frame.index, track_id=int(track_id))
  return records


def open_source(image: str | None = None, images: str | None = None, video_path: str | None = None):
  """Exactly one of an image file, a folder of images or a video file -> its frame source."""
  if sum(given is not None for given in (image, images, video_path)) != 1:
    raise ValueError('give exactly one of --image PATH, --images DIR, --video PATH')
  if video_path is not None:
    return frame_sources.VideoSource(video_path)
  if images is not None:
    return frame_sources.image_folder(images)
  return frame_sources.image_file(image)


def make_estimator(model: predictor_lib.Predictor, *, detections: str | None = None,
                   detection_threshold: float = 0.0, flip_test: bool = False,
                   input_size: tuple[int, int] | None = None,
                   height: int | None = None,
                   boxes_from: predictor_lib.Predictor | None = None,
                   protocol: str = 'jaxpose', dark_kernel: int | None = None):
  """A model and, for top-down, where its person boxes come from -> a frame estimator.

  Top-down boxes: a COCO results-format `detections` file, else the people
  of the bottom-up model `boxes_from` (`BottomUp.person_boxes`, at `height`),
  else OpenCV's HOG people detector. `input_size` (width, height) and
  `height` are the top-down crop and the bottom-up input height for a JAX
  model (None: the size the top-down model was trained at; the bottom-up
  protocol's height, as its upstream demo runs it). `protocol`: top-down's, 'jaxpose' or 'mmpose';
  `dark_kernel`: DARK decoding in jaxpose's.
  """
  if isinstance(model.approach, approaches.BottomUp):
    if flip_test or detections or boxes_from:
      logging.warning('%s is a bottom-up model: --flip-test, --detections and --boxes-from are '
                      'ignored', model.source)
    return BottomUpEstimator(model, height)
  if detections and boxes_from:
    raise ValueError('give --detections or --boxes-from, not both: they are two sources of the '
                     'same person boxes')
  if detections:
    boxes = DetectionsFile(detections, detection_threshold)
    boxes_fn = lambda frame: boxes.boxes(frame.image_id)
  elif boxes_from is not None:
    if not isinstance(boxes_from.approach, approaches.BottomUp):
      raise ValueError(f'--boxes-from {boxes_from.source}: expected a bottom-up model (Lightweight '
                       f'or CMU OpenPose), got a {boxes_from.approach.name} one')

    def boxes_fn(frame):
      boxes, scores = boxes_from.approach.person_boxes(boxes_from, frame.image, height)
      keep = scores >= detection_threshold
      return boxes[keep], scores[keep]
  else:
    hog = detect.HogPeopleDetector(score_threshold=detection_threshold)
    boxes_fn = lambda frame: hog(frame.image)
  return TopDownEstimator(model, boxes_fn, flip_test, input_size, protocol, dark_kernel)


def run(source, estimator, out: str | os.PathLike, *, track: bool = True,
        max_frames: int | None = None, tracker: str = 'oks') -> dict:
  """Frames of `source` -> people by `estimator`, tracked, written to `out` (module docstring).

  `tracker`: 'oks' (`Tracker`) or 'taf' (`TafTracker`, a `StafEstimator`'s
  fields); unused without `track`. Returns a summary {frames, people,
  seconds, fps, ...}: `fps` counts every frame, the first one's compilation
  (JAX) included; `fps_after_first` the frames after the first, the steady rate.
  """
  out = pathlib.Path(out)
  out.mkdir(parents=True, exist_ok=True)
  track_ids_of = frame_tracker(tracker if track else None, estimator, source.fps)
  records, frames = [], []
  start = time.perf_counter()
  first_done = None  # the first frame also compiles (JAX) or warms up the model
  total = min(len(source), max_frames) if max_frames else len(source)
  with contextlib.ExitStack() as stack:
    writer = None
    if isinstance(source, frame_sources.VideoSource):
      # Under a temporary name until the last frame: a failed run leaves any
      # earlier video whole.
      video_path = stack.enter_context(
          files.replacing(out / f'{pathlib.Path(source.source).stem}.mp4'))
      writer = stack.enter_context(frame_sources.VideoWriter(video_path, source.fps, source.size))
    progress = stack.enter_context(
        tqdm.tqdm(total=total or None, unit='frame', desc='jaxpose infer'))
    for frame in source:
      if max_frames and frame.index >= max_frames:
        break
      people = estimator(frame)
      track_ids = track_ids_of(people)
      records.extend(frame_records(frame, people, track_ids))
      frames.append({'frame': frame.index, 'image_id': frame.image_id, 'name': frame.name,
                     'people': len(people.scores)})
      drawn = drawing.draw_people(frame.image, people.keypoints, people.keypoint_scores,
                                    track_ids, estimator.skeleton)
      if writer is not None:
        writer.write(drawn)
      else:
        frame_sources.write_png(out / f'{frame.name}.png', drawn)
      progress.update()
      first_done = first_done or time.perf_counter()
  end = time.perf_counter()
  seconds = end - start
  coco_ap.write_coco_results(out / RESULTS_FILE, records)
  files.write_json(out / FRAMES_FILE, frames)
  after_first = end - first_done if first_done else 0.0
  summary = {'frames': len(frames), 'people': len(records), 'seconds': seconds,
             'fps': len(frames) / seconds if seconds > 0 else 0.0,
             'fps_after_first': (len(frames) - 1) / after_first if after_first > 0 else 0.0,
             'approach': ('bottom-up' if isinstance(estimator, (BottomUpEstimator, StafEstimator))
                          else 'top-down'),
             'tracker': tracker if track else None,
             'out': os.fspath(out)}
  print(f'{summary["frames"]} frames, {summary["people"]} people ({summary["approach"]}), '
        f'{summary["fps"]:.1f} frames/s -> {out}', file=sys.stderr)
  return summary
