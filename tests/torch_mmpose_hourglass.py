"""PyTorch reference of mmpose's `HourglassNet` backbone + `CPMHead`, for parity tests (no mmcv / mmengine).

Transcribed from open-mmlab/mmpose at commit
759b39c13fea6ba094afc1fa932f51dc1b11cbf9: `mmpose/models/backbones/hourglass.py`
(`HourglassModule`, `HourglassNet`), `mmpose/models/backbones/resnet.py`
(`BasicBlock`, `ResLayer`), `mmpose/models/heads/heatmap_heads/cpm_head.py`
(`CPMHead`), `mmpose/models/pose_estimators/base.py` (the `backbone` / `head`
attributes and the hook renaming 0.x `keypoint_head` keys to `head`), and the
0.x head of the published checkpoints, `TopdownHeatmapMultiStageHead`
(`mmpose/models/heads/topdown_heatmap_multi_stage_head.py` on the 0.x branch,
3b8173463c4ecdcd3d82d566254bb2ae2eb0cc07). What matters and is kept:

- mmcv's `ConvModule(in, out, k, stride, padding, norm_cfg=BN[, act_cfg=None])`:
  `conv` (no bias: bias='auto' drops it when a norm follows), `bn`
  (BatchNorm2d, eps 1e-5), then ReLU unless act_cfg is None.
- `BasicBlock(in, out, stride, downsample)` (expansion 1): conv1 3x3/stride
  (padding 1) -> bn1 -> relu -> conv2 3x3 -> bn2, plus the input (through
  `downsample` when given), then relu. No conv biases.
- `ResLayer(BasicBlock, n, in, out, stride, downsample_first)`: `downsample` =
  Sequential(conv 1x1/stride without bias, BN) when stride != 1 or in != out
  (avg_down is False). downsample_first (ResNet's default): block 0 is
  in -> out with the stride and the downsample, the others out -> out;
  otherwise (HourglassModule's `low3`): n - 1 blocks in -> in, then the last
  in -> out with the downsample.
- `HourglassModule(depth, stage_channels, stage_blocks)`: cur/next channels
  and blocks are the lists' first two entries; up1 = ResLayer(cur blocks,
  cur -> cur), low1 = ResLayer(cur blocks, cur -> next, stride 2: the
  halving is a strided conv, not pooling), low2 = HourglassModule(depth - 1,
  lists[1:]) or, at depth 1, ResLayer(next blocks, next -> next), low3 =
  ResLayer(cur blocks, next -> cur, downsample_first=False); out = up1(x) +
  nearest-upsample x2 (low3(low2(low1(x)))).
- `HourglassNet(downsample_times=5, num_stacks, stage_channels=(256, 256, 384,
  384, 384, 512), stage_blocks=(2, 2, 2, 2, 2, 4), feat_channel=256)`: stem =
  Sequential(ConvModule(3, 128, 7, stride 2, padding 3), ResLayer(1 block,
  128 -> 256, stride 2)); per stack a HourglassModule and out_convs[i] =
  ConvModule(256, feat_channel, 3, padding 1); between stacks x =
  inters[i](relu(conv1x1s[i](x) + remap_convs[i](out_i))) with conv1x1s and
  remap_convs ConvModules 1x1 without activation and `inters` one ResLayer of
  num_stacks - 1 blocks (block i after stack i). Returns every stack's out.
- `CPMHead(in_channels, out_channels, num_stages, deconv_out_channels=None)`:
  `multi_deconv_layers` are Identities (no keys) and `multi_final_layers[i]`
  a 1x1 Conv2d with bias, one per stage; forward maps stage i's features
  through its own layers. The loss module holds no weights. mmpose 0.x's
  `TopdownHeatmapMultiStageHead(num_deconv_layers=0, extra=final_conv_kernel
  1)` has the same `multi_final_layers` and was held as `keypoint_head`.

Kept as well: the state_dict names (`MmposeTopdown` holds `backbone` and
`head`, as mmpose's TopdownPoseEstimator does; its data preprocessor's mean and
std are not stored). Left out: init_cfg, with_cp, norm_cfg choices other than
BN, the head's deconv layers, loss, decoding and flip test.
"""

import torch
from torch import nn
import torch.nn.functional as F

import random_weights

STAGE_CHANNELS = (256, 256, 384, 384, 384, 512)
STAGE_BLOCKS = (2, 2, 2, 2, 2, 4)
# mmpose's data preprocessor on RGB pixels (configs' `data_preprocessor`).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


class ConvModule(nn.Module):

  def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, relu=True):
    super().__init__()
    self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
    self.bn = nn.BatchNorm2d(out_channels)
    self.relu = relu

  def forward(self, x):
    x = self.bn(self.conv(x))
    return F.relu(x) if self.relu else x


