"""mmpose's top-down COCO protocol (`approaches.protocols.mmpose_topdown`) against a transcription of its code.

The reference is tests/mmpose_topdown_reference.py (repository, commit and
files in its docstring). Both run the same stand-in network on the bundled
COCO sample with its AP_H_56 detections: a renderer that knows the image's
annotated people and where each detection's crop lies, plus a term of the
crop's pixels (so that the crop and the mirror image matter).
"""

import functools
import json
import pathlib

import numpy as np
import pytest

from jaxpose import approaches, evaluation, skeletons
from jaxpose.approaches.protocols import mmpose_topdown
from jaxpose.data import detections as detections_lib, geometry, images as images_lib
from jaxpose.metrics import coco_ap, oks as oks_lib
import mmpose_topdown_reference as reference
from test_sources import coco_sample_config

COCO_DIR = pathlib.Path(__file__).parent / 'data' / 'coco'
ANNOTATIONS = COCO_DIR / 'test_coco.json'
DETECTIONS = COCO_DIR / 'test_coco_det_AP_H_56.json'
COCO_FLIP = skeletons.COCO.flip_permutation()
INPUT = 256
MAP = 64


class GroundTruthStandIn:
  """A network that knows the image's people and its detection boxes: maps [P, 17, 64, 64] (mmpose's layout).

  Crop p is detection p cut as mmpose cuts it for a square input (computed
  here in float64: the box centre, side max(w, h) x 1.25). Joint j's map has
  a Gaussian (sigma 2 map pixels) at each annotated person's joint j, moved
  by a fixed error (normal, 2.5% of the person's size, the same for every
  crop, so that AP is below 1), of height 1 (visible) or 0.6 (occluded)
  times how central the person's box is in the crop, plus 0.04 x channel
  j % 3 of the input pixel (4 y + 1, 4 x + 1) / 255 - 0.02. With the flip
  test, calls alternate: the crops, then their mirror images, whose maps
  show the mirrored joints (map x -> 63.75 - x) with left and right swapped.
  Crop 5 k's map of joint k % 17 is moved down by 2, below 0 everywhere.
  """

  def __init__(self, flip_test: bool):
    self.flip_test = flip_test
    self.calls = 0
    self.people = None  # (keypoints [G, 17, 2], visibility [G, 17], boxes [G, 4]), boxes [P, 4]

  def show(self, annotations: list[dict], boxes: np.ndarray):
    keypoints = np.array([a['keypoints'] for a in annotations], np.float64).reshape(-1, 17, 3)
    person_boxes = np.array([a['bbox'] for a in annotations], np.float64).reshape(-1, 4)
    size = np.sqrt(person_boxes[:, 2] * person_boxes[:, 3])[:, None, None]
    error = np.random.default_rng(len(boxes)).normal(0, 0.025, keypoints[..., :2].shape) * size
    self.people = (keypoints[..., :2] + error, keypoints[..., 2], person_boxes), boxes
    self.calls = 0

  def __call__(self, pixels: np.ndarray) -> np.ndarray:
    mirrored = self.flip_test and self.calls % 2 == 1
    self.calls += 1
    (joints, visibility, person_boxes), boxes = self.people
    assert len(pixels) == len(boxes)
    centers = boxes[:, :2] + boxes[:, 2:] / 2
    factor = INPUT / (np.maximum(boxes[:, 2], boxes[:, 3]) * 1.25) / (INPUT / MAP)  # image -> map
    # [P, G, 17, 2] joints and [P, G, 2] person centres in each crop's map pixels.
    on_map = (joints[None] - centers[:, None, None]) * factor[:, None, None, None] + MAP / 2
    person = ((person_boxes[None, :, :2] + person_boxes[None, :, 2:] / 2 - centers[:, None])
              * factor[:, None, None] + MAP / 2)
    height = np.exp(-((person - MAP / 2) ** 2).sum(-1) / (2 * 16.0 ** 2))  # [P, G]
    height = height[..., None] * np.select([visibility == 2, visibility == 1], [1.0, 0.6])
    if mirrored:
      on_map = np.stack([MAP - 0.25 - on_map[..., 0], on_map[..., 1]], -1)[:, :, COCO_FLIP]
      height = height[:, :, COCO_FLIP]
    # The Gaussian is separable: a profile along x times one along y.
    profiles = np.exp(-(np.arange(MAP) - on_map[..., None]) ** 2 / (2 * 2.0 ** 2))
    along_y = (height[..., None] * profiles[..., 1, :]).transpose(0, 2, 3, 1)  # [P, 17, 64, G]
    bumps = along_y @ profiles[..., 0, :].transpose(0, 2, 1, 3)  # [P, 17, 64, 64]
    # Every fourth pixel, from (1, 1): the map pixel's input pixel, near enough.
    sampled = np.asarray(pixels, np.float32)[:, 1::4, 1::4]
    texture = sampled.transpose(0, 3, 1, 2)[:, np.arange(17) % 3]
    maps = bumps + 0.04 * texture / 255 - 0.02
    # Every fifth crop finds one joint nowhere (a map without a positive value).
    crops = np.arange(0, len(maps), 5)
    missing = crops // 5 % 17
    maps[crops, COCO_FLIP[missing] if mirrored else missing] -= 2
    return maps.astype(np.float32)


