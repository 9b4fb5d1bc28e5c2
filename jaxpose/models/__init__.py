"""The pose models, and a JSON-able description to rebuild one from a checkpoint."""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

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


# How each architecture expects its input, so that converted upstream
# checkpoints see what they were trained on. Images arrive as uint8 RGB.
# Hourglass: RGB in [0, 1], ImageNet mean and std (SimpleBaseline's recipe).
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_images(images: jax.Array, arch: str) -> jax.Array:
  """uint8 RGB images [..., H, W, 3] -> float32 model input for `arch`.

  hourglass: (x / 255 - ImageNet mean) / ImageNet std, RGB.
  lightweight_openpose: (x - 128) / 256 on BGR, as upstream trains and infers
  (it reads images with cv2), so its published checkpoint works unchanged.
  """
  images = jnp.asarray(images, jnp.float32)
  if arch == 'hourglass':
    return (images / 255.0 - jnp.asarray(_IMAGENET_MEAN)) / jnp.asarray(_IMAGENET_STD)
  if arch == 'lightweight_openpose':
    return (images[..., ::-1] - 128.0) / 256.0
  raise ValueError(f'model config: field "arch" is {arch!r}, expected one of '
                   f'{sorted(ARCHITECTURES)}')
