"""`jaxpose infer`: poses on an image, a folder of images or a video, tracked, drawn and saved.

  jaxpose infer --workdir DIR | --onnx model.onnx
                (--image PATH | --images DIR | --video PATH) --out OUT
                [--detections FILE] [--flip-test] [--no-track]

The model decides the approach: a stacked hourglass (`heatmaps_stack<i>`
outputs) runs top-down on person boxes from `--detections` (COCO results
format, matched by image id) or else OpenCV's HOG people detector; a
Lightweight OpenPose (`heatmaps_stage<i>` + `pafs_stage<i>`) runs bottom-up
on the whole frame. People are linked across frames by
`jaxpose.inference.tracking.Tracker` (OKS / box IoU, Hungarian matching).

Written to OUT:

- `results.json`: one COCO keypoint result per person and frame,
  {image_id, category_id, keypoints [x1, y1, s1, ...], score, bbox, frame,
  track_id}, keypoints in COCO-17 order (bottom-up people are converted from
  OpenPose-18; a 16-joint hourglass writes MPII order). `track_id` is -1 with
  `--no-track`. `image_id` is the image file's number (COCO names) or else
  the frame index.
- `frames.json`: one entry per frame read, {frame, image_id, name, people},
  also for frames without anyone.
- the pictures: `<video name>.mp4` (mp4v, the input's size, frame rate and
  frame count) for `--video`, else one `<image name>.png` per image;
  skeletons colored by track id.
"""

import argparse
import dataclasses
import json
import logging
import os
import pathlib
import time

import numpy as np
import tqdm

from jaxpose import evaluate, skeletons, visualize
from jaxpose.inference import bottomup, detect, predictor as predictor_lib, topdown, tracking
from jaxpose.inference import video

RESULTS_FILE = 'results.json'
FRAMES_FILE = 'frames.json'
# Default hourglass input (H, W) for a checkpoint, whose size is not stored.
DEFAULT_TOPDOWN_INPUT_SIZE = (256, 256)
# OKS sigma for every joint of a layout that has none (MPII): COCO's for
# shoulders, about the middle of COCO's range.
DEFAULT_SIGMA = 0.079


@dataclasses.dataclass
class People:
  """One frame's people: keypoints [P, J, 2] image pixels, keypoint scores [P, J], boxes [P, 4], scores [P]."""
  keypoints: np.ndarray
  keypoint_scores: np.ndarray
  boxes: np.ndarray
  scores: np.ndarray


def skeleton_for_joints(num_joints: int, source: str) -> skeletons.Skeleton:
  """Heatmap channels of a top-down model -> its keypoint layout (17: COCO, 16: MPII)."""
  for skeleton in (skeletons.COCO, skeletons.MPII):
    if skeleton.num_keypoints == num_joints:
      return skeleton
  raise ValueError(f'{source}: the model has {num_joints} heatmap channels; top-down '
                   'inference knows COCO (17) and MPII (16)')