def channels_last(network):
  """jaxpose's interface for a network of mmpose's layout: [P, h, w, 3] -> [P, h', w', J]."""
  return lambda pixels: network(pixels).transpose(0, 2, 3, 1)


class HeatmapsPredictor:
  """A `deploy.predictor` stand-in of a fixed input size: crops -> {'heatmaps_stack0': heatmaps_fn(crops)}."""

  def __init__(self, heatmaps_fn, input_size):
    self.heatmaps_fn = heatmaps_fn
    self.input_size = input_size
    self.source = '<stand-in>'

  def __call__(self, crops):
    return {'heatmaps_stack0': self.heatmaps_fn(crops)}


def sample():
  """[(image id, RGB image, annotations, detection boxes [P, 4] xywh, scores [P])] of the sample."""
  with open(ANNOTATIONS) as f:
    dataset = json.load(f)
  detections = detections_lib.DetectionsFile(str(DETECTIONS))
  people = []
  for entry in dataset['images']:
    image = images_lib.read_image(str(COCO_DIR / entry['file_name']), entry['id'])
    annotations = [a for a in dataset['annotations'] if a['image_id'] == entry['id']]
    people.append((entry['id'], image, annotations, *detections.boxes(entry['id'])))
  return people


@functools.lru_cache(maxsize=None)
def run_both(flip_test: bool):
  """Per image: (transcription's (keypoints, scores, results, kept), jaxpose's (keypoints, scores, results, kept))."""
  runs = []
  for image_id, image, annotations, boxes, scores in sample():
    standin = GroundTruthStandIn(flip_test)
    standin.show(annotations, boxes)
    expected = reference.evaluate_image(standin, image, image_id, boxes, scores, flip_test)
    assert standin.calls == (2 if flip_test else 1)
    standin.show(annotations, boxes)
    keypoints, keypoint_scores = mmpose_topdown.predict_mmpose(
        channels_last(standin), image, boxes, (INPUT, INPUT), COCO_FLIP, flip_test)
    standin.show(annotations, boxes)
    results, kept = mmpose_topdown.image_results(channels_last(standin), image, image_id, boxes,
                                                 scores, flip_test=flip_test)
    runs.append((expected, (keypoints, keypoint_scores, results, kept)))
  return runs


