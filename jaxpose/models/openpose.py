"""Lightweight OpenPose (Osokin, 2018), NHWC.

The architecture is that of Daniil-Osokin/lightweight-human-pose-estimation
.pytorch `PoseEstimationWithMobileNet`:

* backbone (`model`): MobileNet v1 cut after conv5_5, total stride 8. A 3x3/2
  conv, then eleven depthwise-separable blocks (depthwise 3x3, BN, ReLU,
  pointwise 1x1, BN, ReLU; no conv biases). The third stride-2 block of
  MobileNet is replaced by stride 1, and block 7 (conv5_1) uses dilation 2 to
  keep the receptive field.
* `cpm`: a 1x1 conv to `num_channels`, a residual of three depthwise-separable
  blocks with ELU and no BN, then a 3x3 conv.
* `initial_stage`: three 3x3 convs, then two 1x1 heads (via 512 channels) for
  the heatmaps and the part affinity fields.
* `refinement_stages`: each takes [cpm features, previous heatmaps, previous
  pafs] concatenated on channels, runs five residual blocks (1x1 conv, then
  3x3 conv + BN + ReLU and dilated 3x3 conv + BN + ReLU, added to the 1x1
  output) and the same two heads with `num_channels` hidden channels.

Every stage's (heatmaps, pafs) is returned, for intermediate supervision; the
last one is the prediction. With the default options a PyTorch checkpoint of
the upstream model loads with `jaxpose.deploy.convert.variables_from_torch` and gives
the same outputs.

Submodule names follow the PyTorch attribute paths with '.' written as '_'
before an index (`refinement_stages.0.trunk.0.initial.0` ->
`refinement_stages_0/trunk_0/initial_0`), which is the only thing the converter
relies on. Upstream builds every conv as an `nn.Sequential` of conv, optional
BN and activation, so the indices below count the parameter-free activations
too (a depthwise-separable block's pointwise conv is index 3, its BNs 1 and 4).
"""

from collections.abc import Callable, Mapping
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpose.models import layers
from jaxpose.models.normalization import Normalization

# Output stride of the backbone; heatmaps and pafs are at 1/8 of the input.
STRIDE = 8
# Channels of the first (full) conv of the backbone.
STEM_FEATURES = 32
# Depthwise-separable blocks `model.1` .. `model.11`: (out channels, stride,
# dilation). Upstream keeps conv4_2 (block 6) at stride 1 and dilates conv5_1
# (block 7) instead, so the backbone stops at stride 8.
BACKBONE_BLOCKS = (
    (64, 1, 1),
    (128, 2, 1),
    (128, 1, 1),
    (256, 2, 1),
    (256, 1, 1),
    (512, 1, 1),  # conv4_2
    (512, 1, 2),
    (512, 1, 1),
    (512, 1, 1),
    (512, 1, 1),
    (512, 1, 1),  # conv5_5
)
# Hidden channels of the initial stage's 1x1 heads.
INITIAL_HEAD_FEATURES = 512
# Residual blocks per refinement stage.
REFINEMENT_BLOCKS = 5

Norm = Callable[[str], nn.BatchNorm]


