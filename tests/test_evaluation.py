"""eval_model: a workdir's COCO AP / MPII PCKh on the eval split, with a random model and with an oracle."""

import json
import pathlib
import shutil
import sys

import jax
import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxpose import approaches, cli, evaluation, models, skeletons
from jaxpose.training import checkpoint
from jaxpose import config as config_lib
from jaxpose.approaches import bottomup
from jaxpose.approaches.protocols import jaxpose_topdown, lightweight_openpose
from jaxpose.codecs import heatmap, paf
from jaxpose.data import coco, geometry, images, mpii
from jaxpose.metrics import coco_ap, pck
from jaxpose.models.openpose import STRIDE as OPENPOSE_STRIDE
import random_weights
from test_sources import coco_sample_config
from test_mpii import _load as load_mpii_entries
from test_mpii import write_ground_truth_mat, write_official_mat

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / 'scripts'))
import upstream_grouping  # pylint: disable=g-import-not-at-top

DATA = pathlib.Path(__file__).parent / 'data'
COCO_DIR = DATA / 'coco'
COCO_JSON = COCO_DIR / 'test_coco.json'
DETECTIONS = COCO_DIR / 'test_coco_det_AP_H_56.json'
MPII_DIR = DATA / 'mpii'
INPUT_SIZE = (64, 64)
STRIDE = 4
SIGMA = 1.0