def _person_scores(keypoint_scores: np.ndarray, box_scores: np.ndarray,
                   threshold: float = tracking.DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
  """Keypoint scores [P, J], box scores [P] -> box score x mean keypoint score above threshold [P].

  The rescoring of SimpleBaseline / mmpose top-down results.
  """
  above = keypoint_scores > threshold
  mean = np.where(above, keypoint_scores, 0).sum(-1) / np.maximum(above.sum(-1), 1)
  return box_scores * mean


class TopDownEstimator:
  """Frame -> People with a stacked hourglass on person boxes."""

  def __init__(self, predictor: predictor_lib.Predictor, boxes_fn, flip_test: bool = False,
               input_size: tuple[int, int] = DEFAULT_TOPDOWN_INPUT_SIZE):
    """`boxes_fn(frame) -> (boxes [P, 4], scores [P])`; `input_size` (H, W) unless the model fixes it."""
    self.predictor = predictor
    self.boxes_fn = boxes_fn
    self.flip_test = flip_test
    height, width = predictor.input_size or input_size
    self.input_size = (width, height)  # crop_people's (width, height)
    probe = predictor(np.zeros((1, height, width, 3), np.uint8))
    self.skeleton = skeleton_for_joints(predictor_lib.last_heatmaps(probe).shape[-1],
                                        predictor.source)

  def _heatmaps(self, crops: np.ndarray) -> np.ndarray:
    return predictor_lib.last_heatmaps(self.predictor(crops))

  def __call__(self, frame: video.Frame) -> People:
    boxes, box_scores = self.boxes_fn(frame)
    keypoints, scores = topdown.predict_topdown(
        self._heatmaps, frame.image, boxes, self.input_size, self.skeleton.flip_permutation(),
        flip_test=self.flip_test)
    return People(keypoints, scores, np.asarray(boxes, np.float32).reshape(-1, 4),
                  _person_scores(scores, np.asarray(box_scores, np.float32)))


class BottomUpEstimator:
  """Frame -> People (COCO-17) with Lightweight OpenPose and PAF grouping."""

  skeleton = skeletons.COCO

  def __init__(self, predictor: predictor_lib.Predictor, height: int = bottomup.DEFAULT_HEIGHT):
    self.predictor = predictor
    self.height = height

  def __call__(self, frame: video.Frame) -> People:
    people, person_scores = bottomup.predict_bottomup(self.predictor, frame.image, self.height)
    keypoints, scores, coco_scores = bottomup.coco_keypoints(people, person_scores)
    boxes = tracking.boxes_from_keypoints(keypoints, scores, score_threshold=0.0)
    return People(keypoints, scores, boxes.astype(np.float32), coco_scores)


def frame_records(frame: video.Frame, people: People, track_ids: np.ndarray) -> list[dict]:
  """One frame's people -> COCO result records with bbox, frame and track_id."""
  records = evaluate.coco_results(np.full(len(people.scores), frame.image_id),
                                  people.keypoints, people.keypoint_scores, people.scores)
  for record, box, track_id in zip(records, people.boxes, track_ids):
    record.update(bbox=[float(v) for v in box], frame=frame.index, track_id=int(track_id))
  return records


def open_source(args: argparse.Namespace):
  """The one of --image, --images, --video given -> its frame source."""
  given = [flag for flag in ('image', 'images', 'video') if getattr(args, flag, None)]
  if len(given) != 1:
    raise ValueError('give exactly one of --image PATH, --images DIR, --video PATH')
  if args.video:
    return video.VideoSource(args.video)
  if args.images:
    return video.image_folder(args.images)
  return video.image_file(args.image)


def make_estimator(args: argparse.Namespace):
  """The model (--workdir or --onnx) and, for top-down, the box source -> a frame estimator."""
  model = predictor_lib.load(workdir=args.workdir, onnx_path=args.onnx, step=args.step)
  if model.arch == predictor_lib.BOTTOMUP_ARCH:
    if args.flip_test or args.detections:
      logging.warning('%s is a bottom-up model: --flip-test and --detections are ignored',
                      model.source)
    return BottomUpEstimator(model, args.height)
  if args.detections:
    detections = detect.DetectionsFile(args.detections, args.detection_threshold)
    boxes_fn = lambda frame: detections.boxes(frame.image_id)
  else:
    hog = detect.HogPeopleDetector(score_threshold=args.detection_threshold)
    boxes_fn = lambda frame: hog(frame.image)
  return TopDownEstimator(model, boxes_fn, args.flip_test, tuple(args.input_size))


def run(args: argparse.Namespace) -> dict:
  """`jaxpose infer` (see the module docstring); returns a summary {frames, people, seconds, fps, ...}.

  `fps` counts every frame, the first one's compilation (JAX) included;
  `fps_after_first` the frames after the first, the steady rate.
  """
  source = open_source(args)
  estimator = make_estimator(args)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  tracker = None if args.no_track else tracking.Tracker(
      estimator.skeleton.sigmas or (DEFAULT_SIGMA,) * estimator.skeleton.num_keypoints,
      frame_rate=source.fps)
  writer = None
  if isinstance(source, video.VideoSource):
    video_path = out / f'{pathlib.Path(source.source).stem}.mp4'
    writer = video.VideoWriter(video_path, source.fps, source.size)
  records, frames = [], []
  start = time.perf_counter()
  first_done = None  # the first frame also compiles (JAX) or warms up the model
  total = min(len(source), args.max_frames) if args.max_frames else len(source)
  try:
    with tqdm.tqdm(total=total or None, unit='frame', desc='jaxpose infer') as progress:
      for frame in source:
        if args.max_frames and frame.index >= args.max_frames:
          break
        people = estimator(frame)
        if tracker is None:
          track_ids = np.full(len(people.scores), -1, np.int64)
        else:
          track_ids = tracker.update(people.keypoints, people.keypoint_scores, people.boxes)
        records.extend(frame_records(frame, people, track_ids))
        frames.append({'frame': frame.index, 'image_id': frame.image_id, 'name': frame.name,
                       'people': len(people.scores)})
        drawn = visualize.draw_people(frame.image, people.keypoints, people.keypoint_scores,
                                      track_ids, estimator.skeleton)
        if writer is not None:
          writer.write(drawn)
        else:
          video.write_png(out / f'{frame.name}.png', drawn)
        progress.update()
        first_done = first_done or time.perf_counter()
  finally:
    if writer is not None:
      writer.close()
  end = time.perf_counter()
  seconds = end - start
  evaluate.write_coco_results(out / RESULTS_FILE, records)
  with open(out / FRAMES_FILE, 'w') as f:
    json.dump(frames, f)
  after_first = end - first_done if first_done else 0.0
  summary = {'frames': len(frames), 'people': len(records), 'seconds': seconds,
             'fps': len(frames) / seconds if seconds > 0 else 0.0,
             'fps_after_first': (len(frames) - 1) / after_first if after_first > 0 else 0.0,
             'approach': 'bottom-up' if isinstance(estimator, BottomUpEstimator) else 'top-down',
             'out': os.fspath(out)}
  print(f'{summary["frames"]} frames, {summary["people"]} people ({summary["approach"]}), '
        f'{summary["fps"]:.1f} frames/s -> {out}')
  return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags of `jaxpose infer`."""
  model = parser.add_mutually_exclusive_group(required=True)
  model.add_argument('--workdir', help='workdir of `jaxpose train` / `jaxpose convert` (JAX)')
  model.add_argument('--onnx', help='.onnx file of `jaxpose export` (onnxruntime, CPU)')
  parser.add_argument('--step', type=int, default=None,
                      help='checkpoint step with --workdir (default: the latest)')
  frames = parser.add_mutually_exclusive_group(required=True)
  frames.add_argument('--image', help='one image file')
  frames.add_argument('--images', help='a folder of images, read in name order')
  frames.add_argument('--video', help='a video file (anything cv2 decodes)')
  parser.add_argument('--out', required=True, help='folder for results.json and pictures')
  parser.add_argument('--detections', default=None,
                      help='top-down: COCO results-format person boxes, matched by image id '
                      '(default: OpenCV HOG people detector)')
  parser.add_argument('--detection-threshold', type=float, default=0.0,
                      help='top-down: keep boxes scored at least this')
  parser.add_argument('--flip-test', action='store_true',
                      help='top-down: average with the mirrored crops\' heatmaps')
  parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                      default=list(DEFAULT_TOPDOWN_INPUT_SIZE),
                      help='top-down crop size with --workdir (an ONNX model fixes its own)')
  parser.add_argument('--height', type=int, default=bottomup.DEFAULT_HEIGHT,
                      help='bottom-up network input height with --workdir')
  parser.add_argument('--no-track', action='store_true',
                      help='no tracking: every track_id is -1')
  parser.add_argument('--max-frames', type=int, default=None, help='stop after this many frames')
