"""mmpose's top-down COCO protocol: its box, crop, shifted flip test, MSRA decoding, rescoring and OKS-NMS.

mmpose evaluates its top-down heatmap checkpoints on COCO with detected
people (e.g. hourglass52 at 256x256, AP 0.726 with the AP_H_56 person
detections) by the steps below; a converted checkpoint run through them
scores what mmpose reports. Each step and the mmpose file it follows
(open-mmlab/mmpose, 1.x layout, read at commit
072211e6660664373599e5d262f56c5d190bc79a):

- detections (`datasets/datasets/base/base_coco_style_dataset.py`): every
  person detection of the file (no score threshold unless the config sets
  `bbox_score_thr`, which the hourglass config does not), the box and its
  score as float32;
- centre and scale (`datasets/transforms/common_transforms.py`
  GetBBoxCenterScale, `structures/bbox/transforms.py` bbox_xyxy2cs; then
  `datasets/transforms/topdown_transforms.py` TopdownAffine's aspect-ratio
  fix): the box as corners (x + w, y + h in float32), their midpoint, their
  extent x 1.25, the shorter side then widened to the input's aspect ratio;
  all float32. `geometry.box_to_center_scale` gives the same numbers in
  float64;
- crop (TopdownAffine, `structures/bbox/transforms.py` get_warp_matrix):
  the affine map solved by cv2.getAffineTransform from three float32 point
  pairs (centre -> (W/2, H/2), centre - (scale_w/2, 0) -> (0, H/2), and the
  point at right angles), cv2.warpAffine bilinear, black outside. The scaled
  box spans the input [0, W] exactly, as jaxpose's `geometry.crop_matrix`;
- flip test (`models/pose_estimators/topdown.py` predict,
  `models/heads/heatmap_heads/cpm_head.py` predict, `models/utils/tta.py`
  flip_heatmaps, shift_heatmap=True): the crop mirrored as is (x -> W - 1 -
  x), its heatmaps reversed along x, left and right swapped, moved one
  heatmap pixel right (the first column keeps its value), then averaged with
  the crop's;
- decoding (`codecs/msra_heatmap.py` decode, `codecs/utils/post_processing.py`
  get_heatmap_maximum, `codecs/utils/refinement.py` refine_keypoints): the
  first maximum, (-1, -1) where it is not positive; a quarter pixel towards
  the higher neighbour along x where 2 <= x <= w - 2 and 1 <= y, along y
  where 2 <= y <= h - 2 and 1 <= x, each axis on its own; times the stride
  (input size / heatmap size) to input pixels; the maximum is the score;
- back to the image (`models/pose_estimators/topdown.py`
  add_pred_to_datasample): p / input size x scale + centre - scale / 2,
  computed in float64, kept as float32;
- rescoring (`evaluation/metrics/coco_metric.py` CocoMetric, score_mode
  'bbox_keypoint', keypoint_score_thr 0.2): box score x mean keypoint score
  above 0.2, i.e. `metrics.oks.person_scores`;
- OKS-NMS (CocoMetric nms_mode 'oks_nms', nms_thr 0.9;
  `evaluation/functional/nms.py` oks_nms, oks_iou with vis_thr None): greedy
  by score, dropping people whose OKS with a kept one exceeds 0.9, all
  keypoints counted, the dataset's sigmas, normalised by the mean of the two
  people's areas, where an area is the crop's: the product of the padded,
  aspect-fixed scale (not the box's w x h). See `oks_nms_mmpose` for why
  `metrics.oks.oks_nms` is not used;
- results (CocoMetric results2json): the kept people, best first, each with
  its detection box as 'bbox' (x, y and the float32 corners' differences).
  That entry makes pycocotools' and xtcocotools' loadRes take the box's
  w x h as the result's area, which decides the medium / large ranges (APm,
  APl, ARm, ARl), where a result without it gets its keypoints' extent.

Where it differs from jaxpose's own protocol (`jaxpose_topdown`): the mirrored crop
and the one-pixel heatmap shift (jaxpose mirrors about x = (W - stride) / 2
and needs no shift); the per-axis border rule and (-1, -1) for a
non-positive map (jaxpose: both axes or neither, and (0, 0)); float32 box
arithmetic; the NMS area and tie order; the results' 'bbox'.
"""

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from jaxpose import skeletons
from jaxpose.approaches import records
from jaxpose.data import geometry
from jaxpose.metrics import coco_ap, oks as oks_lib

