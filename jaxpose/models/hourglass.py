"""Stacked hourglass network (Newell et al., ECCV 2016), NHWC.

The architecture is that of bearpaw/pytorch-pose `HourglassNet`
(`pose/models/hourglass.py`): a 7x7/2 stem, three residuals (`layer1` 64 ->
128, max pool, `layer2` 128 -> 256, `layer3` 256 -> 2 * num_features),
pre-activation bottlenecks with expansion 2, a depth-4 hourglass with max-pool
down and nearest-neighbour up, then per stack `res` -> `fc` (conv, BN, ReLU) ->
`score`, with `fc_` and `score_` adding the stack's features and heatmaps back
into the next stack's input. With the default options a PyTorch checkpoint of
that model loads with `jaxpose.deploy.convert.variables_from_torch` and gives the same
outputs (tests/test_hourglass.py, against a transcription of upstream's file).

Submodule names follow the PyTorch attribute paths with '.' written as '_'
(`hg.0.hg.3.0.0` -> `hg_0/hg_3_0_0`, `fc_.0` -> `fc__0`), which is the only
thing the converter relies on.
"""

from collections.abc import Mapping
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpose.models import layers
from jaxpose.models.normalization import IMAGENET, Normalization

# Bottleneck output channels = EXPANSION * its `features`.
EXPANSION = 2
# Channels after the 7x7 stem (upstream's `inplanes`).
STEM_FEATURES = 64
HOURGLASS_DEPTH = 4
# bearpaw/pytorch-pose's inputs (commit edc7aece, `pose/utils/imutils.py`
# `load_image`, `pose/utils/transforms.py` `color_normalize`): RGB / 255 minus
# the MPII mean of `data/mpii/mean.pth.tar` (its float32 values), no std.
BEARPAW_MPII = Normalization('RGB', 255.0,
                             (0.440442830324173, 0.4440267086029053, 0.4326828420162201),
                             (1.0, 1.0, 1.0))


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], each pixel repeated (PyTorch's 'nearest' x2).

  Written as a broadcast + reshape rather than `jax.image.resize` so that it
  exports to ONNX with a dynamic batch.
  """
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


def max_pool_2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, H//2, W//2, C], 2x2 max pool with stride 2."""
  return nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding='VALID')


class Bottleneck(nn.Module):
  """Pre-activation bottleneck: [B, H, W, Cin] -> [B, H, W, 2 * features].

  BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1, plus the input (through a
  1x1 conv when the channel count changes). `depthwise` makes the 3x3 conv
  depthwise (the 'mobile' student block of Fast Pose Distillation); `dtype`
  is what its convs and BatchNorms compute in (None: as the input's).
  """
  features: int
  depthwise: bool = False
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(layers.batch_norm, train, self.axis_name, dtype=self.dtype)
    pointwise = functools.partial(layers.PointwiseConv, dtype=self.dtype)
    out = pointwise(self.features, name='conv1')(nn.relu(norm('bn1')(x)))
    out = nn.relu(norm('bn2')(out))
    if self.depthwise:
      out = layers.DepthwiseConv3x3(dtype=self.dtype, name='conv2')(out)
    else:
      out = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
                    name='conv2')(out)
    out_features = EXPANSION * self.features
    out = pointwise(out_features, name='conv3')(nn.relu(norm('bn3')(out)))
    residual = x
    if x.shape[-1] != out_features:
      residual = pointwise(out_features, name='downsample_0')(x)
    return out + residual


def remat_block() -> type[nn.Module]:
  """`Bottleneck` whose activations are recomputed in the backward pass (`nn.remat`), same params."""
  return nn.remat(Bottleneck, static_argnums=(2,))  # `train` (self is 0) selects the graph


class Hourglass(nn.Module):
  """One hourglass: [B, H, W, 2F] -> [B, H, W, 2F], H and W divisible by 2**depth.

  At each of `depth` levels: an upper branch of blocks at this resolution, and
  a lower branch that max-pools, recurses (or at the bottom runs one more
  residual), runs blocks and upsamples; the two are added.
  """
  features: int
  num_blocks: int
  depth: int = HOURGLASS_DEPTH
  depthwise: bool = False
  axis_name: str | None = None
  remat: bool = False
  dtype: Any = None

  def _residual(self, x: jax.Array, level: int, branch: int, train: bool):
    block = remat_block() if self.remat else Bottleneck
    for k in range(self.num_blocks):
      x = block(self.features, self.depthwise, self.axis_name, dtype=self.dtype,
                name=f'hg_{level}_{branch}_{k}')(x, train)
    return x

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    return self._level(x, self.depth, train)

  def _level(self, x: jax.Array, n: int, train: bool) -> jax.Array:
    # Upstream indexes level n as hg[n - 1]; branches 0 (upper), 1 (after
    # pooling), 2 (before upsampling) and, for the innermost level, 3.
    level = n - 1
    upper = self._residual(x, level, 0, train)
    lower = self._residual(max_pool_2x(x), level, 1, train)
    if n > 1:
      lower = self._level(lower, n - 1, train)
    else:
      lower = self._residual(lower, level, 3, train)
    lower = self._residual(lower, level, 2, train)
    return upper + upsample_nearest_2x(lower)


