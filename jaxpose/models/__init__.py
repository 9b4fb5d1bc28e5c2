"""The pose models, and a JSON-able description to rebuild one from a checkpoint.

A model family is one module here: a flax module whose class also states the
facts the rest of jaxpose needs of it: `OUTPUT_MAPS` (('heatmaps',) for a
top-down model, ('heatmaps', 'pafs') for a bottom-up one), `OUTPUT_STRIDE`,
`STAGE_NAME` (its outputs are named `{map}_{STAGE_NAME}{i}`),
`DEFAULT_INPUT_SIZE` (width, height), `DEFAULT_NORMALIZATION` (models trained
here) and `UPSTREAM_NORMALIZATION` (the published checkpoints'), the
properties `num_stages` and `input_multiple`, and the static method
`bias_is_cancelled(names, siblings)`. Add its class to `ARCHITECTURES` and the
protocol its published weights are run with to
`approaches.protocols.DEFAULT_FOR_ARCH`; the approaches, the trainer,
evaluation, inference and export take it.
"""

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeletons
from jaxpose.models.cmu_openpose import CmuOpenPose
from jaxpose.models.hourglass import StackedHourglass
from jaxpose.models.mmpose_hourglass import MmposeHourglass
from jaxpose.models.normalization import Normalization
from jaxpose.models.openpose import LightweightOpenPose
from jaxpose.models.staf import StafOpenPose

# arch name in checkpoints and on the command line -> model class: the one
# place where an architecture's name means something.
ARCHITECTURES = {
    'hourglass': StackedHourglass,
    'lightweight_openpose': LightweightOpenPose,
    'mmpose_hourglass': MmposeHourglass,
    'openpose': CmuOpenPose,
    'staf': StafOpenPose,
}
# Fields that describe how a model runs, not what it is.
_RUNTIME_FIELDS = ('parent', 'name', 'axis_name', 'remat', 'compute_dtype')
# A model description's entries that are not fields of the model: how its
# weights were trained (the input normalisation, the input size (width,
# height)) and its output stride, which every consumer reads.
NORMALIZATION_FIELD = 'normalization'
INPUT_SIZE_FIELD = 'input_size'
STRIDE_FIELD = 'stride'
# The keypoint layout the weights learnt (`skeletons.to_dict`): names, limbs,
# flip pairs and OKS sigmas, for evaluation, inference, export and drawing.
SKELETON_FIELD = 'skeleton'
_DESCRIPTION_FIELDS = (NORMALIZATION_FIELD, INPUT_SIZE_FIELD, STRIDE_FIELD, SKELETON_FIELD)


def model_class(config: Mapping[str, Any]) -> type[nn.Module]:
  """{'arch': ..., **options} -> the model class of its arch; ValueError naming an unknown one."""
  arch = config.get('arch')
  if arch not in ARCHITECTURES:
    raise ValueError(f'model config: field "arch" is {arch!r}, expected one of '
                     f'{sorted(ARCHITECTURES)}')
  return ARCHITECTURES[arch]


def model_config(model: nn.Module) -> dict[str, Any]:
  """Model -> {'arch': ..., **its options}, enough to rebuild it with `create_model`."""
  for arch, cls in ARCHITECTURES.items():
    if type(model) is cls:
      options = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
                 if f.name not in _RUNTIME_FIELDS}
      return {'arch': arch, **options}
  raise ValueError(f'{type(model).__name__} is not one of {sorted(ARCHITECTURES)}')


def create_model(config: Mapping[str, Any], **runtime) -> nn.Module:
  """{'arch': ..., **options} -> model; `runtime` adds e.g. axis_name='batch', compute_dtype=jnp.bfloat16."""
  cls = model_class(config)
  options = {k: v for k, v in config.items() if k not in ('arch', *_DESCRIPTION_FIELDS)}
  fields = {f.name for f in dataclasses.fields(cls)}
  # A training config's model may say how it runs (`remat`), where the family has it.
  if 'remat' in options and 'remat' in fields:
    runtime = {'remat': options.pop('remat'), **runtime}
  known = fields - set(_RUNTIME_FIELDS)
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(f'model config: unknown field(s) {unknown} for arch {config["arch"]!r}; '
                     f'known: {sorted(known)}')
  return cls(**options, **runtime)


def describe(model: nn.Module, normalization: Normalization, input_size: Sequence[int],
             skeleton: skeletons.Skeleton | None = None) -> dict[str, Any]:
  """A model, the normalisation, (width, height) and keypoint layout its weights were trained at -> its description.

  What a checkpoint stores beside the weights: `model_config(model)` plus
  `normalization`, `input_size` [width, height], the output `stride` and,
  given one, the `skeleton` (`skeletons.to_dict`), so that evaluation,
  export and inference run it as it was trained and name its keypoints.
  """
  width, height = (int(size) for size in input_size)
  description = dict(model_config(model), normalization=normalization.to_dict(),
                     input_size=[width, height], stride=type(model).OUTPUT_STRIDE)
  if skeleton is not None:
    description[SKELETON_FIELD] = skeletons.to_dict(skeleton)
  return description


def layout(config: Mapping[str, Any]) -> skeletons.Skeleton | None:
  """A model description -> the keypoint layout it records, or None (descriptions written before layouts were)."""
  fields = config.get(SKELETON_FIELD)
  return None if fields is None else skeletons.from_dict(fields)


