"""jaxpose's own top-down protocol: crops with padding, an exact flip test, sub-pixel (or DARK) decoding, rescoring.

The protocol of models trained here (the default of every top-down `arch` in
the table of `approaches.protocols`); it reproduces no published procedure
but follows SimpleBaseline's and HRNet's steps with one change, the flip
test below. Pure functions of numpy arrays around a model given as a callable
`heatmaps_fn(images uint8 [B, h, w, 3]) -> heatmaps [B, h', w', J]` (the last
stack's output):

  crops, matrices = crop_people(image, boxes, input_size)
  heatmaps = flip_test_heatmaps(heatmaps_fn, crops, flip_permutation)
  keypoints, scores = keypoints_in_image(heatmaps, matrices, input_size)

What it sets: the crop (each box enlarged by `geometry.BOX_PADDING` to the
input's aspect ratio), the flip test (below), the decoding (`heatmap.decode`:
argmax and quarter-pixel shift, or DARK with `Options.dark_kernel`), person
scores (`oks.person_scores`), OKS-NMS of detected boxes, and PCKh at <= 0.5
on MPII with the boxes HRNet's files give.

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

import numpy as np

from jaxpose import skeletons
from jaxpose.approaches import records
from jaxpose.codecs import heatmap
from jaxpose.data import geometry
from jaxpose.metrics import coco_ap, oks as oks_lib

NAME = 'jaxpose_topdown'
APPROACH = 'top-down'
PCKH_STRICT = False  # a joint counts within half the head size, inclusive

HeatmapsFn = Callable[[np.ndarray], np.ndarray]


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



# --- the protocol's interface (`approaches.protocols.TopDownProtocol`) ------------

def predict(heatmaps_fn: HeatmapsFn, image: np.ndarray, boxes: np.ndarray,
            input_size: tuple[int, int], skeleton: skeletons.Skeleton,
            options: records.Options) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3], boxes [P, 4] (x, y, w, h) -> (keypoints [P, J, 2] image pixels, scores [P, J])."""
  return predict_topdown(heatmaps_fn, image, boxes, input_size, skeleton.flip_permutation(),
                         options.flip_test, options.dark_kernel)


def coco_results(heatmaps_fn: HeatmapsFn, image: np.ndarray, image_id: int, boxes: np.ndarray,
                 box_scores: np.ndarray, input_size: tuple[int, int],
                 skeleton: skeletons.Skeleton, options: records.Options, detected: bool
                 ) -> list[dict]:
  """One COCO image and its person boxes -> its COCO keypoint results; OKS-NMS when the boxes were `detected`."""
  keypoints, scores = predict(heatmaps_fn, image, boxes, input_size, skeleton, options)
  person_scores = oks_lib.person_scores(np.asarray(box_scores, np.float32), scores)
  if detected:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    kept = oks_lib.oks_nms(keypoints, person_scores, boxes[:, 2] * boxes[:, 3])
    keypoints, scores, person_scores = keypoints[kept], scores[kept], person_scores[kept]
  return coco_ap.coco_results(np.full(len(person_scores), image_id), keypoints, scores,
                              person_scores)


def mpii_keypoints(heatmaps_fn: HeatmapsFn, image: np.ndarray, record,
                   input_size: tuple[int, int], skeleton: skeletons.Skeleton,
                   options: records.Options) -> np.ndarray:
  """One MPII image (`mpii.MpiiRecord`: its people's boxes) -> keypoints [P, J, 2] image pixels."""
  keypoints, _ = predict(heatmaps_fn, image, record.boxes, input_size, skeleton, options)
  return keypoints
