"""Recurrent Lightweight OpenPose with a Temporal Affinity Field stage (STAF), NHWC.

Raaj et al., "Efficient Online Multi-Person 2D Pose Tracking with Recurrent
Spatio-Temporal Affinity Fields" (CVPR 2019, arXiv 1811.11975): a bottom-up
network that, run frame by frame, also predicts Temporal Affinity Fields
(TAFs), vector fields from each person's keypoints in the previous frame to
the same person's keypoints in this one, from which a tracker links people
across frames (`jaxpose.codecs.taf`).

What the upstream networks feed back (soulslicer/STAF, branch staf, commit
6c674c9e7c4bce03944f893344035e732904c39c):

* models/pose/body_21a_video/pose_deploy.prototxt (run by
  src/openpose/pose/poseExtractorCaffeStaf.cpp for BODY_21A): inputs `image`,
  `last_paf` (PAFs and TAFs, 144 channels), `last_hm` and `last_fm` (the
  previous frame's `conv4_4_CPM` features). Its PAF+TAF stage concatenates
  [conv4_4_CPM, a conv of last_fm, last_paf], its heatmap stage
  [conv4_4_CPM, that stage's output, last_hm]; the TAFs are sliced off the
  PAF+TAF stage's output.
* poseExtractorCaffeStaf.cpp for BODY_25B (`body_25b_video3`, prototxt not in
  the repository) copies `Mconv7_stage1_L2`, `Mconv7_stage2_L1`,
  `Mconv7_stage3_L4` and `conv4_4_CPM` into the inputs `last_paf`, `last_hm`,
  `last_taf`, `last_fm` after each frame.
* src/openpose/pose/poseExtractorCaffeTaf.cpp (`body_25b_video4`) runs an
  image-only pose network and a separate tracking network whose output
  `Mconv7_stage0_L4` (the TAFs) takes `curr_fm`, `last_fm`, `curr_paf`,
  `last_paf` and `last_taf`.

This model follows the last arrangement for the pose part: heatmaps and PAFs
come from Lightweight OpenPose's stages (`jaxpose.models.openpose`) on this
frame alone, with its parameter names, so a Lightweight OpenPose checkpoint
(trained here or converted from upstream) initialises them unchanged and a
frame's people do not depend on the frames before. The TAF stage then takes
[this frame's CPM features, the last stage's heatmaps and PAFs, the previous
frame's heatmaps, PAFs and TAFs]; a clip's first frame gets zeros. Unlike
upstream it does not take the previous frame's CPM features (`last_fm`): the
previous heatmaps already place the previous keypoints that a TAF starts
from, and the recurrent state stays three small maps at the output
resolution.
"""

from collections.abc import Mapping
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxpose.models import layers
from jaxpose.models.openpose import (BACKBONE_BLOCKS, REFINEMENT_BLOCKS, STEM_FEATURES, STRIDE,
                                     Cpm, InitialStage, LightweightOpenPose, RefinementStage,
                                     RefinementStageBlock, conv_block, depthwise_separable)

# The maps of a frame that the next frame takes, as keys of `previous`.
RECURRENT_MAPS = ('heatmaps', 'pafs', 'tafs')


class TafStage(nn.Module):
  """[B, H, W, Cin] -> TAFs [B, H, W, num_tafs].

  Lightweight OpenPose's refinement trunk (`num_blocks` residual blocks of
  `features` channels) and one 1x1 -> ReLU -> 1x1 head, linear output.
  """
  features: int
  num_blocks: int
  num_tafs: int
  axis_name: str | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for i in range(self.num_blocks):
      x = RefinementStageBlock(self.features, self.axis_name, self.dtype,
                               name=f'trunk_{i}')(x, train)
    x = conv_block(x, self.features, 'tafs_0', kernel_size=1, dtype=self.dtype)
    return conv_block(x, self.num_tafs, 'tafs_1', kernel_size=1, relu=False, dtype=self.dtype)