class _TargetRenderer:
  """A perfect hourglass: exact target heatmaps for each crop it was told about (by its bytes)."""

  def __init__(self, input_size, num_joints):
    self.input_size = tuple(input_size)
    self.heatmap_size = (input_size[0] // STRIDE, input_size[1] // STRIDE)
    self.num_joints = num_joints
    self.known = {}

  def add(self, crop, joints, visible):
    self.known[np.ascontiguousarray(crop).tobytes()] = (joints, visible)

  def add_person(self, crop, joints, labelled, flip_permutation):
    """A crop, its joints [J, 2] in crop pixels, labelled [J]; and the flip test's mirror of them."""
    self.add(crop, joints, labelled)
    width = self.input_size[0]
    mirrored = joints.copy()
    mirrored[:, 0] = width - STRIDE - joints[:, 0]  # jaxpose_topdown.mirror_crops: x -> w - stride - x
    self.add(jaxpose_topdown.mirror_crops(crop[None], STRIDE)[0], mirrored[flip_permutation],
             labelled[flip_permutation])

  def __call__(self, images):
    joints, visible = zip(*(self.known[np.ascontiguousarray(image).tobytes()]
                            for image in images))
    target, _ = heatmap.encode(np.stack(joints), np.stack(visible).astype(np.float32),
                               image_size=self.input_size, heatmap_size=self.heatmap_size,
                               sigma=SIGMA)
    return np.asarray(target)


def _oracle(records, skeleton, input_size=INPUT_SIZE):
  """Records with keypoints / visible / boxes -> (renderer, the keypoints it must give back [N, J, 2])."""
  renderer = _TargetRenderer(input_size, skeleton.num_keypoints)
  expected = []
  for record in records:
    image = images.read_image(record.path, record.image_id)
    crops, matrices = jaxpose_topdown.crop_people(image, record.boxes, input_size)
    for crop, matrix, joints, visible in zip(crops, matrices, record.keypoints, record.visible):
      in_crop = geometry.apply_affine(joints.astype(np.float64), matrix)
      labelled = (visible > 0).astype(np.float32)
      renderer.add_person(crop, in_crop, labelled, skeleton.flip_permutation())
      # An exact Gaussian decodes to its centre pixel (equal neighbours: no
      # quarter shift): the joint rounded as the codec rounds (int(x/4 + 0.5)).
      nearest = np.trunc(in_crop / STRIDE + 0.5) * STRIDE
      expected.append(geometry.apply_affine(nearest, geometry.invert_affine(matrix)))
  return renderer, np.array(expected)


def _oks(predicted, annotation):
  """Predicted [17, 2] vs a COCO annotation -> OKS, pycocotools' formula (labelled joints)."""
  truth = np.array(annotation['keypoints'], np.float64).reshape(17, 3)
  labelled = truth[:, 2] > 0
  variances = (2 * np.array(skeletons.COCO.sigmas)) ** 2
  squared = ((predicted - truth[:, :2]) ** 2).sum(-1)
  e = squared / variances / (annotation['area'] + np.spacing(1)) / 2
  return np.exp(-e)[labelled].mean()


def test_oracle_heatmaps_give_the_ap_of_the_stride_quantisation(tmp_path):
  config = coco_sample_config(**{'input_size': INPUT_SIZE})
  records = coco.load_coco(str(COCO_JSON), str(COCO_DIR))
  renderer, expected = _oracle(records, skeletons.COCO)
  results_file = tmp_path / 'results.json'
  metrics = evaluation.evaluate_workdir(config, str(tmp_path), model_fn=renderer,
                                        results_file=str(results_file))
  results = json.loads(results_file.read_text())
  assert len(results) == len(expected) == 12
  predicted = np.array([r['keypoints'] for r in results]).reshape(-1, 17, 3)
  labelled = np.concatenate([r.visible for r in records]) > 0
  np.testing.assert_allclose(predicted[..., :2][labelled], expected[labelled], atol=1e-3)
  # Independent check: one prediction per ground-truth person and no other
  # person near it, so at OKS threshold t a person is recalled iff its OKS
  # >= t, and AR is the mean over the ten thresholds of the recalled fraction.
  annotations = [a for a in json.loads(COCO_JSON.read_text())['annotations']
                 if not a['iscrowd'] and a['num_keypoints'] > 0]
  oks = np.array([_oks(p[:, :2], a) for p, a in zip(predicted, annotations)])
  thresholds = np.linspace(0.5, 0.95, 10)
  # The 64x64 input (16x16 heatmaps) quantises joints to 4 crop pixels:
  # OKS stays above 0.5 for everyone, not above 0.95.
  assert oks.min() > 0.5 and oks.min() < 0.95
  assert metrics['AP50'] == pytest.approx(1.0)
  assert metrics['AR'] == pytest.approx(np.mean([(oks >= t).mean() for t in thresholds]), abs=1e-6)
  assert metrics['step'] == 0


def test_oracle_heatmaps_score_ap_one_at_256_input(tmp_path):
  # At 256x256 (64x64 heatmaps) the rounding error is below OKS's 0.95 bar
  # for every person of the sample, so AP and AR are exactly 1.
  config = coco_sample_config(**{'input_size': (256, 256)})
  records = coco.load_coco(str(COCO_JSON), str(COCO_DIR))
  renderer, expected = _oracle(records, skeletons.COCO, (256, 256))
  annotations = [a for a in json.loads(COCO_JSON.read_text())['annotations']
                 if not a['iscrowd'] and a['num_keypoints'] > 0]
  oks = np.array([_oks(p, a) for p, a in zip(expected, annotations)])
  assert oks.min() > 0.95  # so every person is a match at every threshold: AP = AR = 1
  metrics = evaluation.evaluate_workdir(config, str(tmp_path), model_fn=renderer)
  assert metrics['AP'] == pytest.approx(1.0) and metrics['AR'] == pytest.approx(1.0)
  assert (tmp_path / 'eval' / 'results_step0.json').is_file()


def _save_tiny_hourglass(workdir, num_joints=17, input_size=INPUT_SIZE):
  model = models.create_model(config_lib.hourglass_model(
      num_stacks=1, num_joints=num_joints, num_features=8).to_dict())
  variables = random_weights.random_variables(  # no compile: flax's init costs seconds
      model, np.zeros((1, input_size[1], input_size[0], 3)), train=False)
  checkpoint.save_variables(str(workdir), variables, models.model_config(model), step=7)


# Top-down COCO eval with detections, by default: ~7 s since the model's
# weights are drawn rather than initialised (test_recorded_outputs' eval
# at 256x256, 30 s, is slow).
def test_random_model_with_detections_writes_results_pycocotools_scores(tmp_path):
  workdir = tmp_path / 'hg'
  _save_tiny_hourglass(workdir)
  config = coco_sample_config(**{'input_size': INPUT_SIZE})
  options = approaches.Options(detections=str(DETECTIONS), detection_threshold=0.5)
  metrics = evaluation.evaluate_workdir(config, str(workdir), options=options)
  results_file = workdir / 'eval' / 'results_step7.json'
  ground_truth = COCO(str(COCO_JSON))
  scored = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), 'keypoints')
  scored.evaluate()
  scored.accumulate()
  scored.summarize()
  assert metrics['step'] == 7
  for name, value in zip(coco_ap.COCO_STAT_NAMES, scored.stats):
    assert metrics[name] == pytest.approx(value)
    assert np.isfinite(metrics[name])
  # Kept: detections scored >= 0.5 of images in the annotations, less OKS-NMS.
  detections = json.loads(DETECTIONS.read_text())
  image_ids = {i['id'] for i in json.loads(COCO_JSON.read_text())['images']}
  candidates = [d for d in detections if d['score'] >= 0.5 and d['image_id'] in image_ids]
  results = json.loads(results_file.read_text())
  assert 0 < len(results) <= len(candidates)
  assert {r['image_id'] for r in results} == {d['image_id'] for d in candidates}


