"""`jaxpose eval --config C --workdir W`: a trained model's COCO AP or MPII PCKh on the eval split.

  jaxpose eval --config configs/hourglass_coco.py --workdir workdirs/hg_coco \
      --config.data.coco_dir=/data/coco [--detections=person_detections.json]

The checkpoint (`checkpoint.restore_variables`) gives the model; the config
gives the data (`input_pipeline.dataset_files`: the eval annotations and
images), the input size and, for the hourglass, the skeleton.

- Top-down (hourglass): every eval image's person boxes, from the ground
  truth (non-crowd people with a labelled keypoint, box score 1) or from a
  detections file in COCO results format ({image_id, category_id, bbox,
  score}; people with score >= `detection_threshold`), are cropped and run
  through `inference.topdown.predict_topdown` (flip test by default). COCO:
  a person's score is its box score times the mean of its keypoint scores
  above `KEYPOINT_SCORE_THRESHOLD` (HRNet's and mmpose's rescoring); with
  detections, OKS-NMS (threshold `OKS_NMS_THRESHOLD`, as mmpose) removes
  duplicates; then COCO AP by pycocotools. MPII: PCKh@0.5 and @0.1, which need
  the head boxes of the official .mat annotations.
- Bottom-up (Lightweight OpenPose): as upstream's val.py, each whole image,
  resized to height `BOTTOM_UP_HEIGHT` (times each of `scales`) and padded to
  a multiple of the stride, -> the model's last stage -> maps brought back to
  the image's size and averaged over the scales -> `codecs.paf.decode` at
  that size -> COCO keypoints -> COCO AP.

Results go to `W/eval/results_step{N}.json` (COCO); the metrics are printed as
one JSON object on the last line, with the keys of `jaxpose eval
--coco-annotations` (COCO) or of `evaluate.pckh_summary` (MPII).
"""

from collections.abc import Callable
import json
import os
import sys

from absl import logging
import ml_collections
import numpy as np
import tqdm

from jaxpose import checkpoint, evaluate, skeletons
from jaxpose.data import coco, input_pipeline, mpii
from jaxpose.inference import bottomup, detect, topdown, tracking
from jaxpose.inference import predictor as predictor_lib

# A person's score averages its keypoint scores above this (HRNet, mmpose).
KEYPOINT_SCORE_THRESHOLD = 0.2
# Detections kept: box score at least this (mmpose's COCO default keeps all).
DEFAULT_DETECTION_THRESHOLD = 0.0
# Of two people of an image with a higher OKS, the lower-scored one is dropped (mmpose).
OKS_NMS_THRESHOLD = 0.9
# COCO's per-keypoint OKS sigmas (pycocotools), for OKS-NMS.
COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                        .87, .87, .89, .89]) / 10.0
# Upstream's val.py: images resized to this height (at scale 1), padded to the stride.
BOTTOM_UP_HEIGHT = bottomup.VAL_HEIGHT
BOTTOM_UP_STRIDE = 8

# images uint8 [B, h, w, 3] -> the last stack's heatmaps [B, h', w', J].
HeatmapsFn = Callable[[np.ndarray], np.ndarray]
# input float32 RGB pixels [1, H, W, 3] (0-255, not rounded: val.py resizes floats)
# -> (heatmaps [1, H/8, W/8, 19], pafs [1, H/8, W/8, 38]).
MapsFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _predictor_from_workdir(config: ml_collections.ConfigDict, workdir: str, step: int | None
                            ) -> tuple[predictor_lib.JaxPredictor, int]:
  """Workdir -> (a jitted predictor of its model, step); raises if the model is not the config's."""
  variables, description = checkpoint.restore_variables(workdir, step)
  if description.get('arch') != config.model.arch:
    raise ValueError(f'{workdir}: the checkpoint holds a {description.get("arch")!r} model, '
                     f'but config.model.arch is {config.model.arch!r}')
  if config.model.arch == 'hourglass' and description.get('num_joints') != config.model.num_joints:
    raise ValueError(f'{workdir}: the checkpoint\'s hourglass has {description.get("num_joints")} '
                     f'joints, but config.model.num_joints is {config.model.num_joints}')
  if step is None:
    with checkpoint.Checkpointer(workdir, read_only=True) as checkpointer:
      step = checkpointer.latest_step()
  model = predictor_lib.JaxPredictor.from_variables(variables, description, source=workdir)
  return model, int(step)


