"""MPII PCKh against hand arithmetic and an official-style restatement; COCO AP against pycocotools."""

import contextlib
import io
import json
import pathlib

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxpose import cli, skeletons
from jaxpose.metrics import coco_ap, pck
import layouts
import test_cli

COCO_ANNOTATIONS = pathlib.Path(__file__).parent / 'data' / 'coco' / 'test_coco.json'


# --- MPII PCKh -----------------------------------------------------------------

# Three people whose head boxes have diagonals 50, 100 and 25 (3-4-5
# triangles), hence head sizes 0.6 x diagonal = 30, 60 and 15.
HEAD_BOXES = np.array([[0., 0., 30., 40.], [10., 20., 70., 100.], [0., 0., 15., 20.]])
HEAD_SIZES = np.array([30., 60., 15.])
UNIT_X = (1.0, 0.0)
# Unit vectors. 0.7 head sizes along DIAGONAL moves each axis by 0.495 head
# sizes: only a Euclidean distance, not a per-axis one, calls that wrong.
DIAGONAL = (np.sqrt(0.5), np.sqrt(0.5))
OTHER_DIAGONAL = (-0.8, 0.6)
(R_ANKLE, R_KNEE, L_ANKLE, PELVIS, THORAX, HEAD_TOP, R_WRIST, L_WRIST) = (
    0, 1, 5, skeletons.MPII_PELVIS, skeletons.MPII_THORAX, skeletons.MPII_HEAD_TOP, 10, 15)


def _hand_built_people() -> tuple[np.ndarray, ...]:
  """-> predicted, target [3, 16, 2], visible [3, 16], head boxes [3, 4] with chosen errors.

  Errors, in head sizes (everything not listed: person 0 and 1 err by 0.3,
  person 2 by 0):
    person 0: right ankle 0.7, right wrist exactly 0.5 (correct: <=),
              pelvis 0.7 and thorax 0.7;
    person 1: right ankle 0.5 x 1.0001 (wrong), left wrist 0.7,
              right knee invisible with an error of 5 (must not count);
    person 2: head top 0.7, left ankle invisible.
  """
  rng = np.random.default_rng(0)
  target = rng.integers(0, 200, size=(3, 16, 2)).astype(np.float64)
  fractions = np.array([[0.3] * 16, [0.3] * 16, [0.0] * 16])
  directions = np.broadcast_to(np.array(OTHER_DIAGONAL), (3, 16, 2)).copy()
  visible = np.ones((3, 16))
  for person, joint, fraction, direction in (
      (0, R_ANKLE, 0.7, DIAGONAL), (0, R_WRIST, 0.5, UNIT_X),
      (0, PELVIS, 0.7, DIAGONAL), (0, THORAX, 0.7, DIAGONAL),
      (1, R_ANKLE, 0.5 * 1.0001, UNIT_X), (1, L_WRIST, 0.7, DIAGONAL),
      (1, R_KNEE, 5.0, DIAGONAL), (2, HEAD_TOP, 0.7, DIAGONAL)):
    fractions[person, joint] = fraction
    directions[person, joint] = direction
  visible[1, R_KNEE] = 0
  visible[2, L_ANKLE] = 0
  predicted = target + fractions[..., None] * HEAD_SIZES[:, None, None] * directions
  return predicted, target, visible, HEAD_BOXES


def test_head_sizes_are_six_tenths_of_the_diagonal():
  np.testing.assert_allclose(pck.mpii_head_sizes(HEAD_BOXES), HEAD_SIZES, rtol=1e-15)


