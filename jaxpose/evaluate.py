"""Keypoint accuracy metrics, kept apart from models: PCK, MPII PCKh and COCO keypoint AP.

- `pck_counts`: the seed's accuracy in heatmap pixels, summed on the device
  during training.
- `pckh`, `pckh_summary`: the MPII protocol (head-normalised distances), on
  the host in numpy.
- `coco_results`, `write_coco_results`, `coco_keypoint_ap`,
  `score_results_file`, `run_coco_eval`: the COCO keypoint results format and
  its AP, computed by pycocotools' `COCOeval`.
"""

import contextlib
import copy
import dataclasses
import io
import json
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxpose import skeletons

# The seed's `accuracy`: a joint is correct within 0.5 of a normaliser of
# heatmap_size / 10, i.e. within 5% of the heatmap's width.
PCK_THRESHOLD = 0.5
PCK_NORMALIZER_FRACTION = 0.1


def pck_counts(predicted: jax.Array, target: jax.Array, visible: jax.Array,
               normalizer: jax.Array | float,
               threshold: float = PCK_THRESHOLD) -> tuple[jax.Array, jax.Array]:
  """Predicted, target [..., J, 2], visible [..., J] -> (correct [J], counted [J]) summed over leading dims.

  A visible joint is correct when ||predicted - target|| / normalizer <
  threshold; `normalizer` is a scalar or [...] per example. Returning counts
  rather than a ratio lets devices and batches be summed exactly.
  """
  distance = jnp.linalg.norm(predicted - target, axis=-1)
  normalizer = jnp.asarray(normalizer, jnp.float32)
  if normalizer.ndim:
    normalizer = normalizer[..., None]
  counted = (visible > 0).astype(jnp.float32)
  correct = (distance / normalizer < threshold) * counted
  batch_axes = tuple(range(correct.ndim - 1))
  return correct.sum(axis=batch_axes), counted.sum(axis=batch_axes)


# --- MPII PCKh ---------------------------------------------------------------

# The official MPII evaluation (`util_get_head_size.m`: "SC_BIAS = 0.6; %
# 0.8*0.75") measures a person's head as 0.6 x the diagonal of the annotated
# head box; HRNet and mmpose use the same factor.
MPII_HEAD_SIZE_FRACTION = 0.6
PCKH_THRESHOLD = 0.5
# The stricter threshold that MPII tables print as "Mean@0.1" / "PCKh@0.1".
PCKH_STRICT_THRESHOLD = 0.1
MPII_NUM_JOINTS = skeletons.MPII.num_keypoints


def _mpii_joints(*names: str) -> tuple[int, ...]:
  return tuple(skeletons.MPII.keypoint_names.index(name) for name in names)


# The columns of MPII tables: each is the plain average of its joints' PCKh.
# "Head" is the head top alone; the upper neck appears only in the mean.
MPII_JOINT_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ('Head', (skeletons.MPII_HEAD_TOP,)),
    ('Shoulder', _mpii_joints('left_shoulder', 'right_shoulder')),
    ('Elbow', _mpii_joints('left_elbow', 'right_elbow')),
    ('Wrist', _mpii_joints('left_wrist', 'right_wrist')),
    ('Hip', _mpii_joints('left_hip', 'right_hip')),
    ('Knee', _mpii_joints('left_knee', 'right_knee')),
    ('Ankle', _mpii_joints('left_ankle', 'right_ankle')),
)
# Pelvis and thorax are left out of the mean, as in the official evaluation
# (which scores 14 joints) and in HRNet and mmpose (which mask joints 6 and 7).
MPII_JOINTS_IN_MEAN = tuple(
    j for j in range(MPII_NUM_JOINTS) if j not in (skeletons.MPII_PELVIS, skeletons.MPII_THORAX))


@dataclasses.dataclass(frozen=True)
class PCKhResult:
  """MPII PCKh at one threshold, in percent (as MPII tables print it).

  Attributes:
    threshold: a joint is correct within this fraction of its person's head size.
    per_joint: [16] percentage of each joint's visible ground truth that is
      correct; NaN for a joint with no visible ground truth.
    counts: [16] int, visible ground-truth joints per joint (the mean's weights).
    mean: the mean of `per_joint` over the 14 joints other than pelvis and
      thorax, each weighted by its count; that is, the percentage of all their
      visible joints that are correct. NaN if there are none.
  """
  threshold: float
  per_joint: np.ndarray
  counts: np.ndarray
  mean: float

  def grouped(self) -> dict[str, float]:
    """-> {'Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Mean'}: percentages."""
    columns = {name: float(np.mean(self.per_joint[list(joints)]))
               for name, joints in MPII_JOINT_GROUPS}
    columns['Mean'] = self.mean
    return columns


