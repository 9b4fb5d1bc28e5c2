"""bearpaw/pytorch-pose's MPII protocol (`approaches.protocols.bearpaw_mpii`) against a transcription of its code.

The reference is tests/bearpaw_mpii_reference.py (repository, commit and
files in its docstring). Both run the same stand-in network on the bundled
MPII sample: per joint, a bump at a fixed place plus a term of the input's
pixels (so that the crop, the normalisation and the flip matter), one joint
negative everywhere (bearpaw's (0, 0) for a map without a positive value).
"""

import json
import os

import numpy as np
import pytest
import torch

from jaxpose import evaluation, skeletons
from jaxpose.approaches.protocols import bearpaw_mpii
from jaxpose.data import images as images_lib, mpii
from jaxpose.metrics import pck
from jaxpose.models import hourglass
import bearpaw_mpii_reference
from test_metrics import _bearpaw_eval_pckh
from test_mpii import write_official_mat
from test_sources import coco_sample_config

MPII_DIR = os.path.join(os.path.dirname(__file__), 'data', 'mpii')
MEAN = np.array(hourglass.BEARPAW_MPII.mean, np.float32)
NEGATIVE_JOINT = 6


def standin_nchw(inputs: np.ndarray) -> np.ndarray:
  """Normalised input [B, 3, 256, 256] float32 -> heatmaps [B, 16, 64, 64] float32."""
  batch = inputs.shape[0]
  pooled = inputs.reshape(batch, 3, 64, 4, 64, 4).mean((3, 5))
  rows, cols = np.mgrid[0:64, 0:64].astype(np.float32)
  maps = []
  for joint in range(16):
    x, y = 6.3 + 3.1 * joint, 58.7 - 3.4 * joint
    bump = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / 8)
    maps.append(bump + 0.3 * pooled[:, joint % 3])
  maps = np.stack(maps, 1).astype(np.float32)
  maps[:, NEGATIVE_JOINT] = -1 - maps[:, NEGATIVE_JOINT] ** 2
  return maps


def reference_net(batch: torch.Tensor) -> torch.Tensor:
  return torch.from_numpy(standin_nchw(batch.numpy()))


def heatmaps_fn(pixels: np.ndarray) -> np.ndarray:
  """jaxpose's interface: RGB pixels [B, 256, 256, 3] -> heatmaps [B, 64, 64, 16]."""
  normalised = np.asarray(hourglass.BEARPAW_MPII.normalize(pixels))
  return standin_nchw(normalised.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)


def sample_people():
  """[(image file, uint8 RGB image, objpos 1-based, scale_provided)] of the bundled JSON."""
  with open(os.path.join(MPII_DIR, 'test_mpii.json')) as f:
    entries = json.load(f)
  return [(entry['image'], images_lib.read_image(os.path.join(MPII_DIR, entry['image'])),
           entry['center'], entry['scale']) for entry in entries]


@pytest.mark.parametrize('flip', [True, False])
def test_predictions_are_bearpaws_on_the_mpii_sample(flip):
  for name, image, objpos, scale in sample_people():
    expected = bearpaw_mpii_reference.validate_image(
        reference_net, image, [(objpos, scale)], torch.from_numpy(MEAN), flip=flip)
    ours = bearpaw_mpii.predict_mpii(
        heatmaps_fn, image, np.array([objpos], np.float64) - 1, np.array([scale]), (256, 256),
        skeletons.MPII.flip_permutation(), flip_test=flip)
    np.testing.assert_array_equal(ours + 1, expected, err_msg=name)
    # bearpaw's whole pixels; the negative map's joint lands where (0.5, 0.5) maps back.
    assert (ours == np.round(ours)).all()