# Pixels [P, h, w, 3] -> heatmaps [P, h', w', J].
HeatmapsFn = Callable[[np.ndarray], np.ndarray]
NAME = 'mmpose_topdown'
APPROACH = 'top-down'
PADDING = 1.25  # GetBBoxCenterScale's default
KEYPOINT_SCORE_THRESHOLD = 0.2  # CocoMetric's keypoint_score_thr
NMS_THRESHOLD = 0.9  # CocoMetric's nms_thr


def boxes_to_center_scale(boxes_xywh: np.ndarray, aspect_ratio: float,
                          padding: float = PADDING) -> tuple[np.ndarray, np.ndarray]:
  """Boxes [P, 4] (x, y, w, h) -> (centres [P, 2], scales [P, 2] (w, h) pixels), float32.

  The scale is the box x `padding`, its shorter side then widened to
  `aspect_ratio` (input width / height).
  """
  boxes = np.asarray(boxes_xywh, np.float32).reshape(-1, 4)
  # mmpose goes through the corners in float32: the width is (x + w) - x,
  # which is not always w.
  low, high = boxes[:, :2], boxes[:, :2] + boxes[:, 2:]
  centers = (high + low) * 0.5
  size = (high - low) * float(padding)
  # Python floats keep the arithmetic in float32, as upstream's.
  aspect_ratio = float(aspect_ratio)
  width, height = size[:, 0], size[:, 1]
  wide = width > height * aspect_ratio
  scales = np.stack([np.where(wide, width, height * aspect_ratio),
                     np.where(wide, width / aspect_ratio, height)], axis=-1)
  return centers, scales.astype(np.float32)


def warp_matrices(centers: np.ndarray, scales: np.ndarray,
                  input_size: tuple[int, int]) -> np.ndarray:
  """Centres [P, 2], scales [P, 2] (float32) -> [P, 2, 3] image -> input matrices, as mmpose solves them.

  Solved from the same float32 points as mmpose, so that cv2's fixed-point
  warp samples the very same pixels.
  """
  width, height = input_size
  source = np.zeros((len(centers), 3, 2), np.float32)
  source[:, 0] = centers
  # The left end of the box's middle row; the sum is exact in float64 and
  # rounded once to float32, as upstream's assignment into a float32 array.
  source[:, 1, 0] = centers[:, 0].astype(np.float64) - scales[:, 0].astype(np.float64) * 0.5
  source[:, 1, 1] = centers[:, 1]
  # The third point: the first turned 90 degrees about the second (float32).
  offset = source[:, 0] - source[:, 1]
  source[:, 2, 0] = source[:, 1, 0] - offset[:, 1]
  source[:, 2, 1] = source[:, 1, 1] + offset[:, 0]
  target = np.array([[width / 2, height / 2], [0, height / 2], [0, height / 2 + width / 2]],
                    np.float32)
  return np.array([cv2.getAffineTransform(points, target) for points in source]
                  ).reshape(-1, 2, 3)


def warp_people(image: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                input_size: tuple[int, int]) -> np.ndarray:
  """Image [H, W, C], centres [P, 2], scales [P, 2] -> crops [P, h, w, C] of the image's dtype."""
  image = np.asarray(image)
  width, height = input_size
  crops = np.zeros((len(centers), height, width, image.shape[-1]), image.dtype)
  for p, matrix in enumerate(warp_matrices(centers, scales, input_size)):
    crops[p] = geometry.warp(image, matrix, (width, height)).reshape(crops[p].shape)
  return crops


