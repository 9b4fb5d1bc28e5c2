"""The bottom-up approach: whole images -> keypoint heatmaps and part affinity fields -> people.

`BottomUp` owns what differs from top-down: keypoint maps and PAF targets
(`codecs.paf`), OpenPose's staged L2 loss, per-image sources and their
augmentation, and two prediction protocols, upstream's demo (inference) and
upstream's val.py (evaluation), below.

Inference (`predict_demo`) prepares the input as upstream's demo (`infer_fast` in Daniil-Osokin's
demo.py): the image is resized, keeping its aspect ratio, to the network
height (256 by default) with bilinear interpolation, and padded (centred) to
a width that is a multiple of the stride 8 and at least the height. Upstream
pads the normalised image with 0, which is the pixel value 128 before the
normalisation ((x - 128) / 256) that the models here do themselves. A model
with a fixed input size (an ONNX export) gets the image scaled to fit inside
that size instead, and padded the same way.

The maps of the last stage go to `jaxpose.codecs.paf.decode`, whose
coordinates are input pixels (upsampled pixel j reported as j * stride /
upsample). Its docstring measures them 0.5 input pixel up and left of where
`paf.encode` draws a keypoint (stride 8, upsample 4); upstream's val.py adds
0.5 before COCO evaluation for the same reason. Here the 0.5 is added in
input pixels, then the padding and the resize are undone, with cv2's pixel
convention (pixel centres at integers: image x = (input x + 0.5) / scale - 0.5).

Evaluation (`predict_val`) follows upstream's val.py instead (`image_maps`,
`people_at_image_size`): at each of its scales the image is resized
bicubically to 368 x scale high and padded; the last stage's maps are
upsampled bicubically by the stride, cut to the resized image and resized
to the image; their average over the scales is decoded at the image's own
resolution, and val.py adds 0.5 px to every keypoint it reports. Its
`--multiscale` uses the scales (0.5, 1, 1.5, 2).

A family whose published weights come with another protocol says so in its
`PAF_PROTOCOL`: CMU OpenPose runs as its PyTorch port's `body.py`
(`bottomup_body_py`) in both inference and evaluation.
"""

import dataclasses
import sys

import cv2
import ml_collections
import numpy as np
import tqdm

from jaxpose import losses, skeletons
from jaxpose.approaches import base, bottomup_body_py
from jaxpose.codecs import paf, paf_body_py
from jaxpose.data import augment, coco, geometry, sources
from jaxpose.data.images import read_image
from jaxpose.metrics import coco_ap
from jaxpose.metrics.oks import boxes_from_keypoints

DEFAULT_HEIGHT = 256  # upstream demo's --height-size
# Upstream's val.py: the input height at scale 1, and the scales of --multiscale.
VAL_HEIGHT = 368
MULTISCALE = (0.5, 1.0, 1.5, 2.0)
# Normalises to 0, the value upstream pads its normalised image with.
PAD_PIXEL = 128
# decode's positions lie this many input pixels up and left of the keypoint.
DECODE_OFFSET = 0.5
# val.py adds this to the image-pixel positions it decodes at the image's size.
VAL_OFFSET = 0.5
# Bottom-up people with fewer COCO keypoints give no top-down box (`person_boxes`).
PERSON_BOX_MIN_KEYPOINTS = 4