class StafOpenPose(nn.Module):
  """Images [B, H, W, 3] and the previous frame's maps -> {name: maps [B, H/8, W/8, C]}.

  Outputs: `heatmaps_stage{i}` and `pafs_stage{i}` of every pose stage i (the
  initial one, then each refinement stage), and `tafs_stage{last}`: the TAFs,
  named with the last stage's index since they are computed from its maps;
  `output_names` lists them in that order (a jitted call returns the dict
  with sorted keys). A clip runs frame by frame, each frame given the last
  stage's maps of the one before (`previous_of`).

  Attributes:
    num_refinement_stages: Lightweight OpenPose refinement stages after the
      initial one.
    num_channels: width of the CPM, the initial stage trunk and the
      refinement stages.
    num_heatmaps: heatmap channels.
    num_pafs: part affinity field channels.
    num_taf_links: links of the TAF topology (`jaxpose.codecs.taf`); the TAF
      stage predicts an (x, y) field for each, 2 * num_taf_links channels.
    taf_channels: width of the TAF stage.
    num_taf_blocks: residual blocks of the TAF stage.
    backbone_width: MobileNet's width multiplier for the backbone's channels
      (1: Lightweight OpenPose's, whose checkpoints load; less: a backbone
      small enough to train on a CPU).
    axis_name: mapped axis over which BatchNorm averages batch statistics in
      training; None on one device.
    compute_dtype: what the convolutions and activations compute in (e.g.
      bfloat16; params, BatchNorm statistics and the previous frame's maps
      stay float32, the outputs are returned in float32); None: the inputs'
      and params'. Not stored in descriptions.
  """
  num_refinement_stages: int = 1
  num_channels: int = 128
  num_heatmaps: int = 19
  num_pafs: int = 38
  num_taf_links: int = 33  # COCO-17: 17 keypoint links and 16 limb links
  taf_channels: int = 128
  num_taf_blocks: int = REFINEMENT_BLOCKS
  backbone_width: float = 1.0
  axis_name: str | None = None
  compute_dtype: Any = None

  # The family facts (`jaxpose.models`): Lightweight OpenPose's, plus the TAFs.
  OUTPUT_MAPS = ('heatmaps', 'pafs', 'tafs')
  OUTPUT_STRIDE = LightweightOpenPose.OUTPUT_STRIDE
  STAGE_NAME = LightweightOpenPose.STAGE_NAME
  DEFAULT_INPUT_SIZE = LightweightOpenPose.DEFAULT_INPUT_SIZE
  DEFAULT_NORMALIZATION = LightweightOpenPose.DEFAULT_NORMALIZATION
  UPSTREAM_NORMALIZATION = LightweightOpenPose.UPSTREAM_NORMALIZATION
  # Same conv-BN naming as Lightweight OpenPose, the TAF stage included.
  bias_is_cancelled = staticmethod(LightweightOpenPose.bias_is_cancelled)
  # The pose stages (initial and refinement), and the input's multiple (8).
  num_stages = LightweightOpenPose.num_stages
  input_multiple = LightweightOpenPose.input_multiple

  @property
  def num_tafs(self) -> int:
    """TAF channels: x, y of each link."""
    return 2 * self.num_taf_links

  @property
  def output_names(self) -> list[str]:
    """The keys of `__call__`'s outputs, in order: every stage's heatmaps and PAFs, then the TAFs."""
    names = [f'{name}_{self.STAGE_NAME}{i}' for i in range(self.num_stages)
             for name in ('heatmaps', 'pafs')]
    return names + [self.last_stage_name('tafs')]

  def last_stage_name(self, map_name: str) -> str:
    """'heatmaps', 'pafs' or 'tafs' -> its output's name at the last stage."""
    return f'{map_name}_{self.STAGE_NAME}{self.num_stages - 1}'

  def previous_of(self, outputs: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """A frame's outputs -> the next frame's `previous`: the last stage's heatmaps, PAFs and TAFs."""
    return {name: outputs[self.last_stage_name(name)] for name in RECURRENT_MAPS}

  def previous_shapes(self, batch: int, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Batch and input height, width -> the shape of each `previous` map."""
    channels = {'heatmaps': self.num_heatmaps, 'pafs': self.num_pafs, 'tafs': self.num_tafs}
    return {name: (batch, height // STRIDE, width // STRIDE, channels[name])
            for name in RECURRENT_MAPS}

  def _checked_previous(self, previous: Mapping[str, jax.Array] | None,
                        images: jax.Array) -> dict[str, jax.Array]:
    """`previous` (None: a clip's first frame) -> its maps, zeros where None; ValueError on a wrong key or shape."""
    shapes = self.previous_shapes(*images.shape[:3])
    if previous is None:
      return {name: jnp.zeros(shape, images.dtype) for name, shape in shapes.items()}
    if set(previous) != set(RECURRENT_MAPS):
      raise ValueError(f'previous: expected the keys {list(RECURRENT_MAPS)}, got '
                       f'{sorted(previous)}')
    for name, shape in shapes.items():
      if tuple(previous[name].shape) != shape:
        raise ValueError(f'previous[{name!r}]: expected shape {shape} (the previous frame\'s '
                         f'{name} at 1/{STRIDE} of images {images.shape}), got '
                         f'{tuple(previous[name].shape)}')
    return dict(previous)

  def _backbone(self, images: jax.Array, train: bool) -> jax.Array:
    """Images [B, H, W, 3] -> CPM features [B, H/8, W/8, num_channels] (Lightweight OpenPose's)."""
    dtype = self.compute_dtype
    norm = functools.partial(layers.batch_norm, train, self.axis_name, dtype=dtype)
    widths = [max(1, round(self.backbone_width * features))
              for features in (STEM_FEATURES, *(block[0] for block in BACKBONE_BLOCKS))]
    # Upstream's stem conv has no bias; its BN's beta makes one redundant.
    x = conv_block(images, widths[0], 'model_0', norm, stride=2, use_bias=False, dtype=dtype)
    for i, (features, (_, stride, dilation)) in enumerate(zip(widths[1:], BACKBONE_BLOCKS),
                                                          start=1):
      x = depthwise_separable(x, features, f'model_{i}', norm, stride, dilation, dtype)
    return Cpm(self.num_channels, dtype, name='cpm')(x)

  @nn.compact
  def __call__(self, images: jax.Array, previous: Mapping[str, jax.Array] | None = None,
               train: bool = False) -> dict[str, jax.Array]:
    """Images [B, H, W, 3], previous {heatmaps, pafs, tafs} [B, H/8, W/8, C] or None -> outputs by name."""
    if images.ndim != 4 or images.shape[1] % STRIDE or images.shape[2] % STRIDE:
      raise ValueError(f'images: expected [B, H, W, C] with H and W divisible by {STRIDE}, '
                       f'got {images.shape}')
    if not 0 < self.backbone_width <= 1:
      raise ValueError(f'StafOpenPose: backbone_width must be in (0, 1], got '
                       f'{self.backbone_width}')
    previous = self._checked_previous(previous, images)
    features = self._backbone(images, train)
    dtype = self.compute_dtype
    stages = [InitialStage(self.num_channels, self.num_heatmaps, self.num_pafs, dtype,
                           name='initial_stage')(features)]
    for i in range(self.num_refinement_stages):
      stage_input = jnp.concatenate([features, *stages[-1]], axis=-1)
      stages.append(RefinementStage(self.num_channels, self.num_heatmaps, self.num_pafs,
                                    self.axis_name, dtype, name=f'refinement_stages_{i}')(
                                        stage_input, train))
    taf_input = jnp.concatenate(
        [features, *stages[-1], *(previous[name] for name in RECURRENT_MAPS)], axis=-1)
    tafs = TafStage(self.taf_channels, self.num_taf_blocks, self.num_tafs, self.axis_name,
                    dtype, name='taf_stage')(taf_input, train)
    maps = [maps for stage in stages for maps in stage] + [tafs]
    return layers.float32_outputs(dict(zip(self.output_names, maps, strict=True)), dtype)
