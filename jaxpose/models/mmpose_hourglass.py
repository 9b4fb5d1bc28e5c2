"""mmpose's stacked hourglass (Newell et al., ECCV 2016), NHWC: the `HourglassNet` backbone with a `CPMHead`.

The architecture is that of open-mmlab/mmpose's top-down hourglass models
(hourglass52: one stack, the published COCO and MPII checkpoints;
hourglass104: two), `HourglassNet` (`mmpose/models/backbones/hourglass.py`,
blocks from `resnet.py`) and `CPMHead` without deconvolutions
(`mmpose/models/heads/heatmap_heads/cpm_head.py`). Unlike bearpaw's
hourglass (`models.hourglass`) its residual blocks are ResNet's BasicBlocks
(two 3x3 conv-BN pairs, post-activation), it halves resolution with strided
convs instead of max-pooling, widens the channels down the hourglass
(`stage_channels`), and its convs have no biases (each feeds a BatchNorm):

* stem: a 7x7/2 conv-BN-ReLU (3 -> 128), then one block 128 -> 256 at
  stride 2 (input / 4).
* hourglass, recursive over `stage_channels` / `stage_blocks` (current and
  next entries): `up1` (blocks at this resolution), `low1` (blocks, the first
  at stride 2, -> next channels), `low2` (the next level, or at the bottom
  blocks of the next channels), `low3` (blocks back to the current channels,
  the last one changing them); out = up1 + nearest x2 upsampling of low3.
* per stack: `out_convs` (3x3 conv-BN-ReLU) and the head's
  `multi_final_layers` (1x1 conv with bias -> heatmaps); between stacks the
  next input is `inters` (one block) of ReLU(`conv1x1s`(input) +
  `remap_convs`(features)), both 1x1 conv-BN. One stack has an `inters`
  block too, which upstream builds and never runs.

Every residual block adds a projection (1x1 conv, stride as the block, BN:
`downsample_0`, `downsample_1`) when its stride or channel count changes.
Submodule names are upstream's attribute paths below `backbone` / `head`
with '.' before an index written as '_' (`backbone.hourglass_modules.0.low2.
up1.1.bn2` <-> `hourglass_modules_0/low2/up1_1/bn2`); `torch_module_path`
puts the prefix back and `torch_key` reads the published files' 0.x head
name (`keypoint_head.`), so `jaxpose convert --arch mmpose_hourglass` reads
mmpose's checkpoints of either generation (tests/test_mmpose_hourglass.py,
against a transcription of upstream's files).
"""

from collections.abc import Mapping, Sequence
import functools
import re
from typing import Any

import flax.linen as nn
import jax

from jaxpose.models import layers
from jaxpose.models.hourglass import upsample_nearest_2x
from jaxpose.models.normalization import Normalization

# mmpose's HourglassNet defaults (hourglass52 / hourglass104).
STAGE_CHANNELS = (256, 256, 384, 384, 384, 512)
STAGE_BLOCKS = (2, 2, 2, 2, 2, 4)
# The stem: 7x7/2 conv to 128 channels, one stride-2 block to 256.
STEM_FEATURES = (128, 256)
FEAT_CHANNEL = 256
STRIDE = 4
# mmpose's data preprocessor in the hourglass configs (`bgr_to_rgb=True`: the
# network sees RGB): (pixels - mean) / std, torchvision's ImageNet statistics
# on the 0..255 scale.
MMPOSE_NORMALIZATION = Normalization('RGB', 1.0, (123.675, 116.28, 103.53),
                                     (58.395, 57.12, 57.375))
# The published checkpoints come from mmpose 0.x, whose head was `keypoint_head`.
_OLD_HEAD_PREFIX = 'keypoint_head.'
# Buffers of mmpose 1.x's data preprocessor that some files hold; its loader drops them too.
_PREPROCESSOR_KEYS = ('data_preprocessor.mean', 'data_preprocessor.std')


def _conv(x: jax.Array, features: int, kernel: int, stride: int, name: str,
          dtype: Any = None) -> jax.Array:
  """Conv without bias (a BatchNorm follows each), padding kernel // 2: [B, H, W, C] -> [B, H/stride, W/stride, features]."""
  if kernel == 1 and stride == 1:
    return layers.PointwiseConv(features, use_bias=False, dtype=dtype, name=name)(x)
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                 padding=((pad, pad), (pad, pad)), use_bias=False, dtype=dtype, name=name)(x)