def person_scores(box_scores: np.ndarray, keypoint_scores: np.ndarray) -> np.ndarray:
  """Box scores [P], keypoint scores [P, J] -> [P]: box score x mean of keypoint scores above the threshold (0 if none)."""
  confident = keypoint_scores > KEYPOINT_SCORE_THRESHOLD
  total = np.where(confident, keypoint_scores, 0.0).sum(-1)
  mean = np.where(confident.any(-1), total / np.maximum(confident.sum(-1), 1), 0.0)
  return box_scores * mean


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray,
            threshold: float = OKS_NMS_THRESHOLD) -> np.ndarray:
  """One image's people: keypoints [P, 17, 2], scores [P], box areas [P] -> kept indices, best first.

  Greedy, as mmpose's `oks_nms`: the best-scored person is kept and everyone
  whose OKS with it exceeds `threshold` is dropped; the OKS of two people is
  normalised by the mean of their areas and counts every keypoint.
  """
  order = list(np.argsort(-np.asarray(scores), kind='stable'))
  everywhere = np.ones(keypoints.shape[:2])
  kept = []
  while order:
    best, order = order[0], order[1:]
    kept.append(best)
    if not order:
      break
    pair_areas = ((areas[order] + areas[best]) / 2)[:, None]  # [A, 1]
    similarity = tracking.oks(keypoints[order], everywhere[order], keypoints[best:best + 1],
                              everywhere[best:best + 1], pair_areas, COCO_SIGMAS,
                              score_threshold=0.0)[:, 0]
    order = [p for p, s in zip(order, similarity) if s <= threshold]
  return np.array(kept, np.int64)


def _coco_images(annotation_file: str, image_dir: str) -> list[tuple[int, str]]:
  """A COCO annotation file's images -> [(image id, path)], in file order."""
  content = coco.load_json(annotation_file, ('images', 'annotations'))
  return [(int(info['id']), os.path.join(image_dir, info['file_name']))
          for info in content['images']]


def _topdown_coco(heatmaps_fn: HeatmapsFn, config, files, detections: str | None,
                  detection_threshold: float, flip_test: bool) -> list[dict]:
  """Hourglass on COCO -> COCO results, one per person box."""
  skeleton = skeletons.COCO
  if detections is None:
    records = coco.load_coco(files.eval_annotations, files.eval_images)
    people = [(r.image_id, r.path, r.boxes, np.ones(len(r.boxes))) for r in records]
  else:
    boxes = detect.DetectionsFile(detections, detection_threshold)
    detected = set(boxes.image_ids)
    people = [(image_id, path, *boxes.boxes(image_id))
              for image_id, path in _coco_images(files.eval_annotations, files.eval_images)
              if image_id in detected]
  results = []
  for image_id, path, image_boxes, box_scores in tqdm.tqdm(people, desc='eval', unit='image',
                                                          file=sys.stderr):
    image = coco.read_image(path, image_id)
    keypoints, keypoint_scores = topdown.predict_topdown(
        heatmaps_fn, image, image_boxes, tuple(config.input_size),
        skeleton.flip_permutation(), flip_test=flip_test)
    scores = person_scores(box_scores, keypoint_scores)
    if detections is not None:
      kept = oks_nms(keypoints, scores, image_boxes[:, 2] * image_boxes[:, 3])
      keypoints, keypoint_scores, scores = keypoints[kept], keypoint_scores[kept], scores[kept]
    results += evaluate.coco_results(np.full(len(scores), image_id), keypoints,
                                     keypoint_scores, scores)
  return results


def _topdown_mpii(heatmaps_fn: HeatmapsFn, config, files, flip_test: bool) -> dict:
  """Hourglass on MPII with ground-truth boxes -> `evaluate.pckh_summary`."""
  ground_truth = None
  if files.eval_annotations.endswith('.json'):
    # HRNet's and mmpose's layout: the head boxes live in a .mat beside the JSON.
    ground_truth = config.data.eval_ground_truth or os.path.join(
        os.path.dirname(files.eval_annotations), 'gt_valid.mat')
    if not os.path.isfile(ground_truth):
      raise FileNotFoundError(
          f'{files.eval_annotations}: PCKh needs each person\'s head box, which HRNet\'s JSON '
          f'does not have; expected them in {ground_truth} (HRNet\'s gt_valid.mat, mmpose\'s '
          'mpii_gt_val.mat): set config.data.eval_ground_truth to it, or '
          'config.data.eval_annotations to the official mpii_human_pose_v1_u12_1.mat')
  records = mpii.load_mpii(files.eval_annotations, files.eval_images, ground_truth)
  if any(np.isnan(r.head_boxes).any() for r in records):
    raise ValueError(f'{files.eval_annotations}: PCKh needs each person\'s head box, and some '
                     'people have none')
  predicted, target, visible, head_boxes = [], [], [], []
  for record in tqdm.tqdm(records, desc='eval', unit='image', file=sys.stderr):
    image = coco.read_image(record.path, record.image_id)
    keypoints, _ = topdown.predict_topdown(heatmaps_fn, image, record.boxes,
                                           tuple(config.input_size),
                                           skeletons.MPII.flip_permutation(), flip_test=flip_test)
    predicted.append(keypoints)
    target.append(record.keypoints)
    visible.append(record.visible > 0)
    head_boxes.append(record.head_boxes)
  return evaluate.pckh_summary(np.concatenate(predicted), np.concatenate(target),
                               np.concatenate(visible), np.concatenate(head_boxes))