@pytest.mark.parametrize('flip_test', [True, False])
def test_keypoints_and_scores_equal_the_transcription(flip_test):
  for expected, ours in run_both(flip_test):
    assert ours[0].shape == expected[0].shape and ours[0].shape[1:] == (17, 2)
    np.testing.assert_allclose(ours[0], expected[0], rtol=0, atol=1e-3)
    np.testing.assert_allclose(ours[1], expected[1], rtol=0, atol=1e-5)
  # The stand-in's bumps are found in some crops and not in others (boxes
  # around no one, joints not annotated).
  scores = np.concatenate([ours[1] for _, ours in run_both(flip_test)])
  assert 0.3 < (scores > 0.2).mean() < 0.9
  # The maps without a positive value: mmpose's (-1, -1) in the input.
  negative = scores <= 0
  assert negative.sum() == 5 + 6 + 7 + 8  # ceil(P / 5) of the 22, 26, 33, 37 boxes
  keypoints = np.concatenate([expected[0] for expected, _ in run_both(flip_test)])
  boxes = np.concatenate([people[3] for people in sample()])
  centers, scales = mmpose_topdown.boxes_to_center_scale(boxes, 1.0)
  corner = centers - scales / 2 - 4 / INPUT * scales  # input pixel (-4, -4)
  np.testing.assert_allclose(keypoints[negative], corner[np.nonzero(negative)[0]], atol=1e-3)


def test_results_after_rescoring_and_oks_nms_equal_the_transcription():
  dropped = 0
  for expected, ours in run_both(True):
    _, _, expected_results, expected_kept = expected
    keypoints, _, results, kept = ours
    assert list(kept) == expected_kept
    dropped += len(keypoints) - len(kept)
    assert len(results) == len(expected_results)
    for result, reference_result in zip(results, expected_results):
      assert result['image_id'] == reference_result['image_id']
      assert result['category_id'] == reference_result['category_id'] == 1
      np.testing.assert_allclose(result['keypoints'], reference_result['keypoints'],
                                 rtol=0, atol=1e-3)
      assert result['score'] == pytest.approx(reference_result['score'], abs=1e-6)
      # The detection box, whose w x h COCOeval takes as the result's area.
      np.testing.assert_allclose(result['bbox'], reference_result['bbox'], rtol=0, atol=1e-4)
  # OKS-NMS removes the duplicate boxes of the 118 detections.
  assert dropped > 10


def test_coco_ap_of_the_results_equals_the_transcriptions(tmp_path):
  expected = [r for run, _ in run_both(True) for r in run[2]]
  ours = [r for _, run in run_both(True) for r in run[2]]
  with open(tmp_path / 'reference.keypoints.json', 'w') as f:
    json.dump(expected, f, sort_keys=True, indent=4)  # as CocoMetric's results2json
  coco_ap.write_coco_results(tmp_path / 'jaxpose.keypoints.json', ours)
  expected_stats = coco_ap.score_results_file(ANNOTATIONS, tmp_path / 'reference.keypoints.json',
                                              verbose=False)
  stats = coco_ap.score_results_file(ANNOTATIONS, tmp_path / 'jaxpose.keypoints.json',
                                     verbose=False)
  for name in coco_ap.COCO_STAT_NAMES:
    assert stats[name] == pytest.approx(expected_stats[name], abs=1e-6), name
  # The stand-in knows the people, up to its planted errors: AP well above chance, below 1.
  assert 0.5 < stats['AP'] < 1.0


def test_center_and_scale_pad_then_fix_the_aspect_ratio():
  boxes = np.array([[10.0, 20.0, 40.0, 80.0], [0.0, 0.0, 100.0, 20.0]])
  centers, scales = mmpose_topdown.boxes_to_center_scale(boxes, 192 / 256)
  assert centers.dtype == scales.dtype == np.float32
  # Box 0: 50 x 100 after padding, narrower than 3:4, widened to 75 x 100.
  # Box 1: 125 x 25, wider: 125 x 166.67.
  np.testing.assert_array_equal(centers, [[30, 60], [50, 10]])
  np.testing.assert_allclose(scales, [[75, 100], [125, 125 / 0.75]], rtol=1e-7)
  for box, center, scale in zip(boxes, centers, scales):
    expected_center, expected_size = geometry.box_to_center_scale(box, 0.75)
    np.testing.assert_allclose(center, expected_center, rtol=1e-7)
    np.testing.assert_allclose(scale, expected_size, rtol=1e-7)
  # Box 0 is scaled by 192 / 75 = 2.56 about its centre to the input's (96, 128).
  matrices = mmpose_topdown.warp_matrices(centers, scales, (192, 256))
  np.testing.assert_allclose(matrices[0], [[2.56, 0, 96 - 30 * 2.56], [0, 2.56, 128 - 60 * 2.56]],
                             atol=1e-5)


