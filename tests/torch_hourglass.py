"""PyTorch reference of bearpaw/pytorch-pose `HourglassNet`, for parity tests.

Written from the published architecture (Newell et al. 2016 as implemented in
bearpaw/pytorch-pose): pre-activation bottleneck with expansion 2, depth-4
hourglass, `res`/`fc`/`score` per stack and `fc_`/`score_` between stacks. The
attribute names reproduce that implementation's state_dict keys, which is what
the converter must read.
"""

import torch
from torch import nn
import torch.nn.functional as F


class Bottleneck(nn.Module):

  def __init__(self, in_channels, planes, downsample=False):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(in_channels)
    self.conv1 = nn.Conv2d(in_channels, planes, 1)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
    self.bn3 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, 2 * planes, 1)
    self.downsample = (nn.Sequential(nn.Conv2d(in_channels, 2 * planes, 1))
                       if downsample else None)

  def forward(self, x):
    out = self.conv1(F.relu(self.bn1(x)))
    out = self.conv2(F.relu(self.bn2(out)))
    out = self.conv3(F.relu(self.bn3(out)))
    return out + (x if self.downsample is None else self.downsample(x))


def _blocks(n, planes):
  return nn.Sequential(*[Bottleneck(2 * planes, planes) for _ in range(n)])


class Hourglass(nn.Module):

  def __init__(self, num_blocks, planes, depth=4):
    super().__init__()
    self.depth = depth
    self.hg = nn.ModuleList(
        nn.ModuleList(_blocks(num_blocks, planes) for _ in range(4 if level == 0 else 3))
        for level in range(depth))

  def _forward(self, n, x):
    branches = self.hg[n - 1]
    upper = branches[0](x)
    lower = branches[1](F.max_pool2d(x, 2, stride=2))
    lower = self._forward(n - 1, lower) if n > 1 else branches[3](lower)
    lower = branches[2](lower)
    return upper + F.interpolate(lower, scale_factor=2)

  def forward(self, x):
    return self._forward(self.depth, x)


class HourglassNet(nn.Module):

  def __init__(self, num_stacks=2, num_blocks=1, num_classes=16):
    super().__init__()
    feats, ch = 128, 256
    self.num_stacks = num_stacks
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
    self.bn1 = nn.BatchNorm2d(64)
    self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=True))
    self.layer2 = nn.Sequential(Bottleneck(128, 64))
    self.layer3 = nn.Sequential(Bottleneck(128, feats, downsample=True))
    self.hg = nn.ModuleList(Hourglass(num_blocks, feats) for _ in range(num_stacks))
    self.res = nn.ModuleList(_blocks(num_blocks, feats) for _ in range(num_stacks))
    self.fc = nn.ModuleList(
        nn.Sequential(nn.Conv2d(ch, ch, 1), nn.BatchNorm2d(ch), nn.ReLU())
        for _ in range(num_stacks))
    self.score = nn.ModuleList(nn.Conv2d(ch, num_classes, 1) for _ in range(num_stacks))
    self.fc_ = nn.ModuleList(nn.Conv2d(ch, ch, 1) for _ in range(num_stacks - 1))
    self.score_ = nn.ModuleList(
        nn.Conv2d(num_classes, ch, 1) for _ in range(num_stacks - 1))

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(F.max_pool2d(self.layer1(x), 2, stride=2)))
    out = []
    for i in range(self.num_stacks):
      y = self.fc[i](self.res[i](self.hg[i](x)))
      score = self.score[i](y)
      out.append(score)
      if i < self.num_stacks - 1:
        x = x + self.fc_[i](y) + self.score_[i](score)
    return out


def randomize(model, seed=0):
  """Random weights and BatchNorm statistics, so that BN errors cannot hide.

  Convs get a fan-in scaled normal (activations stay O(1) through the stacks);
  BN gets random gamma, beta, running mean and positive running variance.
  """
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.Conv2d):
        fan_in = module.weight[0].numel()
        module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in**0.5)
        module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
      elif isinstance(module, nn.BatchNorm2d):
        n = module.num_features
        module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
        module.bias.copy_(0.2 * torch.randn(n, generator=gen))
        module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
        module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
  return model.eval()