class StackedHourglass(nn.Module):
  """Stacked hourglass: images [B, H, W, 3] -> list of num_stacks [B, H/4, W/4, num_joints].

  Every stack's heatmaps are returned, for intermediate supervision; the last
  one is the prediction. H and W must be divisible by 4 * 2**depth (64 with
  upstream's depth 4).

  Attributes:
    num_stacks: hourglass modules in sequence.
    num_blocks: bottlenecks in each residual of the hourglass and after it.
    num_joints: heatmap channels.
    num_features: bottleneck width; the hourglass carries 2 * num_features
      channels (upstream: 128, i.e. 256 channels).
    depthwise: depthwise 3x3 convs in every bottleneck (lighter students).
    depth: halvings inside each hourglass (upstream: 4, a 4x4 bottom for
      64x64 heatmaps). Small inputs want fewer: at 16x16 heatmaps depth 4
      bottoms out at 1x1, where BatchNorm normalises one value per image.
    layer2_features: bottleneck width of `layer2`. Upstream's is 128 (its
      `inplanes` after `layer1`): 128 -> 256 channels through a 1x1
      downsample. Workdirs written before jaxpose followed that have 64
      (128 -> 128, the downsample then in `layer3`); `upgrade_description`
      recognises them.
    axis_name: mapped axis over which BatchNorm averages batch statistics in
      training (e.g. 'batch' under pmap / shard_map); None on one device.
    remat: recompute each residual block's activations in the backward pass
      instead of keeping them (`nn.remat`, `config.model.remat`): the same
      params, outputs and gradients, less activation memory on accelerators
      for about a third more compute. How the model runs, not what it is:
      not stored in model descriptions.
    compute_dtype: what the convolutions and activations compute in
      (`config.compute_dtype`, e.g. bfloat16); params and BatchNorm
      statistics stay float32 and the heatmaps are returned in float32.
      None: the inputs' and params' dtype. Not stored in descriptions.
  """
  num_stacks: int = 2
  num_blocks: int = 1
  num_joints: int = 16
  num_features: int = 128
  depthwise: bool = False
  depth: int = HOURGLASS_DEPTH
  layer2_features: int = EXPANSION * STEM_FEATURES
  axis_name: str | None = None
  remat: bool = False
  compute_dtype: Any = None

  # What the rest of jaxpose needs to know of the family (`jaxpose.models`).
  OUTPUT_MAPS = ('heatmaps',)  # one person's joints: a top-down model
  OUTPUT_STRIDE = 4
  STAGE_NAME = 'stack'
  DEFAULT_INPUT_SIZE = (256, 256)  # (width, height)
  # Models trained here, as SimpleBaseline: RGB in [0, 1], ImageNet mean and std.
  DEFAULT_NORMALIZATION = IMAGENET
  # What the published checkpoints that `jaxpose convert` reads were trained with.
  UPSTREAM_NORMALIZATION = BEARPAW_MPII

  @property
  def num_stages(self) -> int:
    return self.num_stacks

  @property
  def input_multiple(self) -> int:
    """The stem's stride times the hourglass's 2**depth halvings."""
    return 4 * 2**self.depth

  @staticmethod
  def bias_is_cancelled(names: tuple[str, ...], siblings: Mapping) -> bool:
    """Whether the conv bias at `names` feeds a BatchNorm (see `models.batchnorm_cancelled_biases`)."""
    # Every conv output except the heatmap scores reaches the heatmaps only
    # through a BatchNorm: directly (conv1 -> bn1, conv1 -> bn2, conv2 -> bn3,
    # fc_{i}_0 -> fc_{i}_1) or along the residual stream, where a per-channel
    # constant passes sums, max-pooling and nearest upsampling unchanged until
    # the next block's bn1 subtracts it.
    del siblings
    parent = names[-2]
    return not (parent.startswith('score_') and not parent.startswith('score__'))

  @staticmethod
  def upgrade_description(description: Mapping, params: Mapping) -> dict:
    """A stored model description and its params -> the description that rebuilds exactly those params.

    Descriptions written before `layer2_features` existed describe a layer2
    of 64 planes (no downsample: its params have no `downsample_0`).
    """
    if 'layer2_features' in description or 'downsample_0' in params.get('layer2_0', {}):
      return dict(description)
    return dict(description, layer2_features=STEM_FEATURES)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> list[jax.Array]:
    multiple = self.input_multiple
    if images.ndim != 4 or images.shape[1] % multiple or images.shape[2] % multiple:
      raise ValueError(f'images: expected [B, H, W, C] with H and W divisible by {multiple} '
                       f'(4 * 2**depth, depth {self.depth}), got {images.shape}')
    dtype = self.compute_dtype
    block = functools.partial(remat_block() if self.remat else Bottleneck,
                              depthwise=self.depthwise, axis_name=self.axis_name, dtype=dtype)
    pointwise = functools.partial(layers.PointwiseConv, dtype=dtype)
    norm = functools.partial(layers.batch_norm, train, self.axis_name, dtype=dtype)
    channels = EXPANSION * self.num_features

    x = nn.Conv(STEM_FEATURES, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), dtype=dtype,
                name='conv1')(images)
    x = nn.relu(norm('bn1')(x))
    x = block(STEM_FEATURES, name='layer1_0')(x, train)
    x = max_pool_2x(x)
    x = block(self.layer2_features, name='layer2_0')(x, train)
    x = block(self.num_features, name='layer3_0')(x, train)

    outputs = []
    for i in range(self.num_stacks):
      y = Hourglass(self.num_features, self.num_blocks, depth=self.depth,
                    depthwise=self.depthwise, axis_name=self.axis_name, remat=self.remat,
                    dtype=dtype, name=f'hg_{i}')(x, train)
      for k in range(self.num_blocks):
        y = block(self.num_features, name=f'res_{i}_{k}')(y, train)
      y = pointwise(channels, name=f'fc_{i}_0')(y)
      y = nn.relu(norm(f'fc_{i}_1')(y))
      score = pointwise(self.num_joints, name=f'score_{i}')(y)
      outputs.append(score)
      if i < self.num_stacks - 1:
        x = (x + pointwise(channels, name=f'fc__{i}')(y)
             + pointwise(channels, name=f'score__{i}')(score))
    return layers.float32_outputs(outputs, dtype)
