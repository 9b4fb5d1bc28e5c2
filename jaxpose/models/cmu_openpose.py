"""CMU OpenPose, body (Cao et al., CVPR 2017), NHWC: VGG-19's first ten convs, then six stages of two branches.

The architecture is that of the PyTorch port most users have,
Hzzone/pytorch-openpose `src/model.py` `bodypose_model`, whose published
`body_pose_model.pth` (also loaded by ControlNet's OpenPose annotator) stores
flat keys (`conv1_1.weight`, ..., `Mconv7_stage6_L2.bias`):

* backbone: conv1_1-conv4_2 of VGG-19 (3x3 convs with ReLU, three 2x2 max
  pools: stride 8), then conv4_3_CPM (512 -> 256) and conv4_4_CPM (-> 128).
* stage 1: two branches of three 3x3 convs (128), a 1x1 to 512 and a 1x1 to
  the maps: L1 the 38 PAF channels, L2 the 19 heatmaps.
* stages 2-6: each branch takes [L1, L2, backbone] (38 + 19 + 128 = 185
  channels) through five 7x7 convs, a 1x1 conv (128) and a 1x1 conv to the
  maps.
Every conv has a bias and is followed by a ReLU except each branch's last,
with the port's one exception kept: its list of layers without ReLU names
`Mconv7_stage6_L1` twice and `Mconv7_stage6_L2` never, so the last stage's
heatmaps pass through a ReLU (the published weights were converted from
Caffe, where they did not; on heatmaps of a trained model it only clips small
negative values).

The channel orders are those of Lightweight OpenPose, which took them from
CMU: 18 keypoints plus background, and the x, y pairs of 19 limbs in
`skeletons.OPENPOSE.limbs` order (the port's `mapIdx` minus 19), so
`codecs.paf` decodes either.
"""

from collections.abc import Mapping
import functools
from typing import Any

import flax.linen as nn
import jax

from jaxpose.models import layers
from jaxpose.models.normalization import Normalization

STRIDE = 8
NUM_STAGES = 6
# (name, output channels) of the backbone's convs; 'pool' is a 2x2 max pool.
BACKBONE = (('conv1_1', 64), ('conv1_2', 64), 'pool', ('conv2_1', 128), ('conv2_2', 128), 'pool',
            ('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256), ('conv3_4', 256), 'pool',
            ('conv4_1', 512), ('conv4_2', 512), ('conv4_3_CPM', 256), ('conv4_4_CPM', 128))
# The port's `body.py`: (BGR pixels / 256) - 0.5.
PORT_NORMALIZATION = Normalization('BGR', 256.0, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0))


def _conv(x: jax.Array, features: int, kernel: int, name: str, relu: bool = True,
          dtype: Any = None) -> jax.Array:
  """Conv with bias, 'same' padding (kernel // 2), computing in `dtype`, then ReLU unless `relu` is False."""
  if kernel == 1:
    x = layers.PointwiseConv(features, dtype=dtype, name=name)(x)
  else:
    pad = kernel // 2
    x = nn.Conv(features, (kernel, kernel), padding=((pad, pad), (pad, pad)), dtype=dtype,
                name=name)(x)
  return nn.relu(x) if relu else x


class CmuOpenPose(nn.Module):
  """Images [B, H, W, 3] -> list of 6 (heatmaps [B, H/8, W/8, 19], pafs [B, H/8, W/8, 38]); H, W divisible by 8.

  Attributes:
    num_heatmaps: heatmap channels (the L2 branches).
    num_pafs: part affinity field channels (the L1 branches).
    compute_dtype: what the convolutions and activations compute in (e.g.
      bfloat16; the maps are returned in float32); None: the inputs' and
      params'. Not stored in descriptions.
  """
  num_heatmaps: int = 19
  num_pafs: int = 38
  compute_dtype: Any = None

  # What the rest of jaxpose needs to know of the family (`jaxpose.models`).
  OUTPUT_MAPS = ('heatmaps', 'pafs')  # everyone's keypoints and limbs: a bottom-up model
  OUTPUT_STRIDE = STRIDE
  STAGE_NAME = 'stage'
  DEFAULT_INPUT_SIZE = (368, 368)  # (width, height): the port's boxsize
  DEFAULT_NORMALIZATION = PORT_NORMALIZATION
  UPSTREAM_NORMALIZATION = PORT_NORMALIZATION

  @property
  def num_stages(self) -> int:
    return NUM_STAGES

  @property
  def input_multiple(self) -> int:
    return STRIDE

  @staticmethod
  def bias_is_cancelled(names: tuple[str, ...], siblings: Mapping) -> bool:
    """No BatchNorm: every bias counts."""
    del names, siblings
    return False

  @staticmethod
  def torch_module_path(flax_path: tuple[str, ...]) -> str:
    """Flax module path -> the published file's key prefix: the flat layer name itself."""
    return '.'.join(flax_path)

  def _branch(self, x: jax.Array, stage: int, branch: int, features: int) -> jax.Array:
    conv = functools.partial(_conv, dtype=self.compute_dtype)
    if stage == 1:
      for k in (1, 2, 3):
        x = conv(x, 128, 3, f'conv5_{k}_CPM_L{branch}')
      x = conv(x, 512, 1, f'conv5_4_CPM_L{branch}')
      return conv(x, features, 1, f'conv5_5_CPM_L{branch}', relu=False)
    for k in range(1, 6):
      x = conv(x, 128, 7, f'Mconv{k}_stage{stage}_L{branch}')
    x = conv(x, 128, 1, f'Mconv6_stage{stage}_L{branch}')
    # The port's quirk (module docstring): the last heatmaps keep their ReLU.
    last_relu = stage == NUM_STAGES and branch == 2
    return conv(x, features, 1, f'Mconv7_stage{stage}_L{branch}', relu=last_relu)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False) -> list[tuple[jax.Array, jax.Array]]:
    del train  # no BatchNorm, no dropout
    if images.ndim != 4 or images.shape[1] % STRIDE or images.shape[2] % STRIDE:
      raise ValueError(f'images: expected [B, H, W, C] with H and W divisible by {STRIDE}, '
                       f'got {images.shape}')
    x = images
    for layer in BACKBONE:
      if layer == 'pool':
        x = nn.max_pool(x, window_shape=(2, 2), strides=(2, 2), padding='VALID')
      else:
        x = _conv(x, layer[1], 3, layer[0], dtype=self.compute_dtype)
    features = x
    outputs = []
    for stage in range(1, NUM_STAGES + 1):
      pafs = self._branch(x, stage, 1, self.num_pafs)
      heatmaps = self._branch(x, stage, 2, self.num_heatmaps)
      outputs.append((heatmaps, pafs))
      x = jax.numpy.concatenate([pafs, heatmaps, features], axis=-1)
    return layers.float32_outputs(outputs, self.compute_dtype)
