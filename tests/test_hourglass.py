"""StackedHourglass: shapes, options, BatchNorm across devices, and parity with PyTorch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxpose import models
from jaxpose.training import checkpoint
from jaxpose.deploy.convert import variables_from_torch
from jaxpose.models import hourglass
from jaxpose.models.hourglass import StackedHourglass
import random_weights
import torch_hourglass


def _shapes(model, size=256):
  return jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((2, size, size, 3))))


def test_every_stack_returns_heatmaps_at_quarter_resolution():
  model = StackedHourglass(num_stacks=3, num_blocks=1, num_joints=16)
  variables = _shapes(model)
  outputs = jax.eval_shape(
      functools.partial(model.apply, train=False), variables, jnp.zeros((2, 256, 256, 3)))
  assert [o.shape for o in outputs] == [(2, 64, 64, 16)] * 3
  # fc_ and score_ feed the next stack, so the last stack has none.
  assert {'fc__0', 'fc__1', 'score__0', 'score__1'} <= set(variables['params'])
  assert 'fc__2' not in variables['params']


def test_student_options_make_a_lighter_model():
  def count(shapes):
    return sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(shapes['params']))
  # Traced once each (an 8-stack hourglass takes seconds to trace).
  teacher = _shapes(StackedHourglass(num_stacks=8, num_blocks=1))
  student = _shapes(StackedHourglass(num_stacks=4, num_blocks=1, num_features=64, depthwise=True))
  params = student['params']
  # Depthwise 3x3: one input channel per group.
  assert params['hg_0']['hg_0_0_0']['conv2']['kernel'].shape == (3, 3, 1, 64)
  assert params['fc_0_0']['kernel'].shape == (1, 1, 128, 128)
  assert count(student) < count(teacher) / 10
  # Upstream defaults: 256-channel hourglass, full 3x3 convs.
  assert teacher['params']['hg_0']['hg_0_0_0']['conv2']['kernel'].shape == (3, 3, 128, 128)


def test_rejects_sizes_the_hourglass_cannot_halve():
  model = StackedHourglass(num_stacks=1)
  with pytest.raises(ValueError, match='divisible by 64'):
    _shapes(model, size=200)
  with pytest.raises(ValueError, match=r'divisible by 32 \(4 \* 2\*\*depth, depth 3\)'):
    _shapes(StackedHourglass(num_stacks=1, depth=3), size=48)


def test_depth_sets_the_number_of_halvings():
  # Depth 3 drops upstream's lowest level: levels 0-2, the bottom residual at
  # level 0 (branch 3), and a 32x32 input becomes 8x8 heatmaps over a 1x1 bottom.
  shallow = _shapes(StackedHourglass(num_stacks=1, num_joints=5, depth=3), size=32)
  levels = {name.split('_')[1] for name in shallow['params']['hg_0']}
  assert levels == {'0', '1', '2'}
  assert 'hg_0_3_0' in shallow['params']['hg_0'] and 'hg_3_0_0' not in shallow['params']['hg_0']
  deep = _shapes(StackedHourglass(num_stacks=1, num_joints=5), size=64)
  assert {name.split('_')[1] for name in deep['params']['hg_0']} == {'0', '1', '2', '3'}
  heatmaps = jax.eval_shape(lambda: StackedHourglass(num_stacks=1, num_joints=5, depth=3)
                            .init_with_output(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))[0]
  assert heatmaps[0].shape == (1, 8, 8, 5)


def test_batch_norm_statistics_average_across_devices():
  # Four "devices" of two images each must update BatchNorm statistics exactly
  # as one device with all eight images: that is what axis_name is for.
  # A narrow depth-2 hourglass, each side jitted (op-by-op dispatch of a
  # whole hourglass takes seconds): the averaging depends on neither.
  images = jax.random.normal(jax.random.key(1), (8, 32, 32, 3))
  options = dict(num_stacks=1, num_joints=4, num_features=16, depth=2)
  single = StackedHourglass(**options)
  variables = random_weights.random_variables(single, images[:1])  # no init to compile
  full = jax.jit(lambda x: single.apply(variables, x, train=True, mutable=['batch_stats'])[1]
                 )(images)

  sharded = StackedHourglass(**options, axis_name='batch')
  apply = jax.vmap(
      lambda x: sharded.apply(variables, x, train=True, mutable=['batch_stats'])[1],
      axis_name='batch')
  per_device = jax.jit(apply)(images.reshape(4, 2, 32, 32, 3))
  for ours, reference in zip(jax.tree_util.tree_leaves(per_device),
                             jax.tree_util.tree_leaves(full)):
    np.testing.assert_allclose(ours, np.broadcast_to(reference, ours.shape),
                               rtol=1e-4, atol=1e-5)
  # And the statistics really moved from their initial values.
  initial = jax.tree_util.tree_leaves(variables['batch_stats'])
  assert any(np.abs(a - b).max() > 1e-3
             for a, b in zip(jax.tree_util.tree_leaves(full), initial))


@pytest.mark.parametrize('num_stacks,num_blocks,size', [(2, 1, 256), (1, 2, 128)])
def test_matches_pytorch_hourglassnet(num_stacks, num_blocks, size):
  torch_model = torch_hourglass.randomize(
      torch_hourglass.HourglassNet(num_stacks, num_blocks, num_classes=16), seed=size)
  model = StackedHourglass(num_stacks=num_stacks, num_blocks=num_blocks, num_joints=16)
  variables = variables_from_torch(model, torch_model.state_dict(),
                                   input_shape=(1, size, size, 3))
  images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2)))
  outputs = jax.jit(functools.partial(model.apply, train=False))(variables, images)
  assert len(outputs) == num_stacks
  for ours, theirs in zip(outputs, expected):
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    scale = np.abs(theirs).max()
    assert scale > 1  # random BN statistics keep the signal alive
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4 * scale)


def test_a_workdir_written_before_layer2_followed_bearpaw_still_loads(tmp_path):
  # Before, layer2 had 64 planes (128 -> 128, no downsample) and layer3 the
  # downsample; its description had no `layer2_features`.
  old = StackedHourglass(num_stacks=1, num_joints=5, num_features=8, depth=2,
                         layer2_features=hourglass.STEM_FEATURES)
  images = np.random.default_rng(0).normal(size=(1, 32, 32, 3)).astype(np.float32)
  variables = random_weights.random_variables(old, images, train=False)
  assert 'downsample_0' not in variables['params']['layer2_0']
  assert 'downsample_0' in variables['params']['layer3_0']
  description = models.model_config(old)
  del description['layer2_features']
  checkpoint.save_variables(str(tmp_path), variables, description)
  restored, upgraded = checkpoint.restore_variables(str(tmp_path))
  assert upgraded['layer2_features'] == hourglass.STEM_FEATURES
  rebuilt = models.create_model(upgraded)
  np.testing.assert_array_equal(rebuilt.apply(restored, images)[-1],
                                old.apply(variables, images)[-1])
  # Today's default is upstream's: at its width the downsample moved to layer2.
  new = StackedHourglass(num_stacks=1, num_joints=5, depth=2)
  params = jax.eval_shape(lambda: new.init(jax.random.key(0), images, train=False))['params']
  assert 'downsample_0' in params['layer2_0'] and 'downsample_0' not in params['layer3_0']
  assert models.upgrade_description(models.model_config(new), params) == models.model_config(new)


def test_remat_gives_the_same_params_and_gradients_and_is_not_stored():
  # Recomputing each residual block's activations in the backward pass is
  # exact up to float32 reassociation; the params and the stored description
  # are those of the model without it. (Its memory saving does not show on
  # XLA:CPU, whose compiled temp size jax.checkpoint leaves unchanged: it is
  # for accelerators; scripts/bench_train_step.py reports it there.)
  description = {'arch': 'hourglass', 'num_stacks': 1, 'num_blocks': 1, 'num_joints': 5,
                 'num_features': 8, 'layer2_features': 64, 'depth': 2}
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
  plain = models.create_model(description)
  remat = models.create_model(dict(description, remat=True))
  variables = random_weights.random_variables(plain, images, train=False)
  remat_shapes = jax.eval_shape(lambda: remat.init(jax.random.PRNGKey(0), images, train=False))
  assert jax.tree_util.tree_map(jnp.shape, remat_shapes) == jax.tree_util.tree_map(jnp.shape,
                                                                                    variables)

  def loss_of(model):
    def loss(params):
      out, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, images,
                           train=True, mutable=['batch_stats'])
      return sum(jnp.mean(o**2) for o in out)
    return loss

  # The blocks are rematerialised: one remat per block (3 in the stem, 7 in
  # the hourglass of depth 2, 1 after it), none without (the
  # primitive is `remat2` in JAX 0.10, `checkpoint` in some versions).
  traced = {name: jax.jit(jax.grad(loss_of(model))).trace(variables['params'])
            for name, model in (('plain', plain), ('remat', remat))}
  remats = {name: str(t.jaxpr).count('remat2[') + str(t.jaxpr).count('checkpoint[')
            for name, t in traced.items()}
  assert remats == {'plain': 0, 'remat': 3 + 7 + 1}
  expected, ours = (traced[name].lower().compile()(variables['params'])
                    for name in ('plain', 'remat'))
  flat_expected = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(expected)])
  flat_ours = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(ours)])
  assert float(jnp.linalg.norm(flat_ours - flat_expected) / jnp.linalg.norm(flat_expected)) < 1e-6
  assert 'remat' not in models.model_config(remat)