def test_pckh_hand_built_per_joint_and_weighted_mean():
  result = pck.pckh(*_hand_built_people())
  # Per joint: correct / visible.
  expected = np.full(16, 100.0)
  expected[R_ANKLE] = 100 * 1 / 3      # person 0 (0.7) and 1 (0.50005) wrong
  expected[HEAD_TOP] = 100 * 2 / 3     # person 2 wrong (0.7)
  expected[L_WRIST] = 100 * 2 / 3      # person 1 wrong (0.7)
  expected[PELVIS] = expected[THORAX] = 100 * 2 / 3  # person 0 wrong (0.7)
  # R_WRIST stays 100: person 0's error is exactly 0.5 head sizes (15 px of 30).
  # R_KNEE and L_ANKLE stay 100: the one person each who erred is invisible.
  expected_counts = np.full(16, 3)
  expected_counts[R_KNEE] = expected_counts[L_ANKLE] = 2
  np.testing.assert_allclose(result.per_joint, expected, rtol=1e-12)
  np.testing.assert_array_equal(result.counts, expected_counts)
  # Mean over the 14 joints other than pelvis and thorax, weighted by counts:
  # 14 joints x 3 people - 2 invisible = 40 visible; wrong: right ankle x 2,
  # head top x 1, left wrist x 1 = 4; so 36 / 40 = 90%.
  assert result.mean == pytest.approx(90.0, rel=1e-12)
  assert result.threshold == 0.5


def test_pckh_grouped_columns_and_strict_mean():
  summary = pck.pckh_summary(*_hand_built_people())
  third = 100 / 3
  expected = {
      'Head': 2 * third,                        # head top only
      'Shoulder': 100.0, 'Elbow': 100.0,
      'Wrist': (2 * third + 100) / 2,           # (left 66.7 + right 100) / 2
      'Hip': 100.0, 'Knee': 100.0,
      'Ankle': (100 + third) / 2,               # (left 100 + right 33.3) / 2
      'Mean': 90.0,
      # The plain mean of the 14 joints: 11 at 100, head top and left wrist
      # at 66.7, right ankle at 33.3.
      'MeanOfJoints': (11 * 100 + 2 * 2 * third + third) / 14,
      # At 0.1 only person 2's zero errors count: 14 joints - left ankle
      # (invisible) - head top (0.7) = 12 correct of the same 40 visible.
      'Mean@0.1': 100 * 12 / 40,
  }
  assert summary.keys() == expected.keys()
  for name, value in expected.items():
    assert summary[name] == pytest.approx(value, rel=1e-12), name


def test_pckh_pelvis_and_thorax_do_not_move_the_mean():
  predicted, target, visible, head_boxes = _hand_built_people()
  before = pck.pckh(predicted, target, visible, head_boxes)
  predicted = predicted.copy()
  predicted[:, [PELVIS, THORAX]] += 1000.0  # every pelvis and thorax wrong
  after = pck.pckh(predicted, target, visible, head_boxes)
  assert after.per_joint[PELVIS] == after.per_joint[THORAX] == 0.0
  assert before.per_joint[PELVIS] == pytest.approx(100 * 2 / 3)
  assert after.mean == before.mean == pytest.approx(90.0, rel=1e-12)


def test_pckh_joint_without_ground_truth_is_nan_and_left_out():
  predicted, target, visible, head_boxes = _hand_built_people()
  visible = visible.copy()
  visible[:, R_ANKLE] = 0  # the joint with two of the four errors
  result = pck.pckh(predicted, target, visible, head_boxes)
  assert np.isnan(result.per_joint[R_ANKLE]) and result.counts[R_ANKLE] == 0
  # 40 - 3 right ankles = 37 visible, 2 wrong (head top, left wrist).
  assert result.mean == pytest.approx(100 * 35 / 37, rel=1e-12)