class ConvBN(nn.Module):
  """mmcv's ConvModule as mmpose builds it: conv (no bias) -> BN -> ReLU unless `relu` is False.

  [B, H, W, C] -> [B, H/stride, W/stride, features]; submodules `conv`, `bn`.
  """
  features: int
  kernel: int
  stride: int = 1
  relu: bool = True
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = _conv(x, self.features, self.kernel, self.stride, 'conv', self.dtype)
    x = layers.batch_norm(train, self.axis_name, 'bn', self.dtype)(x)
    return nn.relu(x) if self.relu else x


class BasicBlock(nn.Module):
  """ResNet's BasicBlock: [B, H, W, C] -> [B, H/stride, W/stride, features].

  relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut), conv1 carrying the
  stride; the shortcut is the input, or a 1x1 conv + BN (`downsample_0`,
  `downsample_1`) when the stride or the channel count changes.
  """
  features: int
  stride: int = 1
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(layers.batch_norm, train, self.axis_name, dtype=self.dtype)
    conv = functools.partial(_conv, dtype=self.dtype)
    out = nn.relu(norm('bn1')(conv(x, self.features, 3, self.stride, 'conv1')))
    out = norm('bn2')(conv(out, self.features, 3, 1, 'conv2'))
    shortcut = x
    if self.stride != 1 or x.shape[-1] != self.features:
      shortcut = norm('downsample_1')(conv(x, self.features, 1, self.stride, 'downsample_0'))
    return nn.relu(out + shortcut)


def res_layer(x: jax.Array, train: bool, name: str, num_blocks: int, features: int,
              stride: int = 1, change_first: bool = True, axis_name: str | None = None,
              dtype: Any = None) -> jax.Array:
  """mmpose's ResLayer of BasicBlocks `{name}_0`, `{name}_1`, ...: [B, H, W, C] -> [B, H/stride, W/stride, features].

  Call it inside a compact method: the blocks belong to the caller. The block
  that changes stride and channels is the first (`change_first`, ResNet's
  order) or the last (the hourglass's `low3`); the others keep their input's.
  """
  in_features = x.shape[-1]
  for k in range(num_blocks):
    changes = k == (0 if change_first else num_blocks - 1)
    block_features = features if changes or change_first else in_features
    x = BasicBlock(block_features, stride if changes else 1, axis_name, dtype,
                   name=f'{name}_{k}')(x, train)
  return x


class HourglassModule(nn.Module):
  """One hourglass level and those below it: [B, H, W, stage_channels[0]] -> the same shape.

  H and W must be divisible by 2**(len(stage_channels) - 1).
  """
  stage_channels: Sequence[int]
  stage_blocks: Sequence[int]
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    res = functools.partial(res_layer, train=train, axis_name=self.axis_name, dtype=self.dtype)
    (channels, next_channels), (blocks, next_blocks) = self.stage_channels[:2], self.stage_blocks[:2]
    up = res(x, name='up1', num_blocks=blocks, features=channels)
    low = res(x, name='low1', num_blocks=blocks, features=next_channels, stride=2)
    if len(self.stage_channels) > 2:
      low = HourglassModule(self.stage_channels[1:], self.stage_blocks[1:], self.axis_name,
                            self.dtype, name='low2')(low, train)
    else:
      low = res(low, name='low2', num_blocks=next_blocks, features=next_channels)
    low = res(low, name='low3', num_blocks=blocks, features=channels, change_first=False)
    return up + upsample_nearest_2x(low)


