"""CMU OpenPose's body.py protocol (`codecs.paf_body_py`, `approaches.bottomup_body_py`) against the port.

The reference is scripts/upstream_body_py.py, a transcription of
Hzzone/pytorch-openpose's `src/body.py` (commit and file in its docstring).
Both run the same stand-in network: the targets `paf.encode` renders for the
bundled COCO people, scaled into the network input the protocol prepares,
plus a small term of the input pixels (so that the channel order, the
normalisation and the padding of the input matter).
"""

import json
import os
import sys

import cv2
import ml_collections
import numpy as np
import pytest

from jaxpose import approaches, evaluation
from jaxpose.approaches import bottomup
from jaxpose.approaches import protocols
from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.codecs import paf, paf_body_py
from jaxpose.metrics import coco_ap
from jaxpose.models import cmu_openpose

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import upstream_body_py  # pylint: disable=g-import-not-at-top
import upstream_grouping  # pylint: disable=g-import-not-at-top
from test_sources import coco_sample_config  # pylint: disable=g-import-not-at-top

COCO_DIR = os.path.join(os.path.dirname(__file__), 'data', 'coco')
STRIDE = 8


def coco_images():
  """[(RGB image, COCO annotations)] of the bundled sample."""
  with open(os.path.join(COCO_DIR, 'test_coco.json')) as f:
    data = json.load(f)
  result = []
  for image in data['images']:
    bgr = cv2.imread(os.path.join(COCO_DIR, image['file_name']))
    annotations = [a for a in data['annotations'] if a['image_id'] == image['id']]
    result.append((bgr[..., ::-1].copy(), annotations))
  return result