@pytest.mark.parametrize('input_size, mean_at_half', [((64, 64), None), ((256, 256), 100.0)])
def test_mpii_oracle_pckh_with_head_boxes_from_the_mat(tmp_path, input_size, mean_at_half):
  annotation_file = write_official_mat(tmp_path / 'mpii.mat', load_mpii_entries())
  config = coco_sample_config(**{'input_size': input_size, 'data.source': 'mpii',
                                 'data.eval_annotations': annotation_file,
                                 'data.eval_images': str(MPII_DIR)})
  config.model.num_joints = 16
  records = mpii.load_mpii(annotation_file, str(MPII_DIR))
  renderer, expected = _oracle(records, skeletons.MPII, input_size)
  metrics = evaluation.evaluate_workdir(config, str(tmp_path), model_fn=renderer)
  truth = np.concatenate([r.keypoints for r in records])
  visible = np.concatenate([r.visible for r in records]) > 0
  head_boxes = np.concatenate([r.head_boxes for r in records])
  # Hand computation: head size 0.6 x diagonal; the made-up heads are 40 x 50.
  head_size = 0.6 * np.hypot(40.0, 50.0)
  np.testing.assert_allclose(pck.mpii_head_sizes(head_boxes), head_size, rtol=1e-6)
  error = np.linalg.norm(expected - truth, axis=-1)
  by_hand = {}
  for threshold in (0.5, 0.1):
    correct = error <= threshold * head_size
    joints = [j for j in pck.MPII_JOINTS_IN_MEAN if visible[:, j].any()]
    counts = np.array([visible[:, j].sum() for j in joints])
    per_joint = np.array([correct[visible[:, j], j].mean() for j in joints]) * 100
    by_hand[threshold] = float((per_joint * counts).sum() / counts.sum())
  assert metrics['Mean'] == pytest.approx(by_hand[0.5], abs=1e-4)
  assert metrics['Mean@0.1'] == pytest.approx(by_hand[0.1], abs=1e-4)
  # MPII people are large (boxes of 200 x scale ~ 500-800 px): a 64-pixel crop
  # rounds joints to ~30 image px, beyond half the 38-px head size; a 256-pixel
  # crop to ~8 px, within it for every joint.
  if mean_at_half is not None:
    assert metrics['Mean'] == pytest.approx(mean_at_half)
  else:
    assert metrics['Mean'] < 100.0


def test_mpii_json_without_its_ground_truth_file_names_where_it_looked(tmp_path):
  config = coco_sample_config(**{'input_size': INPUT_SIZE, 'data.source': 'mpii',
                                 'data.eval_annotations': str(MPII_DIR / 'test_mpii.json'),
                                 'data.eval_images': str(MPII_DIR)})
  config.model.num_joints = 16
  with pytest.raises(FileNotFoundError, match=r'test_mpii\.json: PCKh needs each person.s head '
                     r'box.*expected them in .*tests/data/mpii/gt_valid\.mat'):
    evaluation.evaluate_workdir(config, str(tmp_path), model_fn=lambda images: None)


def test_mpii_json_with_hrnets_ground_truth_scores_as_the_official_mat(tmp_path):
  # The same people, head boxes and oracle predictions through both routes:
  # HRNet's layout (annot/valid.json + annot/gt_valid.mat beside it) and the
  # official .mat.
  entries = load_mpii_entries()
  annot = tmp_path / 'mpii' / 'annot'
  annot.mkdir(parents=True)
  shutil.copy(MPII_DIR / 'test_mpii.json', annot / 'valid.json')
  write_ground_truth_mat(annot / 'gt_valid.mat', entries)
  official = write_official_mat(tmp_path / 'mpii.mat', entries)
  records = mpii.load_mpii(official, str(MPII_DIR))
  renderer, _ = _oracle(records, skeletons.MPII, (64, 64))
  metrics = {}
  for route, annotations in (('json', str(annot / 'valid.json')), ('mat', official)):
    config = coco_sample_config(**{'input_size': (64, 64), 'data.source': 'mpii',
                                   'data.eval_annotations': annotations,
                                   'data.eval_images': str(MPII_DIR)})
    config.model.num_joints = 16
    metrics[route] = evaluation.evaluate_workdir(config, str(tmp_path), model_fn=renderer)
  assert 0 < metrics['mat']['Mean'] < 100  # 64-pixel crops miss some joints (test above)
  assert metrics['json'] == metrics['mat']


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
  _save_tiny_hourglass(tmp_path / 'hg')
  config = coco_sample_config()
  config.model = config_lib.lightweight_openpose_model()
  with pytest.raises(ValueError, match=r"holds a 'hourglass' model, but config\.model\.arch is "
                     r"'lightweight_openpose'"):
    evaluation.evaluate_workdir(config, str(tmp_path / 'hg'))


