"""`jaxpose infer`: poses on an image, a folder of images or a video: tracked, drawn and saved.

  jaxpose infer --workdir DIR | --onnx model.onnx
                (--image PATH | --images DIR | --video PATH) --out OUT
                [--detections FILE] [--flip_test] [--protocol NAME] [--notrack] [--tracker oks|taf]

A STAF model (--workdir) runs frame by frame on its own previous maps; its
people are linked by its temporal affinity fields (--tracker taf, its
default) or by OKS (--tracker oks); other models track by OKS.
"""

from absl import flags

from jaxpose import approaches, commands
from jaxpose.inference import pipeline
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
  flags.DEFINE_string('video', None, 'A video file (anything cv2 decodes).', **define)
  flags.DEFINE_string('out', None, 'The folder to write results.json, frames.json and the '
                      'pictures to.', **define)
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


def main(flag_values: flags.FlagValues) -> dict:
  source = pipeline.open_source(flag_values.image, flag_values.images, flag_values.video)
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
  return pipeline.run(source, estimator, flag_values.out, track=flag_values.track,
                      max_frames=flag_values.max_frames,
                      tracker=flag_values.tracker or model.approach.trackers[0])