class MmposeHourglass(nn.Module):
  """mmpose's HourglassNet + CPMHead: images [B, H, W, 3] -> list of num_stacks [B, H/4, W/4, num_joints].

  Every stack's heatmaps are returned (mmpose supervises each); the last one
  is the prediction. H and W must be divisible by 4 * 2**(len(stage_channels)
  - 1): 128 with upstream's five halvings.

  Attributes:
    num_stacks: hourglasses in sequence (1: hourglass52, 2: hourglass104).
    num_joints: heatmap channels (17 for COCO, 16 for MPII).
    stage_channels: channels at each level of the hourglass, outermost
      first; its length is one more than the halvings (upstream's
      `downsample_times`). The first must be 256, the stem's output.
    stage_blocks: BasicBlocks per residual at each level, as stage_channels.
    feat_channel: channels of each stack's features (`out_convs`), the head's
      input.
    axis_name: mapped axis over which BatchNorm averages batch statistics in
      training (e.g. 'batch' under pmap / shard_map); None on one device.
    compute_dtype: what the convolutions and activations compute in (e.g.
      bfloat16; params and BatchNorm statistics stay float32, the heatmaps
      are returned in float32); None: the inputs' and params'. Not stored
      in descriptions.
  """
  num_stacks: int = 1
  num_joints: int = 17
  stage_channels: Sequence[int] = STAGE_CHANNELS
  stage_blocks: Sequence[int] = STAGE_BLOCKS
  feat_channel: int = FEAT_CHANNEL
  axis_name: str | None = None
  compute_dtype: Any = None

  # What the rest of jaxpose needs to know of the family (`jaxpose.models`).
  OUTPUT_MAPS = ('heatmaps',)  # one person's joints: a top-down model
  OUTPUT_STRIDE = STRIDE
  STAGE_NAME = 'stack'
  DEFAULT_INPUT_SIZE = (256, 256)  # (width, height), as the COCO 256x256 config
  DEFAULT_NORMALIZATION = MMPOSE_NORMALIZATION
  UPSTREAM_NORMALIZATION = MMPOSE_NORMALIZATION

  def __post_init__(self):
    # Descriptions read from JSON give lists; tuples keep the module hashable.
    object.__setattr__(self, 'stage_channels', tuple(self.stage_channels))
    object.__setattr__(self, 'stage_blocks', tuple(self.stage_blocks))
    if len(self.stage_channels) != len(self.stage_blocks) or len(self.stage_channels) < 2:
      raise ValueError(f'stage_channels {self.stage_channels} and stage_blocks '
                       f'{self.stage_blocks}: expected two lists of the same length >= 2')
    super().__post_init__()

  @property
  def num_stages(self) -> int:
    return self.num_stacks

  @property
  def input_multiple(self) -> int:
    """The stem's stride times the hourglass's halvings."""
    return STRIDE * 2**(len(self.stage_channels) - 1)

  @staticmethod
  def torch_module_path(flax_path: tuple[str, ...]) -> str:
    """('hourglass_modules_0', 'up1_1', 'bn2') -> 'backbone.hourglass_modules.0.up1.1.bn2'; the heatmap convs are the head's."""
    owner = 'head' if flax_path[0].startswith('multi_final_layers_') else 'backbone'
    return '.'.join([owner] + [re.sub(r'_(?=\d)', '.', name) for name in flax_path])

  @staticmethod
  def torch_key(key: str) -> str | None:
    """A key of a published file -> the key `torch_module_path` names; None for one without weights.

    mmpose 0.x files (the published hourglass52 ones) name the head
    `keypoint_head`, as mmpose 1.x renames when it loads them; the data
    preprocessor's mean and std are constants of the config, not weights.
    """
    if key in _PREPROCESSOR_KEYS:
      return None
    if key.startswith(_OLD_HEAD_PREFIX):
      return 'head.' + key[len(_OLD_HEAD_PREFIX):]
    return key

  @staticmethod
  def bias_is_cancelled(names: tuple[str, ...], siblings: Mapping) -> bool:
    """No conv bias feeds a BatchNorm: the only biases are the heatmap convs'."""
    del names, siblings
    return False

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> list[jax.Array]:
    multiple = self.input_multiple
    if images.ndim != 4 or images.shape[1] % multiple or images.shape[2] % multiple:
      raise ValueError(f'images: expected [B, H, W, C] with H and W divisible by {multiple} '
                       f'(4 * 2**{len(self.stage_channels) - 1}), got {images.shape}')
    dtype = self.compute_dtype
    conv_bn = functools.partial(ConvBN, axis_name=self.axis_name, dtype=dtype)
    block = functools.partial(BasicBlock, axis_name=self.axis_name, dtype=dtype)
    channels = self.stage_channels[0]
    x = conv_bn(STEM_FEATURES[0], 7, stride=2, name='stem_0')(images, train)
    x = res_layer(x, train, 'stem_1', 1, STEM_FEATURES[1], stride=2, axis_name=self.axis_name,
                  dtype=dtype)

    outputs = []
    for i in range(self.num_stacks):
      y = HourglassModule(self.stage_channels, self.stage_blocks, self.axis_name, dtype,
                          name=f'hourglass_modules_{i}')(x, train)
      y = conv_bn(self.feat_channel, 3, name=f'out_convs_{i}')(y, train)
      outputs.append(layers.PointwiseConv(self.num_joints, dtype=dtype,
                                          name=f'multi_final_layers_{i}')(y))
      if i < self.num_stacks - 1:
        x = (conv_bn(channels, 1, relu=False, name=f'conv1x1s_{i}')(x, train)
             + conv_bn(channels, 1, relu=False, name=f'remap_convs_{i}')(y, train))
        x = block(channels, name=f'inters_{i}')(nn.relu(x), train)
    if self.num_stacks == 1 and self.is_initializing():
      # Upstream's ResLayer builds its first block even when asked for none,
      # so one-stack files (hourglass52's) hold an `inters.0` that is never
      # run. Its variables are made here, and never used, so that every
      # upstream weight has a place and conversion can stay strict.
      block(channels, name='inters_0')(x, train)
    return layers.float32_outputs(outputs, dtype)
