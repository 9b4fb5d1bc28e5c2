"""The top-down approach: one person per example, cropped around its box; heatmaps of its joints.

`TopDown` owns what differs from bottom-up: Gaussian heatmap targets
(`codecs.heatmap`), intermediate supervision or distillation from a teacher,
PCK as the training metric, per-person sources and their crop augmentation,
and the prediction protocol that evaluation (COCO AP, MPII PCKh) and
inference share. That protocol is made of pure functions of numpy arrays
around a model given as a callable `heatmaps_fn(images uint8 [B, h, w, 3])
-> heatmaps [B, h', w', J]` (the last stack's output):

  crops, matrices = crop_people(image, boxes, input_size)
  heatmaps = flip_test_heatmaps(heatmaps_fn, crops, flip_permutation)
  keypoints, scores = keypoints_in_image(heatmaps, matrices, input_size)

Coordinates follow the heatmap codec (`jaxpose.codecs.heatmap`): pixel
centres are at integers, and a joint at input pixel x is drawn at heatmap
pixel round(x / stride), stride = input width / heatmap width. So heatmap
pixel j stands for input pixel j * stride.

Flip test and the heatmap shift. Mirroring a crop W pixels wide as an image
(x -> W - 1 - x) moves a joint from heatmap coordinate u = x / stride to
(W - 1 - x) / stride = w - 1 - u + (1 - 1 / stride), with w = W / stride; so
reversing the heatmap (j -> w - 1 - j) leaves it (1 - 1 / stride) heatmap
pixels, 0.75 at stride 4, left of where the unflipped crop puts it.
SimpleBaseline, HRNet and mmpose (`shift_heatmap=True`) move the reversed
heatmap one whole pixel right, which over-corrects by 1 / stride heatmap
pixel (one input pixel): with exact targets, the flipped and unflipped
maps then peak at different pixels for a quarter of sub-pixel positions
(three quarters without any shift). Here the mirrored crop is instead the
crop mirrored about x = (W - stride) / 2, i.e. x -> W - stride - x, an
integer shift of stride - 1 pixels after the plain mirror. Its heatmap is
then exactly the reversed heatmap of the crop (u -> w - 1 - u), so
reversing it back needs no shift and the two maps agree for every joint
(but on exact half-way points of the codec's rounding). The price: the
mirrored crop shows stride - 1 black columns at its right edge instead of
the crop's rightmost stride - 1 columns, which lie in the box's padding.
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
from jaxpose.approaches import base, topdown_bearpaw, topdown_mmpose
from jaxpose.codecs import heatmap
from jaxpose.data import augment, coco, detections as detections_lib, geometry, images, mpii
from jaxpose.data import sources
from jaxpose.metrics import coco_ap, oks as oks_lib, pck
from jaxpose.metrics.oks import person_scores  # the rescoring, re-exported: part of the protocol

HeatmapsFn = Callable[[np.ndarray], np.ndarray]
# `EvalOptions.mpii_protocol`: jaxpose's own, or bearpaw/pytorch-pose's.
MPII_PROTOCOLS = ('jaxpose', topdown_bearpaw.PROTOCOL)
# `EvalOptions.coco_protocol` and inference's: jaxpose's own, or mmpose's.
COCO_PROTOCOLS = ('jaxpose', topdown_mmpose.PROTOCOL)


def crop_people(image: np.ndarray, boxes: np.ndarray, input_size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, C], boxes [P, 4] (x, y, w, h) -> (crops [P, h, w, C] of the image's dtype, matrices [P, 2, 3]).

  Each crop is its box enlarged by `geometry.BOX_PADDING` to the input's
  aspect ratio (`input_size` is (width, height)); matrix p takes image
  coordinates to crop p's.
  """
  image = np.asarray(image)
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4) if np.size(boxes) else np.zeros((0, 4))
  if image.ndim != 3:
    raise ValueError(f'crop_people: expected an image [H, W, C], got shape {image.shape}')
  width, height = (int(s) for s in input_size)
  matrices = np.zeros((len(boxes), 2, 3))
  crops = np.zeros((len(boxes), height, width, image.shape[-1]), image.dtype)
  for p, box in enumerate(boxes):
    center, size = geometry.box_to_center_scale(box, width / height)
    # A box of zero extent would divide by zero in the scale.
    matrices[p] = geometry.crop_matrix(center, np.maximum(size, 1.0), (width, height))
    crops[p] = geometry.warp(image, matrices[p], (width, height)).reshape(crops[p].shape)
  return crops, matrices