def mpii_head_sizes(head_boxes: np.ndarray) -> np.ndarray:
  """Head boxes [N, 4] (x1, y1, x2, y2) -> head sizes [N]: 0.6 x each box's diagonal."""
  boxes = np.asarray(head_boxes, np.float64)
  return MPII_HEAD_SIZE_FRACTION * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=-1)


def _check_pckh_inputs(predicted: np.ndarray, target: np.ndarray, visible: np.ndarray,
                       head_boxes: np.ndarray) -> None:
  """Raises ValueError unless the shapes are [N, 16, 2], [N, 16, 2], [N, 16], [N, 4]."""
  num_people = target.shape[0] if target.ndim else 0
  expected = {'predicted': (predicted, (num_people, MPII_NUM_JOINTS, 2)),
              'target': (target, (num_people, MPII_NUM_JOINTS, 2)),
              'visible': (visible, (num_people, MPII_NUM_JOINTS)),
              'head_boxes': (head_boxes, (num_people, 4))}
  for name, (array, shape) in expected.items():
    if array.shape != shape:
      raise ValueError(f'pckh: {name} has shape {array.shape}; expected {shape} '
                       f'(N people, {MPII_NUM_JOINTS} MPII joints)')


def pckh(predicted: np.ndarray, target: np.ndarray, visible: np.ndarray,
         head_boxes: np.ndarray, threshold: float = PCKH_THRESHOLD) -> PCKhResult:
  """Predicted, target [N, 16, 2], visible [N, 16], head boxes [N, 4] -> MPII PCKh at `threshold`.

  The protocol of the official MPII evaluation (`evaluatePCKh.m`), as ported to
  Python by HRNet (`MPIIDataset.evaluate`) and mmpose (`MpiiPCKAccuracy`):

  - head size = 0.6 x the Euclidean length of the head box's diagonal;
  - a visible joint is correct when ||predicted - target|| / head size <=
    threshold: `<=` as in the official `computePCK.m` and HRNet (mmpose's
    `keypoint_pck_accuracy` uses `<`, which differs only for distances of
    exactly the threshold);
  - per joint: the percentage of its visible ground truth that is correct;
  - mean: over all joints but pelvis (6) and thorax (7), weighted by each
    joint's count of visible ground truth, i.e. correct / visible pooled over
    those 14 joints (HRNet's `np.sum(PCKh * jnt_ratio)`).

  Coordinates may be in any frame shared by all three inputs. (HRNet adds 1 to
  its 0-based predictions because MPII's .mat ground truth is 1-based; a
  common shift changes no distance.) `visible` marks the annotated joints
  (MPII's `joints_vis`, 1 - `jnt_missing`), not the occlusion flag.

  Raises:
    ValueError: on shapes other than the above, or a person with visible joints
      whose head box has no positive size.
  """
  predicted = np.asarray(predicted, np.float64)
  target = np.asarray(target, np.float64)
  visible = np.asarray(visible)
  head_boxes = np.asarray(head_boxes, np.float64)
  _check_pckh_inputs(predicted, target, visible, head_boxes)
  counted = visible > 0
  head_sizes = mpii_head_sizes(head_boxes)
  unmeasurable = np.flatnonzero(counted.any(axis=-1) & ~(head_sizes > 0))
  if unmeasurable.size:
    raise ValueError(f'pckh: head_boxes of people {unmeasurable[:10].tolist()} have no '
                     'positive size, but those people have visible joints')
  # Divide by 1 for people without visible joints, whose distances are not counted.
  head_sizes = np.where(head_sizes > 0, head_sizes, 1.0)
  distances = np.linalg.norm(predicted - target, axis=-1) / head_sizes[:, None]
  correct = (distances <= threshold) & counted  # a NaN prediction is never correct
  counts = counted.sum(axis=0)
  correct_counts = correct.sum(axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_joint = 100.0 * correct_counts / counts
  in_mean = list(MPII_JOINTS_IN_MEAN)
  total = counts[in_mean].sum()
  mean = 100.0 * correct_counts[in_mean].sum() / total if total else float('nan')
  return PCKhResult(threshold=float(threshold), per_joint=per_joint, counts=counts,
                    mean=float(mean))


def pckh_summary(predicted: np.ndarray, target: np.ndarray, visible: np.ndarray,
                 head_boxes: np.ndarray) -> dict[str, float]:
  """Predicted, target [N, 16, 2], visible [N, 16], head boxes [N, 4] -> the row of an MPII table.

  Keys 'Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle' and 'Mean'
  are PCKh@0.5 (`PCKhResult.grouped`); 'Mean@0.1' is the mean at threshold
  0.1, as mmpose computes it. (HRNet's printed 'Mean@0.1' takes row 11 of
  `np.arange(0, 0.51, 0.01)`, i.e. threshold 0.11; call
  `pckh(..., threshold=0.11).mean` to reproduce it.) All in percent.
  """
  row = pckh(predicted, target, visible, head_boxes, PCKH_THRESHOLD).grouped()
  row['Mean@0.1'] = pckh(predicted, target, visible, head_boxes, PCKH_STRICT_THRESHOLD).mean
  return row


# --- COCO keypoint AP ----------------------------------------------------------

# COCOeval(..., 'keypoints').stats, in pycocotools' order.
COCO_STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
COCO_PERSON_CATEGORY_ID = 1
_RESULT_KEYS = ('image_id', 'category_id', 'keypoints', 'score')
_ANNOTATION_KEYS = ('image_id', 'category_id', 'keypoints', 'num_keypoints', 'area', 'bbox')


def coco_results(image_ids: np.ndarray, keypoints: np.ndarray, keypoint_scores: np.ndarray,
                 scores: np.ndarray, category_id: int = COCO_PERSON_CATEGORY_ID) -> list[dict]:
  """Image ids [N], keypoints [N, K, 2], keypoint scores [N, K], person scores [N] -> N COCO results.

  Each result is {'image_id', 'category_id', 'keypoints': [x1, y1, s1, x2, ...],
  'score'}, the official keypoint results format, with each keypoint's score
  in the third slot as mmpose writes it (COCOeval reads only x and y there).
  Values are plain Python ints and floats, ready for `json.dump`.
  """
  image_ids = np.asarray(image_ids)
  keypoints = np.asarray(keypoints, np.float64)
  keypoint_scores = np.asarray(keypoint_scores, np.float64)
  scores = np.asarray(scores, np.float64)
  num_people = image_ids.shape[0] if image_ids.ndim == 1 else -1
  if (num_people < 0 or keypoints.ndim != 3 or keypoints.shape[::2] != (num_people, 2) or
      keypoint_scores.shape != keypoints.shape[:2] or scores.shape != (num_people,)):
    raise ValueError(
        f'coco_results: shapes image_ids {image_ids.shape}, keypoints {keypoints.shape}, '
        f'keypoint_scores {keypoint_scores.shape}, scores {scores.shape}; expected '
        '[N], [N, K, 2], [N, K], [N]')
  flat = np.concatenate([keypoints, keypoint_scores[..., None]], axis=-1)
  flat = flat.reshape(num_people, 3 * keypoints.shape[1])
  return [{'image_id': int(image_id), 'category_id': int(category_id),
           'keypoints': person.tolist(), 'score': float(score)}
          for image_id, person, score in zip(image_ids, flat, scores)]


def write_coco_results(path: str | os.PathLike, results: list[dict]) -> pathlib.Path:
  """Writes `results` as JSON to `path` atomically (a temporary file renamed over it); -> the path.

  A crash or a value JSON cannot hold leaves any earlier file at `path` as it
  was, and no partial file behind.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # The temporary file sits beside the target so the rename stays on one filesystem.
  descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(descriptor, 'w') as f:
      os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide the file from other readers
      json.dump(results, f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    pathlib.Path(temporary).unlink(missing_ok=True)
    raise
  return path


def _read_json(path: str | os.PathLike, what: str):
  """Reads a JSON file; FileNotFoundError / ValueError name `path` and `what` it should be."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path}: {what} not found')
  try:
    with path.open() as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e}); expected {what}') from None