def _coco_people_by_image() -> dict[int, np.ndarray]:
  """Image id -> its labelled non-crowd people's COCO keypoints [P, 17, 3]."""
  people = {}
  for annotation in json.loads(COCO_JSON.read_text())['annotations']:
    if not annotation['iscrowd'] and annotation['num_keypoints'] > 0:
      people.setdefault(annotation['image_id'], []).append(annotation['keypoints'])
  return {image_id: np.array(p, np.float64).reshape(-1, 17, 3) for image_id, p in people.items()}


class _BottomUpOracle:
  """A perfect Lightweight OpenPose: the codec's exact maps of an image's people, in each input.

  Told the image and its people, it expects one call per scale, in order, and
  moves the people into each input as `lightweight_openpose.letterbox` placed the image.
  """

  def __init__(self, scales):
    self.scales = tuple(scales)
    self.calls = 0
    self.image = self.people = None

  def show(self, image: np.ndarray, people: np.ndarray):
    self.image, self.people = image, people

  def __call__(self, inputs):
    scale = self.scales[self.calls % len(self.scales)]
    self.calls += 1
    expected, placement = lightweight_openpose.letterbox(np.asarray(self.image, np.float32),
                                             lightweight_openpose.VAL_HEIGHT, OPENPOSE_STRIDE,
                                             scale=scale)
    assert inputs.shape == (1, *expected.shape) and inputs.dtype == np.float32
    in_input = ((self.people[..., :2] + 0.5) * np.array(placement.scale) - 0.5 +
                np.array(placement.pad))
    openpose, visible = skeletons.openpose_from_coco(in_input, self.people[..., 2])
    heatmaps, pafs = paf.encode(openpose, (visible > 0).astype(np.float32),
                                image_size=(inputs.shape[2], inputs.shape[1]), stride=8,
                                sigma=7.0)
    return np.asarray(heatmaps)[None], np.asarray(pafs)[None]


@pytest.mark.parametrize('scales', [(1.0,), lightweight_openpose.MULTISCALE])
def test_bottom_up_oracle_maps_find_every_person(tmp_path, scales):
  # Maps over the image (val.py's protocol) place each keypoint on its pixel;
  # val.py then adds 0.5 px, which the positions below show.
  people = _coco_people_by_image()
  oracle = _BottomUpOracle(scales)
  real_read_image = bottomup.read_image

  def read_image(path, image_id):
    image = real_read_image(path, image_id)
    oracle.show(image, people[image_id])
    return image
  config = coco_sample_config()
  config.model = config_lib.lightweight_openpose_model()
  config.input_size = (368, 368)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(bottomup, 'read_image', read_image)
    metrics = evaluation.evaluate_workdir(config, str(tmp_path), model_fn=oracle,
                                          options=approaches.Options(scales=scales))
  assert oracle.calls == len(people) * len(scales)
  # Every person is found with the right limbs.
  assert metrics['AP50'] == 1.0 and metrics['AP75'] == 1.0 and metrics['AR50'] == 1.0
  assert metrics['AP'] >= 0.95
  errors = []
  for result in json.loads((tmp_path / 'eval' / 'results_step0.json').read_text()):
    found = np.array(result['keypoints']).reshape(17, 3)
    candidates = people[result['image_id']]
    both = (candidates[..., 2] > 0) & (found[:, 2] > 0)
    distance = np.where(both, np.abs(candidates[..., :2] - found[:, :2]).sum(-1), 0).sum(-1)
    truth = candidates[np.argmin(distance / np.maximum(both.sum(-1), 1))]
    labelled = (truth[:, 2] > 0) & (found[:, 2] > 0)
    errors.append(found[labelled, :2] - truth[labelled, :2])
  errors = np.concatenate(errors)
  assert len(errors) >= 150
  # val.py's half pixel, and whole-pixel rounding around it.
  np.testing.assert_array_equal(np.median(errors, axis=0), (0.5, 0.5))
  assert np.mean(np.abs(errors - 0.5).max(-1) <= 1.0) >= 0.9
  # At the image's resolution one left ankle of 000000197388 is joined to a
  # neighbour's knee (their limbs' fields overlap): the only keypoint more
  # than 4 px off.
  assert (np.abs(errors).max(-1) > 4).sum() <= 1


