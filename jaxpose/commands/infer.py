"""`jaxpose infer`: poses on an image, a folder of images, videos or live streams: tracked, drawn and saved.

  jaxpose infer --workdir DIR | --onnx model.onnx
                (--image PATH | --images DIR | --video SOURCE [--video SOURCE ...]) --out OUT
                [--detections FILE] [--flip_test] [--protocol NAME] [--notrack] [--tracker oks|taf]
                [--nopictures] [--reconnect_attempts N] [--report_seconds S]

A video is a file, a stream URL (rtsp://user:password@host/..., an HTTP
MJPEG stream: anything cv2's FFmpeg backend opens) or a camera index; given
several times, the streams run in one process, batched into one model call
(`jaxpose.inference.pipeline`). SIGTERM or Ctrl-C stops a run cleanly: the
frame in progress is finished, every output is written, and the exit status
is 0 (a second Ctrl-C interrupts at once).

A STAF model (--workdir) runs frame by frame on its own previous maps; its
people are linked by its temporal affinity fields (--tracker taf, its
default) or by OKS (--tracker oks); other models track by OKS.
"""

import contextlib
import signal
import sys
import threading

from absl import flags

from jaxpose import approaches, commands
from jaxpose.inference import live_sources, pipeline
from jaxpose.deploy import predictor as predictor_lib

OUTPUT_FLAGS = {'out': 'folder'}


def define_flags(flag_values: flags.FlagValues) -> None:
  define = dict(flag_values=flag_values)
  flags.DEFINE_string('workdir', None, 'Workdir of `jaxpose train` / `jaxpose convert` (JAX).',
                      **define)
  flags.DEFINE_string('onnx', None, '.onnx file of `jaxpose export` (onnxruntime, CPU).',
                      **define)
  flags.DEFINE_integer('step', None, 'Checkpoint step with --workdir (default: the latest).',
                       **define)
  flags.DEFINE_string('image', None, 'One image file.', **define)
  flags.DEFINE_string('images', None, 'A folder of images, read in name order.', **define)
  flags.DEFINE_multi_string('video', None, 'A video file, a stream URL (rtsp://, http:// MJPEG) '
                            'or a camera index (0, 1, ...); repeat it for several streams in one '
                            'process. A live stream is read on its own thread, the newest frame '
                            'kept, the others dropped and counted', **define)
  flags.DEFINE_integer('reconnect_attempts', live_sources.DEFAULT_RECONNECT_ATTEMPTS,
                       'A lost live stream is reopened this many times in a row (waits doubling '
                       f'from {live_sources.RECONNECT_FIRST_DELAY:g} s to '
                       f'{live_sources.RECONNECT_MAX_DELAY:g} s) before it ends.', **define)
  flags.DEFINE_bool('pictures', True, 'Draw the skeletons: an annotated video per video or '
                    'stream, a PNG per image (--nopictures: results only).', **define)
  flags.DEFINE_float('report_seconds', pipeline.REPORT_SECONDS, 'Each stream\'s frames read, '
                     'processed, dropped, rate and latency go to stderr this often.', **define)
  flags.DEFINE_string('out', None, 'The folder to write results.jsonl, results.json, '
                      'frames.json and the pictures to (OUT/<stream name>/ for each of several '
                      'streams).', **define)
  flags.DEFINE_string('detections', None, 'Top-down: COCO results-format person boxes, matched '
                      'by image id (default: --boxes_from, else OpenCV HOG people detector).',
                      **define)
  flags.DEFINE_string('boxes_from', None, 'Top-down: a bottom-up model (workdir or .onnx of '
                      'Lightweight or CMU OpenPose) whose people give the person boxes.',
                      **define)
  flags.DEFINE_float('detection_threshold', 0.0, 'Top-down: keep boxes scored at least this.',
                     **define)
  flags.DEFINE_bool('flip_test', False, "Top-down: average with the mirrored crops' heatmaps.",
                    **define)
  flags.DEFINE_list('input_size', None, 'Top-down crop width,height with --workdir (default: the '
                    'size the model was trained at; an ONNX model fixes its own).', **define)
  flags.DEFINE_integer('height', None,
                       "Bottom-up network input height with --workdir; default: the protocol's "
                       '(Lightweight OpenPose demo: 256, CMU OpenPose body.py: 184).', **define)
  commands.define_protocol_flag(flag_values)
  flags.DEFINE_integer('dark_kernel', None, 'Top-down, jaxpose_topdown: DARK decoding with '
                       'this odd blur kernel (11 for sigma-2 heatmaps).', **define)
  flags.DEFINE_bool('track', True, 'Link people across frames (--notrack: every track_id is -1).',
                    **define)
  flags.DEFINE_enum('tracker', None, ['oks', 'taf'],
                    'How --track links people: by OKS / box IoU, or by the temporal affinity '
                    'fields of a STAF model (OKS where they are silent). Default: taf for a '
                    'STAF model, else oks.', **define)
  flags.DEFINE_integer('max_frames', None, 'Stop after this many frames.', **define)
  flags.mark_flag_as_required('out', flag_values=flag_values)
  flags.mark_flags_as_mutual_exclusive(['workdir', 'onnx'], required=True, **define)
  flags.mark_flags_as_mutual_exclusive(['image', 'images', 'video'], required=True, **define)


