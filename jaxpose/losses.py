"""Losses: pure functions of arrays, channels last.

- `heatmap_mse`: the seed's `criterion(output, target, target_weight)`, i.e.
  SimpleBaseline/HRNet `JointsMSELoss(use_target_weight=True)`: half the mean
  squared error of weight-masked heatmaps, averaged over joints.
- `intermediate_supervision`: the seed's loss summed over every stack.
- `distillation`: Fast Pose Distillation, each student stack against the
  teacher's last stack and against the ground truth,
  `alpha * kd + (1 - alpha) * gt`.
- `staged_l2`: the masked multi-stage L2 of (Lightweight) OpenPose.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def heatmap_mse(predicted: jax.Array, target: jax.Array, weight: jax.Array) -> jax.Array:
  """Predicted, target [B, H, W, J], weight [B, J] -> scalar visibility-weighted MSE.

  0.5 * mean over batch, pixels and joints of (weight * (predicted - target))^2,
  so a joint with weight 0 contributes nothing but still counts in the mean,
  as upstream.
  """
  difference = (predicted - target) * weight[..., None, None, :]
  return 0.5 * jnp.mean(jnp.square(difference))


def intermediate_supervision(predicted: Sequence[jax.Array], target: jax.Array,
                             weight: jax.Array) -> jax.Array:
  """Per-stack heatmaps, each [B, H, W, J]; target [B, H, W, J]; weight [B, J] -> scalar sum over stacks."""
  return sum(heatmap_mse(p, target, weight) for p in predicted)


def distillation(predicted: Sequence[jax.Array], teacher: jax.Array,
                 target: jax.Array | None, weight: jax.Array,
                 alpha: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Student stacks [B, H, W, J] each, teacher's last stack [B, H, W, J] -> (total, kd, gt).

  kd = sum over student stacks of heatmap_mse(stack, teacher, weight);
  gt = the same against `target`; total = alpha * kd + (1 - alpha) * gt.
  With `target=None` (unlabelled images) gt is 0 and total = kd: the teacher
  is the only supervision, as Fast Pose Distillation trains on extra data.
  `teacher` is treated as a constant (no gradient flows into it).
  """
  teacher = jax.lax.stop_gradient(teacher)
  kd = intermediate_supervision(predicted, teacher, weight)
  if target is None:
    return kd, kd, jnp.zeros_like(kd)
  gt = intermediate_supervision(predicted, target, weight)
  return alpha * kd + (1.0 - alpha) * gt, kd, gt


def staged_l2(stages: Sequence[tuple[jax.Array, jax.Array]], heatmaps: jax.Array,
              pafs: jax.Array, mask: jax.Array) -> jax.Array:
  """OpenPose loss: stages of (heatmaps [B, H, W, 19], pafs [B, H, W, 38]) -> scalar.

  Targets `heatmaps` [B, H, W, 19], `pafs` [B, H, W, 38]; `mask` [B, H, W] is 0
  where people are present but unannotated (crowds, people without keypoints),
  so the network is neither rewarded nor punished there. Per stage and output,
  sum of ((predicted - target) * mask)^2 / 2 over everything, divided by the
  batch size (as Lightweight OpenPose's `l2_loss`); summed over stages.
  """
  batch_size = heatmaps.shape[0]
  mask = mask[..., None]

  def l2(predicted, target):
    return jnp.sum(jnp.square((predicted - target) * mask)) / 2 / batch_size

  return sum(l2(h, heatmaps) + l2(p, pafs) for h, p in stages)
