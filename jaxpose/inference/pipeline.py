"""`jaxpose infer`'s library: poses on images, video files and live streams, tracked, drawn and saved.

  sources = [open_source(video_path='clip.mp4')]
  estimator = make_estimator(predictor.load(workdir='workdirs/hg'), detections='dets.json')
  summary = run_streams(sources, estimator, 'out/')   # or run(sources[0], estimator, 'out/')

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
the fields are silent). See `estimators`.

Streams. A file (images, a folder, a video) gives every frame, in order; a
live source (`live_sources`: a camera or a stream URL) gives its newest
frame, and the frames it replaced unseen are dropped and counted. Several
streams run in one process: each round takes one frame of every stream
that has one, predicts them together (one network call per input shape,
`batching.GatheredNetwork`), and tracks and writes each stream on its own,
so that a stream's people and track ids are those it gives alone. The run
ends when every stream has ended (a file's last frame, a live stream lost
for good), after `max_frames` frames of each, or when `stop` is set (the
command sets it on SIGTERM or Ctrl-C): the frame in progress is finished
and every output written.

Written to OUT (one stream), or to OUT/<stream name>/ for each of several:

- `results.jsonl`: one line per processed frame, written as it is
  processed (a killed run loses no processed frame): {frame, image_id,
  name, latency_ms, people: [COCO results as in results.json]}.
- `results.json`: one COCO keypoint result per person and frame,
  {image_id, category_id, keypoints [x1, y1, s1, ...], score, bbox, frame,
  track_id}, keypoints in the order of the model's layout, which the summary
  names ('keypoints'): the one its description records (trained on a
  COCO-format file of any layout), else COCO-17 (bottom-up people are
  converted from OpenPose-18; a 16-joint hourglass writes MPII order).
  `track_id` is -1 without tracking. `image_id` is the image file's number
  (COCO names) or else the frame index (in a live stream, its index among
  the frames read: gaps are dropped frames).
- `frames.json`: one entry per processed frame, {frame, image_id, name,
  people}, also for frames without anyone.
- the pictures (unless `pictures=False`): `<video name>.mp4` (mp4v, the
  input's size and frame rate) for a video or a live stream, else one
  `<image name>.png` per image; skeletons colored by track id.

The summary (the command's last JSON line) has, for each stream, frames
read, processed and dropped, the processing rate and the latency from
capture to result (p50, p95, milliseconds); the same figures go to stderr
every `report_seconds` while it runs. Stream URLs are shown with their
password masked (`live_sources.mask_url`) everywhere.
"""

import contextlib
import json
import os
import pathlib
import sys
import threading
import time

import numpy as np
import tqdm

from jaxpose import files
from jaxpose.inference import batching, drawing, frame_sources, live_sources
# Re-exported: `pipeline` was their home before `estimators`.
from jaxpose.inference.estimators import (DEFAULT_SIGMA, Estimator, frame_records,  # noqa: F401
                                          frame_tracker, make_estimator)
from jaxpose.metrics import coco_ap

RESULTS_FILE = 'results.json'
FRAMES_FILE = 'frames.json'
RESULTS_LINES_FILE = 'results.jsonl'
REPORT_SECONDS = 5.0
# How long a round waits for a live stream's next frame before looking again.
POLL_SECONDS = 0.005


def open_source(image: str | None = None, images: str | None = None, video_path: str | None = None,
                reconnect_attempts: int = live_sources.DEFAULT_RECONNECT_ATTEMPTS):
  """Exactly one of an image file, a folder of images or a video (a file, URL or camera index) -> its frame source."""
  if sum(given is not None for given in (image, images, video_path)) != 1:
    raise ValueError('give exactly one of --image PATH, --images DIR, --video PATH')
  if video_path is not None:
    if live_sources.is_live(video_path):
      return live_sources.LiveSource(video_path, reconnect_attempts)
    return frame_sources.VideoSource(video_path)
  if images is not None:
    return frame_sources.image_folder(images)
  return frame_sources.image_file(image)


def _percentile_ms(seconds: list[float], q: float) -> float | None:
  return round(float(np.percentile(seconds, q)) * 1000, 1) if seconds else None


