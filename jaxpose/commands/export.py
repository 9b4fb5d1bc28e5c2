"""`jaxpose export --workdir DIR --out model.onnx`: a checkpoint as ONNX, checked against JAX with onnxruntime.

The input size is the one the model was trained at (a converted checkpoint:
its upstream's), unless --input_size says otherwise. The file is written
under a temporary name and takes its name only once onnxruntime's outputs
match JAX's, so a failed export leaves any earlier file as it was.
"""

import os

from absl import flags

from jaxpose import commands
from jaxpose.deploy import export

OUTPUT_FLAGS = {'out': 'file'}


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
  flags.mark_flags_as_required(['workdir', 'out'], flag_values=flag_values)


def main(flag_values: flags.FlagValues) -> dict:
  input_size = commands.parse_size(flag_values.input_size, 'input_size')
  path = export.export_workdir(flag_values.workdir, flag_values.out, step=flag_values.step,
                               input_size=input_size, nchw=flag_values.nchw,
                               last_only=flag_values.last_only, opset=flag_values.opset)
  inputs = export.onnx_inputs(path)
  return {'workdir': flag_values.workdir, 'out': os.fspath(path),
          'bytes': os.path.getsize(path), 'inputs': inputs}
