"""`jaxpose infer`'s library: poses on an image, a folder of images or a video, tracked, drawn and saved.

  source = open_source(video_path='clip.mp4')
  estimator = make_estimator(predictor.load(workdir='workdirs/hg'), detections='dets.json')
  summary = run(source, estimator, 'out/')

  summary = run(source, estimator, 'out/')

The model's approach predicts (`Approach.predict`, with the protocol of
`approaches.Options`, by default its arch's): a top-down model (a stacked
hourglass) runs on person boxes from a detections file (COCO results
format, matched by image id), or from the people a bottom-up model finds
(`boxes_from`), or else OpenCV's HOG people detector; a bottom-up model
(Lightweight or CMU OpenPose) runs on the whole frame, as its upstream's
demo; a STAF model (a workdir) runs frame by frame on its own previous
maps, the video's state (`Approach.new_video_state`). People are linked
across frames by `jaxpose.tracking.Tracker` (OKS / box IoU, Hungarian
matching), or, where the approach's people carry temporal affinity fields
(STAF's `People.links`), by them (`tracker='taf'`, `TafTracker`; OKS where
the fields are silent).

Written to OUT:

- `results.json`: one COCO keypoint result per person and frame,
  {image_id, category_id, keypoints [x1, y1, s1, ...], score, bbox, frame,
  track_id}, keypoints in the order of the model's layout, which the summary
  names ('keypoints'): the one its description records (trained on a
  COCO-format file of any layout), else COCO-17 (bottom-up people are
  converted from OpenPose-18; a 16-joint hourglass writes MPII order).
  `track_id` is -1 without tracking. `image_id` is the image file's number (COCO names) or else
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

from jaxpose import approaches, files, tracking
from jaxpose.data.detections import DetectionsFile
from jaxpose.deploy import predictor as predictor_lib
from jaxpose.inference import detect, drawing, frame_sources
from jaxpose.metrics import coco_ap

RESULTS_FILE = 'results.json'
FRAMES_FILE = 'frames.json'
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


def run(source, estimator, out: str | os.PathLike, *, track: bool = True,
        max_frames: int | None = None, tracker: str = 'oks') -> dict:
  """Frames of `source` -> people by `estimator`, tracked, written to `out` (module docstring).

  `tracker`: 'oks' (`Tracker`) or 'taf' (`TafTracker`, on the TAFs of a
  STAF model's people); unused without `track`. Returns a summary {frames, people,
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
             'approach': estimator.approach.protocol_kind,
             # What the results' keypoints are, in their order: the model's layout.
             'keypoints': list(estimator.skeleton.keypoint_names),
             'tracker': tracker if track else None,
             'out': os.fspath(out)}
  print(f'{summary["frames"]} frames, {summary["people"]} people ({summary["approach"]}), '
        f'{summary["fps"]:.1f} frames/s -> {out}', file=sys.stderr)
  return summary