def _official_style_pckh(predicted, target, visible, head_boxes, threshold):
  """The official evaluation's arithmetic, restated: joints-first arrays, masked mean."""
  pred = np.transpose(predicted, [1, 2, 0])  # [16, 2, N] as the .mat files hold it
  gt = np.transpose(target, [1, 2, 0])
  jnt_visible = np.transpose(visible, [1, 0])
  boxes = np.stack([head_boxes[:, :2].T, head_boxes[:, 2:].T])  # [2 corners, 2, N]
  head_size = 0.6 * np.sqrt(((boxes[1] - boxes[0]) ** 2).sum(axis=0))
  scaled = np.sqrt(((pred - gt) ** 2).sum(axis=1)) / head_size * jnt_visible
  count = jnt_visible.sum(axis=1)
  per_joint = 100 * ((scaled <= threshold) * jnt_visible).sum(axis=1) / count
  masked = np.ma.array(per_joint, mask=np.isin(np.arange(16), [6, 7]))
  ratio = np.ma.array(count, mask=masked.mask) / count[~masked.mask].sum()
  return per_joint, float(np.sum(masked * ratio))


@pytest.mark.parametrize('threshold', [0.5, 0.1, 0.11])
def test_pckh_matches_official_style_formula_on_random_people(threshold):
  rng = np.random.default_rng(1)
  num_people = 200
  corners = rng.uniform(0, 300, size=(num_people, 2))
  head_boxes = np.concatenate([corners, corners + rng.uniform(10, 60, size=(num_people, 2))], -1)
  target = rng.uniform(0, 400, size=(num_people, 16, 2))
  # Errors from 0.05 to 0.5 head sizes or so: both thresholds split the joints.
  predicted = target + rng.normal(0, 1, size=target.shape) * rng.uniform(1, 15, size=(num_people, 1, 1))
  visible = (rng.random((num_people, 16)) > 0.15).astype(np.float64)
  result = pck.pckh(predicted, target, visible, head_boxes, threshold)
  per_joint, mean = _official_style_pckh(predicted, target, visible, head_boxes, threshold)
  np.testing.assert_allclose(result.per_joint, per_joint, rtol=1e-12)
  assert result.mean == pytest.approx(mean, rel=1e-12)
  assert 10 < result.mean < 90  # neither trivial extreme


def _bearpaw_eval_pckh(predicted, target, visible, head_boxes, threshold=0.5):
  """PCKh per joint and "Mean" as bearpaw/pytorch-pose's evaluation/eval_PCKh.py computes them.

  Transcribed from bearpaw/pytorch-pose at commit
  edc7aece651649927764435ce0c1f03cffa2edaf, `evaluation/eval_PCKh.py` `main`:
  joints-first arrays; head size SC_BIAS (0.6) x the head box's diagonal; a
  joint is correct when its scaled error is *strictly* below the threshold;
  per joint 100 x correct / visible; "Mean" = `np.mean` of the per-joint
  values with entries 6:8 (pelvis, thorax) masked: a plain mean.
  """
  pos_pred_src = np.transpose(predicted, [1, 2, 0])
  pos_gt_src = np.transpose(target, [1, 2, 0])
  jnt_visible = np.transpose(visible, [1, 0])
  headboxes_src = np.stack([head_boxes[:, :2].T, head_boxes[:, 2:].T])
  uv_err = np.linalg.norm(pos_pred_src - pos_gt_src, axis=1)
  headsizes = np.linalg.norm(headboxes_src[1, :, :] - headboxes_src[0, :, :], axis=0) * 0.6
  scaled_uv_err = np.multiply(np.divide(uv_err, np.multiply(headsizes, np.ones((len(uv_err), 1)))),
                              jnt_visible)
  jnt_count = np.sum(jnt_visible, axis=1)
  less_than_threshold = np.multiply((scaled_uv_err < threshold), jnt_visible)
  per_joint = np.divide(100. * np.sum(less_than_threshold, axis=1), jnt_count)
  masked = np.ma.array(per_joint, mask=False)
  masked.mask[6:8] = True
  return per_joint, float(np.mean(masked))