def load_coco_annotations(annotation_file: str | os.PathLike) -> dict:
  """COCO person_keypoints JSON -> its dict, checked for what COCOeval('keypoints') reads."""
  dataset = _read_json(annotation_file, 'a COCO keypoint annotation file')
  for key in ('images', 'annotations', 'categories'):
    if not isinstance(dataset, dict) or not isinstance(dataset.get(key), list):
      raise ValueError(f"{annotation_file}: no '{key}' list; expected a COCO person_keypoints "
                       "JSON with 'images', 'annotations' and 'categories'")
  for index, annotation in enumerate(dataset['annotations']):
    if not isinstance(annotation, dict):
      raise ValueError(f'{annotation_file}: annotation #{index} is not an object')
    missing = [key for key in _ANNOTATION_KEYS if key not in annotation]
    if missing:
      raise ValueError(f"{annotation_file}: annotation {annotation.get('id', f'#{index}')} "
                       f'has no {missing}; COCO keypoint evaluation needs {list(_ANNOTATION_KEYS)}')
  return dataset


def _sorted_ids(ids: set) -> list:
  """Ids in numeric order where they are all numbers, else in text order."""
  try:
    return sorted(ids)
  except TypeError:
    return sorted(ids, key=str)


def _check_results(results, source: str, dataset: dict, annotation_file: str) -> None:
  """Raises ValueError, naming `source`, unless `results` is a non-empty list COCOeval can score against `dataset`."""
  if not isinstance(results, list):
    raise ValueError(f'{source}: expected a list of results ({{image_id, category_id, '
                     f'keypoints, score}}), got {type(results).__name__}')
  if not results:
    # pycocotools' loadRes indexes results[0] and dies with an IndexError.
    raise ValueError(f'{source}: the results list is empty; there is nothing to score')
  num_values = 3 * skeletons.COCO.num_keypoints  # COCOeval's OKS has 17 sigmas
  for index, result in enumerate(results):
    if not isinstance(result, dict):
      raise ValueError(f'{source}: result {index} is a {type(result).__name__}, not an object')
    missing = [key for key in _RESULT_KEYS if key not in result]
    if missing:
      raise ValueError(f'{source}: result {index} has no {missing}; each result needs '
                       f'{list(_RESULT_KEYS)}')
    if not isinstance(result['keypoints'], list) or len(result['keypoints']) != num_values:
      raise ValueError(f"{source}: result {index} 'keypoints' is not a list of {num_values} "
                       'numbers (17 x [x, y, score])')
  known_images = {image['id'] for image in dataset['images']}
  unknown_images = _sorted_ids({r['image_id'] for r in results} - known_images)
  if unknown_images:
    raise ValueError(f'{source}: image ids {unknown_images[:10]} '
                     f'({len(unknown_images)} in all) are not in {annotation_file}')
  known_categories = {category['id'] for category in dataset['categories']}
  unknown_categories = _sorted_ids({r['category_id'] for r in results} - known_categories)
  if unknown_categories:
    raise ValueError(f'{source}: category ids {unknown_categories} are not in '
                     f'{annotation_file} (categories {sorted(known_categories)})')


