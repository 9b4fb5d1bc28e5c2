"""`jaxpose convert --arch A --checkpoint F.pth --workdir DIR`: a published PyTorch checkpoint as a jaxpose workdir (Orbax).

The workdir's model description records the input normalisation and the
input size the published weights were trained and run with (--input_size
for a checkpoint published at another size, e.g. mmpose's 384x384
hourglass), which eval, export and infer then use.
"""

import dataclasses
import os
import sys

from absl import flags
import jax

from jaxpose import models
from jaxpose.training import checkpoint
from jaxpose.deploy import convert
from jaxpose import commands
from jaxpose.commands import UsageError

OUTPUT_FLAGS = {'workdir': 'folder', 'out': 'folder'}
# Options of the families' upstream checkpoints; each family takes those of its fields.
_OPTIONS = ('num_stacks', 'num_blocks', 'num_joints', 'num_refinement_stages')
# Any size every family accepts.
_INPUT_SHAPE = (1, 256, 256, 3)


def define_flags(flag_values: flags.FlagValues) -> None:
  define = dict(flag_values=flag_values)
  flags.DEFINE_enum('arch', None, sorted(models.ARCHITECTURES), 'Model family.', **define)
  flags.DEFINE_string('checkpoint', None, 'The .pth / .pth.tar file to read.', **define)
  flags.DEFINE_string('workdir', None, 'The workdir to write (a folder).', **define)
  flags.DEFINE_string('out', None, 'Deprecated spelling of --workdir (removed in the next '
                      'release).', **define)
  flags.DEFINE_list('input_size', None, 'Input width,height the weights were published at '
                    "(default: the family's upstream size: 256,256 for the hourglasses, "
                    '456,256 for Lightweight OpenPose, 368,368 for CMU OpenPose).', **define)
  flags.DEFINE_integer('num_stacks', 2, 'Hourglass stacks.', **define)
  flags.DEFINE_integer('num_blocks', 1, 'Hourglass blocks.', **define)
  flags.DEFINE_integer('num_joints', 16, 'Hourglass output joints.', **define)
  flags.DEFINE_integer('num_refinement_stages', 1, 'Lightweight OpenPose refinement stages.',
                       **define)
  flags.mark_flags_as_required(['arch', 'checkpoint'], **define)


def description(arch: str, **options) -> dict:
  """arch and option values -> a model description with the options that its family has."""
  fields = {field.name for field in dataclasses.fields(models.model_class({'arch': arch}))}
  return {'arch': arch, **{k: v for k, v in options.items() if k in fields}}


def _workdir(flag_values: flags.FlagValues) -> str:
  """--workdir, or the deprecated --out (warned); UsageError without either or with both."""
  if flag_values.out is not None:
    if flag_values.workdir is not None:
      raise UsageError('--out is the deprecated spelling of --workdir: give --workdir alone')
    print('jaxpose convert: --out is deprecated, use --workdir (the same folder)',
          file=sys.stderr)
    return flag_values.out
  if flag_values.workdir is None:
    raise UsageError('--workdir: expected the folder to write the converted checkpoint to')
  return flag_values.workdir


def main(flag_values: flags.FlagValues) -> dict:
  workdir = _workdir(flag_values)
  if not os.path.isfile(flag_values.checkpoint):
    raise UsageError(f'--checkpoint {flag_values.checkpoint}: no such file; expected a PyTorch '
                     'checkpoint (.pth / .pth.tar)')
  config = description(flag_values.arch, **{name: flag_values[name].value for name in _OPTIONS})
  model = models.create_model(config)
  input_size = (commands.parse_size(flag_values.input_size, 'input_size')
                or type(model).DEFAULT_INPUT_SIZE)
  state_dict = convert.load_torch_checkpoint(flag_values.checkpoint)
  try:
    variables = convert.variables_from_torch(model, state_dict, input_shape=_INPUT_SHAPE)
  except convert.CheckpointMismatchError as e:
    raise ValueError(f'{flag_values.checkpoint}: {e}') from None
  # The normalisation and size the published weights were trained with go with them.
  described = models.describe(model, type(model).UPSTREAM_NORMALIZATION, input_size)
  path = checkpoint.save_variables(workdir, variables, described)
  num_params = sum(v.size for v in jax.tree_util.tree_leaves(variables['params']))
  print(f'{flag_values.checkpoint} -> {path} ({flag_values.arch}, {num_params:,} parameters)',
        file=sys.stderr)
  return {'checkpoint': flag_values.checkpoint, 'workdir': workdir, 'step_dir': path,
          'arch': flag_values.arch, 'parameters': num_params, 'input_size': list(input_size)}