def predict_bottom_up(maps_fn: MapsFn, image: np.ndarray, scales=(1.0,)
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Image uint8 [H, W, 3] -> (COCO keypoints [N, 17, 2] image pixels, keypoint scores [N, 17], person scores [N]).

  Upstream's val.py: the last stage's maps over the image, averaged over
  `scales` (`inference.bottomup.image_maps`), decoded at the image's size
  (`bottomup.people_at_image_size`) with upstream's own peak rule (`paf.decode`'s
  `upstream_peaks`), and upstream's person score.
  """
  heatmaps, pafs = bottomup.image_maps(maps_fn, image, scales, BOTTOM_UP_HEIGHT, BOTTOM_UP_STRIDE)
  people, scores = bottomup.people_at_image_size(heatmaps, pafs, upstream_peaks=True)
  return bottomup.coco_keypoints(people, scores)


def _bottom_up_coco(maps_fn: MapsFn, files, scales) -> list[dict]:
  """Lightweight OpenPose on every image of the COCO eval annotations -> COCO results."""
  results = []
  for image_id, path in tqdm.tqdm(_coco_images(files.eval_annotations, files.eval_images),
                                  desc='eval', unit='image', file=sys.stderr):
    keypoints, keypoint_scores, scores = predict_bottom_up(
        maps_fn, coco.read_image(path, image_id), scales)
    results += evaluate.coco_results(np.full(len(scores), image_id), keypoints,
                                     keypoint_scores, scores)
  return results


def _eval_files(config: ml_collections.ConfigDict) -> input_pipeline.DatasetFiles:
  """The eval annotations and images that config.data names (a 'coco' or 'mpii' source); no train paths needed."""
  if config.data.source not in ('coco', 'mpii'):
    raise ValueError(f"config.data.source is {config.data.source!r}: jaxpose eval reads the "
                     "'coco' or 'mpii' annotation files (set --config.data.source and its "
                     'directory)')
  annotations, images = input_pipeline.split_files(config, 'eval')
  return input_pipeline.DatasetFiles('', '', annotations, images)


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str, *,
                     step: int | None = None, detections: str | None = None,
                     detection_threshold: float = DEFAULT_DETECTION_THRESHOLD,
                     flip_test: bool = True, scales=(1.0,), results_file: str | None = None,
                     model_fn: HeatmapsFn | MapsFn | None = None) -> dict:
  """Evaluates the workdir's checkpoint on the config's eval split -> metrics (module docstring).

  Args:
    config: a training config; its data section names the eval files.
    workdir: a workdir of `jaxpose train` or `jaxpose convert`.
    step: the checkpoint step (default: the latest).
    detections: COCO detection results to take person boxes from (top-down
      COCO); None uses the ground-truth boxes.
    detection_threshold: detections scored lower are dropped.
    flip_test: average with the mirrored crop's heatmaps (top-down).
    scales: bottom-up input scales whose maps are averaged (val.py's
      `--multiscale`: `bottomup.MULTISCALE`).
    results_file: where the COCO results go (default
      `workdir/eval/results_step{N}.json`).
    model_fn: replaces the restored model (tests): a HeatmapsFn for the
      hourglass, a MapsFn for Lightweight OpenPose; the workdir is then not read.

  Returns:
    COCO: {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm',
    'ARl', 'step'}; MPII: `evaluate.pckh_summary`'s keys and 'step'.
  """
  files = _eval_files(config)
  skeleton = input_pipeline.data_skeleton(config)
  if config.model.arch == 'hourglass' and config.model.num_joints != skeleton.num_keypoints:
    raise ValueError(f'config.model.num_joints is {config.model.num_joints}, but '
                     f'config.data.source {config.data.source!r} has the '
                     f'{skeleton.num_keypoints} {skeleton.name} keypoints')
  if model_fn is None:
    model, step = _predictor_from_workdir(config, workdir, step)
    if config.model.arch == 'hourglass':
      model_fn = lambda crops: predictor_lib.last_heatmaps(model(crops))
    else:
      model_fn = lambda inputs: predictor_lib.last_maps(model(inputs))
  step = 0 if step is None else int(step)

  if config.data.source == 'mpii':
    if config.model.arch != 'hourglass':
      raise ValueError(f'config.model.arch {config.model.arch!r}: MPII is evaluated top-down '
                       'only (hourglass)')
    if detections is not None:
      raise ValueError('--detections: MPII is evaluated with its ground-truth boxes')
    return dict(_topdown_mpii(model_fn, config, files, flip_test), step=step)

  if config.model.arch == 'hourglass':
    results = _topdown_coco(model_fn, config, files, detections, detection_threshold, flip_test)
  else:
    results = _bottom_up_coco(model_fn, files, scales)
  results_file = results_file or os.path.join(workdir, 'eval', f'results_step{step}.json')
  evaluate.write_coco_results(results_file, results)
  if not results:
    logging.warning('%s: the model found no person; every metric is 0', results_file)
    return dict({name: 0.0 for name in evaluate.COCO_STAT_NAMES}, step=step)
  metrics = evaluate.coco_keypoint_ap(files.eval_annotations, results, verbose=False)
  return dict(metrics, step=step)


def run(config: ml_collections.ConfigDict, workdir: str, **options) -> dict:
  """`jaxpose eval --config C --workdir W`: `evaluate_workdir`, then the metrics as one JSON line, last."""
  metrics = evaluate_workdir(config, workdir, **options)
  print(json.dumps(metrics))
  return metrics