def test_crop_is_bearpaws_including_the_shrunk_image():
  name, image, objpos, scale = sample_people()[0]
  reference_image = bearpaw_mpii_reference.im_to_torch(image)
  center, scales = bearpaw_mpii.boxes(np.array([objpos], np.float64) - 1, np.array([scale]))
  for res in (256, 64):  # 64: 200 x scale / 64 >= 2, the image is shrunk first
    ours = bearpaw_mpii.crop(image, center[0], scales[0], res)
    c = torch.Tensor(objpos)
    c[1] = c[1] + 15 * scale
    expected = bearpaw_mpii_reference.crop(reference_image, c, scale * 1.25, [res, res])
    np.testing.assert_array_equal(ours, expected.numpy().transpose(1, 2, 0), err_msg=name)
  assert 200 * scales[0] / 64 >= 2


def test_final_preds_moves_a_quarter_pixel_towards_the_higher_neighbour():
  maps = np.zeros((1, 64, 64, 3), np.float32)
  maps[0, 20, 30, 0] = 1.0
  maps[0, 20, 31, 0] = 0.5  # right higher than left; up and down equal
  maps[0, 0, 0, 1] = 1.0  # on the border: no quarter pixel
  maps[..., 2] = -1.0  # nothing positive: (0, 0)
  # Box side 200 x 0.32 = 64 = the map: bearpaw's inverse `transform` maps a
  # 1-based map point p to int(p - 0.5) + 1.
  center, scale = np.array([[32.5, 32.5]], np.float32), np.array([0.32])
  preds = bearpaw_mpii.final_preds(maps, center, scale)
  # (31, 21) 1-based, + (0.25, 0), + 0.5 = (31.75, 21.5) -> (32, 22); (1, 1) + 0.5
  # -> (2, 2); (0, 0) + 0.5 -> (1, 1).
  np.testing.assert_array_equal(preds[0], [[32, 22], [2, 2], [1, 1]])


def test_pckh_strictly_below_the_threshold_differs_at_exactly_half_a_head():
  # A 6 x 8 head box (diagonal 10, head size 6) and an error of exactly 3 px.
  head_boxes = np.array([[0.0, 0.0, 6.0, 8.0]])
  target = np.zeros((1, 16, 2))
  predicted = target.copy()
  predicted[0, 0] = (3.0, 0.0)
  visible = np.ones((1, 16))
  assert pck.pckh(predicted, target, visible, head_boxes).per_joint[0] == 100.0
  assert pck.pckh(predicted, target, visible, head_boxes, strict=True).per_joint[0] == 0.0
  per_joint, _ = _bearpaw_eval_pckh(predicted, target, visible, head_boxes)
  assert per_joint[0] == 0.0


class GroundTruthStandIn:
  """A network that knows the person in the crop: Gaussians at its joints (bearpaw's box), plus a pixel term.

  Calls alternate: the crops, then (flip test) the mirrored crops, whose
  maps have the mirrored joints with left and right swapped.
  """

  def __init__(self, flip_test: bool):
    self.flip_test = flip_test
    self.calls = 0
    self.people = None  # (centres [P, 2] 0-based, scales [P], joints [P, 16, 2] 0-based)

  def __call__(self, inputs: np.ndarray) -> np.ndarray:
    """Normalised [P, 3, 256, 256] -> [P, 16, 64, 64]."""
    flipped = self.flip_test and self.calls % 2 == 1
    self.calls += 1
    centers, scales = bearpaw_mpii.boxes(*self.people[:2])
    rows, cols = np.mgrid[0:64, 0:64].astype(np.float32)
    maps = []
    for center, scale, joints in zip(centers, scales, self.people[2]):
      side = 200 * scale  # bearpaw's transform to the 64-pixel map, 1-based
      x = (joints[:, 0] + 1 - 1) * 64 / side + 64 * (-float(center[0]) / side + .5)
      y = (joints[:, 1] + 1 - 1) * 64 / side + 64 * (-float(center[1]) / side + .5)
      if flipped:
        x, y = (63 - x)[skeletons.MPII.flip_permutation()], y[skeletons.MPII.flip_permutation()]
      maps.append(np.exp(-((cols - x[:, None, None]) ** 2 + (rows - y[:, None, None]) ** 2) / 2))
    pooled = inputs.reshape(len(inputs), 3, 64, 4, 64, 4).mean((3, 5))
    return (np.stack(maps) + 0.05 * pooled[:, :1]).astype(np.float32)