def test_center_scale_and_matrix_are_mmposes_to_the_bit():
  rng = np.random.default_rng(0)
  boxes = np.concatenate([rng.uniform(0, 600, (50, 2)), rng.uniform(0.5, 300, (50, 2))], 1)
  for input_size in ((256, 256), (192, 256)):
    centers, scales = mmpose_topdown.boxes_to_center_scale(boxes, input_size[0] / input_size[1])
    matrices = mmpose_topdown.warp_matrices(centers, scales, input_size)
    for box, center, scale, matrix in zip(boxes, centers, scales, matrices):
      results = reference.get_bbox_center_scale(
          {'bbox': reference.bbox_xywh2xyxy(np.array([box], np.float32))})
      expected_scale = reference._fix_aspect_ratio(results['bbox_scale'],
                                                   input_size[0] / input_size[1])[0]
      np.testing.assert_array_equal(center, results['bbox_center'][0])
      np.testing.assert_array_equal(scale, expected_scale)
      np.testing.assert_array_equal(
          matrix, reference.get_warp_matrix(center, scale, 0., output_size=input_size))
  areas = mmpose_topdown.crop_areas(np.array([[0.0, 0.0, 40.0, 80.0]]), (256, 256))
  assert areas.tolist() == [100.0 * 100.0]  # 50 x 100 padded, squared to 100 x 100


def test_flip_test_mirrors_back_one_heatmap_pixel_right():
  crops = np.zeros((1, 256, 256, 3), np.uint8)
  crops[0, :, :128] = 200  # the mirror image is told apart by its pixels

  def network(pixels):
    maps = np.zeros((len(pixels), 64, 64, 17), np.float32)
    if pixels[0, 0, 0, 0] == 0:  # the mirror image
      maps[0, 5, 10, 1] = 1.0  # a left eye at map x = 10
      maps[0, 7, 63, 0] = 0.8  # the nose at the last column
    return maps

  heatmaps = mmpose_topdown.flip_test_heatmaps_mmpose(network, crops, COCO_FLIP)
  # Reversed, x = 63 - 10 = 53; moved right to 54; the right eye's map; averaged with 0.
  assert heatmaps[0, 5, 54, 2] == 0.5
  # The last column reverses to column 0, which keeps its value and also moves to 1.
  assert heatmaps[0, 7, 0, 0] == heatmaps[0, 7, 1, 0] == 0.4
  assert np.count_nonzero(heatmaps) == 3


def test_decoding_follows_mmposes_border_rule():
  maps = np.zeros((1, 64, 64, 4), np.float32)
  maps[0, 10, 1, 0], maps[0, 10, 2, 0], maps[0, 11, 1, 0] = 1.0, 0.5, 0.3  # x = 1: y moves only
  maps[0, 0, 30, 1], maps[0, 0, 31, 1], maps[0, 1, 30, 1] = 1.0, 0.5, 0.5  # y = 0: neither moves
  maps[..., 2] = -0.5  # nothing positive: (-1, -1)
  maps[0, 30, 20, 3], maps[0, 30, 19, 3] = 1.0, 0.7  # left higher: x - 0.25; y even
  keypoints, scores = mmpose_topdown.decode_msra(maps, (256, 256))
  np.testing.assert_array_equal(keypoints[0], [[4, 41], [120, 0], [-4, -4], [79, 120]])
  np.testing.assert_array_equal(scores[0], [1.0, 1.0, -0.5, 1.0])
  expected, expected_scores = reference.msra_decode(maps[0].transpose(2, 0, 1))
  np.testing.assert_array_equal(keypoints, expected)
  np.testing.assert_array_equal(scores, expected_scores)


