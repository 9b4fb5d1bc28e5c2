"""Input normalisation: how RGB pixels become what a model was trained on."""

from collections.abc import Mapping
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

_CHANNEL_ORDERS = ('RGB', 'BGR')


@dataclasses.dataclass(frozen=True)
class Normalization:
  """Pixels -> model input: channels reordered, then (x / divisor - mean) / std per channel.

  Attributes:
    channels: 'RGB' or 'BGR', the channel order the model takes (images
      arrive RGB).
    divisor: pixels are divided by it first (255 for [0, 1] inputs).
    mean: per channel, in the model's channel order, after the division.
    std: per channel, likewise.
  """
  channels: str = 'RGB'
  divisor: float = 1.0
  mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
  std: tuple[float, float, float] = (1.0, 1.0, 1.0)

  def __post_init__(self):
    if self.channels not in _CHANNEL_ORDERS:
      raise ValueError(f'normalization: field "channels" is {self.channels!r}, expected one of '
                       f'{_CHANNEL_ORDERS}')
    for field in ('mean', 'std'):
      if len(getattr(self, field)) != 3:
        raise ValueError(f'normalization: field {field!r} is {getattr(self, field)!r}, '
                         'expected 3 numbers')
    if not self.divisor or not all(self.std):
      raise ValueError(f'normalization: divisor {self.divisor} and std {self.std} must be '
                       'nonzero')

  # A method, not __call__: flax wraps callable class attributes of modules,
  # where families keep their normalisations.
  def normalize(self, images: jax.Array) -> jax.Array:
    """RGB pixels [..., H, W, 3] (any dtype) -> float32 model input [..., H, W, 3]."""
    images = jnp.asarray(images, jnp.float32)
    if self.channels == 'BGR':
      images = images[..., ::-1]
    return (images / self.divisor - jnp.asarray(self.mean)) / jnp.asarray(self.std)

  def to_dict(self) -> dict[str, Any]:
    """JSON-able form, as a model description stores it."""
    return {'channels': self.channels, 'divisor': self.divisor, 'mean': list(self.mean),
            'std': list(self.std)}

  @classmethod
  def from_dict(cls, fields: Mapping[str, Any]) -> 'Normalization':
    """The inverse of `to_dict`; ValueError naming an unknown field."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise ValueError(f'normalization: unknown field(s) {unknown}; known: {sorted(known)}')
    values = dict(fields)
    for field in ('mean', 'std'):
      if field in values:
        values[field] = tuple(float(v) for v in values[field])
    return cls(**values)


# torchvision's ImageNet statistics on RGB in [0, 1] (SimpleBaseline, HRNet, mmpose).
IMAGENET = Normalization('RGB', 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
