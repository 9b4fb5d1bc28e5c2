"""The pose models, and a JSON-able description to rebuild one from a checkpoint."""

import dataclasses
from typing import Any

import flax.linen as nn

from jaxpose.models.hourglass import StackedHourglass
from jaxpose.models.openpose import LightweightOpenPose

# arch name in checkpoints and on the command line -> model class.
ARCHITECTURES = {
    'hourglass': StackedHourglass,
    'lightweight_openpose': LightweightOpenPose,
}
# Fields that describe how a model runs, not what it is.
_RUNTIME_FIELDS = ('parent', 'name', 'axis_name')


def model_config(model: nn.Module) -> dict[str, Any]:
  """Model -> {'arch': ..., **its options}, enough to rebuild it with `create_model`."""
  for arch, cls in ARCHITECTURES.items():
    if type(model) is cls:
      options = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
                 if f.name not in _RUNTIME_FIELDS}
      return {'arch': arch, **options}
  raise ValueError(f'{type(model).__name__} is not one of {sorted(ARCHITECTURES)}')


def create_model(config: dict[str, Any], **runtime) -> nn.Module:
  """{'arch': ..., **options} -> model; `runtime` adds e.g. axis_name='batch'."""
  options = dict(config)
  arch = options.pop('arch', None)
  if arch not in ARCHITECTURES:
    raise ValueError(f'model config: field "arch" is {arch!r}, expected one of '
                     f'{sorted(ARCHITECTURES)}')
  cls = ARCHITECTURES[arch]
  known = {f.name for f in dataclasses.fields(cls)} - set(_RUNTIME_FIELDS)
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(f'model config: unknown field(s) {unknown} for arch {arch!r}; '
                     f'known: {sorted(known)}')
  return cls(**options, **runtime)
