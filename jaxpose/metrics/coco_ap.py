"""COCO keypoint results and their AP: the results format, written safely, scored by pycocotools' `COCOeval`.

- `coco_results`, `write_coco_results`: the official keypoint results format.
- `coco_keypoint_ap`, `score_results_file`, `score_or_zero`: its ten
  statistics, computed by pycocotools.
"""

import contextlib
import copy
import io
import json
import os
import pathlib
import sys

from absl import logging
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from jaxpose import files, skeletons

# COCOeval(..., 'keypoints').stats, in pycocotools' order.
COCO_STAT_NAMES = ('AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm', 'ARl')
_RESULT_KEYS = ('image_id', 'category_id', 'keypoints', 'score')
_ANNOTATION_KEYS = ('image_id', 'category_id', 'keypoints', 'area', 'bbox')


def coco_results(image_ids: np.ndarray, keypoints: np.ndarray, keypoint_scores: np.ndarray,
                 scores: np.ndarray, category_id: int = skeletons.COCO_PERSON_CATEGORY_ID) -> list[dict]:
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
  """Writes `results` as JSON to `path` atomically (`jaxpose.files.write_json`); -> the path.

  A crash or a value JSON cannot hold leaves any earlier file at `path` as it
  was, and no partial file behind.
  """
  return files.write_json(path, results)


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
  """COCO-format keypoints JSON -> its dict, checked for what COCOeval('keypoints') reads.

  An annotation without `num_keypoints` (some exporters leave it out; COCOeval
  reads it to ignore people with none) gets it, counted as COCO defines it:
  its keypoints labelled (v > 0).
  """
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
    if 'num_keypoints' not in annotation:
      annotation['num_keypoints'] = int(np.count_nonzero(
          np.asarray(annotation['keypoints'], np.float64)[2::3] > 0))
  return dataset


def _sorted_ids(ids: set) -> list:
  """Ids in numeric order where they are all numbers, else in text order."""
  try:
    return sorted(ids)
  except TypeError:
    return sorted(ids, key=str)


def annotation_sigmas(dataset: dict, annotation_file: str) -> tuple[float, ...] | None:
  """A COCO-format annotation dict -> the OKS sigmas of its layout (`skeletons.from_coco_category`).

  None for COCO's person category (and a file without one): pycocotools'
  own 17 sigmas apply. Another layout: COCO's sigma where a keypoint is a
  COCO keypoint, else `skeletons.DEFAULT_SIGMA`.
  """
  categories = dataset.get('categories') or [{}]
  if not categories[0].get('keypoints'):
    return None
  skeleton = skeletons.from_coco_category(categories[0], str(annotation_file))
  return None if skeleton is skeletons.COCO else skeleton.sigmas


def _check_sigmas(sigmas, num_keypoints: int, annotation_file: str) -> np.ndarray:
  """Sigmas -> float64 [K]; ValueError unless there is one positive sigma per keypoint of the annotations' layout."""
  sigmas = np.asarray(sigmas, np.float64).reshape(-1)
  if len(sigmas) != num_keypoints or not (sigmas > 0).all():
    raise ValueError(f'--sigmas: expected {num_keypoints} positive numbers, one per keypoint of '
                     f'{annotation_file}, got {len(sigmas)}: {sigmas.tolist()}')
  return sigmas


def _check_results(results, source: str, dataset: dict, annotation_file: str) -> None:
  """Raises ValueError, naming `source`, unless `results` is a non-empty list COCOeval can score against `dataset`."""
  if not isinstance(results, list):
    raise ValueError(f'{source}: expected a list of results ({{image_id, category_id, '
                     f'keypoints, score}}), got {type(results).__name__}')
  if not results:
    # pycocotools' loadRes indexes results[0] and dies with an IndexError.
    raise ValueError(f'{source}: the results list is empty; there is nothing to score')
  num_keypoints = len((dataset.get('categories') or [{}])[0].get('keypoints') or
                      skeletons.COCO.keypoint_names)
  num_values = 3 * num_keypoints
  for index, result in enumerate(results):
    if not isinstance(result, dict):
      raise ValueError(f'{source}: result {index} is a {type(result).__name__}, not an object')
    missing = [key for key in _RESULT_KEYS if key not in result]
    if missing:
      raise ValueError(f'{source}: result {index} has no {missing}; each result needs '
                       f'{list(_RESULT_KEYS)}')
    if not isinstance(result['keypoints'], list) or len(result['keypoints']) != num_values:
      raise ValueError(f"{source}: result {index} 'keypoints' is not a list of {num_values} "
                       f'numbers ({num_keypoints} x [x, y, score], the layout of '
                       f'{annotation_file})')
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
                     verbose: bool = True, sigmas=None) -> dict[str, float]:
  """Annotation JSON, results (JSON path or list) -> {'AP', 'AP50', ..., 'ARl'}: pycocotools' 10 keypoint stats.

  Scores with `COCOeval(ground_truth, results, 'keypoints')` over every image
  of the annotation file, its `params.kpt_oks_sigmas` set to `sigmas` ([K],
  one per keypoint of the file's layout; None: the layout's, `annotation_sigmas`,
  which for COCO's person file are pycocotools' own). `verbose=False`
  silences pycocotools' printing (its progress lines and the summary table).

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
  if sigmas is None:
    sigmas = annotation_sigmas(dataset, annotation_file)
  if sigmas is not None:
    sigmas = _check_sigmas(sigmas, len(results[0]['keypoints']) // 3, str(annotation_file))
  # pycocotools prints its table: to stderr, where a command's logs go (its
  # stdout ends with the metrics as JSON).
  printing = contextlib.redirect_stdout(sys.stderr if verbose else io.StringIO())
  with printing:
    ground_truth = COCO()
    ground_truth.dataset = dataset
    ground_truth.createIndex()
    # loadRes writes 'area', 'bbox' and 'id' into each result: give it a copy.
    detections = ground_truth.loadRes(copy.deepcopy(results))
    evaluator = COCOeval(ground_truth, detections, 'keypoints')
    if sigmas is not None:  # else pycocotools' own, COCO's 17
      evaluator.params.kpt_oks_sigmas = sigmas
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluator.stats)}


def score_results_file(annotation_file: str | os.PathLike, results_file: str | os.PathLike,
                       verbose: bool = True, sigmas=None) -> dict[str, float]:
  """Annotation JSON, results JSON -> {'AP', ..., 'ARl'} (see `coco_keypoint_ap`)."""
  return coco_keypoint_ap(annotation_file, pathlib.Path(results_file), verbose=verbose,
                          sigmas=sigmas)


def score_or_zero(annotation_file: str | os.PathLike, results: list[dict],
                  results_file: str | os.PathLike | None, sigmas=None) -> dict[str, float]:
  """Writes `results` to `results_file` (None: not written), then their 10 stats; all 0 (with a warning) when there are none.

  pycocotools cannot score an empty list; a model that finds no one scores 0.
  """
  if results_file is not None:
    write_coco_results(results_file, results)
  if not results:
    logging.warning('%s: the model found no person; every metric is 0',
                    results_file or annotation_file)
    return {name: 0.0 for name in COCO_STAT_NAMES}
  return coco_keypoint_ap(annotation_file, results, verbose=False, sigmas=sigmas)
