"""`jaxpose export --workdir DIR --out model.onnx`: a checkpoint as ONNX, checked against JAX with onnxruntime.

The input size is the one the model was trained at (a converted checkpoint:
its upstream's), unless --input_size says otherwise. The file is written
under a temporary name and takes its name only once onnxruntime's outputs
match JAX's, so a failed export leaves any earlier file as it was.

With --int8 --calibration DIR, a statically quantised copy follows beside
it, `<out stem>.int8.onnx`, kept only if its keypoints agree with the float
model's on the check images (docs/export.md).
"""

import os

from absl import flags

from jaxpose import commands
from jaxpose.deploy import export, quantize
from jaxpose.inference import frame_sources

OUTPUT_FLAGS = {'out': 'file'}
# The flags that mean something only with --int8.
_INT8_FLAGS = ('calibration', 'int8_check', 'int8_min_agreement', 'int8_tolerance')


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string('workdir', None, 'Workdir written by `jaxpose train` or `jaxpose convert`.',
                      flag_values=flag_values)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).',
                       flag_values=flag_values)
  flags.DEFINE_string('out', None, 'The .onnx file to write.', flag_values=flag_values)
  flags.DEFINE_bool('nchw', False, 'Input [N, 3, H, W] and outputs [N, C, h, w] '
                    '(default: channels last).', flag_values=flag_values)
  flags.DEFINE_bool('last_only', False, 'Export only the last stack / stage.',
                    flag_values=flag_values)
  flags.DEFINE_list('input_size', None, 'Input width,height (default: the size the model was '
                    'trained at, recorded in its workdir).', flag_values=flag_values)
  flags.DEFINE_integer('opset', export.DEFAULT_OPSET, 'ONNX opset.', flag_values=flag_values)
  flags.DEFINE_bool('int8', False, 'Also write a statically quantised model, <out stem>'
                    f'{quantize.INT8_SUFFIX}, kept only if its keypoints agree with the float '
                    "model's (needs --calibration).", flag_values=flag_values)
  flags.DEFINE_string('calibration', None, 'With --int8: a folder of images like those the model '
                      'will see, on which the int8 activation ranges are calibrated.',
                      flag_values=flag_values)
  flags.DEFINE_string('int8_check', None, 'With --int8: a folder of images on which the int8 '
                      "and float models' keypoints are compared (default: the --calibration "
                      'images).', flag_values=flag_values)
  flags.DEFINE_float('int8_min_agreement', quantize.DEFAULT_MIN_AGREEMENT,
                     "With --int8: the least share of the float model's keypoints that the int8 "
                     'model must find within --int8_tolerance, else the int8 file is not written '
                     'and the export fails.', lower_bound=0.0, upper_bound=1.0,
                     flag_values=flag_values)
  flags.DEFINE_float('int8_tolerance', None, 'With --int8: pixels of a check image within which an '
                     'int8 keypoint agrees with the float one (default: one heatmap cell of the '
                     'model on that image).', flag_values=flag_values)
  flags.mark_flags_as_required(['workdir', 'out'], flag_values=flag_values)


def _image_folder(folder: str, flag: str) -> frame_sources.ImageSource:
  """--FLAG DIR -> its images; UsageError naming the flag and folder when it has none."""
  try:
    return frame_sources.image_folder(folder)
  except (OSError, ValueError) as e:
    raise commands.UsageError(f'--{flag} {e}') from None


def _int8_images(flag_values: flags.FlagValues
                 ) -> tuple[frame_sources.ImageSource, frame_sources.ImageSource] | None:
  """The --int8 flags, checked before any work -> (calibration images, check images), or None without --int8."""
  if not flag_values.int8:
    given = [f'--{name}' for name in _INT8_FLAGS if flag_values[name].present]
    if given:
      raise commands.UsageError(f'{", ".join(given)} '
                                f'{"applies" if len(given) == 1 else "apply"} only with --int8')
    return None
  if flag_values.calibration is None:
    raise commands.UsageError('--int8 needs --calibration DIR: a folder of images like those '
                              'the model will see')
  if flag_values.int8_tolerance is not None and not flag_values.int8_tolerance > 0:
    raise commands.UsageError(f'--int8_tolerance: expected a positive number of pixels, got '
                              f'{flag_values.int8_tolerance:g}')
  calibration = _image_folder(flag_values.calibration, 'calibration')
  check = (calibration if flag_values.int8_check is None
           else _image_folder(flag_values.int8_check, 'int8_check'))
  return calibration, check


def main(flag_values: flags.FlagValues) -> dict:
  input_size = commands.parse_size(flag_values.input_size, 'input_size')
  int8_images = _int8_images(flag_values)
  path = export.export_workdir(flag_values.workdir, flag_values.out, step=flag_values.step,
                               input_size=input_size, nchw=flag_values.nchw,
                               last_only=flag_values.last_only, opset=flag_values.opset,
                               check_model=quantize.check_quantizable if int8_images else None)
  inputs = export.onnx_inputs(path)
  summary = {'workdir': flag_values.workdir, 'out': os.fspath(path),
             'bytes': os.path.getsize(path), 'inputs': inputs}
  if int8_images:
    # An int8 file already beside --out was made from the float model just
    # replaced: removed, so that a failed gate cannot leave it looking current.
    stale = quantize.int8_path(path)
    if os.path.exists(stale):
      os.remove(stale)
    calibration, check = int8_images
    summary['int8'] = quantize.export_int8(
        path, calibration, check, min_agreement=flag_values.int8_min_agreement,
        tolerance=flag_values.int8_tolerance)
  return summary