def test_eval_with_bearpaws_protocol_scores_as_eval_pckh(tmp_path, monkeypatch):
  with open(os.path.join(MPII_DIR, 'test_mpii.json')) as f:
    entries = json.load(f)
  annotation_file = write_official_mat(tmp_path / 'mpii.mat', entries)
  records = {r.image_id: r for r in mpii.load_mpii(annotation_file, MPII_DIR)}
  config = coco_sample_config(**{'input_size': (256, 256), 'data.source': 'mpii',
                                 'data.eval_annotations': annotation_file,
                                 'data.eval_images': MPII_DIR})
  config.model.num_joints = 16
  standin = GroundTruthStandIn(flip_test=True)
  real_read_image = images_lib.read_image

  def read_image(path, image_id):
    record = records[image_id]
    standin.people = (record.center, record.scale, record.keypoints)
    return real_read_image(path, image_id)

  def jaxpose_net(pixels):
    normalised = np.asarray(hourglass.BEARPAW_MPII.normalize(pixels)).transpose(0, 3, 1, 2)
    return standin(normalised).transpose(0, 2, 3, 1)

  monkeypatch.setattr(images_lib, 'read_image', read_image)
  metrics = evaluation.evaluate_workdir(
      config, str(tmp_path), model_fn=jaxpose_net,
      options=evaluation.approaches.Options(protocol='bearpaw_mpii'))
  assert standin.calls == 2 * len(records)
  # The same people through the transcription, then eval_PCKh.py's arithmetic.
  predicted = []
  for record in records.values():
    read_image(record.path, record.image_id)
    people = [(c + 1, s) for c, s in zip(record.center.astype(np.float64), record.scale)]
    predicted.append(bearpaw_mpii_reference.validate_image(
        lambda batch: torch.from_numpy(standin(batch.numpy())),
        real_read_image(record.path, record.image_id), people, torch.from_numpy(MEAN)) - 1)
  predicted = np.concatenate(predicted)
  target = np.concatenate([r.keypoints for r in records.values()])
  visible = np.concatenate([r.visible for r in records.values()]) > 0
  head_boxes = np.concatenate([r.head_boxes for r in records.values()])
  per_joint, mean = _bearpaw_eval_pckh(predicted, target, visible.astype(np.float64), head_boxes)
  assert metrics['MeanOfJoints'] == pytest.approx(mean, abs=1e-9)
  assert metrics['Head'] == pytest.approx(per_joint[skeletons.MPII_HEAD_TOP], abs=1e-9)
  expected = pck.pckh_summary(predicted, target, visible, head_boxes, strict=True)
  assert metrics['Mean'] == pytest.approx(expected['Mean'], abs=1e-9)
  # At 0.1, count-weighted over the 14 joints, from eval_PCKh.py's per-joint values.
  per_joint, _ = _bearpaw_eval_pckh(predicted, target, visible.astype(np.float64), head_boxes,
                                    0.1)
  in_mean = list(pck.MPII_JOINTS_IN_MEAN)
  counts = visible.sum(0)[in_mean]
  weighted = np.nansum(per_joint[in_mean] * counts) / counts.sum()
  assert metrics['Mean@0.1'] == pytest.approx(weighted, abs=1e-9)
  # The stand-in knows the joints: bearpaw's boxes and transforms put each
  # within about a map pixel (~12 image px here), all within half a head
  # (19 px), some within a tenth (3.8 px).
  errors = np.abs(predicted - target)[visible]
  assert errors.max() <= 15
  assert metrics['Mean'] == 100.0 and 0 < metrics['Mean@0.1'] < 50