def test_pckh_mean_of_joints_is_bearpaws_eval_pckh_mean():
  rng = np.random.default_rng(2)
  num_people = 300
  corners = rng.uniform(0, 300, size=(num_people, 2))
  head_boxes = np.concatenate([corners, corners + rng.uniform(10, 60, size=(num_people, 2))], -1)
  target = rng.uniform(0, 400, size=(num_people, 16, 2))
  predicted = target + rng.normal(0, 1, size=target.shape) * rng.uniform(1, 15, (num_people, 1, 1))
  visible = (rng.random((num_people, 16)) > 0.15).astype(np.float64)
  result = pck.pckh(predicted, target, visible, head_boxes)
  per_joint, mean = _bearpaw_eval_pckh(predicted, target, visible, head_boxes)
  np.testing.assert_allclose(result.per_joint, per_joint, rtol=1e-12)  # no error is exactly 0.5
  assert result.mean_of_joints == pytest.approx(mean, rel=1e-12)
  # The two means differ: joints have different numbers of visible people.
  assert abs(result.mean_of_joints - result.mean) > 1e-6


def test_pckh_rejects_bad_shapes_and_empty_head_boxes():
  predicted, target, visible, head_boxes = _hand_built_people()
  with pytest.raises(ValueError, match=r'predicted has shape \(3, 17, 2\)'):
    pck.pckh(np.zeros((3, 17, 2)), target, visible, head_boxes)
  with pytest.raises(ValueError, match='head_boxes'):
    pck.pckh(predicted, target, visible, head_boxes[:2])
  degenerate = head_boxes.copy()
  degenerate[2] = [5., 5., 5., 5.]
  with pytest.raises(ValueError, match=r'head_boxes of people \[2\]'):
    pck.pckh(predicted, target, visible, degenerate)
  # A person with no visible joints may have an empty head box.
  hidden = visible.copy()
  hidden[2] = 0
  assert pck.pckh(predicted, target, hidden, degenerate).counts.max() == 2


# --- COCO keypoint AP ----------------------------------------------------------

def _ground_truth_people() -> list[dict]:
  """The annotations of test_coco.json that COCOeval('keypoints') scores.

  COCOeval ignores crowds and people with num_keypoints == 0: a detection
  matched to them counts neither way, and one for them that matches nothing
  (their keypoints are all (0, 0)) would be a false positive.
  """
  with COCO_ANNOTATIONS.open() as f:
    annotations = json.load(f)['annotations']
  return [a for a in annotations if a['num_keypoints'] > 0 and not a['iscrowd']]


