"""PyTorch reference of bearpaw/pytorch-pose `HourglassNet`, for parity tests.

Transcribed from the upstream source file itself: bearpaw/pytorch-pose at
commit edc7aece651649927764435ce0c1f03cffa2edaf, `pose/models/hourglass.py`
(`Bottleneck`, `Hourglass`, `HourglassNet`). What matters and is kept:

- `Bottleneck(inplanes, planes, downsample)`: bn1-relu-conv1 (1x1, inplanes ->
  planes), bn2-relu-conv2 (3x3), bn3-relu-conv3 (1x1, planes -> 2 * planes),
  every conv with a bias; the residual goes through `downsample` when given.
- `HourglassNet._make_residual(planes, blocks)` downsamples (a 1x1 conv with
  bias, `downsample.0`) when `self.inplanes != 2 * planes`, then sets
  `self.inplanes = 2 * planes`. `inplanes` starts at 64, so `layer1` (planes
  64) downsamples 64 -> 128, `layer2` is called with `self.inplanes` = 128 as
  its planes and downsamples 128 -> 256, and `layer3` (planes `num_feats` =
  128) has 256 in and out, no downsample. Each `res[i]` has num_blocks blocks,
  no downsample.
- `Hourglass(block, num_blocks, 128, depth=4)`: `hg[i]` holds 3 residuals (4
  for i = 0), each `num_blocks` blocks of `block(256, 128)`; level n: up1 =
  hg[n-1][0](x), low1 = hg[n-1][1](max_pool2d(x, 2, stride=2)), low2 = the
  level below or hg[n-1][3](low1) at n = 1, low3 = hg[n-1][2](low2), out =
  up1 + F.interpolate(low3, scale_factor=2) (nearest).
- forward: conv1 (7x7/2, bias), bn1, relu, layer1, maxpool 2x2, layer2,
  layer3; per stack y = fc[i](res[i](hg[i](x))) with `fc` = Sequential(conv 1x1,
  bn, relu) (conv first), score = score[i](y); between stacks x = x + fc_[i](y)
  + score_[i](score).

Upstream's `HourglassNet(block, num_stacks, num_blocks, num_classes)` takes
the block class; here it is fixed to `Bottleneck`. `num_feats` (upstream's
fixed `self.num_feats = 128`) is an argument for benchmarks at other widths.
"""

from torch import nn
import torch.nn.functional as F

import random_weights

EXPANSION = 2


class Bottleneck(nn.Module):

  def __init__(self, inplanes, planes, downsample=None):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(inplanes)
    self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=True)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=True)
    self.bn3 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * EXPANSION, kernel_size=1, bias=True)
    self.downsample = downsample

  def forward(self, x):
    out = self.conv1(F.relu(self.bn1(x)))
    out = self.conv2(F.relu(self.bn2(out)))
    out = self.conv3(F.relu(self.bn3(out)))
    residual = x if self.downsample is None else self.downsample(x)
    return out + residual


class Hourglass(nn.Module):

  def __init__(self, num_blocks, planes, depth=4):
    super().__init__()
    self.depth = depth

    def residual():
      return nn.Sequential(*[Bottleneck(planes * EXPANSION, planes) for _ in range(num_blocks)])
    self.hg = nn.ModuleList(
        nn.ModuleList(residual() for _ in range(4 if level == 0 else 3))
        for level in range(depth))

  def _level(self, n, x):
    up1 = self.hg[n - 1][0](x)
    low1 = self.hg[n - 1][1](F.max_pool2d(x, 2, stride=2))
    low2 = self._level(n - 1, low1) if n > 1 else self.hg[n - 1][3](low1)
    low3 = self.hg[n - 1][2](low2)
    return up1 + F.interpolate(low3, scale_factor=2)

  def forward(self, x):
    return self._level(self.depth, x)


class HourglassNet(nn.Module):

  def __init__(self, num_stacks=2, num_blocks=4, num_classes=16, num_feats=128):
    super().__init__()
    self.inplanes = 64
    self.num_feats = num_feats
    self.num_stacks = num_stacks
    self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=True)
    self.bn1 = nn.BatchNorm2d(self.inplanes)
    self.layer1 = self._make_residual(self.inplanes, 1)
    self.layer2 = self._make_residual(self.inplanes, 1)
    self.layer3 = self._make_residual(self.num_feats, 1)
    ch = self.num_feats * EXPANSION
    self.hg = nn.ModuleList(Hourglass(num_blocks, self.num_feats) for _ in range(num_stacks))
    self.res = nn.ModuleList(self._make_residual(self.num_feats, num_blocks)
                             for _ in range(num_stacks))
    self.fc = nn.ModuleList(
        nn.Sequential(nn.Conv2d(ch, ch, kernel_size=1, bias=True), nn.BatchNorm2d(ch), nn.ReLU())
        for _ in range(num_stacks))
    self.score = nn.ModuleList(nn.Conv2d(ch, num_classes, kernel_size=1, bias=True)
                               for _ in range(num_stacks))
    self.fc_ = nn.ModuleList(nn.Conv2d(ch, ch, kernel_size=1, bias=True)
                             for _ in range(num_stacks - 1))
    self.score_ = nn.ModuleList(nn.Conv2d(num_classes, ch, kernel_size=1, bias=True)
                                for _ in range(num_stacks - 1))

  def _make_residual(self, planes, blocks):
    downsample = None
    if self.inplanes != planes * EXPANSION:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * EXPANSION, kernel_size=1, bias=True))
    layers = [Bottleneck(self.inplanes, planes, downsample)]
    self.inplanes = planes * EXPANSION
    layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer1(x)
    x = F.max_pool2d(x, 2, stride=2)
    x = self.layer3(self.layer2(x))
    out = []
    for i in range(self.num_stacks):
      y = self.fc[i](self.res[i](self.hg[i](x)))
      score = self.score[i](y)
      out.append(score)
      if i < self.num_stacks - 1:
        x = x + self.fc_[i](y) + self.score_[i](score)
    return out


randomize = random_weights.randomize
