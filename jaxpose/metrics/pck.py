"""Distance-based keypoint accuracy: PCK and MPII's PCKh.

- `pck_counts`: the seed's accuracy in heatmap pixels, summed on the device
  during training.
- `pckh`, `pckh_summary`: the MPII protocol (head-normalised distances), on
  the host in numpy.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeletons

# The seed's `accuracy`: a joint is correct within 0.5 of a normaliser of
# heatmap_size / 10, i.e. within 5% of the heatmap's width.
PCK_THRESHOLD = 0.5
PCK_NORMALIZER_FRACTION = 0.1


def pck_counts(predicted: jax.Array, target: jax.Array, visible: jax.Array,
               normalizer: jax.Array | float,
               threshold: float = PCK_THRESHOLD) -> tuple[jax.Array, jax.Array]:
  """Predicted, target [..., J, 2], visible [..., J] -> (correct [J], counted [J]) summed over leading dims.

  A visible joint is correct when ||predicted - target|| / normalizer <
  threshold; `normalizer` is a scalar or [...] per example. Returning counts
  rather than a ratio lets devices and batches be summed exactly.
  """
  distance = jnp.linalg.norm(predicted - target, axis=-1)
  normalizer = jnp.asarray(normalizer, jnp.float32)
  if normalizer.ndim:
    normalizer = normalizer[..., None]
  counted = (visible > 0).astype(jnp.float32)
  correct = (distance / normalizer < threshold) * counted
  batch_axes = tuple(range(correct.ndim - 1))
  return correct.sum(axis=batch_axes), counted.sum(axis=batch_axes)


# --- MPII PCKh ---------------------------------------------------------------

# The official MPII evaluation (`util_get_head_size.m`: "SC_BIAS = 0.6; %
# 0.8*0.75") measures a person's head as 0.6 x the diagonal of the annotated
# head box; HRNet and mmpose use the same factor.
MPII_HEAD_SIZE_FRACTION = 0.6
PCKH_THRESHOLD = 0.5
# The stricter threshold that MPII tables print as "Mean@0.1" / "PCKh@0.1".
PCKH_STRICT_THRESHOLD = 0.1
MPII_NUM_JOINTS = skeletons.MPII.num_keypoints


def _mpii_joints(*names: str) -> tuple[int, ...]:
  return tuple(skeletons.MPII.keypoint_names.index(name) for name in names)


# The columns of MPII tables: each is the plain average of its joints' PCKh.
# "Head" is the head top alone; the upper neck appears only in the mean.
MPII_JOINT_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ('Head', (skeletons.MPII_HEAD_TOP,)),
    ('Shoulder', _mpii_joints('left_shoulder', 'right_shoulder')),
    ('Elbow', _mpii_joints('left_elbow', 'right_elbow')),
    ('Wrist', _mpii_joints('left_wrist', 'right_wrist')),
    ('Hip', _mpii_joints('left_hip', 'right_hip')),
    ('Knee', _mpii_joints('left_knee', 'right_knee')),
    ('Ankle', _mpii_joints('left_ankle', 'right_ankle')),
)
# Pelvis and thorax are left out of the mean, as in the official evaluation
# (which scores 14 joints) and in HRNet and mmpose (which mask joints 6 and 7).
MPII_JOINTS_IN_MEAN = tuple(
    j for j in range(MPII_NUM_JOINTS) if j not in (skeletons.MPII_PELVIS, skeletons.MPII_THORAX))


@dataclasses.dataclass(frozen=True)
class PCKhResult:
  """MPII PCKh at one threshold, in percent (as MPII tables print it).

  Attributes:
    threshold: a joint is correct within this fraction of its person's head size.
    per_joint: [16] percentage of each joint's visible ground truth that is
      correct; NaN for a joint with no visible ground truth.
    counts: [16] int, visible ground-truth joints per joint (the mean's weights).
    mean: the mean of `per_joint` over the 14 joints other than pelvis and
      thorax, each weighted by its count; that is, the percentage of all their
      visible joints that are correct (HRNet's and mmpose's "Mean"). NaN if
      there are none.
    mean_of_joints: the plain mean of `per_joint` over the same 14 joints:
      the "Mean" of bearpaw/pytorch-pose's `evaluation/eval_PCKh.py`, the
      column of its published 86.95 (2 stacks) and 88.78 (8 stacks). NaN
      where a joint has no visible ground truth.
  """
  threshold: float
  per_joint: np.ndarray
  counts: np.ndarray
  mean: float
  mean_of_joints: float = float('nan')

  def grouped(self) -> dict[str, float]:
    """-> {'Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Mean'}: percentages."""
    columns = {name: float(np.mean(self.per_joint[list(joints)]))
               for name, joints in MPII_JOINT_GROUPS}
    columns['Mean'] = self.mean
    columns['MeanOfJoints'] = self.mean_of_joints
    return columns


def mpii_head_sizes(head_boxes: np.ndarray) -> np.ndarray:
  """Head boxes [N, 4] (x1, y1, x2, y2) -> head sizes [N]: 0.6 x each box's diagonal."""
  boxes = np.asarray(head_boxes, np.float64)
  return MPII_HEAD_SIZE_FRACTION * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=-1)