@contextlib.contextmanager
def _stop_on_signals():
  """Yields an Event that SIGTERM or the first Ctrl-C sets (a clean stop); a second Ctrl-C interrupts."""
  stop = threading.Event()

  def request_stop(number, frame):
    del frame
    name = signal.Signals(number).name
    if stop.is_set() and number == signal.SIGINT:
      raise KeyboardInterrupt
    print(f'jaxpose infer: {name}: stopping after the frame in progress', file=sys.stderr)
    stop.set()

  previous = {number: signal.signal(number, request_stop)
              for number in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for number, handler in previous.items():
      signal.signal(number, handler)


def _open_videos(videos: list[str], live: bool, reconnect_attempts: int) -> dict[int, object]:
  """The --video sources that are live streams (or files) -> {position: source}; all closed if one fails."""
  opened = {}
  try:
    for position, video in enumerate(videos):
      if live_sources.is_live(video) == live:
        opened[position] = pipeline.open_source(video_path=video,
                                                reconnect_attempts=reconnect_attempts)
  except BaseException:
    for source in opened.values():
      getattr(source, 'close', lambda: None)()
    raise
  return opened


def main(flag_values: flags.FlagValues) -> dict:
  if flag_values.reconnect_attempts < 0:
    raise commands.UsageError('--reconnect_attempts: expected 0 or more, got '
                              f'{flag_values.reconnect_attempts}')
  # Files are opened before the model loads, so that a wrong path fails at
  # once; live streams after it, so that their readers do not count the
  # frames of the model's loading as dropped.
  videos = flag_values.video or []
  opened = _open_videos(videos, False, flag_values.reconnect_attempts) if videos else {
      0: pipeline.open_source(flag_values.image, flag_values.images)}
  model = predictor_lib.load(workdir=flag_values.workdir, onnx_path=flag_values.onnx,
                             step=flag_values.step)
  options = approaches.Options(
      protocol=commands.protocol_name(flag_values.protocol, 'infer'),
      flip_test=flag_values.flip_test, dark_kernel=flag_values.dark_kernel,
      input_size=commands.parse_size(flag_values.input_size, 'input_size'),
      height=flag_values.height)
  estimator = pipeline.make_estimator(
      model, detections=flag_values.detections,
      detection_threshold=flag_values.detection_threshold, options=options,
      boxes_from=(predictor_lib.load_path(flag_values.boxes_from, '--boxes_from')
                  if flag_values.boxes_from else None))
  with _stop_on_signals() as stop:
    opened.update(_open_videos(videos, True, flag_values.reconnect_attempts))
    sources = [opened[position] for position in sorted(opened)]
    return pipeline.run_streams(sources, estimator, flag_values.out, track=flag_values.track,
                                max_frames=flag_values.max_frames,
                                tracker=flag_values.tracker or model.approach.trackers[0],
                                pictures=flag_values.pictures, stop=stop,
                                report_seconds=flag_values.report_seconds)