class StandIn:
  """A network for one image: normalised BGR input [h, w, 3] -> the image's people's (heatmaps, pafs) [h/8, w/8, C].

  The people are scaled by the factor of the scale whose input has this
  size (cv2's pixel centres); 0.05 times the 8x8 mean of the input's first
  (blue) channel is added to every map.
  """

  def __init__(self, image, annotations, scales):
    self.height, self.width = image.shape[:2]
    keypoints, visible, _ = upstream_grouping.coco_people(annotations,
                                                          image_size=(self.width, self.height))
    self.keypoints, self.visible = keypoints, visible
    self.factors = {}
    for scale in scales:
      factor = scale * protocols.cmu_openpose.BOX_SIZE / self.height
      resized = cv2.resize(image, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
      size = tuple(-(-s // STRIDE) * STRIDE for s in resized.shape[:2])
      self.factors[size] = factor
    self.calls = 0

  def __call__(self, normalised_bgr):
    self.calls += 1
    h, w = normalised_bgr.shape[:2]
    factor = self.factors[(h, w)]
    heatmaps, pafs = paf.encode((self.keypoints + 0.5) * factor - 0.5, self.visible,
                                image_size=(w, h), stride=STRIDE)
    pooled = normalised_bgr[..., 0].reshape(h // STRIDE, STRIDE, w // STRIDE, STRIDE).mean((1, 3))
    term = 0.05 * pooled[..., None]
    return np.asarray(heatmaps) + term, np.asarray(pafs) + term

  def port_net(self, nchw):
    """The port's interface: [1, 3, h, w] -> (pafs [1, 38, ...], heatmaps [1, 19, ...])."""
    heatmaps, pafs = self(np.transpose(nchw[0], (1, 2, 0)))
    return np.transpose(pafs, (2, 0, 1))[None], np.transpose(heatmaps, (2, 0, 1))[None]

  def maps_fn(self, pixels):
    """jaxpose's interface: RGB pixels [1, h, w, 3] -> (heatmaps [1, ...], pafs [1, ...])."""
    normalised = np.asarray(cmu_openpose.PORT_NORMALIZATION.normalize(pixels))[0]
    heatmaps, pafs = self(normalised)
    return heatmaps[None], pafs[None]


def port_people(image, standin, scales):
  heatmaps, pafs = upstream_body_py.averaged_maps(standin.port_net, image[..., ::-1].copy(),
                                                  scale_search=scales)
  return upstream_body_py.people(*upstream_body_py.decode(heatmaps, pafs))


@pytest.mark.parametrize('scales', [(0.5,), (0.5, 1.0)])
def test_protocol_finds_the_ports_people_on_the_coco_sample(scales):
  found = 0
  for image, annotations in coco_images():
    standin = StandIn(image, annotations, scales)
    expected_people, expected_scores = port_people(image, standin, scales)
    people, scores = protocols.cmu_openpose.predict_body_py(standin.maps_fn, image, scales)
    np.testing.assert_allclose(people, expected_people, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)
    assert standin.calls == 2 * len(scales)
    found += len(people)
  # The rendered people are found: 4 images, at least one person each.
  assert found >= 4


def test_maps_are_the_ports_bit_for_bit_with_its_double_counting():
  image, annotations = coco_images()[0]
  scales = (0.5, 1.0)
  standin = StandIn(image, annotations, scales)
  expected = upstream_body_py.averaged_maps(standin.port_net, image[..., ::-1].copy(),
                                            scale_search=scales)
  maps = protocols.cmu_openpose.image_maps(standin.maps_fn, image, scales)
  for got, want in zip(maps, expected):
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
  # The port's heatmap sum counts the first scale twice: h1 / 2 * 2 + h2 / 2.
  single = [protocols.cmu_openpose.image_maps(standin.maps_fn, image, (s,))[0] for s in scales]
  np.testing.assert_allclose(maps[0], single[0] + single[1] / 2, atol=1e-6)
  np.testing.assert_allclose(maps[1], (protocols.cmu_openpose.image_maps(
      standin.maps_fn, image, (0.5,))[1] + protocols.cmu_openpose.image_maps(
          standin.maps_fn, image, (1.0,))[1]) / 2, atol=1e-6)


def crowd_maps(seed):
  """Noisy maps of many overlapping people at one image's size, for the decoder alone."""
  rng = np.random.default_rng(seed)
  image, annotations = coco_images()[seed % 4]
  height, width = image.shape[:2]
  keypoints, visible, _ = upstream_grouping.coco_people(annotations)
  # The people, and copies of them shifted and with keypoints dropped: half-people to merge.
  copies = [keypoints]
  copies_visible = [visible]
  for _ in range(3):
    copies.append(keypoints + rng.uniform(-40, 40, (len(keypoints), 1, 2)))
    copies_visible.append(visible * (rng.random(visible.shape) > 0.3))
  size = (-(-width // STRIDE) * STRIDE, -(-height // STRIDE) * STRIDE)
  heatmaps, pafs = paf.encode(np.concatenate(copies), np.concatenate(copies_visible),
                              image_size=size, stride=STRIDE)
  heatmaps = cv2.resize(np.asarray(heatmaps), (0, 0), fx=STRIDE, fy=STRIDE,
                        interpolation=cv2.INTER_CUBIC)[:height, :width]
  pafs = cv2.resize(np.asarray(pafs), (0, 0), fx=STRIDE, fy=STRIDE,
                    interpolation=cv2.INTER_CUBIC)[:height, :width]
  heatmaps = heatmaps + rng.normal(0, 0.02, heatmaps.shape)
  pafs = pafs + rng.normal(0, 0.05, pafs.shape)
  return heatmaps, pafs


@pytest.mark.parametrize('seed', range(4))
def test_decode_equals_the_port_on_noisy_crowds(seed):
  heatmaps, pafs = crowd_maps(seed)
  candidate, subset = upstream_body_py.decode(heatmaps, pafs)
  expected_people, expected_scores = upstream_body_py.people(candidate, subset)
  people, scores = paf_body_py.decode(heatmaps, pafs)
  np.testing.assert_array_equal(people, expected_people)
  np.testing.assert_array_equal(scores, expected_scores)
  assert len(people) >= 2


def test_peaks_are_found_on_the_smoothed_maps_and_scored_on_the_raw_ones():
  maps = np.zeros((30, 40, 19))
  maps[10, 12, 2] = 10.0  # smoothed (sigma 3): 10 / (2 pi 9) = 0.18 > 0.1
  maps[0, 0, 3] = 10.0  # on the corner: a neighbour outside counts as 0
  maps[20, 30, 5] = 5.0  # smoothed 0.088: under the threshold
  maps[20, 10:12, 6] = 10.0  # a flat top two pixels wide: equal smoothed values
  x, y, kind, score = paf_body_py.find_peaks(maps)
  np.testing.assert_array_equal(np.stack([kind, y, x], -1),
                                [[2, 10, 12], [3, 0, 0], [6, 20, 10], [6, 20, 11]])
  np.testing.assert_array_equal(score, [10.0, 10.0, 10.0, 10.0])  # the unsmoothed values


def test_long_limbs_pay_the_distance_prior():
  # One limb (neck -> right shoulder) with a perfect field; at 0.6 H long, its
  # score 1 + (0.5 / 0.6 - 1) = 0.833.
  height = 100
  x, y = np.array([10, 70]), np.array([50, 50])
  kind = np.array([1, 2])
  pafs = np.zeros((height, 100, 38))
  limb = int(np.flatnonzero((paf_body_py.LIMB_A == 1) & (paf_body_py.LIMB_B == 2))[0])
  pafs[..., 2 * paf_body_py.LIMB_ORDER[limb]] = 1.0
  connections = paf_body_py.score_limbs(x, y, kind, pafs, height)
  a, b, score = connections[limb]
  np.testing.assert_array_equal(a, [0])
  np.testing.assert_array_equal(b, [1])
  np.testing.assert_allclose(score, [0.5 * height / 60], rtol=1e-12)
  assert sum(len(c[0]) for c in connections) == 1


def test_cmu_openpose_runs_body_py_and_lightweight_openpose_demo_py():
  cmu = approaches.for_description({'arch': 'openpose'}).protocol(approaches.Options())
  light = approaches.for_description({'arch': 'lightweight_openpose'}).protocol(
      approaches.Options())
  assert (cmu.NAME, light.NAME) == ('cmu_openpose', 'lightweight_openpose')
  assert (cmu.DEFAULT_HEIGHT, cmu.DEFAULT_SCALES) == (184, (0.5,))
  assert (light.DEFAULT_HEIGHT, light.DEFAULT_SCALES) == (256, (1.0,))


def test_decode_names_the_expected_shapes():
  with pytest.raises(ValueError, match=r'heatmaps \[H, W, 19\] and pafs \[H, W, 38\]'):
    paf_body_py.decode(np.zeros((10, 10, 19)), np.zeros((10, 10, 19)))
  with pytest.raises(ValueError, match='uint8 image'):
    protocols.cmu_openpose.image_maps(lambda x: x, np.zeros((10, 10, 3), np.float32))


class _StandInPredictor:
  """A `jaxpose.deploy.predictor` stand-in: uint8 pixels [1, h, w, 3] -> named last-stage outputs."""
  input_size = None
  input_multiple = STRIDE

  def __init__(self, standin):
    self.standin = standin

  def __call__(self, pixels):
    assert pixels.dtype == np.uint8
    heatmaps, pafs = self.standin.maps_fn(pixels)
    return {'heatmaps_stage6': heatmaps, 'pafs_stage6': pafs}


def test_cmu_openpose_inference_is_the_ports_at_its_height():
  approach = approaches.for_description({'arch': 'openpose'})
  image, annotations = coco_images()[1]
  for height, scale in ((None, 0.5), (276, 0.75)):
    standin = StandIn(image, annotations, (scale,))
    people = approach.predict(_StandInPredictor(standin), [image],
                              approaches.Options(height=height))[0]
    expected_people, expected_scores = port_people(image, standin, (scale,))
    keypoints, keypoint_scores, scores = lightweight_openpose.coco_keypoints(expected_people,
                                                                 expected_scores)
    assert len(people.scores) == len(expected_scores) >= 1
    np.testing.assert_allclose(people.keypoints, keypoints, atol=1e-4)
    np.testing.assert_allclose(people.keypoint_scores, keypoint_scores, atol=1e-6)
    np.testing.assert_allclose(people.scores, scores, rtol=1e-6)


def test_cmu_openpose_evaluation_scores_the_ports_people(tmp_path):
  images = {}
  for image, annotations in coco_images():
    images[annotations[0]['image_id']] = StandIn(image, annotations, (0.5,)), image
  current = {}
  real_read_image = bottomup.read_image

  def read_image(path, image_id):
    current['standin'] = images[image_id][0]
    return real_read_image(path, image_id)

  config = coco_sample_config()
  config.model = ml_collections.ConfigDict({'arch': 'openpose'})
  config.input_size = (368, 368)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(bottomup, 'read_image', read_image)
    metrics = evaluation.evaluate_workdir(
        config, str(tmp_path), model_fn=lambda pixels: current['standin'].maps_fn(pixels))
  results = json.loads((tmp_path / 'eval' / 'results_step0.json').read_text())
  expected = []
  for image_id, (standin, image) in images.items():
    people, scores = port_people(image, standin, (0.5,))
    found = people[..., 2] > 0
    people[..., :2] = np.where(found[..., None], people[..., :2] + 0.5, -1)  # COCO's half pixel
    keypoints, keypoint_scores, person_scores = lightweight_openpose.coco_keypoints(people, scores)
    expected += coco_ap.coco_results(np.full(len(scores), image_id), keypoints,
                                     keypoint_scores, person_scores)
  key = lambda r: (r['image_id'], -r['score'])
  results, expected = sorted(results, key=key), sorted(expected, key=key)
  assert [r['image_id'] for r in results] == [r['image_id'] for r in expected]
  for got, want in zip(results, expected):
    np.testing.assert_allclose(got['keypoints'], want['keypoints'], atol=1e-3)
    assert got['score'] == pytest.approx(want['score'], rel=1e-6)
  # Every rendered person is found with the right limbs, at 184 px high not
  # to the pixel (AP 0.92 when written).
  assert metrics['AP50'] == 1.0 and metrics['AR50'] == 1.0
  assert metrics['AP'] >= 0.85
