"""Layers shared by the models: BatchNorm as the PyTorch originals run it."""

import flax.linen as nn

# PyTorch's BatchNorm2d defaults: running = 0.9 running + 0.1 batch, eps 1e-5.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


def batch_norm(train: bool, axis_name: str | None, name: str) -> nn.BatchNorm:
  """BatchNorm with PyTorch's momentum and epsilon; batch statistics averaged over `axis_name` in training."""
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BATCH_NORM_MOMENTUM,
      epsilon=BATCH_NORM_EPSILON,
      axis_name=axis_name if train else None,
      # Two-pass variance, mean((x - mean)^2): E[x^2] - E[x]^2 loses the
      # variance of near-constant channels (the 1x1 bottom of an hourglass)
      # to cancellation, differently for each way the batch is split.
      use_fast_variance=False,
      name=name)