def mirror_crops(crops: np.ndarray, stride: int) -> np.ndarray:
  """Crops [P, h, w, C] -> [P, h, w, C] mirrored about x = (w - stride) / 2 (x -> w - stride - x; black beyond).

  The input of the flip test whose heatmaps mirror exactly onto the crops'
  (see the module docstring).
  """
  shift = stride - 1
  mirrored = np.zeros_like(crops)
  mirrored[:, :, :crops.shape[2] - shift] = crops[:, :, ::-1][:, :, shift:]
  return mirrored


def _heatmap_stride(input_width: int, heatmap_width: int) -> int:
  """The model's output stride along x, which the flip test needs to be a whole number."""
  if heatmap_width <= 0 or input_width % heatmap_width:
    raise ValueError(f'flip test: the input width {input_width} is not a whole multiple of '
                     f'the heatmap width {heatmap_width}')
  return input_width // heatmap_width


def flip_test_heatmaps(heatmaps_fn: HeatmapsFn, crops: np.ndarray,
                       flip_permutation: np.ndarray) -> np.ndarray:
  """Crops [P, h, w, 3] -> heatmaps [P, h', w', J], the mean of the crops' and their mirror images'.

  The mirrored crops' heatmaps are reversed along x and their channels
  swapped left for right with `flip_permutation` ([J], the skeleton's) before
  averaging. No heatmap shift is needed: see the module docstring.
  """
  heatmaps = np.asarray(heatmaps_fn(crops), np.float32)
  if heatmaps.ndim != 4 or heatmaps.shape[0] != crops.shape[0]:
    raise ValueError(f'flip test: heatmaps_fn gave shape {heatmaps.shape} for crops '
                     f'{crops.shape}; expected [P, h, w, J] with P = {crops.shape[0]}')
  if heatmaps.shape[-1] != len(flip_permutation):
    raise ValueError(f'flip test: {heatmaps.shape[-1]} heatmap channels but a flip '
                     f'permutation of {len(flip_permutation)} joints')
  stride = _heatmap_stride(crops.shape[2], heatmaps.shape[2])
  mirrored = np.asarray(heatmaps_fn(mirror_crops(crops, stride)), np.float32)
  return (heatmaps + mirrored[:, :, ::-1, flip_permutation]) / 2


