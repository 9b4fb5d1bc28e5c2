"""Random weights for parity tests, for the PyTorch references and for jaxpose's flax models.

jaxpose's test fixture, not upstream code: no upstream initialises weights
this way (bearpaw's, Daniil-Osokin's and mmpose's models start from
PyTorch's or their own defaults, or load checkpoints), so there is no
upstream file to transcribe or cite. The references themselves
(`torch_*.py`) cite theirs. A parity test compares two implementations
holding the same weights; drawn here, every conv kernel and every BatchNorm
scale, offset and running statistic differs from its default, so that a
layer or a statistic used in the wrong place cannot hide. Both functions draw
from the same distributions: kernels N(0, gain / fan_in), conv biases and
BatchNorm offsets and means 0.1-0.2 N(0, 1), scales 1 + 0.2 N(0, 1),
variances 0.5 + U(0, 1).
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np


def randomize(model, seed: int = 0, gain: float = 1.0):
  """A PyTorch nn.Module's conv weights ~ N(0, gain / fan_in), conv biases ~ 0.1 N(0, 1); BatchNorm gets random gamma,
  beta, running mean and positive running variance (so BN errors cannot hide). -> model.eval().

  `gain` keeps each family's activations O(1): 1 (LeCun) for the residual
  hourglasses, 2 (He) for CMU OpenPose's plain ReLU stack, 1.5 for Lightweight
  OpenPose, between the shrinking backbone and the growing refinement stages.
  """
  import torch  # pylint: disable=import-outside-toplevel  (the flax tests need no torch)
  from torch import nn  # pylint: disable=import-outside-toplevel
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (gain / fan_in)**0.5)
        if module.bias is not None:
          module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
      elif isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
        module.bias.copy_(0.2 * torch.randn(n, generator=gen))
        module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
  return model.eval()


def random_variables(model, *init_inputs, seed: int = 0, gain: float = 1.5, **init_kwargs) -> dict:
  """A flax model's variables, of the shapes `model.init(key, *init_inputs, **init_kwargs)` gives, drawn at random.

  Kernels N(0, gain / fan_in), scales 1 + 0.2 N(0, 1), running variances
  0.5 + U(0, 1), biases and running means 0.1 N(0, 1). Flax's default init
  with untrained BatchNorm shrinks Lightweight OpenPose's activations to
  ~1e-4 (where onnxruntime's Elu, exp(x) - 1 rather than expm1, is 1e-3
  off); these keep them O(1), as trained weights do. Nothing is compiled or
  run: the initialisers cost more than most tests.
  """
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), *init_inputs, **init_kwargs))
  rng = np.random.default_rng(seed)
  flat = {}
  for path, leaf in flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes)).items():
    shape, name = leaf.shape, path[-1]
    if name == 'kernel':
      value = rng.normal(size=shape) * np.sqrt(gain / np.prod(shape[:-1]))
    elif name == 'scale':
      value = 1 + 0.2 * rng.normal(size=shape)
    elif name == 'var':
      value = 0.5 + rng.random(shape)
    else:  # conv and BatchNorm biases, running means
      value = 0.1 * rng.normal(size=shape)
    flat[path] = jnp.asarray(value, jnp.float32)
  return flax.traverse_util.unflatten_dict(flat)
