"""PyTorch reference of Lightweight OpenPose `PoseEstimationWithMobileNet`, for parity tests.

Checked line by line against the upstream source files themselves:
Daniil-Osokin/lightweight-human-pose-estimation.pytorch at commit
d23c284b09acf27a163e1febd511e7482cac25ed, `models/with_mobilenet.py` (`Cpm`,
`InitialStage`, `RefinementStageBlock`, `RefinementStage`,
`PoseEstimationWithMobileNet`) and `modules/conv.py` (`conv`, `conv_dw`,
`conv_dw_no_bn`). What matters and is kept: upstream's `conv` defaults to
bn=True (the stem and the refinement blocks' trunk use that default; the
CPM, the initial stage and the heads pass bn=False), its padding is the
dilation times k // 2 as passed; `conv_dw` is depthwise 3x3 (no bias), BN,
ReLU, pointwise (no bias), BN, ReLU, and `conv_dw_no_bn` the same with ELU and
no BN; the backbone's eleven `conv_dw` blocks (64, 128/2, 128, 256/2, 256,
512, 512 dilated 2, 512 x 4); each refinement stage takes the backbone
features with the previous stage's heatmaps and PAFs, concatenated in that
order. Every conv is an `nn.Sequential` of conv, optional BN and activation,
as there, so the state_dict keys (indices included) are upstream's; the
key -> shape list that `scripts/upstream_state_dict_shapes.py` wrote from
upstream's code (tests/data/upstream/lightweight_openpose_r1.json) is compared
with this module's in tests/test_upstream_keys.py.
"""

import functools

import torch
from torch import nn

import random_weights


def conv(cin, cout, k=3, stride=1, dilation=1, bn=False, relu=True, bias=True):
  layers = [nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, bias=bias)]
  layers += [nn.BatchNorm2d(cout)] if bn else []
  layers += [nn.ReLU()] if relu else []
  return nn.Sequential(*layers)


def separable(cin, cout, stride=1, dilation=1, bn=True):
  """Depthwise 3x3 + pointwise 1x1, no biases; BN + ReLU, or ELU without BN."""
  act = nn.ReLU if bn else nn.ELU
  norm = (lambda c: [nn.BatchNorm2d(c)]) if bn else (lambda c: [])
  return nn.Sequential(
      nn.Conv2d(cin, cin, 3, stride, dilation, dilation, groups=cin, bias=False),
      *norm(cin), act(),
      nn.Conv2d(cin, cout, 1, bias=False), *norm(cout), act())


def heads(cin, hidden, num_heatmaps, num_pafs):
  return [nn.Sequential(conv(cin, hidden, 1), conv(hidden, n, 1, relu=False))
          for n in (num_heatmaps, num_pafs)]


class Cpm(nn.Module):

  def __init__(self, cin, cout):
    super().__init__()
    self.align = conv(cin, cout, 1)
    self.trunk = nn.Sequential(*[separable(cout, cout, bn=False) for _ in range(3)])
    self.conv = conv(cout, cout)

  def forward(self, x):
    x = self.align(x)
    return self.conv(x + self.trunk(x))


class InitialStage(nn.Module):

  def __init__(self, ch, num_heatmaps, num_pafs):
    super().__init__()
    self.trunk = nn.Sequential(*[conv(ch, ch) for _ in range(3)])
    self.heatmaps, self.pafs = heads(ch, 512, num_heatmaps, num_pafs)

  def forward(self, x):
    x = self.trunk(x)
    return [self.heatmaps(x), self.pafs(x)]


class RefinementStageBlock(nn.Module):

  def __init__(self, cin, cout):
    super().__init__()
    self.initial = conv(cin, cout, 1)
    self.trunk = nn.Sequential(conv(cout, cout, bn=True), conv(cout, cout, dilation=2, bn=True))

  def forward(self, x):
    x = self.initial(x)
    return x + self.trunk(x)


class RefinementStage(nn.Module):

  def __init__(self, cin, ch, num_heatmaps, num_pafs):
    super().__init__()
    self.trunk = nn.Sequential(
        RefinementStageBlock(cin, ch), *[RefinementStageBlock(ch, ch) for _ in range(4)])
    self.heatmaps, self.pafs = heads(ch, ch, num_heatmaps, num_pafs)

  def forward(self, x):
    x = self.trunk(x)
    return [self.heatmaps(x), self.pafs(x)]


class PoseEstimationWithMobileNet(nn.Module):

  def __init__(self, num_refinement_stages=1, num_channels=128, num_heatmaps=19, num_pafs=38):
    super().__init__()
    # (out channels, stride, dilation) of the separable blocks after the stem.
    blocks = [(64, 1, 1), (128, 2, 1), (128, 1, 1), (256, 2, 1), (256, 1, 1),
              (512, 1, 1), (512, 1, 2)] + [(512, 1, 1)] * 4
    cins = [32] + [b[0] for b in blocks[:-1]]
    self.model = nn.Sequential(
        conv(3, 32, stride=2, bn=True, bias=False),
        *[separable(cin, cout, s, d) for cin, (cout, s, d) in zip(cins, blocks)])
    self.cpm = Cpm(512, num_channels)
    self.initial_stage = InitialStage(num_channels, num_heatmaps, num_pafs)
    self.refinement_stages = nn.ModuleList(
        RefinementStage(num_channels + num_heatmaps + num_pafs, num_channels,
                        num_heatmaps, num_pafs)
        for _ in range(num_refinement_stages))

  def forward(self, x):
    features = self.cpm(self.model(x))
    out = self.initial_stage(features)
    for stage in self.refinement_stages:
      out += stage(torch.cat([features, out[-2], out[-1]], dim=1))
    return out  # [heatmaps, pafs] per stage, flat


randomize = functools.partial(random_weights.randomize, gain=1.5)
