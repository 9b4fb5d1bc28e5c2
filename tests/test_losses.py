"""jaxpose.losses against values computed by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxpose import losses


def _maps():
  # B=1, H=1, W=2, J=2: joint 0 errs by (1, 2), joint 1 by (3, 0).
  predicted = np.array([[[[1.0, 3.0], [2.0, 0.0]]]])
  target = np.zeros_like(predicted)
  return predicted, target


def test_heatmap_mse_by_hand():
  predicted, target = _maps()
  # 0.5 * mean(1, 9, 4, 0) = 0.5 * 14 / 4
  assert losses.heatmap_mse(predicted, target, np.ones((1, 2))) == pytest.approx(1.75)
  # Weight 0 on joint 1 removes its 9 but it still counts in the mean.
  assert losses.heatmap_mse(predicted, target, np.array([[1.0, 0.0]])) == pytest.approx(0.625)
  # A weight multiplies the error before squaring: 0.5 * (4*1 + 4*4) / 4.
  assert losses.heatmap_mse(predicted, target, np.array([[2.0, 0.0]])) == pytest.approx(2.5)


def test_heatmap_mse_matches_upstream_joints_mse_loss():
  rng = np.random.default_rng(0)
  predicted = rng.normal(size=(3, 8, 6, 5)).astype(np.float32)
  target = rng.normal(size=(3, 8, 6, 5)).astype(np.float32)
  weight = (rng.random((3, 5)) > 0.3).astype(np.float32)
  # JointsMSELoss(use_target_weight=True) of SimpleBaseline, on NCHW tensors.
  p = torch.from_numpy(predicted.transpose(0, 3, 1, 2)).reshape(3, 5, -1)
  t = torch.from_numpy(target.transpose(0, 3, 1, 2)).reshape(3, 5, -1)
  w = torch.from_numpy(weight)
  reference = sum(
      0.5 * torch.nn.functional.mse_loss(p[:, j] * w[:, j:j + 1], t[:, j] * w[:, j:j + 1])
      for j in range(5)) / 5
  assert losses.heatmap_mse(predicted, target, weight) == pytest.approx(float(reference), rel=1e-5)


def test_intermediate_supervision_sums_stacks():
  predicted, target = _maps()
  weight = np.ones((1, 2))
  stacks = [predicted, 2 * predicted, np.zeros_like(predicted)]
  # 1.75 + 4 * 1.75 + 0
  assert losses.intermediate_supervision(stacks, target, weight) == pytest.approx(8.75)


def test_distillation_alpha_extremes_and_mix():
  predicted, target = _maps()
  weight = np.ones((1, 2))
  teacher = predicted + 1.0  # every error against the teacher is 1 -> mse 0.5
  stacks = [predicted, predicted]
  total, kd, gt = losses.distillation(stacks, teacher, target, weight, alpha=1.0)
  assert kd == pytest.approx(1.0) and gt == pytest.approx(3.5)
  assert total == pytest.approx(1.0)
  total, _, _ = losses.distillation(stacks, teacher, target, weight, alpha=0.0)
  assert total == pytest.approx(3.5)
  total, _, _ = losses.distillation(stacks, teacher, target, weight, alpha=0.5)
  assert total == pytest.approx(2.25)
  total, kd, gt = losses.distillation(stacks, teacher, None, weight, alpha=0.5)
  assert total == pytest.approx(1.0) and gt == 0


def test_distillation_sends_no_gradient_to_teacher():
  predicted, target = _maps()
  grad = jax.grad(lambda t: losses.distillation(
      [jnp.asarray(predicted)], t, target, jnp.ones((1, 2)), 0.5)[0])(jnp.asarray(predicted) + 1)
  np.testing.assert_array_equal(grad, 0)


def test_staged_l2_by_hand():
  # B=2, H=W=1; one stage with heatmap error 2 everywhere, paf error 1.
  heatmaps = np.zeros((2, 1, 1, 19))
  pafs = np.zeros((2, 1, 1, 38))
  stage = (heatmaps + 2.0, pafs + 1.0)
  mask = np.ones((2, 1, 1))
  # heatmaps: 2 * 19 * 4 / 2 / 2 = 38; pafs: 2 * 38 * 1 / 2 / 2 = 19.
  assert losses.staged_l2([stage], heatmaps, pafs, mask) == pytest.approx(57.0)
  assert losses.staged_l2([stage, stage], heatmaps, pafs, mask) == pytest.approx(114.0)
  mask = np.array([[[1.0]], [[0.0]]])  # second image unannotated
  assert losses.staged_l2([stage], heatmaps, pafs, mask) == pytest.approx(28.5)
