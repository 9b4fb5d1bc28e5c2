"""PyTorch reference of CMU OpenPose's body model as the PyTorch port has it, for parity tests.

Transcribed from the upstream source file itself: Hzzone/pytorch-openpose at
commit 5ee71dc10020403dc3def2bb68f9b77c40337ae2, `src/model.py`
(`make_layers`, `bodypose_model`), and `src/util.py` `transfer` for the
published file's layout. What matters and is kept:

- `make_layers`: an `OrderedDict` of named convs (in, out, kernel, stride,
  padding) and max pools (kernel, stride, padding), each conv followed by
  `relu_<name>` unless the name is in `no_relu_layers`.
- `no_relu_layers` lists conv5_5_CPM_L1/L2, Mconv7_stage2-5_L1/L2 and
  `Mconv7_stage6_L1` twice: `Mconv7_stage6_L2` keeps its ReLU.
- block0 (`model0`): conv1_1 3->64, conv1_2, pool1_stage1 (2, 2, 0), conv2_1
  ->128, conv2_2, pool2_stage1, conv3_1 ->256, conv3_2-4, pool3_stage1,
  conv4_1 ->512, conv4_2, conv4_3_CPM ->256, conv4_4_CPM ->128: 3x3, stride
  1, padding 1.
- stage 1 (`model1_1` L1, `model1_2` L2): conv5_1-3_CPM 128->128 3x3,
  conv5_4_CPM 128->512 1x1, conv5_5_CPM 512->38 (L1) / 19 (L2) 1x1.
- stages 2-6 (`model{i}_1`, `model{i}_2`): Mconv1 185->128 7x7 padding 3,
  Mconv2-5 128->128 7x7, Mconv6 128->128 1x1, Mconv7 ->38 / 19 1x1.
- forward: out1 = model0(x); stage 1 on out1; then each stage on
  cat([L1, L2, out1], channels); returns the last stage's (L1, L2). Here
  `forward_all` returns every stage's, which the port computes but drops.
- `transfer`: the published file's keys are the module keys without their
  first component (`model0.conv1_1.weight` -> `conv1_1.weight`).
"""

from collections import OrderedDict

import functools

import torch
from torch import nn

import random_weights

NO_RELU = {'conv5_5_CPM_L1', 'conv5_5_CPM_L2'} | {
    f'Mconv7_stage{i}_L{b}' for i in range(2, 6) for b in (1, 2)} | {'Mconv7_stage6_L1'}


def make_layers(block: OrderedDict) -> nn.Sequential:
  layers = []
  for name, v in block.items():
    if 'pool' in name:
      layers.append((name, nn.MaxPool2d(kernel_size=v[0], stride=v[1], padding=v[2])))
    else:
      layers.append((name, nn.Conv2d(v[0], v[1], kernel_size=v[2], stride=v[3], padding=v[4])))
      if name not in NO_RELU:
        layers.append(('relu_' + name, nn.ReLU(inplace=True)))
  return nn.Sequential(OrderedDict(layers))


class BodyPoseModel(nn.Module):

  def __init__(self):
    super().__init__()
    self.model0 = make_layers(OrderedDict([
        ('conv1_1', [3, 64, 3, 1, 1]), ('conv1_2', [64, 64, 3, 1, 1]),
        ('pool1_stage1', [2, 2, 0]),
        ('conv2_1', [64, 128, 3, 1, 1]), ('conv2_2', [128, 128, 3, 1, 1]),
        ('pool2_stage1', [2, 2, 0]),
        ('conv3_1', [128, 256, 3, 1, 1]), ('conv3_2', [256, 256, 3, 1, 1]),
        ('conv3_3', [256, 256, 3, 1, 1]), ('conv3_4', [256, 256, 3, 1, 1]),
        ('pool3_stage1', [2, 2, 0]),
        ('conv4_1', [256, 512, 3, 1, 1]), ('conv4_2', [512, 512, 3, 1, 1]),
        ('conv4_3_CPM', [512, 256, 3, 1, 1]), ('conv4_4_CPM', [256, 128, 3, 1, 1])]))
    blocks = {}
    for branch, channels in ((1, 38), (2, 19)):
      blocks[1, branch] = make_layers(OrderedDict([
          (f'conv5_1_CPM_L{branch}', [128, 128, 3, 1, 1]),
          (f'conv5_2_CPM_L{branch}', [128, 128, 3, 1, 1]),
          (f'conv5_3_CPM_L{branch}', [128, 128, 3, 1, 1]),
          (f'conv5_4_CPM_L{branch}', [128, 512, 1, 1, 0]),
          (f'conv5_5_CPM_L{branch}', [512, channels, 1, 1, 0])]))
      for stage in range(2, 7):
        blocks[stage, branch] = make_layers(OrderedDict(
            [(f'Mconv1_stage{stage}_L{branch}', [185, 128, 7, 1, 3])]
            + [(f'Mconv{k}_stage{stage}_L{branch}', [128, 128, 7, 1, 3]) for k in range(2, 6)]
            + [(f'Mconv6_stage{stage}_L{branch}', [128, 128, 1, 1, 0]),
               (f'Mconv7_stage{stage}_L{branch}', [128, channels, 1, 1, 0])]))
    # Registered in the port's order: model1_1 ... model6_1, then model1_2 ... model6_2.
    for (stage, branch), block in sorted(blocks.items(), key=lambda item: item[0][::-1]):
      setattr(self, f'model{stage}_{branch}', block)

  def forward_all(self, x):
    """Every stage's (L1 pafs, L2 heatmaps), NCHW."""
    out1 = self.model0(x)
    inputs, stages = out1, []
    for stage in range(1, 7):
      l1 = getattr(self, f'model{stage}_1')(inputs)
      l2 = getattr(self, f'model{stage}_2')(inputs)
      stages.append((l1, l2))
      inputs = torch.cat([l1, l2, out1], 1)
    return stages

  def forward(self, x):
    return self.forward_all(x)[-1]


def published_state_dict(model: BodyPoseModel) -> dict:
  """The layout of `body_pose_model.pth`: module keys without their first component."""
  return {'.'.join(key.split('.')[1:]): value for key, value in model.state_dict().items()}


randomize = functools.partial(random_weights.randomize, gain=2.0)
