"""The pose models, and a JSON-able description to rebuild one from a checkpoint."""

from collections.abc import Mapping
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
_RUNTIME_FIELDS = ('parent', 'name', 'axis_name', 'cpu_convs')


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


def _hourglass_bias_is_cancelled(names: tuple[str, ...], siblings: Mapping) -> bool:
  # Every conv output except the heatmap scores reaches the heatmaps only
  # through a BatchNorm: directly (conv1 -> bn1, conv1 -> bn2, conv2 -> bn3,
  # fc_{i}_0 -> fc_{i}_1) or along the residual stream, where a per-channel
  # constant passes sums, max-pooling and nearest upsampling unchanged until
  # the next block's bn1 subtracts it.
  del siblings
  parent = names[-2]
  return not (parent.startswith('score_') and not parent.startswith('score__'))


def _openpose_bias_is_cancelled(names: tuple[str, ...], siblings: Mapping) -> bool:
  # Upstream's `conv(..., bn=True)`: conv `{prefix}_0`, BN `{prefix}_1`. The
  # other biases (heads, refinement `initial`, CPM align) feed ReLU/ELU or
  # outputs, so they matter.
  parent = names[-2]
  if not parent.endswith('_0'):
    return False
  batchnorm = siblings.get(parent[:-1] + '1')
  return isinstance(batchnorm, Mapping) and 'scale' in batchnorm


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
  rule = {'hourglass': _hourglass_bias_is_cancelled,
          'lightweight_openpose': _openpose_bias_is_cancelled}.get(arch)
  if rule is None:
    raise ValueError(f'model config: field "arch" is {arch!r}, expected one of '
                     f'{sorted(ARCHITECTURES)}')

  def mark(tree: Mapping, prefix: tuple[str, ...], parent: Mapping) -> dict:
    return {name: (mark(value, prefix + (name,), tree) if isinstance(value, Mapping) else
                   name == 'bias' and 'kernel' in tree and rule(prefix + (name,), parent))
            for name, value in tree.items()}
  return mark(params, (), {})