def _heatmaps(heatmaps_fn: HeatmapsFn, pixels: np.ndarray, joints: int) -> np.ndarray:
  """Runs the network on pixels [P, h, w, 3]; checks it gave [P, h', w', joints]."""
  heatmaps = np.asarray(heatmaps_fn(np.ascontiguousarray(pixels)), np.float32)
  if heatmaps.ndim != 4 or heatmaps.shape[0] != len(pixels) or heatmaps.shape[-1] != joints:
    raise ValueError(f'mmpose protocol: heatmaps_fn gave shape {heatmaps.shape} for '
                     f'{pixels.shape}; expected [P, h, w, {joints}] with P = {len(pixels)}')
  return heatmaps


def flip_test_heatmaps_mmpose(heatmaps_fn: HeatmapsFn, crops: np.ndarray,
                              flip_permutation: np.ndarray) -> np.ndarray:
  """Crops [P, h, w, 3] -> heatmaps [P, h', w', J]: the crops' averaged with their mirror images', shifted.

  The mirror image's heatmaps are reversed along x, their channels swapped
  by `flip_permutation` ([J]) and moved one heatmap pixel right, column 0
  keeping its own value (mmpose's shift_heatmap).
  """
  pixels = np.asarray(crops, np.float32)
  heatmaps = _heatmaps(heatmaps_fn, pixels, len(flip_permutation))
  mirrored = _heatmaps(heatmaps_fn, pixels[:, :, ::-1], len(flip_permutation))
  back = mirrored[:, :, ::-1][..., flip_permutation]
  shifted = np.concatenate([back[:, :, :1], back[:, :, :-1]], axis=2)
  return (heatmaps + shifted) * np.float32(0.5)


def decode_msra(heatmaps: np.ndarray, input_size: tuple[int, int]
                ) -> tuple[np.ndarray, np.ndarray]:
  """Heatmaps [P, h, w, J] -> (keypoints [P, J, 2] input pixels, scores [P, J]), float32.

  The first maximum of each map ((-1, -1) where it is not positive), a
  quarter pixel towards the higher neighbour along each axis by mmpose's
  border rule (module docstring), times input size / heatmap size.
  """
  maps = np.asarray(heatmaps, np.float32)
  people, height, width, joints = maps.shape
  flat = maps.transpose(0, 3, 1, 2).reshape(people, joints, height * width)
  index = flat.argmax(-1)
  scores = np.take_along_axis(flat, index[..., None], -1)[..., 0]
  y, x = np.divmod(index, width)
  x = np.where(scores > 0, x, -1)
  y = np.where(scores > 0, y, -1)
  # Upstream's conditions: each axis needs a neighbour on both sides along
  # itself (2 <= v <= size - 2, so the outer two pixels are not moved) and
  # only 1 <= across the other axis.
  along_x = (x > 1) & (x < width - 1) & (y > 0) & (y < height)
  along_y = (y > 1) & (y < height - 1) & (x > 0) & (x < width)
  person, joint = np.indices(x.shape)

  def at(row, col):
    return maps[person, np.clip(row, 0, height - 1), np.clip(col, 0, width - 1), joint]

  dx = np.where(along_x, at(y, x + 1) - at(y, x - 1), 0)
  dy = np.where(along_y, at(y + 1, x) - at(y - 1, x), 0)
  keypoints = np.stack([x, y], -1).astype(np.float32)
  keypoints += np.sign(np.stack([dx, dy], -1)).astype(np.float32) * np.float32(0.25)
  stride = (np.asarray(input_size, np.float64) / (width, height)).astype(np.float32)
  return keypoints * stride, scores