def coco_keypoint_ap(annotation_file: str | os.PathLike, results: str | os.PathLike | list[dict],
                     verbose: bool = True) -> dict[str, float]:
  """Annotation JSON, results (JSON path or list) -> {'AP', 'AP50', ..., 'ARl'}: pycocotools' 10 keypoint stats.

  Scores with `COCOeval(ground_truth, results, 'keypoints')` over every image
  of the annotation file. `verbose=False` silences pycocotools' printing (its
  progress lines and the summary table).

  Raises:
    FileNotFoundError: the annotation or results file does not exist.
    ValueError: a file is not JSON, the annotations lack 'images',
      'annotations' or 'categories' (or an annotation a field COCOeval reads),
      or the results are not a non-empty list of {image_id, category_id,
      keypoints (51 numbers), score} on images and categories of the
      annotations. Each message names the file, the key or the ids.
  """
  dataset = load_coco_annotations(annotation_file)
  if isinstance(results, (str, os.PathLike)):
    source = str(results)
    results = _read_json(results, 'a COCO keypoint results file')
  else:
    source = 'results'
  _check_results(results, source, dataset, str(annotation_file))
  printing = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
  with printing:
    ground_truth = COCO()
    ground_truth.dataset = dataset
    ground_truth.createIndex()
    # loadRes writes 'area', 'bbox' and 'id' into each result: give it a copy.
    detections = ground_truth.loadRes(copy.deepcopy(results))
    evaluator = COCOeval(ground_truth, detections, 'keypoints')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats)}


def score_results_file(annotation_file: str | os.PathLike, results_file: str | os.PathLike,
                       verbose: bool = True) -> dict[str, float]:
  """Annotation JSON, results JSON -> {'AP', ..., 'ARl'} (see `coco_keypoint_ap`)."""
  return coco_keypoint_ap(annotation_file, pathlib.Path(results_file), verbose=verbose)


def run_coco_eval(annotation_file: str, results_file: str) -> dict[str, float]:
  """`jaxpose eval`: scores a results file, prints pycocotools' table, then the metrics as one JSON line."""
  metrics = score_results_file(annotation_file, results_file)
  print(json.dumps(metrics))
  return metrics