def keypoints_in_image(heatmaps: np.ndarray, matrices: np.ndarray, input_size: tuple[int, int],
                       dark_kernel: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Heatmaps [P, h', w', J], crop matrices [P, 2, 3] -> (keypoints [P, J, 2] (x, y image pixels), scores [P, J]).

  `heatmap.decode` (argmax and quarter-pixel shift) in heatmap pixels, times
  the stride to input pixels (heatmap pixel j is input pixel j * stride, as
  the targets are encoded), then the inverse crop matrix. A joint whose
  heatmap has no positive value gets score <= 0 and the crop's top-left
  corner, as `decode` gives (0, 0). `dark_kernel`: decode with DARK instead.
  """
  heatmaps = np.asarray(heatmaps, np.float32)
  matrices = np.asarray(matrices, np.float64)
  if heatmaps.ndim != 4 or matrices.shape != (heatmaps.shape[0], 2, 3):
    raise ValueError(f'keypoints_in_image: expected heatmaps [P, h, w, J] and matrices '
                     f'[P, 2, 3], got {heatmaps.shape} and {matrices.shape}')
  coordinates, scores = heatmap.decode(heatmaps, dark_kernel)
  stride = np.asarray(input_size, np.float64) / (heatmaps.shape[2], heatmaps.shape[1])
  in_crop = np.asarray(coordinates, np.float64) * stride
  to_image = np.array([geometry.invert_affine(matrix) for matrix in matrices]).reshape(-1, 2, 3)
  keypoints = (np.einsum('pkc,pjc->pjk', to_image[:, :, :2], in_crop) +
               to_image[:, None, :, 2])
  return keypoints, np.asarray(scores, np.float32)


def predict_topdown(heatmaps_fn: HeatmapsFn, image: np.ndarray, boxes: np.ndarray,
                    input_size: tuple[int, int], flip_permutation: np.ndarray,
                    flip_test: bool = True, dark_kernel: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3], boxes [P, 4] (x, y, w, h) -> (keypoints [P, J, 2] in image pixels, scores [P, J]).

  `input_size` is the model's (width, height); `flip_permutation` ([J]) is the
  skeleton's, which also gives J for an image without boxes; `dark_kernel`
  decodes with DARK (`heatmap.decode`).
  """
  crops, matrices = crop_people(image, boxes, input_size)
  if not len(crops):
    num_joints = len(flip_permutation)
    return np.zeros((0, num_joints, 2)), np.zeros((0, num_joints), np.float32)
  if flip_test:
    heatmaps = flip_test_heatmaps(heatmaps_fn, crops, flip_permutation)
  else:
    heatmaps = np.asarray(heatmaps_fn(crops), np.float32)
  return keypoints_in_image(heatmaps, matrices, input_size, dark_kernel)


def _inside(joints: jax.Array, size) -> jax.Array:
  """Joints [..., J, 2], size (width, height) -> [..., J] 1 where a joint lies in the input image, else 0."""
  x, y = joints[..., 0], joints[..., 1]
  return ((x >= 0) & (y >= 0) & (x < size[0]) & (y < size[1])).astype(jnp.float32)


class TopDown(base.Approach):
  """Stacked hourglass and its kin: crops of one person -> per-stack heatmaps [B, H/4, W/4, J]."""
  name = 'top-down'
  per_person = True

  # --- data --------------------------------------------------------------------

  def check_data(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton) -> None:
    """Raises ValueError unless the model has one heatmap per keypoint of the dataset."""
    if config.model.num_joints != skeleton.num_keypoints:
      raise ValueError(f'config.model.num_joints is {config.model.num_joints}, but '
                       f'{sources.named_data(config)} has the {skeleton.num_keypoints} '
                       f'{skeleton.name} keypoints')

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

  # --- prediction --------------------------------------------------------------

  def last_maps(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Named outputs -> the last stack's heatmaps [N, h, w, J]."""
    return base.last_output(outputs, 'heatmaps')

  def predict(self, heatmaps_fn: HeatmapsFn, image: np.ndarray, boxes: np.ndarray,
              box_scores: np.ndarray, input_size: tuple[int, int],
              skeleton: skeletons.Skeleton, flip_test: bool,
              protocol: str = 'jaxpose', dark_kernel: int | None = None) -> base.People:
    """Image [H, W, 3], boxes [P, 4], box scores [P] -> People, rescored (`person_scores`).

    `protocol` (COCO_PROTOCOLS): jaxpose's crops and flip test
    (`predict_topdown`, with DARK decoding given `dark_kernel`), or mmpose's
    (`topdown_mmpose.predict_mmpose`).
    """
    if protocol not in COCO_PROTOCOLS:
      raise ValueError(f'top-down protocol: expected one of {COCO_PROTOCOLS}, got {protocol!r}')
    if protocol == topdown_mmpose.PROTOCOL:
      if dark_kernel is not None:
        raise ValueError("--dark_kernel: DARK is an option of jaxpose's protocol, not mmpose's")
      keypoints, scores = topdown_mmpose.predict_mmpose(
          heatmaps_fn, image, boxes, input_size, skeleton.flip_permutation(), flip_test)
    else:
      keypoints, scores = predict_topdown(heatmaps_fn, image, boxes, input_size,
                                          skeleton.flip_permutation(), flip_test, dark_kernel)
    box_scores = np.asarray(box_scores, np.float32)
    return base.People(keypoints, scores, np.asarray(boxes, np.float32).reshape(-1, 4),
                       person_scores(box_scores, scores))

  # --- evaluation --------------------------------------------------------------

  def evaluate(self, heatmaps_fn: HeatmapsFn, config: ml_collections.ConfigDict,
               files: sources.DatasetFiles, options: base.EvalOptions,
               results_file: str) -> dict:
    """The eval split of config.data -> COCO AP (results written to `results_file`) or MPII PCKh."""
    skeleton = sources.data_skeleton(config)
    self.check_data(config, skeleton)
    if config.data.source == 'mpii':
      if options.detections is not None:
        raise ValueError('--detections: MPII is evaluated with its ground-truth boxes')
      return self._mpii_pckh(heatmaps_fn, config, files, options.flip_test,
                             options.mpii_protocol, options.dark_kernel)
    results = self._coco_results(heatmaps_fn, config, files, options)
    return coco_ap.score_or_zero(files.eval_annotations, results, results_file)

  def _coco_results(self, heatmaps_fn: HeatmapsFn, config: ml_collections.ConfigDict,
                    files: sources.DatasetFiles, options: base.EvalOptions) -> list[dict]:
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
    results = []
    for image_id, path, image_boxes, box_scores in tqdm.tqdm(
        people, desc='eval', unit='image', file=sys.stderr):
      image = images.read_image(path, image_id)
      if image_boxes is None:
        image_boxes, box_scores = options.person_boxes(image)
        keep = box_scores >= options.detection_threshold
        image_boxes, box_scores = image_boxes[keep], box_scores[keep]
      if options.coco_protocol == topdown_mmpose.PROTOCOL:  # its NMS and results, on any boxes
        results += topdown_mmpose.image_results(heatmaps_fn, image, image_id, image_boxes,
                                                box_scores, tuple(config.input_size),
                                                skeletons.COCO, options.flip_test)[0]
        continue
      found = self.predict(heatmaps_fn, image, image_boxes, box_scores,
                           tuple(config.input_size), skeletons.COCO, options.flip_test,
                           options.coco_protocol, options.dark_kernel)
      if options.detections is not None or options.person_boxes is not None:
        kept = oks_lib.oks_nms(found.keypoints, found.scores,
                               image_boxes[:, 2] * image_boxes[:, 3])
        found = base.People(found.keypoints[kept], found.keypoint_scores[kept],
                            found.boxes[kept], found.scores[kept])
      results += coco_ap.coco_results(np.full(len(found.scores), image_id), found.keypoints,
                                      found.keypoint_scores, found.scores)
    return results

  def _mpii_pckh(self, heatmaps_fn: HeatmapsFn, config: ml_collections.ConfigDict,
                 files: sources.DatasetFiles, flip_test: bool, protocol: str,
                 dark_kernel: int | None = None) -> dict:
    """MPII eval people with their ground-truth boxes -> `pck.pckh_summary`, by `protocol` (MPII_PROTOCOLS)."""
    if protocol not in MPII_PROTOCOLS:
      raise ValueError(f'--mpii_protocol: expected one of {MPII_PROTOCOLS}, got {protocol!r}')
    bearpaw = protocol == topdown_bearpaw.PROTOCOL
    if bearpaw and dark_kernel is not None:
      raise ValueError("--dark_kernel: DARK is an option of jaxpose's protocol, not bearpaw's")
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
      image = images.read_image(record.path, record.image_id)
      if bearpaw:
        keypoints = topdown_bearpaw.predict_mpii(
            heatmaps_fn, image, record.center, record.scale, tuple(config.input_size),
            skeletons.MPII.flip_permutation(), flip_test=flip_test)
      else:
        keypoints, _ = predict_topdown(heatmaps_fn, image, record.boxes,
                                       tuple(config.input_size),
                                       skeletons.MPII.flip_permutation(), flip_test, dark_kernel)
      predicted.append(keypoints)
      target.append(record.keypoints)
      visible.append(record.visible > 0)
      head_boxes.append(record.head_boxes)
    return pck.pckh_summary(np.concatenate(predicted), np.concatenate(target),
                            np.concatenate(visible), np.concatenate(head_boxes), strict=bearpaw)
