"""`jaxpose export --workdir DIR --out model.onnx`: a checkpoint as ONNX, checked against JAX with onnxruntime."""

import os

from absl import flags

from jaxpose import export


def define_flags(flag_values: flags.FlagValues) -> None:
  flags.DEFINE_string('workdir', None, 'Workdir written by `jaxpose train` or `jaxpose convert`.',
                      flag_values=flag_values)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).',
                       flag_values=flag_values)
  flags.DEFINE_string('out', None, '.onnx file to write.', flag_values=flag_values)
  flags.DEFINE_bool('nchw', False, 'Input [N, 3, H, W] and outputs [N, C, h, w] '
                    '(default: channels last).', flag_values=flag_values)
  flags.DEFINE_bool('last_only', False, 'Export only the last stack / stage.',
                    flag_values=flag_values)
  flags.DEFINE_list('input_size', None, 'Input width,height (default: the model '
                    "family's, 256,256 for the hourglass, 456,256 for Lightweight OpenPose).",
                    flag_values=flag_values)
  flags.DEFINE_integer('opset', export.DEFAULT_OPSET, 'ONNX opset.', flag_values=flag_values)
  flags.mark_flags_as_required(['workdir', 'out'], flag_values=flag_values)


def parse_size(values: list[str] | None, flag: str) -> tuple[int, int] | None:
  """--FLAG=W,H -> (width, height); ValueError naming the flag otherwise."""
  if values is None:
    return None
  try:
    width, height = (int(v) for v in values)
  except ValueError:
    raise ValueError(f'--{flag}: expected WIDTH,HEIGHT, got {",".join(values)}') from None
  return width, height


def main(flag_values: flags.FlagValues) -> None:
  path = export.export_workdir(flag_values.workdir, flag_values.out, step=flag_values.step,
                               input_size=parse_size(flag_values.input_size, 'input_size'),
                               nchw=flag_values.nchw, last_only=flag_values.last_only,
                               opset=flag_values.opset)
  print(f'{flag_values.workdir} -> {path} ({os.path.getsize(path) / 2**20:.1f} MiB)')
