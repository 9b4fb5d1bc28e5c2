"""The top-down approach: one person per example, cropped around its box; heatmaps of its joints.

`TopDown` owns what differs from bottom-up: Gaussian heatmap targets
(`codecs.heatmap`), intermediate supervision or distillation from a teacher,
PCK as the training metric, per-person sources and their crop augmentation,
and the prediction that evaluation (COCO AP, MPII PCKh) and inference share:
its protocol (`approaches.protocols`: jaxpose_topdown, mmpose_topdown,
bearpaw_mpii) crops, runs and decodes.
"""

from collections.abc import Callable
import os
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from jaxpose import losses, models, skeletons
from jaxpose.approaches import base
from jaxpose.codecs import heatmap
from jaxpose.data import augment, coco, detections as detections_lib, images, mpii
from jaxpose.data import sources
from jaxpose.metrics import coco_ap, pck
from jaxpose.metrics.oks import person_scores

HeatmapsFn = Callable[[np.ndarray], np.ndarray]

def _inside(joints: jax.Array, size) -> jax.Array:
  """Joints [..., J, 2], size (width, height) -> [..., J] 1 where a joint lies in the input image, else 0."""
  x, y = joints[..., 0], joints[..., 1]
  return ((x >= 0) & (y >= 0) & (x < size[0]) & (y < size[1])).astype(jnp.float32)


def skeleton_for_joints(num_joints: int, source: str) -> skeletons.Skeleton:
  """Heatmap channels of a top-down model -> its keypoint layout (17: COCO, 16: MPII)."""
  for skeleton in (skeletons.COCO, skeletons.MPII):
    if skeleton.num_keypoints == num_joints:
      return skeleton
  raise ValueError(f'{source}: the model has {num_joints} heatmap channels; top-down '
                   'inference knows COCO (17) and MPII (16)')