@dataclasses.dataclass(frozen=True)
class Letterbox:
  """How an image was placed in the network input: input = image * scale + pad.

  Attributes:
    scale: (x, y) input pixels per image pixel.
    pad: (left, top) padding in input pixels.
    size: (width, height) of the resized image inside the input.
  """
  scale: tuple[float, float]
  pad: tuple[int, int]
  size: tuple[int, int] | None = None

  def to_image(self, points: np.ndarray) -> np.ndarray:
    """Input-pixel points [..., 2] (x, y) -> image pixels [..., 2], pixel centres at integers."""
    points = np.asarray(points, np.float64)
    return (points - np.asarray(self.pad) + 0.5) / np.asarray(self.scale) - 0.5


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def letterbox(image: np.ndarray, height: int = DEFAULT_HEIGHT, multiple: int = 8,
              input_size: tuple[int, int] | None = None,
              interpolation: int = cv2.INTER_LINEAR,
              scale: float = 1.0) -> tuple[np.ndarray, Letterbox]:
  """Image [H, W, 3] -> (network input [h, w, 3] of its dtype, its `Letterbox`).

  Without `input_size` ((width, height) of a fixed-size model): scaled to `height` x
  `scale`, then padded (centred) to a multiple of `multiple` at least
  `height` high and wide (upstream's demo; its val.py does the same with
  `height` 368, cv2.INTER_CUBIC and a float image). With it: scaled to fit
  inside it, then padded to it. The resize is by the scale factor (cv2's fx,
  fy), as upstream calls it, so `Letterbox.scale` is exactly that factor.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or not image.size:
    raise ValueError(f'bottom-up: expected an image [H, W, 3], got shape {image.shape}')
  image_height, image_width = image.shape[:2]
  if input_size is None:
    factor = scale * height / image_height
  else:
    factor = min(input_size[1] / image_height, input_size[0] / image_width)
  resized = cv2.resize(image, (0, 0), fx=factor, fy=factor, interpolation=interpolation)
  new_height, new_width = resized.shape[:2]
  if input_size is None:
    # A scaled image higher than `height` is not padded (val.py's pad_width).
    out_height = max(_round_up(height, multiple), new_height)
    out_width = _round_up(max(new_width, height), multiple)
  else:
    out_width, out_height = input_size
  top = (out_height - new_height) // 2
  left = (out_width - new_width) // 2
  padded = cv2.copyMakeBorder(resized, top, out_height - new_height - top, left,
                              out_width - new_width - left, cv2.BORDER_CONSTANT,
                              value=(PAD_PIXEL,) * 3)
  return padded, Letterbox((factor, factor), (left, top), (new_width, new_height))


def people_in_image(heatmaps: np.ndarray, pafs: np.ndarray, placement: Letterbox, stride: int,
                    **decode_options) -> tuple[np.ndarray, np.ndarray]:
  """Last-stage maps [h, w, 19], [h, w, 38] of a letterboxed input -> (people [P, 18, 3] image pixels, scores [P]).

  A keypoint not found is (-1, -1, 0); `decode_options` go to `paf.decode`.
  """
  people, scores = paf.decode(heatmaps, pafs, stride=stride, **decode_options)
  found = people[..., 2] > 0
  people[..., :2] = np.where(found[..., None],
                             placement.to_image(people[..., :2] + DECODE_OFFSET), -1)
  return people.astype(np.float32), scores


def predict_demo(predictor, image: np.ndarray, height: int = DEFAULT_HEIGHT,
                     **decode_options) -> tuple[np.ndarray, np.ndarray]:
  """RGB image [H, W, 3] uint8 -> (people [P, 18, 3] (x, y image pixels, score), person scores [P]).

  Upstream's demo protocol. `predictor` is a `jaxpose.deploy.predictor` model (its
  `input_multiple`, `input_size` and named outputs). OpenPose-18 order; a
  keypoint not found is (-1, -1, 0). `decode_options` go to `paf.decode`
  (thresholds, upsampling).
  """
  network_input, placement = letterbox(image, height, predictor.input_multiple,
                                       predictor.input_size)
  outputs = predictor(network_input[None])
  heatmaps, pafs = last_maps(outputs)
  stride = network_input.shape[1] // heatmaps.shape[2]
  return people_in_image(heatmaps[0], pafs[0], placement, stride, **decode_options)


def _maps_at_image_size(maps: np.ndarray, placement: Letterbox, input_shape: tuple[int, int],
                        stride: int, image_size: tuple[int, int]) -> np.ndarray:
  """Maps [h, w, C] of a letterboxed input (input_shape (h, w)) -> [H, W, C] over the image (val.py's `infer`)."""
  maps = np.ascontiguousarray(maps, np.float32)
  channels = maps.shape[-1]
  up = cv2.resize(maps, (0, 0), fx=stride, fy=stride, interpolation=cv2.INTER_CUBIC)
  up = up.reshape(up.shape[0], up.shape[1], channels)
  # The padding is cut from each side of the upsampled maps, as val.py does
  # (for an input whose size is not a multiple of the stride, they are smaller).
  left, top = placement.pad
  width, height = placement.size
  bottom = input_shape[0] - top - height
  right = input_shape[1] - left - width
  inside = np.ascontiguousarray(up[top:up.shape[0] - bottom, left:up.shape[1] - right])
  resized = cv2.resize(inside, image_size, interpolation=cv2.INTER_CUBIC)
  return resized.reshape(image_size[1], image_size[0], channels)


def image_maps(maps_fn, image: np.ndarray, scales=(1.0,), height: int = VAL_HEIGHT,
               stride: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """RGB image [H, W, 3] -> last-stage (heatmaps [H, W, 19], pafs [H, W, 38]) over the image, as val.py.

  At each scale the image, as float32 (val.py resizes the normalised image,
  so no rounding to uint8), is letterboxed bicubically to `height` x scale
  and run through `maps_fn` (inputs [1, h, w, 3] -> (heatmaps [1, h/s, w/s,
  19], pafs [1, h/s, w/s, 38])); its maps are brought to the image's size
  (upsampled by the stride, cut to the image, resized; all bicubic) and
  averaged over the scales.
  """
  scales = tuple(scales)
  if not scales or not all(scale > 0 for scale in scales):
    raise ValueError(f'image_maps: expected one or more positive scales, got {scales}')
  image = np.asarray(image, np.float32)
  image_size = (image.shape[1], image.shape[0])
  heatmaps_sum = pafs_sum = 0.0
  for scale in scales:
    network_input, placement = letterbox(image, height, stride, interpolation=cv2.INTER_CUBIC,
                                         scale=scale)
    heatmaps, pafs = maps_fn(network_input[None])
    input_shape = network_input.shape[:2]
    heatmaps_sum = heatmaps_sum + _maps_at_image_size(np.asarray(heatmaps)[0], placement,
                                                      input_shape, stride, image_size)
    pafs_sum = pafs_sum + _maps_at_image_size(np.asarray(pafs)[0], placement, input_shape,
                                              stride, image_size)
  return heatmaps_sum / len(scales), pafs_sum / len(scales)


def people_at_image_size(heatmaps: np.ndarray, pafs: np.ndarray, **decode_options
                         ) -> tuple[np.ndarray, np.ndarray]:
  """Maps over the image [H, W, 19], [H, W, 38] -> (people [P, 18, 3] image pixels, scores [P]), as val.py.

  Decoded with no upsampling, a map pixel being an image pixel; found
  keypoints get val.py's `VAL_OFFSET`; a keypoint not found is (-1, -1, 0).
  """
  people, scores = paf.decode(heatmaps, pafs, stride=1, upsample=1, **decode_options)
  found = people[..., 2] > 0
  people[..., :2] = np.where(found[..., None], people[..., :2] + VAL_OFFSET, -1)
  return people, scores


def coco_keypoints(people: np.ndarray, person_scores: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """People [P, 18, 3], scores [P] -> COCO-17 (keypoints [P, 17, 2], keypoint scores [P, 17], scores [P]).

  Keypoints not found are (0, 0) with score 0, as upstream's val.py writes
  them. The person score is upstream val.py's: its score times (keypoints found - 1),
  counting the neck, which COCO lacks. (Upstream's count is that of the
  grouping, which does not count ear keypoints added by the two redundant
  ear-shoulder limbs; the two differ only for such people.)
  """
  people = np.asarray(people, np.float32).reshape(-1, paf.NUM_KEYPOINTS, 3)
  coco = skeletons.coco_from_openpose(people)
  found = (people[..., 2] > 0).sum(-1)
  scores = np.asarray(person_scores, np.float32) * np.maximum(found - 1, 0)
  found_keypoints = coco[..., 2:] > 0
  return np.where(found_keypoints, coco[..., :2], 0), coco[..., 2], scores


def last_maps(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Named outputs -> the last stage's (heatmaps [N, h, w, 19], pafs [N, h, w, 38])."""
  return base.last_output(outputs, 'heatmaps'), base.last_output(outputs, 'pafs')


def predict_val(maps_fn, image: np.ndarray, scales=(1.0,)
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Image uint8 [H, W, 3] -> (COCO keypoints [N, 17, 2] image pixels, keypoint scores [N, 17], person scores [N]).

  Upstream's val.py: the last stage's maps over the image, averaged over
  `scales` (`image_maps`), decoded at the image's size
  (`people_at_image_size`) with upstream's own peak rule (`paf.decode`'s
  `upstream_peaks`), and upstream's person score. `maps_fn`: float32 RGB
  pixels [1, h, w, 3] (0-255, not rounded: val.py resizes floats) ->
  (heatmaps [1, h/8, w/8, 19], pafs [1, h/8, w/8, 38]).
  """
  heatmaps, pafs = image_maps(maps_fn, image, scales, VAL_HEIGHT)
  people, scores = people_at_image_size(heatmaps, pafs, upstream_peaks=True)
  return coco_keypoints(people, scores)


class BottomUp(base.Approach):
  """Lightweight OpenPose and its kin: whole images -> per-stage (heatmaps, PAFs) [B, H/8, W/8, C]."""
  name = 'bottom-up'
  per_person = False

  def __init__(self, description):
    super().__init__(description)
    # True: the CMU port's body.py protocol; False: Lightweight OpenPose's demo.py / val.py.
    self.body_py = self.model_class.PAF_PROTOCOL == paf_body_py.PROTOCOL

  @property
  def default_height(self) -> int:
    """The network input height of the protocol's inference (demo.py 256, body.py 184)."""
    return bottomup_body_py.DEFAULT_HEIGHT if self.body_py else DEFAULT_HEIGHT

  @property
  def default_scales(self) -> tuple[float, ...]:
    """The protocol's evaluation scales (val.py (1,) of 368; body.py (0.5,) of 368)."""
    return bottomup_body_py.SCALES if self.body_py else (1.0,)

  # --- data --------------------------------------------------------------------

  def check_data(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton) -> None:
    """Raises ValueError unless the dataset has COCO's keypoints, which the OpenPose layout is made of."""
    if skeleton is not skeletons.COCO:
      raise ValueError(f'config.model.arch {config.model.arch!r} is bottom-up and learns COCO '
                       f'keypoints, but {sources.named_data(config)} has the '
                       f'{skeleton.num_keypoints} {skeleton.name} keypoints')

  def transform(self, config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton,
                train: bool) -> augment.BottomUpTransform:
    """The whole image in a square input (augmented only for training), at config.input_size."""
    del skeleton  # always COCO (check_data)
    data = config.data
    width, height = config.input_size
    if width != height:
      raise ValueError(f'config.input_size: bottom-up inputs are square, got {width}x{height}')
    return augment.BottomUpTransform(
        width, stride=self.stride, max_people=max(data.max_people, 1),
        augment=train and data.augment, scale_factor=data.scale_factor,
        rotation_degrees=data.rotation_degrees, flip_probability=0.5 if data.flip else 0.0)

  # --- training ----------------------------------------------------------------

  def make_targets(self, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """Keypoints [B, P, 18, 2] -> {'heatmaps' [B, H, W, 19], 'pafs' [B, H, W, 38]}, on the device."""
    heatmaps, pafs = paf.encode(batch['keypoints'], batch['visible'],
                                image_size=tuple(config.input_size), stride=self.stride,
                                sigma=config.sigma, paf_thickness=config.paf_thickness,
                                person_mask=batch['person_mask'])
    return {'heatmaps': heatmaps, 'pafs': pafs}

  def loss(self, outputs, batch: dict, targets: dict, teacher_outputs,
           config: ml_collections.ConfigDict):
    """Stages of (heatmaps, pafs) -> (OpenPose's masked staged L2, no extra metrics)."""
    del teacher_outputs, config  # no distillation (check_teacher)
    return losses.staged_l2(outputs, targets['heatmaps'], targets['pafs'], batch['mask']), {}

  def train_metrics(self, outputs, batch: dict, config: ml_collections.ConfigDict) -> dict:
    """No metric beyond the loss while training."""
    del outputs, batch, config
    return {}

  def eval_sums(self, outputs, batch: dict, targets: dict, weight, config) -> dict:
    """Eval-mode stages, example weights [B] (0 for padding) -> {'loss'} summed over examples."""
    del config
    mask = batch['mask'] * weight[:, None, None]
    return {'loss': losses.staged_l2(outputs, targets['heatmaps'], targets['pafs'], mask)
            * batch['mask'].shape[0]}

  def check_teacher(self, teacher_description: dict, source: str) -> None:
    """Distillation is defined for top-down students only."""
    raise ValueError(f'config.teacher: distillation is defined for top-down students, not '
                     f'{self.description["arch"]!r} ({source})')

  # --- prediction --------------------------------------------------------------

  def last_maps(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Named outputs -> the last stage's (heatmaps, pafs)."""
    return last_maps(outputs)

  def predict(self, predictor, image: np.ndarray, height: int | None = None) -> base.People:
    """Image [H, W, 3] -> People (COCO-17), the protocol's inference at `height` (default: its own).

    Lightweight OpenPose: upstream's demo (`predict_demo`); CMU OpenPose: its
    port's body.py at the scale height / 368 (`bottomup_body_py.predict`).
    """
    height = height or self.default_height
    if self.body_py:
      people, person_scores = bottomup_body_py.predict(
          lambda images: last_maps(predictor(images)), image,
          scales=(height / bottomup_body_py.BOX_SIZE,), stride=self.stride,
          input_size=predictor.input_size)
    else:
      people, person_scores = predict_demo(predictor, image, height)
    keypoints, scores, coco_scores = coco_keypoints(people, person_scores)
    boxes = boxes_from_keypoints(keypoints, scores, score_threshold=0.0)
    return base.People(keypoints, scores, boxes.astype(np.float32), coco_scores)

  def person_boxes(self, predictor, image: np.ndarray, height: int | None = None,
                   min_keypoints: int = PERSON_BOX_MIN_KEYPOINTS
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Image [H, W, 3] -> person boxes [P, 4] (x, y, w, h) and scores [P] for a top-down model.

    The people `predict` finds with `min_keypoints` COCO keypoints or more:
    their keypoints' extent enlarged about its centre by `geometry.BOX_PADDING`
    (1.25), as the top-down protocol pads a box (the bundled COCO sample's
    person boxes are 1.26x / 1.21x their keypoints' extent in width / height,
    medians over its 12 people with 8 keypoints or more), scored by the mean
    of the found keypoints' scores (heatmap values, about 0-1).
    """
    people = self.predict(predictor, image, height)
    found = people.keypoint_scores > 0
    keep = found.sum(-1) >= min_keypoints
    extent = people.boxes[keep]
    size = extent[:, 2:] * geometry.BOX_PADDING
    boxes = np.concatenate([extent[:, :2] + extent[:, 2:] / 2 - size / 2, size], -1)
    scores = (people.keypoint_scores[keep].sum(-1) /
              np.maximum(found[keep].sum(-1), 1)).astype(np.float32)
    return boxes.astype(np.float32), scores

  # --- evaluation --------------------------------------------------------------

  def evaluate(self, maps_fn, config: ml_collections.ConfigDict, files: sources.DatasetFiles,
               options: base.EvalOptions, results_file: str) -> dict:
    """Every COCO eval image, the protocol at `options.scales` -> COCO AP (results written to `results_file`).

    val.py's protocol, or body.py's for CMU OpenPose (`bottomup_body_py.predict_coco`).
    """
    self.check_data(config, sources.data_skeleton(config))
    scales = options.scales or self.default_scales
    results = []
    for image_id, path in tqdm.tqdm(coco.image_paths(files.eval_annotations, files.eval_images),
                                    desc='eval', unit='image', file=sys.stderr):
      image = read_image(path, image_id)
      if self.body_py:
        people, person_scores = bottomup_body_py.predict_coco(maps_fn, image, scales, self.stride)
        keypoints, keypoint_scores, scores = coco_keypoints(people, person_scores)
      else:
        keypoints, keypoint_scores, scores = predict_val(maps_fn, image, scales)
      results += coco_ap.coco_results(np.full(len(scores), image_id), keypoints,
                                      keypoint_scores, scores)
    return coco_ap.score_or_zero(files.eval_annotations, results, results_file)
