"""`jaxpose eval --config C --workdir W`: a trained model's COCO AP, MPII PCKh or PCK; the metrics are the last line of stdout, as JSON.

A STAF model is scored as a tracker: PoseTrack's MOTA of TAF and of OKS
tracking of the same people, and their AP, per joint, side by side, on
held-out generated clips or on --posetrack FILE (with --posetrack_images).

On several processes (the flags of `jaxpose train`, or a pod's environment)
each process evaluates every N-th image, clip or video, the predictions are
gathered, and every process scores all of them exactly as one process
would; process 0 alone writes the results file and prints the metrics.
"""

from absl import flags

import jax

from jaxpose import approaches, commands, evaluation
from jaxpose import config as config_lib
from jaxpose.commands import UsageError

CONFIG_DRIVEN = True
OUTPUT_FLAGS = {'results': 'file'}


def define_flags(flag_values: flags.FlagValues) -> None:
  commands.define_distributed_flags(flag_values)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).',
                       flag_values=flag_values)
  flags.DEFINE_string('detections', None,
                      'COCO detection results JSON for the person boxes (top-down COCO); '
                      'default: the ground-truth boxes.', flag_values=flag_values)
  flags.DEFINE_string('boxes_from', None,
                      'A bottom-up model (workdir or .onnx) whose people give the person boxes '
                      '(top-down COCO), instead of --detections.', flag_values=flag_values)
  flags.DEFINE_float('detection_threshold', 0.0, 'Drop detections scored lower.',
                     flag_values=flag_values)
  flags.DEFINE_bool('flip_test', True, 'Average with the mirrored crops (top-down).',
                    flag_values=flag_values)
  flags.DEFINE_list('scales', None, 'Bottom-up input scales (of a 368-pixel height) whose maps '
                    "are averaged; default: the protocol's (Lightweight OpenPose val.py: 1, "
                    "CMU OpenPose body.py: 0.5; val.py's --multiscale: 0.5,1,1.5,2).",
                    flag_values=flag_values)
  commands.define_protocol_flag(flag_values)
  flags.DEFINE_string('mpii_protocol', None, 'Deprecated: --protocol=bearpaw_mpii for '
                      "'bearpaw' (default: the model's own).", flag_values=flag_values)
  flags.DEFINE_string('coco_protocol', None, 'Deprecated: --protocol=mmpose_topdown for '
                      "'mmpose' (default: the model's own).", flag_values=flag_values)
  flags.DEFINE_integer('dark_kernel', None, 'Top-down, jaxpose_topdown: DARK decoding with '
                       'this odd blur kernel (11 for sigma-2 heatmaps).', flag_values=flag_values)
  flags.DEFINE_string('posetrack', None, 'STAF: a PoseTrack18 annotation file or folder to '
                      'track on, instead of generated clips.', flag_values=flag_values)
  flags.DEFINE_string('posetrack_images', '', "STAF: the folder --posetrack's image paths "
                      'start from (the one holding images/).', flag_values=flag_values)
  flags.DEFINE_string('results', None,
                      'COCO results JSON to write (default: WORKDIR/eval/results_stepN.json).',
                      flag_values=flag_values)


def parse_scales(values: list[str] | None) -> tuple[float, ...] | None:
  """--scales -> positive numbers (None if not given); ValueError naming the flag otherwise."""
  if values is None:
    return None
  try:
    scales = tuple(float(scale) for scale in values)
  except ValueError:
    raise UsageError(f'--scales: expected numbers, got {",".join(values)}') from None
  if not scales or min(scales) <= 0:
    raise UsageError(f'--scales: expected positive numbers, got {",".join(values)}')
  return scales


def _protocol(flag_values: flags.FlagValues) -> str | None:
  """--protocol, or one of the deprecated per-case flags in its place (a usage error to give two)."""
  given = {name: flag_values[name].value for name in ('protocol', 'mpii_protocol', 'coco_protocol')
           if flag_values[name].value is not None}
  if len(given) > 1:
    raise UsageError(f'give --protocol alone, not with {", ".join("--" + n for n in given)}')
  name, value = next(iter(given.items()), ('protocol', None))
  return commands.protocol_name(value, 'eval', name)


def main(flag_values: flags.FlagValues) -> dict | None:
  timeouts = config_lib.distributed_timeouts(flag_values.config)
  commands.initialize_distributed(flag_values, timeouts)
  metrics = commands.run_on_hosts(lambda: _evaluate(flag_values), timeouts)
  return metrics if jax.process_index() == 0 else None  # one process prints


def _evaluate(flag_values: flags.FlagValues) -> dict:
  options = approaches.Options(
      share=approaches.Share(jax.process_index(), jax.process_count()),
      protocol=_protocol(flag_values),
      detections=flag_values.detections, detection_threshold=flag_values.detection_threshold,
      flip_test=flag_values.flip_test, scales=parse_scales(flag_values.scales),
      dark_kernel=flag_values.dark_kernel, boxes_from=flag_values.boxes_from,
      posetrack=flag_values.posetrack, posetrack_images=flag_values.posetrack_images)
  return evaluation.evaluate_workdir(flag_values.config, flag_values.workdir,
                                     step=flag_values.step, options=options,
                                     results_file=flag_values.results)
