"""Lightweight OpenPose's protocols, as its upstream runs its published checkpoint: the demo (inference) and val.py (COCO evaluation).

Reproduces Daniil-Osokin/lightweight-human-pose-estimation.pytorch (read at commit
a70ef04304b282f40739383fe6c4e7af245e5395: `demo.py` `infer_fast`, `val.py` `infer`
`run_coco_eval`);
the default protocol of Lightweight OpenPose and STAF models (the table in
`approaches.protocols`). What it sets:

- input: inference (`predict_demo`) resizes the image, keeping its aspect
  ratio, to the network height (256 by default) with bilinear
  interpolation and pads it (centred) to a width that is a multiple of the
  stride 8 and at least the height. Upstream pads the normalised image with
  0, which is the pixel value 128 before the normalisation ((x - 128) / 256)
  that the models here do themselves. A model with a fixed input size (an
  ONNX export) gets the image scaled to fit inside that size instead, and
  padded the same way;
- decoding: the last stage's maps go to `jaxpose.codecs.paf.decode`, whose
  coordinates are input pixels (upsampled pixel j reported as j * stride /
  upsample). Its docstring measures them 0.5 input pixel up and left of
  where `paf.encode` draws a keypoint (stride 8, upsample 4); upstream's
  val.py adds 0.5 before COCO evaluation for the same reason. Here the 0.5
  is added in input pixels, then the padding and the resize are undone,
  with cv2's pixel convention (pixel centres at integers: image x = (input
  x + 0.5) / scale - 0.5);
- evaluation (`predict_val`) follows val.py instead (`image_maps`,
  `people_at_image_size`): at each of its scales the image is resized
  bicubically to 368 x scale high and padded; the last stage's maps are
  upsampled bicubically by the stride, cut to the resized image and resized
  to the image; their average over the scales is decoded at the image's own
  resolution, and val.py adds 0.5 px to every keypoint it reports. Its
  `--multiscale` uses the scales (0.5, 1, 1.5, 2);
- scoring: a person's score is val.py's (its score x (keypoints found - 1)),
  keypoints converted from OpenPose-18 to COCO-17 (`coco_keypoints`).
"""

import dataclasses

import cv2
import numpy as np

from jaxpose import skeletons
from jaxpose.approaches import records
from jaxpose.codecs import paf

NAME = 'lightweight_openpose'
APPROACH = 'bottom-up'
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
  return predict(lambda inputs: last_maps(predictor(inputs)), image, height, None,
                 predictor.input_multiple, predictor.input_size, **decode_options)


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


def coco_keypoints(people: np.ndarray, person_scores: np.ndarray, custom: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """People [P, 18, 3], scores [P] -> COCO-17 (keypoints [P, 17, 2], keypoint scores [P, 17], scores [P]).

  Keypoints not found are (0, 0) with score 0, as upstream's val.py writes
  them. The person score is upstream val.py's: its score times (keypoints found - 1),
  counting the neck, which COCO lacks. (Upstream's count is that of the
  grouping, which does not count ear keypoints added by the two redundant
  ear-shoulder limbs; the two differ only for such people.)

  `custom`: people [P, K, 3] of another layout keep their keypoints, and
  their score is the grouping's times the keypoints found (no neck to leave
  out), the same ranking rule without upstream's correction.
  """
  people = np.asarray(people, np.float32)
  if custom:
    found = (people[..., 2] > 0).sum(-1)
    scores = np.asarray(person_scores, np.float32) * found
    present = people[..., 2:] > 0
    return np.where(present, people[..., :2], 0), people[..., 2], scores.astype(np.float32)
  people = people.reshape(-1, paf.NUM_KEYPOINTS, 3)
  coco = skeletons.coco_from_openpose(people)
  found = (people[..., 2] > 0).sum(-1)
  scores = np.asarray(person_scores, np.float32) * np.maximum(found - 1, 0)
  found_keypoints = coco[..., 2:] > 0
  return np.where(found_keypoints, coco[..., :2], 0), coco[..., 2], scores


def last_maps(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Named outputs -> the last stage's (heatmaps [N, h, w, 19], pafs [N, h, w, 38])."""
  return records.last_output(outputs, 'heatmaps'), records.last_output(outputs, 'pafs')


def predict_val(maps_fn, image: np.ndarray, scales=(1.0,), **decode_options
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Image uint8 [H, W, 3] -> (COCO keypoints [N, 17, 2] image pixels, keypoint scores [N, 17], person scores [N]).

  Upstream's val.py: the last stage's maps over the image, averaged over
  `scales` (`image_maps`), decoded at the image's size
  (`people_at_image_size`) with upstream's own peak rule (`paf.decode`'s
  `upstream_peaks`), and upstream's person score. `maps_fn`: float32 RGB
  pixels [1, h, w, 3] (0-255, not rounded: val.py resizes floats) ->
  (heatmaps [1, h/8, w/8, 19], pafs [1, h/8, w/8, 38]). `decode_options`
  go to `paf.decode`: a model of another layout gives its `layout`, and its
  people come back in that layout (`coco_keypoints`'s `custom`).
  """
  heatmaps, pafs = image_maps(maps_fn, image, scales, VAL_HEIGHT)
  people, scores = people_at_image_size(heatmaps, pafs, upstream_peaks=True, **decode_options)
  return coco_keypoints(people, scores, custom='layout' in decode_options)




# --- the protocol's interface (`approaches.protocols.BottomUpProtocol`) -----------

DEFAULT_SCALES = (1.0,)  # val.py's single scale of VAL_HEIGHT


def predict(maps_fn, image: np.ndarray, height: int, stride: int | None, input_multiple: int,
            input_size: tuple[int, int] | None, **decode_options) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3] uint8 -> (people [P, 18, 3] image pixels and score, person scores [P]): the demo at `height`.

  `maps_fn`: uint8 inputs [1, h, w, 3] -> the last stage's (heatmaps, pafs);
  `input_size`: a fixed-size model's (width, height), else None. The stride
  is measured, input width over map width (`stride` is not needed).
  """
  del stride
  network_input, placement = letterbox(image, height, input_multiple, input_size)
  heatmaps, pafs = maps_fn(network_input[None])
  stride = network_input.shape[1] // heatmaps.shape[2]
  return people_in_image(heatmaps[0], pafs[0], placement, stride, **decode_options)


def coco_people(maps_fn, image: np.ndarray, scales: tuple[float, ...], stride: int,
                **decode_options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Image uint8 [H, W, 3] -> (COCO keypoints [N, 17, 2], keypoint scores [N, 17], person scores [N]): val.py.

  With `decode_options` {'layout': a PafLayout}: another layout's people [N, K, ...].
  """
  del stride  # val.py's is the model's 8
  return predict_val(maps_fn, image, scales, **decode_options)
