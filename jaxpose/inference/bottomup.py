"""Bottom-up inference: a whole image -> Lightweight OpenPose maps -> people in image pixels.

The input is prepared as upstream's demo (`infer_fast` in Daniil-Osokin's
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
"""

import dataclasses

import cv2
import numpy as np

from jaxpose import skeletons
from jaxpose.codecs import paf
from jaxpose.inference import predictor as predictor_lib
from jaxpose.models import openpose

DEFAULT_HEIGHT = 256  # upstream demo's --height-size
# Normalises to 0, the value upstream pads its normalised image with.
PAD_PIXEL = 128
# decode's positions lie this many input pixels up and left of the keypoint.
DECODE_OFFSET = 0.5


@dataclasses.dataclass(frozen=True)
class Letterbox:
  """How an image was placed in the network input: input = image * scale + pad.

  Attributes:
    scale: (x, y) input pixels per image pixel.
    pad: (left, top) padding in input pixels.
  """
  scale: tuple[float, float]
  pad: tuple[int, int]

  def to_image(self, points: np.ndarray) -> np.ndarray:
    """Input-pixel points [..., 2] (x, y) -> image pixels [..., 2], pixel centres at integers."""
    points = np.asarray(points, np.float64)
    return (points - np.asarray(self.pad) + 0.5) / np.asarray(self.scale) - 0.5


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def letterbox(image: np.ndarray, height: int = DEFAULT_HEIGHT, multiple: int = openpose.STRIDE,
              input_size: tuple[int, int] | None = None,
              interpolation: int = cv2.INTER_LINEAR) -> tuple[np.ndarray, Letterbox]:
  """Image [H, W, 3] uint8 -> (network input [h, w, 3] uint8, its `Letterbox`).

  Without `input_size` ((h, w) of a fixed-size model): scaled to `height`,
  width padded to a multiple of `multiple` and at least `height` (upstream's
  demo; its val.py does the same with `height` 368 and cv2.INTER_CUBIC).
  With it: scaled to fit inside it, then padded to it. The resize is by the
  scale factor (cv2's fx, fy), as upstream calls it, so `Letterbox.scale` is
  exactly that factor.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or not image.size:
    raise ValueError(f'bottom-up: expected an image [H, W, 3], got shape {image.shape}')
  image_height, image_width = image.shape[:2]
  if input_size is None:
    factor = height / image_height
  else:
    factor = min(input_size[0] / image_height, input_size[1] / image_width)
  resized = cv2.resize(image, (0, 0), fx=factor, fy=factor, interpolation=interpolation)
  new_height, new_width = resized.shape[:2]
  if input_size is None:
    out_height, out_width = _round_up(height, multiple), _round_up(max(new_width, height), multiple)
  else:
    out_height, out_width = input_size
  top = (out_height - new_height) // 2
  left = (out_width - new_width) // 2
  padded = cv2.copyMakeBorder(resized, top, out_height - new_height - top, left,
                              out_width - new_width - left, cv2.BORDER_CONSTANT,
                              value=(PAD_PIXEL,) * 3)
  return padded, Letterbox((factor, factor), (left, top))


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


def predict_bottomup(predictor: predictor_lib.Predictor, image: np.ndarray,
                     height: int = DEFAULT_HEIGHT, **decode_options
                     ) -> tuple[np.ndarray, np.ndarray]:
  """RGB image [H, W, 3] uint8 -> (people [P, 18, 3] (x, y image pixels, score), person scores [P]).

  OpenPose-18 order; a keypoint not found is (-1, -1, 0). `decode_options`
  go to `paf.decode` (thresholds, upsampling).
  """
  network_input, placement = letterbox(image, height, predictor.input_multiple,
                                       predictor.input_size)
  heatmaps, pafs = predictor_lib.last_maps(predictor(network_input[None]))
  stride = network_input.shape[1] // heatmaps.shape[2]
  return people_in_image(heatmaps[0], pafs[0], placement, stride, **decode_options)


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