def test_bottom_up_eval_equals_val_py_on_oracle_maps():
  # The same maps through upstream's protocol, transcribed: val.py's infer,
  # its grouping at the image's size, its 0.5 px and COCO conversion.
  people = _coco_people_by_image()
  for image_id, keypoints in people.items():
    image = images.read_image(str(COCO_DIR / f'{image_id:012d}.jpg'), image_id)
    oracle = _BottomUpOracle(lightweight_openpose.MULTISCALE)
    oracle.show(image, keypoints)
    found, keypoint_scores, scores = lightweight_openpose.predict_val(oracle, image, lightweight_openpose.MULTISCALE)
    reference_net = lambda normalised: [m[0] for m in oracle(normalised[None] * 256 + 128)]
    heatmaps, pafs = upstream_grouping.infer_like_val(reference_net, image, lightweight_openpose.MULTISCALE)
    expected_people, expected_scores = upstream_grouping.decode_like_upstream(
        heatmaps, pafs, stride=1, upsample=1)
    expected_people[..., :2] += np.where(expected_people[..., 2:] > 0, 0.5, 0)
    expected = lightweight_openpose.coco_keypoints(expected_people, expected_scores)
    assert len(scores) == len(keypoints), image_id
    np.testing.assert_allclose(found, expected[0], atol=1e-4, err_msg=str(image_id))
    np.testing.assert_allclose(keypoint_scores, expected[1], atol=1e-4)
    np.testing.assert_allclose(scores, expected[2], rtol=1e-4)


@pytest.mark.slow  # ~2 min at 368 px; the bottom-up eval protocol is tested on oracle maps
def test_random_lightweight_openpose_checkpoint_runs_end_to_end(tmp_path):
  model = models.create_model(config_lib.lightweight_openpose_model().to_dict())
  variables = model.init(jax.random.key(0), np.zeros((1, 64, 64, 3)), train=False)
  checkpoint.save_variables(str(tmp_path / 'lwop'), variables, models.model_config(model), step=5)
  config = coco_sample_config()
  config.model = config_lib.lightweight_openpose_model()
  metrics = evaluation.evaluate_workdir(config, str(tmp_path / 'lwop'))
  assert metrics['step'] == 5
  assert set(metrics) == set(coco_ap.COCO_STAT_NAMES) | {'step'}
  assert all(0.0 <= metrics[name] <= 1.0 for name in coco_ap.COCO_STAT_NAMES)
  assert (tmp_path / 'lwop' / 'eval' / 'results_step5.json').is_file()


def test_eval_command_takes_scales_and_refuses_bad_ones(tmp_path, capsys):
  # In-process: tests/test_cli.py runs the installed executable's eval.
  model = models.create_model(
      config_lib.lightweight_openpose_model(num_refinement_stages=1).to_dict())
  variables = random_weights.random_variables(model, np.zeros((1, 64, 64, 3)), train=False)
  checkpoint.save_variables(str(tmp_path / 'lwop'), variables, models.model_config(model), step=3)
  results = tmp_path / 'results.json'
  command = ['eval',
             f'--config={pathlib.Path(__file__).parent.parent / "configs" / "lightweight_openpose_coco.py"}',
             f'--workdir={tmp_path / "lwop"}', f'--config.data.eval_annotations={COCO_JSON}',
             f'--config.data.eval_images={COCO_DIR}', f'--results={results}']
  # Half scale only: every sample image is one 368 x 368 input, one compilation.
  metrics = cli.run(command + ['--scales=0.5'])
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == metrics
  assert metrics['step'] == 3 and set(metrics) == set(coco_ap.COCO_STAT_NAMES) | {'step'}
  assert isinstance(json.loads(results.read_text()), list)
  with pytest.raises(cli.CommandFailed, match='--scales: expected positive numbers, got 1,0'
                     ) as refused:
    cli.run(command + ['--scales=1,0'])
  assert refused.value.status == 2
