"""bearpaw/pytorch-pose's MPII evaluation of one image's people, transcribed, torch where it uses torch.

A transcription (written for this project) of bearpaw/pytorch-pose at commit
edc7aece651649927764435ce0c1f03cffa2edaf, read from its files:
- `pose/datasets/mpii.py` `Mpii.__getitem__`, validation branch: c =
  torch.Tensor(objpos); if c[0] != -1: c[1] = c[1] + 15 * s, s = s * 1.25;
  `crop(img, c, s, [inp_res, inp_res])`, `color_normalize(inp, mean, std)`;
- `pose/utils/imutils.py` `load_image` / `im_to_torch` (RGB float, / 255);
- `pose/utils/transforms.py`: `color_normalize` (subtracts the mean only),
  `fliplr`, `flip_back` (MPII's matched parts), `get_transform`, `transform`,
  `transform_preds`, `crop` (no rotation; its swap of ranges for a box wholly
  outside the image, where the paste then fails, is left out);
- `example/main.py` `validate`: output[-1], flip test adding `flip_back` of
  the mirrored input's output, `final_preds(score_map, center, scale, [64, 64])`;
- `pose/utils/evaluation.py` `get_preds`, `final_preds`.
The network is `net`, anything taking the normalised input NCHW float32 and
returning heatmaps NCHW. Not part of the package.
"""

import math

import cv2
import numpy as np
import torch

MATCHED_PARTS = ([0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13])


def im_to_torch(img):
  img = np.transpose(img, (2, 0, 1))
  img = torch.from_numpy(np.ascontiguousarray(img)).float()
  if img.max() > 1:
    img /= 255
  return img


def get_transform(center, scale, res):
  h = 200 * scale
  t = np.zeros((3, 3))
  t[0, 0] = float(res[1]) / h
  t[1, 1] = float(res[0]) / h
  t[0, 2] = res[1] * (-float(center[0]) / h + .5)
  t[1, 2] = res[0] * (-float(center[1]) / h + .5)
  t[2, 2] = 1
  return t


def transform(pt, center, scale, res, invert=0):
  t = get_transform(center, scale, res)
  if invert:
    t = np.linalg.inv(t)
  new_pt = np.array([pt[0] - 1, pt[1] - 1, 1.]).T
  new_pt = np.dot(t, new_pt)
  return new_pt[:2].astype(int) + 1


def crop(img, center, scale, res):
  img = np.transpose(img.numpy(), (1, 2, 0))
  ht, wd = img.shape[0], img.shape[1]
  sf = scale * 200.0 / res[0]
  if sf < 2:
    sf = 1
  else:
    new_size = int(math.floor(max(ht, wd) / sf))
    new_ht = int(math.floor(ht / sf))
    new_wd = int(math.floor(wd / sf))
    if new_size < 2:
      return torch.zeros(res[0], res[1], img.shape[2])
    img = cv2.resize(img, dsize=(new_wd, new_ht), interpolation=cv2.INTER_LINEAR)
    center = center * 1.0 / sf
    scale = scale / sf
  ul = np.array(transform([0, 0], center, scale, res, invert=1))
  br = np.array(transform(res, center, scale, res, invert=1))
  new_shape = [br[1] - ul[1], br[0] - ul[0], img.shape[2]]
  new_img = np.zeros(new_shape)
  new_x = [max(0, -ul[0]), min(br[0], img.shape[1]) - ul[0]]
  new_y = [max(0, -ul[1]), min(br[1], img.shape[0]) - ul[1]]
  old_x = [max(0, ul[0]), min(img.shape[1], br[0])]
  old_y = [max(0, ul[1]), min(img.shape[0], br[1])]
  new_img[new_y[0]:new_y[1], new_x[0]:new_x[1]] = img[old_y[0]:old_y[1], old_x[0]:old_x[1]]
  return im_to_torch(cv2.resize(new_img, dsize=(res[0], res[1]),
                                interpolation=cv2.INTER_LINEAR))


def color_normalize(x, mean):
  for t, m in zip(x, mean):
    t.sub_(m)
  return x


def fliplr(x):
  for i in range(x.shape[0]):
    x[i] = np.transpose(np.fliplr(np.transpose(x[i], (0, 2, 1))), (0, 2, 1))
  return x.astype(float)


def flip_back(flip_output):
  flip_output = fliplr(flip_output.numpy())
  for pair in MATCHED_PARTS:
    tmp = np.copy(flip_output[:, pair[0], :, :])
    flip_output[:, pair[0], :, :] = flip_output[:, pair[1], :, :]
    flip_output[:, pair[1], :, :] = tmp
  return torch.from_numpy(flip_output).float()


def get_preds(scores):
  maxval, idx = torch.max(scores.view(scores.size(0), scores.size(1), -1), 2)
  maxval = maxval.view(scores.size(0), scores.size(1), 1)
  idx = idx.view(scores.size(0), scores.size(1), 1) + 1
  preds = idx.repeat(1, 1, 2).float()
  preds[:, :, 0] = (preds[:, :, 0] - 1) % scores.size(3) + 1
  preds[:, :, 1] = torch.floor((preds[:, :, 1] - 1) / scores.size(3)) + 1
  pred_mask = maxval.gt(0).repeat(1, 1, 2).float()
  preds *= pred_mask
  return preds


def final_preds(output, center, scale, res):
  coords = get_preds(output)
  for n in range(coords.size(0)):
    for p in range(coords.size(1)):
      hm = output[n][p]
      px = int(math.floor(coords[n][p][0]))
      py = int(math.floor(coords[n][p][1]))
      if px > 1 and px < res[0] and py > 1 and py < res[1]:
        diff = torch.Tensor([hm[py - 1][px] - hm[py - 1][px - 2],
                             hm[py][px - 1] - hm[py - 2][px - 1]])
        coords[n][p] += diff.sign() * .25
  coords += 0.5
  preds = coords.clone()
  for i in range(coords.size(0)):
    for p in range(coords.size(1)):  # transform_preds
      preds[i][p, 0:2] = torch.from_numpy(
          transform(coords[i][p, 0:2], center[i], scale[i], res, 1)).float()
  return preds


def validate_image(net, image_rgb, people, mean, inp_res=256, out_res=64, flip=True):
  """uint8 RGB image, [(objpos 1-based, scale_provided)] -> bearpaw's predictions [P, 16, 2], 1-based."""
  img = im_to_torch(image_rgb)  # load_image
  inputs, centers, scales = [], [], []
  for objpos, scale_provided in people:
    c = torch.Tensor(objpos)
    s = scale_provided
    if c[0] != -1:
      c[1] = c[1] + 15 * s
      s = s * 1.25
    inp = crop(img, c, s, [inp_res, inp_res])
    inputs.append(color_normalize(inp, mean))
    centers.append(c)
    scales.append(torch.tensor(s, dtype=torch.float64))  # the DataLoader's collate
  batch = torch.stack(inputs)
  score_map = net(batch)
  if flip:
    flip_input = torch.from_numpy(fliplr(batch.clone().numpy())).float()
    score_map += flip_back(net(flip_input))
  return final_preds(score_map, centers, scales, [out_res, out_res]).numpy()