class BasicBlock(nn.Module):

  def __init__(self, in_channels, out_channels, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(out_channels)
    self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(out_channels)
    self.downsample = downsample

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return F.relu(out + identity)


def res_layer(num_blocks, in_channels, out_channels, stride=1, downsample_first=True):
  """mmpose's ResLayer(BasicBlock, ...) as an nn.Sequential of its blocks."""
  downsample = None
  if stride != 1 or in_channels != out_channels:
    downsample = nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
  if downsample_first:
    blocks = [BasicBlock(in_channels, out_channels, stride, downsample)]
    blocks += [BasicBlock(out_channels, out_channels) for _ in range(1, num_blocks)]
  else:
    blocks = [BasicBlock(in_channels, in_channels) for _ in range(num_blocks - 1)]
    blocks.append(BasicBlock(in_channels, out_channels, stride, downsample))
  return nn.Sequential(*blocks)


class HourglassModule(nn.Module):

  def __init__(self, depth, stage_channels, stage_blocks):
    super().__init__()
    cur_block, next_block = stage_blocks[0], stage_blocks[1]
    cur_channel, next_channel = stage_channels[0], stage_channels[1]
    self.up1 = res_layer(cur_block, cur_channel, cur_channel)
    self.low1 = res_layer(cur_block, cur_channel, next_channel, stride=2)
    if depth > 1:
      self.low2 = HourglassModule(depth - 1, stage_channels[1:], stage_blocks[1:])
    else:
      self.low2 = res_layer(next_block, next_channel, next_channel)
    self.low3 = res_layer(cur_block, next_channel, cur_channel, downsample_first=False)

  def forward(self, x):
    low = self.low3(self.low2(self.low1(x)))
    return self.up1(x) + F.interpolate(low, scale_factor=2, mode='nearest')


class HourglassNet(nn.Module):

  def __init__(self, num_stacks=2, downsample_times=5, stage_channels=STAGE_CHANNELS,
               stage_blocks=STAGE_BLOCKS, feat_channel=256):
    super().__init__()
    self.num_stacks = num_stacks
    cur_channel = stage_channels[0]
    self.stem = nn.Sequential(ConvModule(3, 128, 7, stride=2, padding=3),
                              res_layer(1, 128, 256, stride=2))
    self.hourglass_modules = nn.ModuleList(
        HourglassModule(downsample_times, stage_channels, stage_blocks)
        for _ in range(num_stacks))
    self.inters = res_layer(num_stacks - 1, cur_channel, cur_channel)
    self.conv1x1s = nn.ModuleList(ConvModule(cur_channel, cur_channel, 1, relu=False)
                                  for _ in range(num_stacks - 1))
    self.out_convs = nn.ModuleList(ConvModule(cur_channel, feat_channel, 3, padding=1)
                                   for _ in range(num_stacks))
    self.remap_convs = nn.ModuleList(ConvModule(feat_channel, cur_channel, 1, relu=False)
                                     for _ in range(num_stacks - 1))

  def forward(self, x):
    inter = self.stem(x)
    outs = []
    for i in range(self.num_stacks):
      out = self.out_convs[i](self.hourglass_modules[i](inter))
      outs.append(out)
      if i < self.num_stacks - 1:
        inter = self.conv1x1s[i](inter) + self.remap_convs[i](out)
        inter = self.inters[i](F.relu(inter))
    return outs


class CPMHead(nn.Module):

  def __init__(self, in_channels=256, out_channels=17, num_stages=1):
    super().__init__()
    self.multi_deconv_layers = nn.ModuleList(nn.Identity() for _ in range(num_stages))
    self.multi_final_layers = nn.ModuleList(nn.Conv2d(in_channels, out_channels, 1)
                                            for _ in range(num_stages))

  def forward(self, feats):
    return [final(deconv(x)) for deconv, final, x in
            zip(self.multi_deconv_layers, self.multi_final_layers, feats)]


class MmposeTopdown(nn.Module):
  """What TopdownPoseEstimator holds of the network: images [N, 3, H, W] (normalised) -> per-stack heatmaps [N, J, H/4, W/4]."""

  def __init__(self, num_stacks=1, num_joints=17):
    super().__init__()
    self.backbone = HourglassNet(num_stacks)
    self.head = CPMHead(256, num_joints, num_stacks)

  def forward(self, x):
    return self.head(self.backbone(x))


def normalize(pixels):
  """uint8 RGB pixels [N, H, W, 3] (numpy) -> mmpose's network input: (RGB - mean) / std, float32 NCHW."""
  x = torch.from_numpy(pixels.astype('float32')).permute(0, 3, 1, 2)
  mean = torch.tensor(MEAN).view(1, 3, 1, 1)
  std = torch.tensor(STD).view(1, 3, 1, 1)
  return ((x - mean) / std).contiguous()


randomize = random_weights.randomize


def published_checkpoint(model, layout='1.x'):
  """The model as mmpose's checkpoint files hold it: {'state_dict': ..., 'meta': ...}.

  layout '1.x': `backbone.*`, `head.*` (mmengine's runner); '0.x': `backbone.*`,
  `keypoint_head.*` (mmpose 0.x, the layout of the published
  hourglass52_coco_*.pth files; mmpose 1.x renames it when loading).
  """
  if layout not in ('1.x', '0.x'):
    raise ValueError(f'layout: {layout!r}, expected 1.x or 0.x')
  head = 'head.' if layout == '1.x' else 'keypoint_head.'
  state_dict = {(head + key[len('head.'):] if key.startswith('head.') else key): value
                for key, value in model.state_dict().items()}
  meta = ({'mmengine_version': '0.10.7', 'epoch': 210, 'iter': 1000} if layout == '1.x' else
          {'mmpose_version': '0.5.0', 'epoch': 210, 'iter': 1000})
  return {'state_dict': state_dict, 'meta': meta}
