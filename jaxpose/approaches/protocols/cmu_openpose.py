"""CMU OpenPose's bottom-up protocol as its PyTorch port runs it: image -> maps over the image -> people.

The inference of Hzzone/pytorch-openpose's `src/body.py` ("the port", read at
commit 7c983f5ec9b7d3baa97c9b04d216568daa75ca80), which
the published `body_pose_model.pth` is used with, beside Lightweight
OpenPose's demo and val.py protocols (`lightweight_openpose`); the default
protocol of the CMU model (`arch` 'openpose'):

- at each scale s of `scales` (the port's scale_search, [0.5]) the uint8
  image is resized bicubically by 368 s / H (as uint8: cv2 rounds, as it does
  for the port's `cv2.imread` image) and padded on the right and at the
  bottom to a multiple of the stride with the pixel value 128
  (`padRightDownCorner`), which the port's (BGR / 256) - 0.5 makes 0;
- the last stage's maps are upsampled bicubically by the stride, cut to the
  resized image and resized bicubically to the image;
- the port sums them as `heatmap_avg += heatmap_avg + heatmap / n` (so with
  more than one scale, earlier scales' heatmaps count double at each step)
  and `paf_avg += paf / n`; both are kept, in float64, so that its
  published behaviour is what jaxpose reproduces;
- `codecs.paf_body_py.decode` finds the people at the image's resolution.

The port reports peaks at map pixels, which are image pixels (centres at
integers). It has no COCO evaluation: `predict_coco` scores its people as
Lightweight OpenPose's val.py does (+0.5 px, score x (keypoints - 1)).
"""

import cv2
import numpy as np

from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.codecs import paf_body_py

NAME = 'cmu_openpose'
APPROACH = 'bottom-up'

BOX_SIZE = 368  # the port's boxsize: the input height at scale 1
SCALES = (0.5,)  # its scale_search
PAD_PIXEL = 128  # its padValue, 0 after its normalisation
DEFAULT_SCALES = SCALES
DEFAULT_HEIGHT = int(BOX_SIZE * SCALES[0])  # the network input height of its one scale
# Added to the port's keypoints for COCO, as val.py does to its own.
COCO_OFFSET = 0.5


def pad_right_down(image: np.ndarray, multiple: int,
                   size: tuple[int, int] | None = None) -> np.ndarray:
  """Image [h, w, C] -> padded at the bottom and right with PAD_PIXEL to multiples of `multiple`, or to `size` (w, h)."""
  height, width = image.shape[:2]
  if size is None:
    size = (-(-width // multiple) * multiple, -(-height // multiple) * multiple)
  return cv2.copyMakeBorder(image, 0, size[1] - height, 0, size[0] - width,
                            cv2.BORDER_CONSTANT, value=(PAD_PIXEL,) * 3)


def image_maps(maps_fn, image: np.ndarray, scales=SCALES, stride: int = 8,
               input_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """RGB uint8 image [H, W, 3] -> (heatmaps [H, W, 19], pafs [H, W, 38]) float64, the port's averages.

  `maps_fn`: uint8 RGB pixels [1, h, w, 3] -> last-stage (heatmaps [1, h/s,
  w/s, 19], pafs [1, h/s, w/s, 38]). With `input_size` ((width, height) of a
  fixed-size model) the image is scaled to fit inside it, then padded to it;
  `scales` are ignored.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
    raise ValueError(f'body.py protocol: expected a uint8 image [H, W, 3], got {image.dtype} '
                     f'{image.shape}')
  scales = tuple(scales)
  if not scales or min(scales) <= 0:
    raise ValueError(f'body.py protocol: expected one or more positive scales, got {scales}')
  height, width = image.shape[:2]
  if input_size is None:
    factors = [scale * BOX_SIZE / height for scale in scales]
  else:
    factors = [min(input_size[0] / width, input_size[1] / height)]
  heatmap_avg = np.zeros((height, width, 19))
  paf_avg = np.zeros((height, width, 38))
  for factor in factors:
    resized = cv2.resize(image, (0, 0), fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    padded = pad_right_down(resized, stride, input_size)
    heatmaps, pafs = (np.asarray(maps)[0] for maps in maps_fn(padded[None]))
    heatmap, paf = (_to_image(maps, stride, resized.shape[:2], (width, height))
                    for maps in (heatmaps, pafs))
    heatmap_avg += heatmap_avg + heatmap / len(factors)  # the port's sum, kept
    paf_avg += paf / len(factors)
  return heatmap_avg, paf_avg


def _to_image(maps: np.ndarray, stride: int, resized_shape: tuple[int, int],
              image_size: tuple[int, int]) -> np.ndarray:
  """Maps [h, w, C] of a padded input -> [H, W, C] float32 over the image (upsampled, cut, resized)."""
  maps = np.ascontiguousarray(maps, np.float32)
  channels = maps.shape[-1]
  up = cv2.resize(maps, (0, 0), fx=stride, fy=stride, interpolation=cv2.INTER_CUBIC)
  inside = np.ascontiguousarray(up.reshape(up.shape[0], up.shape[1], channels)
                                [:resized_shape[0], :resized_shape[1]])
  resized = cv2.resize(inside, image_size, interpolation=cv2.INTER_CUBIC)
  return resized.reshape(image_size[1], image_size[0], channels)


def predict_body_py(maps_fn, image: np.ndarray, scales=SCALES, stride: int = 8,
            input_size: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """RGB uint8 image [H, W, 3] -> (people [P, 18, 3] (x, y image pixels, score), scores [P]), the port's.

  OpenPose-18 order; a keypoint not found is (-1, -1, 0). float32.
  """
  heatmaps, pafs = image_maps(maps_fn, image, scales, stride, input_size)
  people, scores = paf_body_py.decode(heatmaps, pafs)
  return people.astype(np.float32), scores.astype(np.float32)


def predict_coco(maps_fn, image: np.ndarray, scales=SCALES, stride: int = 8
                 ) -> tuple[np.ndarray, np.ndarray]:
  """As `predict_body_py`, with COCO_OFFSET added to the keypoints found (COCO results' convention)."""
  people, scores = predict_body_py(maps_fn, image, scales, stride)
  found = people[..., 2] > 0
  people[..., :2] = np.where(found[..., None], people[..., :2] + COCO_OFFSET, -1)
  return people, scores


# --- the protocol's interface (`approaches.protocols.BottomUpProtocol`) -----------

def predict(maps_fn, image: np.ndarray, height: int, stride: int, input_multiple: int,
            input_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3] uint8 -> (people [P, 18, 3], person scores [P]): body.py at the scale height / 368."""
  del input_multiple  # the port pads to the stride
  return predict_body_py(maps_fn, image, scales=(height / BOX_SIZE,), stride=stride,
                         input_size=input_size)


def coco_people(maps_fn, image: np.ndarray, scales: tuple[float, ...], stride: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Image uint8 [H, W, 3] -> (COCO keypoints [N, 17, 2], keypoint scores [N, 17], person scores [N]).

  body.py's people, scored as val.py scores them (`predict_coco`).
  """
  people, person_scores = predict_coco(maps_fn, image, scales, stride)
  return lightweight_openpose.coco_keypoints(people, person_scores)
