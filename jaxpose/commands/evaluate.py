"""`jaxpose eval --config C --workdir W`: a trained model's COCO AP, MPII PCKh or PCK; the metrics are the last line of stdout, as JSON.

A STAF model is scored as a tracker: PoseTrack's MOTA of TAF and of OKS
tracking of the same people, and their AP, per joint, side by side, on
held-out generated clips or on --posetrack FILE (with --posetrack_images).
"""

import sys

from absl import flags
import numpy as np

from jaxpose import approaches, evaluation
from jaxpose.commands import UsageError
from jaxpose.metrics import posetrack

CONFIG_DRIVEN = True
OUTPUT_FLAGS = {'results': 'file'}


def define_flags(flag_values: flags.FlagValues) -> None:
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
  flags.DEFINE_enum('mpii_protocol', 'jaxpose', ['jaxpose', 'bearpaw'],
                    "Top-down MPII: jaxpose's protocol, or bearpaw/pytorch-pose's (its box, "
                    "crop, flip test and final_preds; PCKh strictly below 0.5, as its "
                    'eval_PCKh.py).', flag_values=flag_values)
  flags.DEFINE_enum('coco_protocol', 'jaxpose', ['jaxpose', 'mmpose'],
                    "Top-down COCO: jaxpose's protocol, or mmpose's (its crop, shifted flip "
                    'test, decoding, rescoring and OKS-NMS), which mmpose checkpoints are '
                    'published with.', flag_values=flag_values)
  flags.DEFINE_integer('dark_kernel', None, "Top-down, jaxpose's protocol: DARK decoding with "
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


def tracking_table(result) -> str:
  """A `staf_tracking.TrackingResult` -> per joint and total: MOTA of TAF and OKS tracking, and AP."""
  columns = {'MOTA TAF': result.taf.mota, 'MOTA OKS': result.oks.mota}
  if result.pose is not None:  # None: the people are the ground truth's
    columns['AP'] = result.pose.ap
  lines = [result.title, f'{"joint":16}' + ''.join(f'{name:>10}' for name in columns)]
  rows = list(posetrack.JOINT_NAMES) + ['total']
  for row, name in enumerate(rows):
    values = [posetrack.total(v) if name == 'total' else v[row] for v in columns.values()]
    lines.append(f'{name:16}' + ''.join(f'{value:10.1f}' for value in values))
  switches = {'TAF': result.taf.num_switches, 'OKS': result.oks.num_switches}
  lines.append('identity switches: ' + ', '.join(f'{kind} {int(np.sum(count))}'
                                                 for kind, count in switches.items()))
  return '\n'.join(lines)


def main(flag_values: flags.FlagValues) -> dict:
  if isinstance(approaches.for_config(flag_values.config), approaches.StafBottomUp):
    results, metrics = evaluation.evaluate_tracking(
        flag_values.config, flag_values.workdir, step=flag_values.step,
        posetrack_annotations=flag_values.posetrack,
        posetrack_images=flag_values.posetrack_images)
    for result in results:
      print(tracking_table(result), file=sys.stderr)
    return metrics
  options = approaches.EvalOptions(
      detections=flag_values.detections, detection_threshold=flag_values.detection_threshold,
      flip_test=flag_values.flip_test, scales=parse_scales(flag_values.scales),
      mpii_protocol=flag_values.mpii_protocol, coco_protocol=flag_values.coco_protocol,
      dark_kernel=flag_values.dark_kernel,
      boxes_from=flag_values.boxes_from)
  metrics = evaluation.evaluate_workdir(flag_values.config, flag_values.workdir,
                                        step=flag_values.step, options=options,
                                        results_file=flag_values.results)
  return metrics