def trained_input_size(config: Mapping[str, Any]) -> tuple[int, int]:
  """A model description -> the (width, height) its weights were trained at.

  The description's `input_size` where it has one, else its family's
  `DEFAULT_INPUT_SIZE` (workdirs written before the size was recorded).
  """
  size = config.get(INPUT_SIZE_FIELD)
  if size is None:
    return tuple(model_class(config).DEFAULT_INPUT_SIZE)
  width, height = (int(s) for s in size)
  return width, height


def upgrade_description(config: Mapping[str, Any], params: Mapping) -> dict:
  """A description read from a checkpoint, and its params -> the description of today's options that rebuilds them.

  Each family may define `upgrade_description(description, params)` for
  descriptions written before one of its options existed; an unknown arch
  is left for `create_model` to name.
  """
  cls = ARCHITECTURES.get(config.get('arch'))
  upgrade = getattr(cls, 'upgrade_description', None)
  return upgrade(config, params) if upgrade else dict(config)


def input_normalization(config: Mapping[str, Any]) -> Normalization:
  """A model description -> the input normalisation its weights were trained with.

  The description's 'normalization' entry where it has one, else its model
  family's `DEFAULT_NORMALIZATION` (what workdirs written without the entry
  were trained and converted with).
  """
  fields = config.get(NORMALIZATION_FIELD)
  if fields is None:
    return model_class(config).DEFAULT_NORMALIZATION
  return Normalization.from_dict(fields)


def output_names(model: nn.Module) -> list[str]:
  """A model -> the names of its outputs, in `flat_outputs` order.

  The model's own `output_names` where its family states them (STAF: every
  stage's heatmaps and PAFs, then the last stage's TAFs), else
  `{map}_{stage name}{i}` of every stage and map.
  """
  cls = type(model)
  if hasattr(cls, 'output_names'):
    return list(model.output_names)
  return [f'{name}_{cls.STAGE_NAME}{i}' for i in range(model.num_stages)
          for name in cls.OUTPUT_MAPS]


def flat_outputs(outputs: Sequence | Mapping[str, jax.Array],
                 names: Sequence[str] | None = None) -> list[jax.Array]:
  """A model's outputs -> one flat list in `output_names` order.

  Outputs per stage (an array or a tuple of maps) are flattened stage by
  stage; outputs by name (STAF) are taken in the order of `names`, the
  model's `output_names`, which they need.
  """
  if isinstance(outputs, Mapping):
    if names is None:
      raise ValueError(f'flat_outputs: outputs named {sorted(outputs)} need their order '
                       '(the model\'s output_names)')
    return [outputs[name] for name in names]
  return [maps for stage in outputs
          for maps in (stage if isinstance(stage, (tuple, list)) else (stage,))]


def arch_of_output_names(names: Sequence[str], source: str) -> str:
  """Output names (of an ONNX export) -> the arch whose models have them; ValueError naming `source`."""
  for arch, cls in ARCHITECTURES.items():
    prefixes = [f'{name}_{cls.STAGE_NAME}' for name in cls.OUTPUT_MAPS]
    if all(any(n.startswith(prefix) for n in names) for prefix in prefixes):
      return arch
  expected = ', '.join(' + '.join(f'{name}_{cls.STAGE_NAME}<i>' for name in cls.OUTPUT_MAPS)
                       + f' ({arch})' for arch, cls in ARCHITECTURES.items())
  raise ValueError(f'{source}: outputs {list(names)} are none of {expected}; was it written '
                   'by `jaxpose export`?')


def check_variables(variables: dict, config: Mapping[str, Any], source: str) -> None:
  """Raises ValueError naming `source` unless `variables` fit the described model exactly."""
  try:
    model = create_model(config)
  except ValueError as e:
    raise ValueError(f'{source}: {e}') from None
  width, height = type(model).DEFAULT_INPUT_SIZE
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                             jnp.zeros((1, height, width, 3)), train=False))
  expected = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes), sep='/')
  found = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables), sep='/')
  described = dict(config)
  for name, leaf in expected.items():
    if name not in found:
      raise ValueError(f'{source}: checkpoint has no variable {name!r} (shape {leaf.shape}) '
                       f'that the model {described} needs; was it written for another '
                       'architecture?')
    if tuple(np.shape(found[name])) != leaf.shape:
      raise ValueError(f'{source}: variable {name!r} has shape {np.shape(found[name])}, '
                       f'the model {described} expects {leaf.shape}')
  unknown = sorted(set(found) - set(expected))
  if unknown:
    raise ValueError(f'{source}: {len(unknown)} variable(s) that the model {described} '
                     f'does not have, first {unknown[0]!r}; was it written for another '
                     'architecture?')


def batchnorm_cancelled_biases(arch: str, params: Mapping) -> dict:
  """Params -> same-shaped tree of bools: True for conv biases that a BatchNorm cancels.

  In training mode BatchNorm subtracts each channel's batch mean, so a
  per-channel constant added before it has no effect on the output and, in
  exact arithmetic, a zero gradient (tests/test_models.py checks this in
  float64). The models keep these biases so that upstream checkpoints load
  unchanged, but adaptive optimizers (Adam, RMSprop) divide the gradient by
  its own magnitude and turn its rounding noise into full-size steps of either
  sign, which differ between one device and a data-parallel sum. The
  optimizer freezes them; the network computes the same function either way.
  """
  rule = model_class({'arch': arch}).bias_is_cancelled

  def mark(tree: Mapping, prefix: tuple[str, ...], parent: Mapping) -> dict:
    return {name: (mark(value, prefix + (name,), tree) if isinstance(value, Mapping) else
                   name == 'bias' and 'kernel' in tree and rule(prefix + (name,), parent))
            for name, value in tree.items()}
  return mark(params, (), {})