class TopDown(base.Approach):
  """Stacked hourglass and its kin: crops of one person -> per-stack heatmaps [B, H/4, W/4, J]."""
  name = 'top-down'
  per_person = True
  protocol_kind = 'top-down'
  loss_terms = ('kd_loss', 'gt_loss')

  # --- data --------------------------------------------------------------------

  def check_data(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton) -> None:
    """Raises ValueError unless the model has one heatmap per keypoint of the dataset."""
    num_joints = self.description.get('num_joints')
    if num_joints != skeleton.num_keypoints:
      raise ValueError(f'config.model.num_joints is {num_joints}, but '
                       f'{sources.named_data(config)} has the {skeleton.num_keypoints} '
                       f'{skeleton.name} keypoints (0 follows the data)')

  def transform(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton,
                train: bool) -> augment.TopDownTransform:
    """The crop around each person (augmented only for training), at config.input_size."""
    data = config.data
    return augment.TopDownTransform(
        tuple(config.input_size), skeleton, augment=train and data.augment,
        scale_factor=data.scale_factor, rotation_degrees=data.rotation_degrees,
        flip_probability=0.5 if data.flip else 0.0,
        half_body_probability=data.half_body_probability)

  # --- training ----------------------------------------------------------------

  def heatmap_size(self, config: ml_collections.ConfigDict) -> tuple[int, int]:
    """(width, height) of the output maps for the config's input size."""
    width, height = config.input_size
    return width // self.stride, height // self.stride

  def make_targets(self, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Joints [B, J, 2], visible [B, J] -> {'heatmaps' [B, H, W, J], 'weight' [B, J]}, on the device."""
    target, weight = heatmap.encode(batch['joints'], batch['visible'],
                                    image_size=tuple(config.input_size),
                                    heatmap_size=self.heatmap_size(config), sigma=config.sigma)
    return {'heatmaps': target, 'weight': weight}

  def loss(self, outputs: list[jax.Array], batch: dict, targets: dict,
           teacher_outputs: list[jax.Array] | None, config: ml_collections.ConfigDict
           ) -> tuple[jax.Array, dict]:
    """Stacks' heatmaps -> (intermediate supervision, or distillation with a teacher; its parts as metrics)."""
    if teacher_outputs is None:
      return losses.intermediate_supervision(outputs, targets['heatmaps'], targets['weight']), {}
    teacher_heatmaps = teacher_outputs[-1]
    # An unlabelled example (batch['labelled'] == 0) has the teacher's
    # heatmaps as its target and every joint weighted 1, so it contributes
    # the distillation term only (Fast Pose Distillation).
    target, weight = targets['heatmaps'], targets['weight']
    if 'labelled' in batch:
      labelled = batch['labelled'] > 0
      target = jnp.where(labelled[:, None, None, None], target, teacher_heatmaps)
      weight = jnp.where(labelled[:, None], weight, 1.0)
    metrics = {}
    loss, metrics['kd_loss'], metrics['gt_loss'] = losses.distillation(
        outputs, teacher_heatmaps, target, weight, config.teacher.kdloss_alpha)
    return loss, metrics

  def _pck_counts(self, heatmaps: jax.Array, batch: dict, config: ml_collections.ConfigDict):
    """Heatmaps [B, H, W, J] -> PCK (correct [J], counted [J]) against the batch's joints (the seed's accuracy)."""
    coords, _ = heatmap.decode(heatmaps)
    stride = config.input_size[0] / heatmaps.shape[-2]
    normalizer = heatmaps.shape[-2] * pck.PCK_NORMALIZER_FRACTION
    visible = batch['visible'] * _inside(batch['joints'], config.input_size)
    return pck.pck_counts(coords, batch['joints'] / stride, visible, normalizer)

  def train_metrics(self, outputs: list[jax.Array], batch: dict,
                    config: ml_collections.ConfigDict) -> dict:
    """The last stack's PCK as sums: {'pck_correct', 'pck_counted'}."""
    correct, counted = self._pck_counts(outputs[-1], batch, config)
    return {'pck_correct': correct.sum(), 'pck_counted': counted.sum()}

  def eval_sums(self, outputs: list[jax.Array], batch: dict, targets: dict, weight: jax.Array,
                config: ml_collections.ConfigDict) -> dict:
    """Eval-mode stacks, example weights [B] (0 for padding) -> {'loss', 'pck_correct', 'pck_counted'} sums."""
    per_example = jax.vmap(lambda o, t, w: losses.intermediate_supervision(
        [x[None] for x in o], t[None], w[None]))(outputs, targets['heatmaps'], targets['weight'])
    batch = dict(batch, visible=batch['visible'] * weight[:, None])
    correct, counted = self._pck_counts(outputs[-1], batch, config)
    return {'loss': jnp.sum(per_example * weight), 'pck_correct': correct, 'pck_counted': counted}

  def check_teacher(self, teacher_description: dict, source: str) -> None:
    """Raises ValueError unless a teacher of this description can distil into this model."""
    if (models.model_class(teacher_description) is not self.model_class
        or teacher_description.get('num_joints') != self.description.get('num_joints')):
      raise ValueError(f'config.teacher.workdir: {source} holds {teacher_description}, '
                       f'expected a {self.description["arch"]} with '
                       f'num_joints={self.description.get("num_joints")}')

  def summarize(self, sums, examples: float = 1.0) -> dict[str, float]:
    """As `Approach.summarize`, and PCK over the visible joints (the seed's accuracy)."""
    values = super().summarize(sums, examples)
    if 'pck_counted' in sums:
      values['pck'] = float(np.sum(sums['pck_correct']) / max(np.sum(sums['pck_counted']), 1))
    return values

  # --- prediction --------------------------------------------------------------

  def last_maps(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Named outputs -> the last stack's heatmaps [N, h, w, J]."""
    return base.last_output(outputs, 'heatmaps')

  def input_size(self, network, options: base.Options) -> tuple[int, int]:
    """The crop (width, height): a fixed-size network's (ONNX), else `options.input_size`, else the trained size."""
    return tuple(int(s) for s in (network.input_size or options.input_size
                                  or self.default_input_size))

  def skeleton(self, network=None) -> skeletons.Skeleton:
    """The keypoint layout of the model's heatmaps: the description's, else COCO or MPII by its joints (a probe of `network` without them)."""
    recorded = models.layout(self.description)
    if recorded is not None:
      return recorded
    num_joints = self.description.get('num_joints')
    if num_joints is None:  # an ONNX model's description has its arch alone
      width, height = network.input_size or self.default_input_size
      num_joints = self.last_maps(network(np.zeros((1, height, width, 3), np.uint8))).shape[-1]
    return skeleton_for_joints(int(num_joints), getattr(network, 'source', 'model'))

  def predict(self, network, images, options: base.Options = base.Options(), boxes=None,
              state=None) -> list[base.People]:
    """Images [H, W, 3] and their person boxes -> each one's People, rescored (`person_scores`).

    `boxes`: per image, (boxes [P, 4] x, y, w, h; box scores [P]). The crops,
    flip test and decoding are the protocol's (`jaxpose_topdown`'s, or
    `mmpose_topdown`'s). Stateless: `state` is not used.
    """
    del state
    if boxes is None or len(boxes) != len(images):
      raise ValueError(f'top-down prediction needs person boxes for each of the {len(images)} '
                       'images')
    protocol = self.protocol(options)
    input_size = self.input_size(network, options)
    skeleton = self.skeleton(network)
    heatmaps_fn = lambda crops: self.last_maps(network(crops))
    found = []
    for image, (image_boxes, box_scores) in zip(images, boxes):
      keypoints, scores = protocol.predict(heatmaps_fn, image, image_boxes, input_size,
                                           skeleton, options)
      box_scores = np.asarray(box_scores, np.float32)
      found.append(base.People(keypoints, scores,
                               np.asarray(image_boxes, np.float32).reshape(-1, 4),
                               person_scores(box_scores, scores)))
    return found

  # --- evaluation --------------------------------------------------------------

  def evaluate(self, network, config: ml_collections.ConfigDict, options: base.Options,
               results_file: str) -> dict:
    """The eval split of config.data -> COCO AP (results written to `results_file`) or MPII PCKh."""
    skeleton = sources.data_skeleton(config)
    self.check_data(config, skeleton)
    files = sources.eval_files(config)
    protocol = self.protocol(options)
    heatmaps_fn = lambda crops: self.last_maps(network(crops))
    if config.data.source == 'mpii':
      if options.detections is not None:
        raise ValueError('--detections: MPII is evaluated with its ground-truth boxes')
      return self._mpii_pckh(heatmaps_fn, protocol, config, files, skeleton, options)
    results = self._coco_results(heatmaps_fn, protocol, config, files, skeleton, options)
    # OKS with the layout's sigmas (pycocotools' own for COCO's 17 keypoints).
    sigmas = None if skeleton is skeletons.COCO else skeleton.sigmas
    return coco_ap.score_or_zero(files.eval_annotations, results,
                                 results_file if options.share.writes else None, sigmas)

  def _coco_results(self, heatmaps_fn: HeatmapsFn, protocol, config: ml_collections.ConfigDict,
                    files: sources.DatasetFiles, skeleton: skeletons.Skeleton,
                    options: base.Options) -> list[dict]:
    """COCO eval images -> COCO results, one per ground-truth, detected or bottom-up box (OKS-NMS on the last two)."""
    if options.detections is not None and options.person_boxes is not None:
      raise ValueError('--detections and --boxes_from: give one source of person boxes')
    if options.detections is not None:
      boxes = detections_lib.DetectionsFile(options.detections, options.detection_threshold)
      detected = set(boxes.image_ids)
      people = [(image_id, path, *boxes.boxes(image_id))
                for image_id, path in coco.image_paths(files.eval_annotations, files.eval_images)
                if image_id in detected]
    elif options.person_boxes is not None:  # boxes found when the image is read
      people = [(image_id, path, None, None)
                for image_id, path in coco.image_paths(files.eval_annotations, files.eval_images)]
    else:
      records = coco.load_coco(files.eval_annotations, files.eval_images)
      people = [(r.image_id, r.path, r.boxes, np.ones(len(r.boxes))) for r in records]
    detected = options.detections is not None or options.person_boxes is not None
    per_image = []  # this process's images (`options.share`), gathered below
    for image_id, path, image_boxes, box_scores in tqdm.tqdm(
        options.share.take(people), desc='eval', unit='image', file=sys.stderr):
      image = images.read_image(path, image_id)
      if image_boxes is None:
        image_boxes, box_scores = options.person_boxes(image)
        keep = box_scores >= options.detection_threshold
        image_boxes, box_scores = image_boxes[keep], box_scores[keep]
      per_image.append(protocol.coco_results(heatmaps_fn, image, image_id, image_boxes,
                                             box_scores, tuple(config.input_size), skeleton,
                                             options, detected))
    return [result for image in options.share.gather(per_image) for result in image]

  def _mpii_pckh(self, heatmaps_fn: HeatmapsFn, protocol, config: ml_collections.ConfigDict,
                 files: sources.DatasetFiles, skeleton: skeletons.Skeleton,
                 options: base.Options) -> dict:
    """MPII eval people with their ground-truth boxes -> `pck.pckh_summary`, by the protocol (strict for bearpaw_mpii)."""
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
    predicted = []  # this process's images (`options.share`), gathered below
    for record in tqdm.tqdm(options.share.take(records), desc='eval', unit='image',
                            file=sys.stderr):
      image = images.read_image(record.path, record.image_id)
      predicted.append(protocol.mpii_keypoints(heatmaps_fn, image, record,
                                               tuple(config.input_size), skeleton, options))
    predicted = options.share.gather(predicted)
    return pck.pckh_summary(np.concatenate(predicted),
                            np.concatenate([r.keypoints for r in records]),
                            np.concatenate([r.visible > 0 for r in records]),
                            np.concatenate([r.head_boxes for r in records]),
                            strict=protocol.PCKH_STRICT)