def _conv(features: int, name: str, kernel_size: int = 3, stride: int = 1,
          dilation: int = 1, use_bias: bool = True, dtype: Any = None) -> nn.Module:
  """A square conv padded by dilation * (kernel_size // 2) on every side, computing in `dtype`.

  That is upstream's explicit padding for every conv of this model (0 for 1x1,
  1 for 3x3, 2 for the dilated 3x3s); with stride 2 on even sizes it halves H
  and W exactly as PyTorch does. 1x1 convs are `layers.PointwiseConv`s, with
  the parameters of an `nn.Conv`.
  """
  if kernel_size == 1 and stride == 1:
    return layers.PointwiseConv(features, use_bias, dtype=dtype, name=name)
  pad = dilation * (kernel_size // 2)
  return nn.Conv(
      features, (kernel_size, kernel_size), strides=(stride, stride),
      padding=((pad, pad), (pad, pad)), kernel_dilation=(dilation, dilation),
      use_bias=use_bias, dtype=dtype, name=name)


def conv_block(x: jax.Array, features: int, prefix: str, norm: Norm | None = None,
               relu: bool = True, **conv_kwargs) -> jax.Array:
  """[B, H, W, C] -> [B, H', W', features]: upstream's `conv`: conv, BN if `norm`, ReLU.

  Names: `{prefix}_0` for the conv, `{prefix}_1` for the BN. The conv keeps its
  bias even when followed by BN, as upstream's does (except `model.0`).
  """
  x = _conv(features, f'{prefix}_0', **conv_kwargs)(x)
  if norm is not None:
    x = norm(f'{prefix}_1')(x)
  return nn.relu(x) if relu else x


def depthwise_separable(x: jax.Array, features: int, prefix: str, norm: Norm,
                        stride: int = 1, dilation: int = 1, dtype: Any = None) -> jax.Array:
  """[B, H, W, C] -> [B, H/stride, W/stride, features]: upstream's `conv_dw`.

  Depthwise 3x3 (`{prefix}_0`), BN (`_1`), ReLU, pointwise 1x1 (`_3`), BN
  (`_4`), ReLU; neither conv has a bias.
  """
  x = layers.DepthwiseConv3x3(stride, dilation, use_bias=False, dtype=dtype,
                              name=f'{prefix}_0')(x)
  x = nn.relu(norm(f'{prefix}_1')(x))
  x = _conv(features, f'{prefix}_3', kernel_size=1, use_bias=False, dtype=dtype)(x)
  return nn.relu(norm(f'{prefix}_4')(x))


def depthwise_separable_elu(x: jax.Array, features: int, prefix: str,
                            dtype: Any = None) -> jax.Array:
  """[B, H, W, C] -> [B, H, W, features]: upstream's `conv_dw_no_bn`.

  Depthwise 3x3 (`{prefix}_0`), ELU, pointwise 1x1 (`_2`), ELU; no BN, no bias.
  """
  x = layers.DepthwiseConv3x3(use_bias=False, dtype=dtype, name=f'{prefix}_0')(x)
  x = jax.nn.elu(x)
  x = _conv(features, f'{prefix}_2', kernel_size=1, use_bias=False, dtype=dtype)(x)
  return jax.nn.elu(x)


class Cpm(nn.Module):
  """Convolutional pose machine adapter: [B, H, W, 512] -> [B, H, W, features].

  Aligns the backbone to `features` channels, adds a residual of three ELU
  depthwise-separable blocks, and mixes with a 3x3 conv.
  """
  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = conv_block(x, self.features, 'align', kernel_size=1, dtype=self.dtype)
    trunk = x
    for i in range(3):
      trunk = depthwise_separable_elu(trunk, self.features, f'trunk_{i}', self.dtype)
    return conv_block(x + trunk, self.features, 'conv', dtype=self.dtype)


def _heads(x: jax.Array, hidden: int, num_heatmaps: int, num_pafs: int,
           dtype: Any) -> tuple[jax.Array, jax.Array]:
  """[B, H, W, C] -> (heatmaps [B, H, W, num_heatmaps], pafs [B, H, W, num_pafs]).

  Two independent 1x1 -> ReLU -> 1x1 heads, linear outputs.
  """
  outputs = []
  for name, features in (('heatmaps', num_heatmaps), ('pafs', num_pafs)):
    y = conv_block(x, hidden, f'{name}_0', kernel_size=1, dtype=dtype)
    outputs.append(conv_block(y, features, f'{name}_1', kernel_size=1, relu=False,
                              dtype=dtype))
  return outputs[0], outputs[1]


class InitialStage(nn.Module):
  """[B, H, W, C] -> (heatmaps [B, H, W, num_heatmaps], pafs [B, H, W, num_pafs])."""
  num_channels: int
  num_heatmaps: int
  num_pafs: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    for i in range(3):
      x = conv_block(x, self.num_channels, f'trunk_{i}', dtype=self.dtype)
    return _heads(x, INITIAL_HEAD_FEATURES, self.num_heatmaps, self.num_pafs, self.dtype)


class RefinementStageBlock(nn.Module):
  """Residual block: [B, H, W, Cin] -> [B, H, W, features].

  A 1x1 conv to `features`, plus two 3x3 conv-BN-ReLUs on its output (the
  second dilated by 2 for a wider receptive field at no extra cost).
  """
  features: int
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(layers.batch_norm, train, self.axis_name, dtype=self.dtype)
    initial = conv_block(x, self.features, 'initial', kernel_size=1, dtype=self.dtype)
    trunk = conv_block(initial, self.features, 'trunk_0', norm, dtype=self.dtype)
    trunk = conv_block(trunk, self.features, 'trunk_1', norm, dilation=2, dtype=self.dtype)
    return initial + trunk


class RefinementStage(nn.Module):
  """[B, H, W, Cin] -> (heatmaps [B, H, W, num_heatmaps], pafs [B, H, W, num_pafs])."""
  num_channels: int
  num_heatmaps: int
  num_pafs: int
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    for i in range(REFINEMENT_BLOCKS):
      x = RefinementStageBlock(self.num_channels, self.axis_name, self.dtype,
                               name=f'trunk_{i}')(x, train)
    return _heads(x, self.num_channels, self.num_heatmaps, self.num_pafs, self.dtype)


def backbone_block(remat: bool, features: int, prefix: str, norm: Norm, stride: int,
                   dilation: int, dtype: Any) -> Callable[[nn.Module, jax.Array], jax.Array]:
  """`depthwise_separable` as a function of (module, x), rematerialised (`nn.remat`) if `remat`.

  The block's convs and BNs are the calling module's submodules whichever:
  the same names and params.
  """
  def block(module: nn.Module, x: jax.Array) -> jax.Array:
    del module  # the lifted transform binds the submodules to it
    return depthwise_separable(x, features, prefix, norm, stride, dilation, dtype)
  return nn.remat(block) if remat else block


def stage_classes(remat: bool) -> tuple[type[nn.Module], type[nn.Module]]:
  """(initial stage, refinement stage) classes, rematerialised (`nn.remat`) if `remat`: same params."""
  if not remat:
    return InitialStage, RefinementStage
  # `train` (self is 0) selects the refinement stage's graph.
  return nn.remat(InitialStage), nn.remat(RefinementStage, static_argnums=(2,))


class LightweightOpenPose(nn.Module):
  """Images [B, H, W, 3] -> list of (heatmaps [B, H/8, W/8, 19], pafs [B, H/8, W/8, 38]).

  One (heatmaps, pafs) pair per stage, the initial stage first, then each
  refinement stage; H and W must be divisible by 8. Channel orders are
  upstream's (COCO's 18 keypoints plus background; x, y pairs of 19 limbs).

  Attributes:
    num_refinement_stages: refinement stages after the initial one (upstream's
      released checkpoint: 1).
    num_channels: width of the CPM, the initial stage trunk and the refinement
      stages.
    num_heatmaps: heatmap channels.
    num_pafs: part affinity field channels.
    axis_name: mapped axis over which BatchNorm averages batch statistics in
      training (e.g. 'batch' under pmap / shard_map); None on one device.
    remat: recompute each backbone block's, the initial and each refinement
      stage's activations in the backward pass instead of keeping them (`nn.remat`,
      `config.model.remat`): the same params, outputs and gradients, less
      activation memory on accelerators. Not stored in descriptions.
    compute_dtype: what the convolutions and activations compute in (e.g.
      bfloat16; params and BatchNorm statistics stay float32, the maps are
      returned in float32); None: the inputs' and params'. Not stored in
      descriptions.
  """
  num_refinement_stages: int = 1
  num_channels: int = 128
  num_heatmaps: int = 19
  num_pafs: int = 38
  axis_name: str | None = None
  remat: bool = False
  compute_dtype: Any = None

  # What the rest of jaxpose needs to know of the family (`jaxpose.models`).
  OUTPUT_MAPS = ('heatmaps', 'pafs')  # everyone's keypoints and limbs: a bottom-up model
  OUTPUT_STRIDE = STRIDE
  STAGE_NAME = 'stage'
  DEFAULT_INPUT_SIZE = (456, 256)  # (width, height): upstream demo's height, 16:9
  # Upstream reads BGR with cv2 and feeds (x - 128) / 256, in training and in
  # its demo, so its published checkpoint works unchanged.
  DEFAULT_NORMALIZATION = Normalization('BGR', 1.0, (128.0, 128.0, 128.0),
                                        (256.0, 256.0, 256.0))
  UPSTREAM_NORMALIZATION = DEFAULT_NORMALIZATION

  @property
  def num_stages(self) -> int:
    return 1 + self.num_refinement_stages

  @property
  def input_multiple(self) -> int:
    return STRIDE

  @staticmethod
  def bias_is_cancelled(names: tuple[str, ...], siblings: Mapping) -> bool:
    """Whether the conv bias at `names` feeds a BatchNorm (see `models.batchnorm_cancelled_biases`)."""
    # Upstream's `conv(..., bn=True)`: conv `{prefix}_0`, BN `{prefix}_1`. The
    # other biases (heads, refinement `initial`, CPM align) feed ReLU/ELU or
    # outputs, so they matter.
    parent = names[-2]
    if not parent.endswith('_0'):
      return False
    batchnorm = siblings.get(parent[:-1] + '1')
    return isinstance(batchnorm, Mapping) and 'scale' in batchnorm

  @nn.compact
  def __call__(self, images: jax.Array,
               train: bool = False) -> list[tuple[jax.Array, jax.Array]]:
    if images.ndim != 4 or images.shape[1] % STRIDE or images.shape[2] % STRIDE:
      raise ValueError(
          f'images: expected [B, H, W, C] with H and W divisible by {STRIDE}, '
          f'got {images.shape}')
    dtype = self.compute_dtype
    norm = functools.partial(layers.batch_norm, train, self.axis_name, dtype=dtype)

    # Unlike the refinement stages' conv-BN pairs, upstream's stem conv has no
    # bias (its BN's beta makes one redundant).
    x = conv_block(images, STEM_FEATURES, 'model_0', norm, stride=2,
                   use_bias=False, dtype=dtype)
    for i, (features, stride, dilation) in enumerate(BACKBONE_BLOCKS, start=1):
      x = backbone_block(self.remat, features, f'model_{i}', norm, stride, dilation,
                         dtype)(self, x)
    features = Cpm(self.num_channels, dtype, name='cpm')(x)

    initial_stage, refinement_stage = stage_classes(self.remat)
    outputs = [initial_stage(self.num_channels, self.num_heatmaps, self.num_pafs, dtype,
                             name='initial_stage')(features)]
    for i in range(self.num_refinement_stages):
      # Each stage sees the CPM features again, with the previous stage's maps.
      x = jnp.concatenate([features, *outputs[-1]], axis=-1)
      outputs.append(refinement_stage(
          self.num_channels, self.num_heatmaps, self.num_pafs, self.axis_name, dtype,
          name=f'refinement_stages_{i}')(x, train))
    return layers.float32_outputs(outputs, dtype)