class _Stream:
  """One source in a run: its estimator and tracker, where it writes, and its figures."""

  def __init__(self, source, estimator: Estimator, out: pathlib.Path, name: str, track_ids_of,
               pictures: bool, stack: contextlib.ExitStack):
    self.source = source
    self.estimator = estimator
    self.out = out
    self.name = name
    self.track_ids_of = track_ids_of
    self.live = isinstance(source, live_sources.LiveSource)
    self._frames = None if self.live else iter(source)
    self.ended = False
    self.records: list[dict] = []
    self.frames: list[dict] = []
    self.latencies: list[float] = []  # seconds, capture to result
    self.read = 0  # frames of a file source read
    self.started = self.last_done = None  # perf_counter() of the first round and the last frame
    out.mkdir(parents=True, exist_ok=True)
    self.lines = stack.enter_context(open(out / RESULTS_LINES_FILE, 'w'))
    self.writer = None
    self.pictures = pictures
    if pictures and hasattr(source, 'size'):  # a video, a live stream: one annotated video
      # Under a temporary name until the run ends: a failed run leaves any
      # earlier video whole.
      video_path = stack.enter_context(files.replacing(out / f'{name}.mp4'))
      self.writer = stack.enter_context(
          frame_sources.VideoWriter(video_path, source.fps, source.size))

  def take(self) -> frame_sources.Frame | None:
    """The stream's next frame (a file's) or newest (a live source's); None if none now or ever (`ended`)."""
    if self.ended:
      return None
    if self.live:
      frame = self.source.take()
      self.ended = frame is None and self.source.ended
      return frame
    frame = next(self._frames, None)
    self.ended = frame is None
    self.read += frame is not None
    return frame

  def record(self, frame: frame_sources.Frame, people) -> None:
    """Tracks a frame's people and writes them: the JSON line at once, the pictures after."""
    track_ids = self.track_ids_of(people)
    records = frame_records(frame, people, track_ids)
    self.records.extend(records)
    self.frames.append({'frame': frame.index, 'image_id': frame.image_id, 'name': frame.name,
                        'people': len(people.scores)})
    latency = time.monotonic() - frame.captured
    self.lines.write(json.dumps({'frame': frame.index, 'image_id': frame.image_id,
                                 'name': frame.name, 'latency_ms': round(latency * 1000, 1),
                                 'people': records}) + '\n')
    self.lines.flush()  # a killed run keeps every processed frame
    self.latencies.append(latency)
    self.last_done = time.perf_counter()
    if self.pictures:
      drawn = drawing.draw_people(frame.image, people.keypoints, people.keypoint_scores,
                                  track_ids, self.estimator.skeleton)
      if self.writer is not None:
        self.writer.write(drawn)
      else:
        frame_sources.write_png(self.out / f'{frame.name}.png', drawn)

  def figures(self) -> dict:
    """Frames read, processed, dropped; processing rate since the run started; latency p50 / p95 in ms."""
    counts = self.source.counts if self.live else None
    processed = len(self.frames)
    seconds = (self.last_done - self.started) if self.last_done else 0.0
    return {'frames_read': counts.read if counts else self.read,
            'frames_processed': processed,
            'frames_dropped': counts.dropped if counts else 0,
            'reconnects': counts.reconnects if counts else 0,
            'fps': processed / seconds if seconds > 0 else 0.0,
            'latency_ms': {'p50': _percentile_ms(self.latencies, 50),
                           'p95': _percentile_ms(self.latencies, 95)}}

  def finish(self) -> None:
    coco_ap.write_coco_results(self.out / RESULTS_FILE, self.records)
    files.write_json(self.out / FRAMES_FILE, self.frames)


def _stream_names(sources) -> list[str]:
  """Distinct, credential-free names: the file's stem, 'camera0', 'host_port_path'; '_2', '_3' on repeats."""
  names, seen = [], {}
  for source in sources:
    name = getattr(source, 'name', None) or live_sources.stream_name(source.source)
    seen[name] = seen.get(name, 0) + 1
    names.append(name if seen[name] == 1 else f'{name}_{seen[name]}')
  return names


def _report(streams: list[_Stream]) -> None:
  for stream in streams:
    figures = stream.figures()
    latency = figures['latency_ms']
    tqdm.tqdm.write(
        f'jaxpose infer: {stream.name}: read {figures["frames_read"]}, processed '
        f'{figures["frames_processed"]}, dropped {figures["frames_dropped"]}, '
        f'{figures["fps"]:.1f} frames/s, latency p50 {latency["p50"]} ms p95 {latency["p95"]} ms',
        file=sys.stderr)


def _warm_up(network: batching.GatheredNetwork, streams: list[_Stream]) -> None:
  """One round on blank frames of the live streams' sizes: the model compiles before latency counts.

  Each stream's estimator then starts afresh (a STAF model's previous maps).
  """
  live = [stream for stream in streams if stream.live]
  blank = lambda stream: frame_sources.Frame(-1, np.zeros((*stream.source.size[::-1], 3), np.uint8),
                                             'warm-up', -1, time.monotonic())
  network.run_round([(lambda s=s: s.estimator(blank(s))) for s in live])
  for stream in live:
    stream.estimator = stream.estimator.with_network(network)


