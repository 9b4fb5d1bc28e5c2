"""Keypoint sets as plain data: names, flip pairs, limbs and OKS sigmas.

A `Skeleton` is a frozen description of one keypoint layout. Codecs, losses,
augmentation and drawing take the fields they need from it; nothing here
computes anything.

Sources of the numbers:
- COCO-17: the person category of the COCO 2017 keypoint annotations (names and
  1-based `skeleton` of the JSON, here 0-based) and the per-keypoint sigmas of
  the COCO keypoint evaluation (pycocotools `COCOeval`).
- MPII-16: the joint ids of the MPII Human Pose annotations.
- OpenPose-18: the layout of Lightweight OpenPose / the original COCO OpenPose
  model (COCO's 17 keypoints reordered, plus a neck at the shoulders' midpoint),
  with its 19 limbs in the order of the 38 PAF channels.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """One keypoint layout.

  Attributes:
    name: short identifier, e.g. 'coco'.
    keypoint_names: one name per keypoint, in channel order.
    flip_pairs: (left, right) index pairs swapped by a horizontal flip.
    limbs: (a, b) index pairs drawn as bones; for bottom-up layouts also the
      part affinity fields, in PAF channel order (limb i -> channels 2i, 2i+1).
    sigmas: per-keypoint OKS sigmas, or None where the layout has none.
  """
  name: str
  keypoint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  limbs: tuple[tuple[int, int], ...]
  sigmas: tuple[float, ...] | None = None

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  def flip_permutation(self) -> np.ndarray:
    """[J] int array: index of each keypoint's mirror image (itself if none)."""
    perm = np.arange(self.num_keypoints)
    for left, right in self.flip_pairs:
      perm[left], perm[right] = right, left
    return perm


COCO = Skeleton(
    name='coco',
    keypoint_names=(
        'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
        'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
        'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
        'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14),
                (15, 16)),
    limbs=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12),
           (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2),
           (1, 3), (2, 4), (3, 5), (4, 6)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
            0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)

MPII = Skeleton(
    name='mpii',
    keypoint_names=(
        'right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee',
        'left_ankle', 'pelvis', 'thorax', 'upper_neck', 'head_top',
        'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder',
        'left_elbow', 'left_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8),
           (8, 9), (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15)),
)

# Indices of MPII's joints that PCKh leaves out of its mean.
MPII_PELVIS, MPII_THORAX, MPII_HEAD_TOP = 6, 7, 9

OPENPOSE = Skeleton(
    name='openpose',
    keypoint_names=(
        'nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist',
        'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip', 'right_knee',
        'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'right_eye',
        'left_eye', 'right_ear', 'left_ear'),
    flip_pairs=((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15),
                (16, 17)),
    # The order of the 19 PAFs of the published Lightweight OpenPose model.
    limbs=((1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2),
           (2, 3), (3, 4), (2, 16), (1, 5), (5, 6), (6, 7), (5, 17), (1, 0),
           (0, 14), (0, 15), (14, 16), (15, 17)),
    # COCO's sigmas moved to this order; the neck takes the shoulders' 0.079.
    sigmas=(0.026, 0.079, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107,
            0.087, 0.089, 0.107, 0.087, 0.089, 0.025, 0.025, 0.035, 0.035),
)

# OPENPOSE keypoint i is COCO keypoint OPENPOSE_FROM_COCO[i]; -1 is the neck,
# which COCO lacks and which is made from both shoulders.
OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1,
                      4, 3)
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER = 5, 6
OPENPOSE_NECK = 1
# COCO's category id of people, in annotations, detections and keypoint results.
COCO_PERSON_CATEGORY_ID = 1


def openpose_from_coco(keypoints: np.ndarray,
                       visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """COCO-17 keypoints -> OpenPose-18 keypoints.

  Args:
    keypoints: [..., 17, 2] (x, y) in COCO order.
    visible: [..., 17] visibility (0 absent, > 0 annotated).

  Returns:
    ([..., 18, 2], [..., 18]): reordered keypoints with the neck at the
    shoulders' midpoint, visible only where both shoulders are.
  """
  keypoints = np.asarray(keypoints)
  visible = np.asarray(visible)
  if keypoints.shape[-2:] != (COCO.num_keypoints, 2):
    raise ValueError(f'keypoints: expected shape [..., 17, 2], got {keypoints.shape}')
  if visible.shape != keypoints.shape[:-1]:
    raise ValueError(f'visible: expected shape {keypoints.shape[:-1]}, got {visible.shape}')
  index = np.array([max(i, 0) for i in OPENPOSE_FROM_COCO])
  out_xy = keypoints[..., index, :].copy()
  out_vis = visible[..., index].copy()
  left = keypoints[..., COCO_LEFT_SHOULDER, :]
  right = keypoints[..., COCO_RIGHT_SHOULDER, :]
  out_xy[..., OPENPOSE_NECK, :] = (left + right) / 2
  out_vis[..., OPENPOSE_NECK] = np.minimum(visible[..., COCO_LEFT_SHOULDER],
                                           visible[..., COCO_RIGHT_SHOULDER])
  return out_xy, out_vis


def coco_from_openpose(keypoints: np.ndarray) -> np.ndarray:
  """[..., 18, C] OpenPose-order values -> [..., 17, C] in COCO order (neck dropped)."""
  keypoints = np.asarray(keypoints)
  out = np.empty(keypoints.shape[:-2] + (COCO.num_keypoints,) + keypoints.shape[-1:],
                 keypoints.dtype)
  for openpose_index, coco_index in enumerate(OPENPOSE_FROM_COCO):
    if coco_index >= 0:
      out[..., coco_index, :] = keypoints[..., openpose_index, :]
  return out