def keypoints_in_image(keypoints: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                       input_size: tuple[int, int]) -> np.ndarray:
  """Keypoints [P, J, 2] input pixels, centres and scales [P, 2] -> [P, J, 2] image pixels, float32."""
  centers = np.asarray(centers, np.float64)[:, None]
  scales = np.asarray(scales, np.float64)[:, None]
  size = np.asarray(input_size, np.float64)
  # Upstream's order of operations, in float64, stored as float32.
  image = np.asarray(keypoints, np.float64) / size * scales + centers - 0.5 * scales
  return image.astype(np.float32)


def predict_mmpose(heatmaps_fn: HeatmapsFn, image: np.ndarray, boxes_xywh: np.ndarray,
                   input_size: tuple[int, int], flip_permutation: np.ndarray,
                   flip_test: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3] RGB, boxes [P, 4] (x, y, w, h) -> (keypoints [P, J, 2] image pixels, scores [P, J]).

  `heatmaps_fn` gets the crops as float32 RGB pixels 0-255 (jaxpose's models
  normalise inside); `input_size` is (width, height); `flip_permutation`
  ([J]) is the skeleton's and also gives J.
  """
  width, height = (int(s) for s in input_size)
  centers, scales = boxes_to_center_scale(boxes_xywh, width / height)
  joints = len(flip_permutation)
  if not len(centers):
    return np.zeros((0, joints, 2), np.float32), np.zeros((0, joints), np.float32)
  crops = warp_people(image, centers, scales, (width, height))
  if flip_test:
    heatmaps = flip_test_heatmaps_mmpose(heatmaps_fn, crops, flip_permutation)
  else:
    heatmaps = _heatmaps(heatmaps_fn, crops.astype(np.float32), joints)
  keypoints, scores = decode_msra(heatmaps, (width, height))
  return keypoints_in_image(keypoints, centers, scales, (width, height)), scores


def crop_areas(boxes_xywh: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
  """Boxes [P, 4] -> [P] float32: the areas mmpose's OKS-NMS uses, the crops' (padded, aspect-fixed) scale w x h."""
  _, scales = boxes_to_center_scale(boxes_xywh, input_size[0] / input_size[1])
  return scales[:, 0] * scales[:, 1]


def oks_nms_mmpose(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray,
                   threshold: float = NMS_THRESHOLD,
                   sigmas: Sequence[float] = skeletons.COCO.sigmas) -> np.ndarray:
  """One image's people: keypoints [P, J, 2], scores [P], areas [P] -> kept indices [K], best first.

  The OKS is `metrics.oks.oks` (every keypoint counted, normalised by the
  mean of the two areas), but `metrics.oks.oks_nms` is not mmpose's: mmpose
  visits people in the order of `argsort(scores)[::-1]` on float32 scores,
  so of equal scores (e.g. the zeros of people without a keypoint above 0.2)
  the later one comes first, where oks_nms takes the earlier; and it
  compares the OKS as float32 with the threshold. Both are done here.
  """
  keypoints = np.asarray(keypoints, np.float64)
  areas = np.asarray(areas, np.float64)
  everywhere = np.ones(keypoints.shape[:2])
  pair_areas = (areas[:, None] + areas[None, :]) / 2
  similarity = oks_lib.oks(keypoints, everywhere, keypoints, everywhere, pair_areas, sigmas,
                           score_threshold=0.0).astype(np.float32)
  remaining = np.argsort(np.asarray(scores, np.float32))[::-1]
  kept = []
  while len(remaining):
    kept.append(remaining[0])
    remaining = remaining[1:][similarity[remaining[0], remaining[1:]] <= threshold]
  return np.array(kept, np.int64)


def coco_rescore_and_nms(keypoints: np.ndarray, keypoint_scores: np.ndarray,
                         box_scores: np.ndarray, areas: np.ndarray,
                         keypoint_score_threshold: float = KEYPOINT_SCORE_THRESHOLD,
                         nms_threshold: float = NMS_THRESHOLD,
                         sigmas: Sequence[float] = skeletons.COCO.sigmas
                         ) -> tuple[np.ndarray, np.ndarray]:
  """One image's people: keypoints [P, J, 2], keypoint scores [P, J], box scores [P], areas [P] -> (kept [K], scores [P]).

  CocoMetric's score_mode 'bbox_keypoint' (box score, as float32, x the mean
  keypoint score above the threshold) and its OKS-NMS on those scores;
  `areas` are `crop_areas`. Scores are float32, as mmpose writes them.
  """
  box_scores = np.asarray(box_scores, np.float32)
  scores = oks_lib.person_scores(box_scores, np.asarray(keypoint_scores, np.float32),
                                 keypoint_score_threshold).astype(np.float32)
  return oks_nms_mmpose(keypoints, scores, areas, nms_threshold, sigmas), scores


def image_results(heatmaps_fn: HeatmapsFn, image: np.ndarray, image_id: int,
                  boxes_xywh: np.ndarray, box_scores: np.ndarray,
                  input_size: tuple[int, int] = (256, 256),
                  skeleton: skeletons.Skeleton = skeletons.COCO,
                  flip_test: bool = True) -> tuple[list[dict], np.ndarray]:
  """One image and its detections -> (its COCO keypoint results as CocoMetric writes them, best first; kept box indices).

  Each result carries its detection box as 'bbox', whose w x h COCOeval
  takes as the result's area (module docstring).
  """
  boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
  keypoints, keypoint_scores = predict_mmpose(heatmaps_fn, image, boxes, input_size,
                                              skeleton.flip_permutation(), flip_test)
  kept, scores = coco_rescore_and_nms(keypoints, keypoint_scores, box_scores,
                                      crop_areas(boxes, input_size), sigmas=skeleton.sigmas)
  results = coco_ap.coco_results(np.full(len(kept), image_id), keypoints[kept],
                                 keypoint_scores[kept], scores[kept])
  # mmpose's box: float32 corners back to a width and height.
  corners = np.asarray(boxes[kept], np.float32)
  corners[:, 2:] += corners[:, :2]
  for result, low, high in zip(results, corners[:, :2], corners[:, 2:]):
    result['bbox'] = np.concatenate([low, high - low]).tolist()
  return results, kept


# --- the protocol's interface (`approaches.protocols.TopDownProtocol`) ------------

def _no_dark(options: records.Options) -> None:
  if options.dark_kernel is not None:
    raise ValueError(f"--dark_kernel: DARK is an option of jaxpose_topdown, not of {NAME}")


def predict(heatmaps_fn: HeatmapsFn, image: np.ndarray, boxes: np.ndarray,
            input_size: tuple[int, int], skeleton: skeletons.Skeleton,
            options: records.Options) -> tuple[np.ndarray, np.ndarray]:
  """Image [H, W, 3], boxes [P, 4] (x, y, w, h) -> (keypoints [P, J, 2] image pixels, scores [P, J])."""
  _no_dark(options)
  return predict_mmpose(heatmaps_fn, image, boxes, input_size, skeleton.flip_permutation(),
                        options.flip_test)


def coco_results(heatmaps_fn: HeatmapsFn, image: np.ndarray, image_id: int, boxes: np.ndarray,
                 box_scores: np.ndarray, input_size: tuple[int, int],
                 skeleton: skeletons.Skeleton, options: records.Options, detected: bool
                 ) -> list[dict]:
  """One COCO image and its person boxes -> CocoMetric's results (its rescoring and OKS-NMS, on any boxes)."""
  del detected  # CocoMetric suppresses on ground-truth boxes too
  _no_dark(options)
  return image_results(heatmaps_fn, image, image_id, boxes, box_scores, input_size, skeleton,
                       options.flip_test)[0]


def mpii_keypoints(heatmaps_fn, image, record, input_size, skeleton, options):
  """Not reproduced: mmpose's MPII evaluation is not one of jaxpose's protocols."""
  del heatmaps_fn, image, record, input_size, skeleton, options
  raise ValueError(f'--protocol {NAME} reproduces mmpose\'s COCO evaluation; for MPII use '
                   'jaxpose_topdown or bearpaw_mpii')