def run_streams(sources: list, estimator: Estimator, out: str | os.PathLike, *,
                track: bool = True, tracker: str = 'oks', max_frames: int | None = None,
                pictures: bool = True, stop: threading.Event | None = None,
                report_seconds: float = REPORT_SECONDS) -> dict:
  """Frames of each source -> people by `estimator`'s model, tracked and written per stream (module docstring).

  `tracker`: 'oks' (`Tracker`) or 'taf' (`TafTracker`, on the TAFs of a
  STAF model's people); unused without `track`. `max_frames`: per stream.
  Returns the summary: {frames, people, seconds, fps, fps_after_first, approach,
  keypoints, tracker, out, stopped, model_calls, streams: [{source, name, out, frames_read,
  frames_processed, frames_dropped, reconnects, fps, latency_ms, people}]}.
  `fps` counts every processed frame, the first one's compilation (JAX)
  included; `fps_after_first` the frames after the first round.
  """
  out = pathlib.Path(out)
  stop = stop or threading.Event()
  network = batching.GatheredNetwork(estimator.network, slots=len(sources))
  names = _stream_names(sources)
  finite = not any(isinstance(source, live_sources.LiveSource) for source in sources)
  total = sum(min(len(s), max_frames) if max_frames else len(s) for s in sources) if finite else 0
  with contextlib.ExitStack() as stack:
    stack.callback(network.close)
    for source in sources:
      if isinstance(source, live_sources.LiveSource):
        stack.callback(source.close)
    streams = []
    for source, name in zip(sources, names):
      stream_estimator = estimator.with_network(network)
      track_ids_of = frame_tracker(tracker if track else None, stream_estimator, source.fps)
      streams.append(_Stream(source, stream_estimator, out if len(sources) == 1 else out / name,
                             name, track_ids_of, pictures, stack))
    if not finite:
      _warm_up(network, streams)
    progress = stack.enter_context(tqdm.tqdm(total=total or None, unit='frame',
                                             desc='jaxpose infer', disable=not finite))
    start = last_report = time.perf_counter()
    for stream in streams:
      stream.started = start
    first_done, first_frames = None, 0  # the first round also compiles (JAX)
    while not stop.is_set():
      active = [s for s in streams if not s.ended and not (max_frames and
                                                           len(s.frames) >= max_frames)]
      if not active:
        break
      taken = [(stream, stream.take()) for stream in active]
      taken = [(stream, frame) for stream, frame in taken if frame is not None]
      if not taken:
        stop.wait(POLL_SECONDS)  # live streams between frames
        continue
      found = network.run_round([(lambda s=s, f=f: s.estimator(f)) for s, f in taken])
      for (stream, frame), people in zip(taken, found):
        stream.record(frame, people)
      progress.update(len(taken))
      if first_done is None:
        first_done, first_frames = time.perf_counter(), len(taken)
      if time.perf_counter() - last_report >= report_seconds:
        _report(streams)
        last_report = time.perf_counter()
    end = time.perf_counter()
    for stream in streams:
      stream.finish()
  after_first = (end - first_done if first_done else 0.0, first_frames)
  summary = _summary(streams, estimator, end - start, after_first, track, tracker, out,
                     stop.is_set())
  # The network's calls: one per round and input shape when streams are batched.
  summary['model_calls'] = network.calls
  return summary


def _summary(streams: list[_Stream], estimator: Estimator, seconds: float,
             after_first: tuple[float, int], track: bool, tracker: str, out: pathlib.Path,
             stopped: bool) -> dict:
  frames = sum(len(stream.frames) for stream in streams)
  people = sum(len(stream.records) for stream in streams)
  seconds_after_first, first_frames = after_first
  summary = {'frames': frames, 'people': people, 'seconds': seconds,
             'fps': frames / seconds if seconds > 0 else 0.0,
             'fps_after_first': ((frames - first_frames) / seconds_after_first
                                 if seconds_after_first > 0 else 0.0),
             'approach': estimator.approach.protocol_kind,
             # What the results' keypoints are, in their order: the model's layout.
             'keypoints': list(estimator.skeleton.keypoint_names),
             'tracker': tracker if track else None,
             'out': os.fspath(out),
             # Stopped before the end (SIGTERM, Ctrl-C): what was processed is complete.
             'stopped': stopped,
             'streams': [{'source': live_sources.mask_url(stream.source.source),
                          'name': stream.name, 'out': os.fspath(stream.out),
                          **stream.figures(), 'people': len(stream.records)}
                         for stream in streams]}
  print(f'{summary["frames"]} frames, {summary["people"]} people ({summary["approach"]}), '
        f'{summary["fps"]:.1f} frames/s -> {out}', file=sys.stderr)
  return summary


def run(source, estimator: Estimator, out: str | os.PathLike, *, track: bool = True,
        max_frames: int | None = None, tracker: str = 'oks', **options) -> dict:
  """One source: `run_streams([source], ...)`, written to `out` itself."""
  return run_streams([source], estimator, out, track=track, max_frames=max_frames,
                     tracker=tracker, **options)