def test_oks_nms_uses_the_crop_area_and_mmposes_order():
  rng = np.random.default_rng(1)
  person = rng.uniform(100, 200, (17, 2))
  keypoints = np.stack([person, person + (3.0, 0.0)])
  scores = np.array([0.9, 0.8], np.float32)
  box_area, crop_area = 40.0 * 80.0, 100.0 * 100.0
  # OKS of a 3-pixel shift: 0.858 at the box's area (kept), 0.949 at the crop's (dropped).
  for area, expected in ((box_area, [0, 1]), (crop_area, [0])):
    kept = mmpose_topdown.oks_nms_mmpose(keypoints, scores, np.full(2, area))
    assert kept.tolist() == expected
    assert oks_lib.oks_nms(keypoints, scores, np.full(2, area)).tolist() == expected
  # Ties (people without a keypoint above 0.2 score 0): people 1 and 2 are the
  # same, far from person 0. mmpose visits argsort(scores)[::-1] = [0, 2, 1]
  # (numpy's argsort keeps ties in order for so few), so keeps 2 where a
  # stable descending order, as metrics.oks.oks_nms's, keeps 1.
  keypoints = np.stack([person, person + (40.0, 0.0), person + (40.0, 0.0)])
  scores = np.array([0.5, 0.0, 0.0], np.float32)
  areas = np.full(3, crop_area, np.float32)
  kept = mmpose_topdown.oks_nms_mmpose(keypoints, scores, areas)
  instances = [{'score': s, 'keypoints': np.concatenate([k, np.ones((17, 1))], -1).astype(np.float32),
                'area': a} for s, k, a in zip(scores, keypoints, areas)]
  expected = reference.oks_nms(instances, 0.9, sigmas=reference.SIGMAS)
  assert kept.tolist() == expected.tolist() == [0, 2]
  assert oks_lib.oks_nms(keypoints, scores, areas).tolist() == [0, 1]


def test_jaxpose_eval_with_mmposes_protocol_writes_the_transcriptions_results(tmp_path,
                                                                               monkeypatch):
  # `jaxpose eval --protocol=mmpose_topdown --detections=...`, the stand-in as the model.
  by_image = {image_id: (annotations, boxes) for image_id, _, annotations, boxes, _ in sample()}
  standin = GroundTruthStandIn(flip_test=True)
  real_read_image = images_lib.read_image

  def read_image(path, image_id):
    standin.show(*by_image[image_id])
    return real_read_image(path, image_id)

  monkeypatch.setattr(images_lib, 'read_image', read_image)
  config = coco_sample_config(**{'input_size': (INPUT, INPUT)})
  config.model.num_joints = 17
  metrics = evaluation.evaluate_workdir(
      config, str(tmp_path), model_fn=channels_last(standin),
      results_file=str(tmp_path / 'results.json'),
      options=approaches.Options(detections=str(DETECTIONS), protocol='mmpose_topdown'))
  ours = json.loads((tmp_path / 'results.json').read_text())
  expected = [r for run, _ in run_both(True) for r in run[2]]
  assert len(ours) == len(expected)
  np.testing.assert_allclose([r['keypoints'] for r in ours], [r['keypoints'] for r in expected],
                             atol=1e-3)
  with open(tmp_path / 'reference.keypoints.json', 'w') as f:
    json.dump(expected, f)
  expected_stats = coco_ap.score_results_file(ANNOTATIONS, tmp_path / 'reference.keypoints.json',
                                              verbose=False)
  assert metrics['AP'] == pytest.approx(expected_stats['AP'], abs=1e-6)
  # Inference's `TopDown.predict` with the same protocol gives the same keypoints.
  image_id, image, annotations, boxes, scores = sample()[0]
  standin.show(annotations, boxes)
  people = approaches.for_description({'arch': 'hourglass', 'num_joints': 17}).predict(
      HeatmapsPredictor(channels_last(standin), (INPUT, INPUT)), [image],
      approaches.Options(protocol='mmpose_topdown', flip_test=True), [(boxes, scores)])[0]
  np.testing.assert_allclose(people.keypoints, run_both(True)[0][0][0], atol=1e-3)