def _check_pckh_inputs(predicted: np.ndarray, target: np.ndarray, visible: np.ndarray,
                       head_boxes: np.ndarray) -> None:
  """Raises ValueError unless the shapes are [N, 16, 2], [N, 16, 2], [N, 16], [N, 4]."""
  num_people = target.shape[0] if target.ndim else 0
  expected = {'predicted': (predicted, (num_people, MPII_NUM_JOINTS, 2)),
              'target': (target, (num_people, MPII_NUM_JOINTS, 2)),
              'visible': (visible, (num_people, MPII_NUM_JOINTS)),
              'head_boxes': (head_boxes, (num_people, 4))}
  for name, (array, shape) in expected.items():
    if array.shape != shape:
      raise ValueError(f'pckh: {name} has shape {array.shape}; expected {shape} '
                       f'(N people, {MPII_NUM_JOINTS} MPII joints)')


def pckh(predicted: np.ndarray, target: np.ndarray, visible: np.ndarray,
         head_boxes: np.ndarray, threshold: float = PCKH_THRESHOLD,
         strict: bool = False) -> PCKhResult:
  """Predicted, target [N, 16, 2], visible [N, 16], head boxes [N, 4] -> MPII PCKh at `threshold`.

  The protocol of the official MPII evaluation (`evaluatePCKh.m`), as ported to
  Python by HRNet (`MPIIDataset.evaluate`) and mmpose (`MpiiPCKAccuracy`):

  - head size = 0.6 x the Euclidean length of the head box's diagonal;
  - a visible joint is correct when ||predicted - target|| / head size <=
    threshold: `<=` as in the official `computePCK.m` and HRNet (mmpose's
    `keypoint_pck_accuracy` and bearpaw's `eval_PCKh.py` use `<`, `strict`
    here, which differs only for distances of exactly the threshold: rare,
    but bearpaw's whole-pixel predictions meet integer ground truth);
  - per joint: the percentage of its visible ground truth that is correct;
  - mean: over all joints but pelvis (6) and thorax (7), weighted by each
    joint's count of visible ground truth, i.e. correct / visible pooled over
    those 14 joints (HRNet's `np.sum(PCKh * jnt_ratio)`).

  Coordinates may be in any frame shared by all three inputs. (HRNet adds 1 to
  its 0-based predictions because MPII's .mat ground truth is 1-based; a
  common shift changes no distance.) `visible` marks the annotated joints
  (MPII's `joints_vis`, 1 - `jnt_missing`), not the occlusion flag.

  Raises:
    ValueError: on shapes other than the above, or a person with visible joints
      whose head box has no positive size.
  """
  predicted = np.asarray(predicted, np.float64)
  target = np.asarray(target, np.float64)
  visible = np.asarray(visible)
  head_boxes = np.asarray(head_boxes, np.float64)
  _check_pckh_inputs(predicted, target, visible, head_boxes)
  counted = visible > 0
  head_sizes = mpii_head_sizes(head_boxes)
  unmeasurable = np.flatnonzero(counted.any(axis=-1) & ~(head_sizes > 0))
  if unmeasurable.size:
    raise ValueError(f'pckh: head_boxes of people {unmeasurable[:10].tolist()} have no '
                     'positive size, but those people have visible joints')
  # Divide by 1 for people without visible joints, whose distances are not counted.
  head_sizes = np.where(head_sizes > 0, head_sizes, 1.0)
  distances = np.linalg.norm(predicted - target, axis=-1) / head_sizes[:, None]
  within = np.less if strict else np.less_equal
  correct = within(distances, threshold) & counted  # a NaN prediction is never correct
  counts = counted.sum(axis=0)
  correct_counts = correct.sum(axis=0)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_joint = 100.0 * correct_counts / counts
  in_mean = list(MPII_JOINTS_IN_MEAN)
  total = counts[in_mean].sum()
  mean = 100.0 * correct_counts[in_mean].sum() / total if total else float('nan')
  return PCKhResult(threshold=float(threshold), per_joint=per_joint, counts=counts,
                    mean=float(mean), mean_of_joints=float(np.mean(per_joint[in_mean])))


def pckh_summary(predicted: np.ndarray, target: np.ndarray, visible: np.ndarray,
                 head_boxes: np.ndarray, strict: bool = False) -> dict[str, float]:
  """Predicted, target [N, 16, 2], visible [N, 16], head boxes [N, 4] -> the row of an MPII table.

  Keys 'Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle', 'Mean'
  (count-weighted, HRNet's) and 'MeanOfJoints' (plain, bearpaw's
  `eval_PCKh.py`) are PCKh@0.5 (`PCKhResult.grouped`); 'Mean@0.1' is the mean at threshold
  0.1, as mmpose computes it. (HRNet's printed 'Mean@0.1' takes row 11 of
  `np.arange(0, 0.51, 0.01)`, i.e. threshold 0.11; call
  `pckh(..., threshold=0.11).mean` to reproduce it.) All in percent.
  `strict`: correct below, not at, the threshold (`pckh`).
  """
  row = pckh(predicted, target, visible, head_boxes, PCKH_THRESHOLD, strict).grouped()
  row['Mean@0.1'] = pckh(predicted, target, visible, head_boxes, PCKH_STRICT_THRESHOLD,
                         strict).mean
  return row