def _as_arrays(people: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Annotations -> image ids [N], keypoints [N, 17, 2], visibility [N, 17]."""
  keypoints = np.array([p['keypoints'] for p in people], np.float64).reshape(-1, 17, 3)
  return np.array([p['image_id'] for p in people]), keypoints[..., :2], keypoints[..., 2]


def _pycocotools_stats(annotation_file: pathlib.Path, results_file: pathlib.Path) -> np.ndarray:
  """The reference: pycocotools called directly on the two files."""
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = COCO(str(annotation_file))
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), 'keypoints')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return evaluator.stats


def test_ground_truth_as_results_scores_one(tmp_path):
  people = _ground_truth_people()
  assert len(people) == 12  # 14 annotations, 2 with num_keypoints == 0
  image_ids, keypoints, visibility = _as_arrays(people)
  results = coco_ap.coco_results(image_ids, keypoints, (visibility > 0).astype(float),
                                  np.ones(len(people)))
  results_file = coco_ap.write_coco_results(tmp_path / 'results.json', results)
  metrics = coco_ap.score_results_file(COCO_ANNOTATIONS, results_file, verbose=False)
  # Every scored person gets one result with OKS exactly 1 (zero distance at
  # each labelled keypoint) and no result is unmatched, so precision is 1 at
  # every recall up to 1, in every area range: all ten stats are exactly 1.
  assert metrics == {name: 1.0 for name in coco_ap.COCO_STAT_NAMES}


def test_ignored_people_submitted_anyway_become_false_positives():
  with COCO_ANNOTATIONS.open() as f:
    everyone = json.load(f)['annotations']
  image_ids, keypoints, visibility = _as_arrays(everyone)
  results = coco_ap.coco_results(image_ids, keypoints, visibility, np.ones(len(everyone)))
  metrics = coco_ap.coco_keypoint_ap(COCO_ANNOTATIONS, results, verbose=False)
  assert metrics['AR'] == 1.0  # every scored person is still found...
  assert metrics['AP'] < 0.95  # ...but two results at (0, 0) match nobody


def test_perturbed_results_equal_pycocotools_called_directly(tmp_path):
  rng = np.random.default_rng(0)
  image_ids, keypoints, visibility = _as_arrays(_ground_truth_people())
  noisy = keypoints + rng.normal(0, 6.0, size=keypoints.shape)  # several pixels
  # One person missed, one spurious duplicate shifted by 40 px, random scores.
  image_ids = np.concatenate([image_ids[1:], image_ids[:1]])
  noisy = np.concatenate([noisy[1:], noisy[2:3] + 40.0])
  keypoint_scores = rng.uniform(0.2, 1.0, size=noisy.shape[:2])
  scores = rng.uniform(0.5, 1.0, size=len(image_ids))
  results = coco_ap.coco_results(image_ids, noisy, keypoint_scores, scores)
  results_file = coco_ap.write_coco_results(tmp_path / 'noisy.json', results)
  metrics = coco_ap.score_results_file(COCO_ANNOTATIONS, results_file, verbose=False)
  reference = _pycocotools_stats(COCO_ANNOTATIONS, results_file)
  assert list(metrics.values()) == reference[:10].tolist()
  assert 0.1 < metrics['AP'] < 0.95  # the noise and the mistakes cost something
  # The same results passed as a list score the same.
  assert coco_ap.coco_keypoint_ap(COCO_ANNOTATIONS, results, verbose=False) == metrics


def test_coco_results_format():
  results = coco_ap.coco_results(
      np.array([785, 40083]), np.arange(2 * 17 * 2, dtype=np.float32).reshape(2, 17, 2),
      np.full((2, 17), 0.5), np.array([0.9, 0.25]), category_id=1)
  assert results[1]['image_id'] == 40083 and type(results[1]['image_id']) is int
  assert results[1]['category_id'] == 1 and results[1]['score'] == 0.25
  assert results[0]['keypoints'][:6] == [0.0, 1.0, 0.5, 2.0, 3.0, 0.5]  # x1, y1, s1, x2, ...
  assert len(results[1]['keypoints']) == 51 and results[1]['keypoints'][:2] == [34.0, 35.0]
  assert json.loads(json.dumps(results)) == results
  with pytest.raises(ValueError, match='keypoint_scores'):
    coco_ap.coco_results([785], np.zeros((1, 17, 2)), np.zeros((1, 16)), [1.0])


def test_write_coco_results_is_atomic(tmp_path):
  path = tmp_path / 'out' / 'results.json'
  first = [{'image_id': 785, 'category_id': 1, 'keypoints': [1.0] * 51, 'score': 0.5}]
  coco_ap.write_coco_results(path, first)
  assert json.loads(path.read_text()) == first
  with pytest.raises(TypeError):  # json cannot write an object(): fails half-way
    coco_ap.write_coco_results(path, first + [{'score': object()}])
  assert json.loads(path.read_text()) == first  # the earlier file is intact
  assert [p.name for p in path.parent.iterdir()] == ['results.json']  # no temporary left


def test_verbose_false_silences_pycocotools(capsys):
  results = coco_ap.coco_results(*_as_arrays(_ground_truth_people()), np.ones(12))
  coco_ap.coco_keypoint_ap(COCO_ANNOTATIONS, results, verbose=False)
  assert capsys.readouterr() == ('', '')
  coco_ap.coco_keypoint_ap(COCO_ANNOTATIONS, results)
  output = capsys.readouterr()
  # On stderr, where a command's logs go: its stdout ends with the metrics.
  assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in output.err and output.out == ''


def test_score_command_prints_metrics_as_last_json_line(tmp_path, capsys):
  image_ids, keypoints, visibility = _as_arrays(_ground_truth_people())
  results = coco_ap.coco_results(image_ids, keypoints + 3.0, visibility, np.ones(12))
  results_file = coco_ap.write_coco_results(tmp_path / 'r.json', results)
  cli.run(['score', '--coco_annotations', str(COCO_ANNOTATIONS), '--results', str(results_file)])
  printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert list(printed) == list(coco_ap.COCO_STAT_NAMES)
  assert printed == dict(zip(coco_ap.COCO_STAT_NAMES,
                             _pycocotools_stats(COCO_ANNOTATIONS, results_file)[:10]))
  # The spelling of `jaxpose eval` before `score` existed still works, with a warning.
  cli.run(['eval', '--coco-annotations', str(COCO_ANNOTATIONS), '--results', str(results_file)])
  output = capsys.readouterr()
  assert json.loads(output.out.strip().splitlines()[-1]) == printed
  assert 'deprecated: use jaxpose score' in output.err


def _write(path: pathlib.Path, content) -> pathlib.Path:
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  return path


GOOD_RESULT = {'image_id': 785, 'category_id': 1, 'keypoints': [1.0] * 51, 'score': 0.5}


@pytest.mark.parametrize('results, message', [
    ({'image_id': 785}, 'expected a list of results'),
    ([], 'the results list is empty'),
    ([{'image_id': 785, 'category_id': 1, 'score': 0.5}], r"result 0 has no \['keypoints'\]"),
    ([GOOD_RESULT, {'category_id': 1, 'keypoints': [1.0] * 51, 'score': 0.5}],
     r"result 1 has no \['image_id'\]"),
    ([{**GOOD_RESULT, 'keypoints': [1.0] * 48}], "result 0 'keypoints' is not a list of 51"),
    ([GOOD_RESULT, {**GOOD_RESULT, 'image_id': 123456}, {**GOOD_RESULT, 'image_id': 99}],
     r'image ids \[99, 123456\] \(2 in all\) are not in .*test_coco\.json'),
    ([{**GOOD_RESULT, 'category_id': 7}], r'category ids \[7\] are not in .*test_coco\.json'),
])
def test_bad_results_name_the_file_and_the_problem(tmp_path, results, message):
  results_file = _write(tmp_path / 'bad_results.json', results)
  with pytest.raises(ValueError, match=f'bad_results.json: {message}'):
    coco_ap.score_results_file(COCO_ANNOTATIONS, results_file, verbose=False)
  with pytest.raises(ValueError, match=f'^results: {message}'):
    coco_ap.coco_keypoint_ap(COCO_ANNOTATIONS, results, verbose=False)


def test_bad_files_name_the_file_and_the_key(tmp_path):
  results_file = _write(tmp_path / 'results.json', [GOOD_RESULT])
  with pytest.raises(FileNotFoundError, match='missing.json: a COCO keypoint annotation file not found'):
    coco_ap.score_results_file(tmp_path / 'missing.json', results_file)
  with pytest.raises(FileNotFoundError, match='nowhere.json: a COCO keypoint results file not found'):
    coco_ap.score_results_file(COCO_ANNOTATIONS, tmp_path / 'nowhere.json')
  no_annotations = _write(tmp_path / 'images_only.json', {'images': [], 'categories': []})
  with pytest.raises(ValueError, match="images_only.json: no 'annotations' list"):
    coco_ap.score_results_file(no_annotations, results_file)
  broken = _write(tmp_path / 'broken.json', '{"annotations": [')
  with pytest.raises(ValueError, match='broken.json: not valid JSON'):
    coco_ap.score_results_file(COCO_ANNOTATIONS, broken)
  with COCO_ANNOTATIONS.open() as f:
    dataset = json.load(f)
  del dataset['annotations'][3]['area']
  no_area = _write(tmp_path / 'no_area.json', dataset)
  with pytest.raises(ValueError, match=r"no_area.json: annotation 1202706 has no \['area'\]"):
    coco_ap.score_results_file(no_area, results_file)


def _perturbed_results(annotation_file: pathlib.Path, seed: int, pixels: float) -> list[dict]:
  """A file's scored people, their keypoints moved about `pixels`, one missed and one spurious."""
  content = json.loads(annotation_file.read_text())
  people = [a for a in content['annotations'] if a['num_keypoints'] > 0 and not a['iscrowd']]
  num_keypoints = len(content['categories'][0]['keypoints'])
  rng = np.random.default_rng(seed)
  keypoints = np.array([p['keypoints'] for p in people], np.float64).reshape(-1, num_keypoints, 3)
  noisy = keypoints[..., :2] + rng.normal(0, pixels, size=keypoints[..., :2].shape)
  image_ids = np.array([p['image_id'] for p in people])
  # The first person missed, the second found twice (once 30 px off).
  image_ids = np.concatenate([image_ids[1:], image_ids[1:2]])
  noisy = np.concatenate([noisy[1:], noisy[1:2] + 30.0])
  return coco_ap.coco_results(image_ids, noisy, rng.uniform(0.2, 1, noisy.shape[:2]),
                              rng.uniform(0.5, 1, len(noisy)))


@pytest.mark.parametrize('layout', ['hand', 'fourteen'])
def test_any_layout_with_any_sigmas_equals_pycocotools_given_them(tmp_path, layout):
  if layout == 'hand':  # as CVAT writes it, with num_keypoints, which pycocotools reads
    annotations = layouts.broken(layouts.HAND_FILE, tmp_path / 'hand.json', lambda content: [
        a.update(num_keypoints=sum(v > 0 for v in a['keypoints'][2::3]))
        for a in content['annotations']])
  else:
    annotations = layouts.fourteen_keypoints(tmp_path / 'fourteen.json')
  results = _perturbed_results(annotations, seed=3, pixels=1.0 if layout == 'hand' else 4.0)
  num_keypoints = len(results[0]['keypoints']) // 3
  sigmas = np.random.default_rng(4).uniform(0.02, 0.1, num_keypoints)
  results_file = coco_ap.write_coco_results(tmp_path / 'results.json', results)
  ours = coco_ap.score_results_file(annotations, results_file, verbose=False, sigmas=sigmas)
  with contextlib.redirect_stdout(io.StringIO()):
    ground_truth = COCO(str(annotations))
    evaluator = COCOeval(ground_truth, ground_truth.loadRes(str(results_file)), 'keypoints')
    evaluator.params.kpt_oks_sigmas = sigmas
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  np.testing.assert_allclose(list(ours.values()), evaluator.stats[:10], rtol=0, atol=1e-9)
  assert 0 < ours['AP'] < 1  # the noise costs something, and the sigmas say how much
  # Without --sigmas, the layout's own: COCO's where a name is a COCO keypoint, else 0.025.
  layout_sigmas = coco_ap.annotation_sigmas(json.loads(annotations.read_text()), 'x')
  assert coco_ap.coco_keypoint_ap(annotations, results, verbose=False) == (
      coco_ap.coco_keypoint_ap(annotations, results, verbose=False, sigmas=layout_sigmas))
  with pytest.raises(ValueError, match=f'--sigmas: expected {num_keypoints} positive numbers'):
    coco_ap.coco_keypoint_ap(annotations, results, verbose=False, sigmas=sigmas[:-1])
  if layout == 'hand':  # the bundled file has no num_keypoints: they are counted the same
    assert coco_ap.coco_keypoint_ap(layouts.HAND_FILE, results, verbose=False,
                                    sigmas=sigmas) == ours
  if layout == 'fourteen':  # the command line, through the installed executable
    done = test_cli.jaxpose('score', f'--coco_annotations={annotations}',
                            f'--results={results_file}',
                            '--sigmas=' + ','.join(repr(float(s)) for s in sigmas))
    assert test_cli.last_json(done) == ours
