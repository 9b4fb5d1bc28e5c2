"""`jaxpose convert --arch A --checkpoint F.pth --out DIR`: a PyTorch checkpoint as a jaxpose workdir (Orbax)."""

import dataclasses

from absl import flags
import jax

from jaxpose import checkpoint, convert, models

# Options of the families' upstream checkpoints; each family takes those of its fields.
_OPTIONS = ('num_stacks', 'num_blocks', 'num_joints', 'num_refinement_stages')
# Any size every family accepts.
_INPUT_SHAPE = (1, 256, 256, 3)


def define_flags(flag_values: flags.FlagValues) -> None:
  define = dict(flag_values=flag_values)
  flags.DEFINE_enum('arch', None, sorted(models.ARCHITECTURES), 'Model family.', **define)
  flags.DEFINE_string('checkpoint', None, '.pth / .pth.tar file.', **define)
  flags.DEFINE_string('out', None, 'Workdir to write.', **define)
  flags.DEFINE_integer('num_stacks', 2, 'Hourglass stacks.', **define)
  flags.DEFINE_integer('num_blocks', 1, 'Hourglass blocks.', **define)
  flags.DEFINE_integer('num_joints', 16, 'Hourglass output joints.', **define)
  flags.DEFINE_integer('num_refinement_stages', 1, 'Lightweight OpenPose refinement stages.',
                       **define)
  flags.mark_flags_as_required(['arch', 'checkpoint', 'out'], **define)


def description(arch: str, **options) -> dict:
  """arch and option values -> a model description with the options that its family has."""
  fields = {field.name for field in dataclasses.fields(models.model_class({'arch': arch}))}
  return {'arch': arch, **{k: v for k, v in options.items() if k in fields}}


def main(flag_values: flags.FlagValues) -> None:
  config = description(flag_values.arch, **{name: flag_values[name].value for name in _OPTIONS})
  model = models.create_model(config)
  state_dict = convert.load_torch_checkpoint(flag_values.checkpoint)
  try:
    variables = convert.variables_from_torch(model, state_dict, input_shape=_INPUT_SHAPE)
  except convert.CheckpointMismatchError as e:
    raise ValueError(f'{flag_values.checkpoint}: {e}') from None
  # The normalisation the published weights were trained with goes with them.
  described = dict(models.model_config(model),
                   normalization=type(model).UPSTREAM_NORMALIZATION.to_dict())
  path = checkpoint.save_variables(flag_values.out, variables, described)
  num_params = sum(v.size for v in jax.tree_util.tree_leaves(variables['params']))
  print(f'{flag_values.checkpoint} -> {path} ({flag_values.arch}, {num_params:,} parameters)')
