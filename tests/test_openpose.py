"""LightweightOpenPose: shapes, parity with the PyTorch model, checkpoint conversion."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxpose import models
from jaxpose.deploy import convert
from jaxpose.models import openpose
from jaxpose.models.openpose import LightweightOpenPose
import random_weights
import torch_openpose

SIZES = [(256, 456), (368, 368)]
# Upstream's state_dict sizes, num_batches_tracked included (217 and 295 without).
UPSTREAM_KEY_COUNTS = {1: 250, 2: 338}


@pytest.fixture(scope='module')
def torch_model():
  return torch_openpose.randomize(torch_openpose.PoseEstimationWithMobileNet(1))


def _torch_outputs(model, images):
  """NHWC numpy -> list of (heatmaps, pafs) NHWC numpy, as the Flax model returns."""
  with torch.no_grad():
    flat = model(torch.from_numpy(images.transpose(0, 3, 1, 2)))
  flat = [o.numpy().transpose(0, 2, 3, 1) for o in flat]
  return list(zip(flat[::2], flat[1::2]))


def _relative_errors(ours, reference):
  """Max |ours - reference| / max |reference| for each stage's heatmaps and pafs."""
  assert len(ours) == len(reference)
  return [float(np.abs(np.asarray(o) - r).max() / np.abs(r).max())
          for stage, ref_stage in zip(ours, reference)
          for o, r in zip(stage, ref_stage)]


@pytest.mark.parametrize('num_refinement_stages', [1, 2])
@pytest.mark.parametrize('height,width', SIZES)
def test_output_shapes(num_refinement_stages, height, width):
  model = LightweightOpenPose(num_refinement_stages=num_refinement_stages)
  outputs, _ = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, height, width, 3))))
  assert len(outputs) == 1 + num_refinement_stages
  for heatmaps, pafs in outputs:
    assert heatmaps.shape == (2, height // 8, width // 8, 19)
    assert pafs.shape == (2, height // 8, width // 8, 38)
    assert heatmaps.dtype == pafs.dtype == jnp.float32


def test_options_change_channels():
  model = LightweightOpenPose(num_refinement_stages=0, num_channels=64,
                              num_heatmaps=5, num_pafs=8)
  outputs, variables = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((1, 64, 32, 3))))
  assert [(h.shape, p.shape) for h, p in outputs] == [((1, 8, 4, 5), (1, 8, 4, 8))]
  assert variables['params']['cpm']['align_0']['kernel'].shape == (1, 1, 512, 64)
  assert 'refinement_stages_0' not in variables['params']


@pytest.mark.parametrize('shape', [(1, 260, 456, 3), (1, 256, 452, 3), (256, 456, 3)])
def test_rejects_sizes_not_divisible_by_8(shape):
  model = LightweightOpenPose()
  with pytest.raises(ValueError, match='divisible by 8'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


@pytest.mark.parametrize('num_refinement_stages', [1, 2])
def test_reference_has_upstream_state_dict_keys(num_refinement_stages):
  # Facts from upstream's checkpoints, so that the reference cannot drift.
  state = torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages).state_dict()
  assert len(state) == UPSTREAM_KEY_COUNTS[num_refinement_stages]
  shapes = {k: tuple(v.shape) for k, v in state.items()}
  assert shapes['model.0.0.weight'] == (32, 3, 3, 3)
  assert 'model.0.0.bias' not in shapes
  assert shapes['model.7.0.weight'] == (512, 1, 3, 3)  # dilated depthwise
  assert shapes['model.11.4.running_var'] == (512,)
  assert shapes['cpm.trunk.2.2.weight'] == (128, 128, 1, 1)
  assert shapes['initial_stage.heatmaps.0.0.weight'] == (512, 128, 1, 1)
  assert shapes['initial_stage.pafs.1.0.bias'] == (38,)
  assert shapes['refinement_stages.0.trunk.0.initial.0.weight'] == (128, 185, 1, 1)
  assert shapes['refinement_stages.0.trunk.0.trunk.1.0.bias'] == (128,)
  assert shapes['refinement_stages.0.trunk.4.trunk.1.1.running_var'] == (128,)
  assert shapes['refinement_stages.0.heatmaps.0.0.weight'] == (128, 128, 1, 1)


@pytest.mark.parametrize('height,width', SIZES)
def test_matches_pytorch(torch_model, height, width):
  model = LightweightOpenPose(num_refinement_stages=1)
  variables = convert.variables_from_torch(
      model, torch_model.state_dict(), input_shape=(1, height, width, 3))
  images = np.random.default_rng(height).normal(size=(1, height, width, 3)).astype(np.float32)
  reference = _torch_outputs(torch_model, images)
  # The comparison means something only if the outputs are neither ~0 nor huge.
  for heatmaps, pafs in reference:
    assert 0.05 < heatmaps.std() < 100 and 0.05 < pafs.std() < 100
  ours = jax.jit(model.apply)(variables, images)
  errors = _relative_errors(ours, reference)
  print(f'{height}x{width}: max relative error per output {errors}')
  assert len(errors) == 4
  assert max(errors) < 1e-4


def test_two_refinement_stages_convert_and_match():
  torch_model = torch_openpose.randomize(torch_openpose.PoseEstimationWithMobileNet(2), seed=1)
  state = torch_model.state_dict()
  model = LightweightOpenPose(num_refinement_stages=2)
  variables = convert.variables_from_torch(model, state, input_shape=(1, 64, 48, 3))
  # Every key but BN's counters became a variable.
  leaves = flax.traverse_util.flatten_dict(variables)
  assert len(leaves) == len([k for k in state if not k.endswith('num_batches_tracked')]) == 295
  np.testing.assert_array_equal(  # depthwise OIHW [32, 1, 3, 3] -> HWIO [3, 3, 1, 32]
      variables['params']['model_1_0']['kernel'],
      state['model.1.0.weight'].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(
      variables['batch_stats']['refinement_stages_1']['trunk_4']['trunk_1_1']['var'],
      state['refinement_stages.1.trunk.4.trunk.1.1.running_var'].numpy())
  # Non-square, so that a swapped H and W would show; stage 2 reads stage 1's maps.
  images = np.random.default_rng(2).normal(size=(2, 96, 64, 3)).astype(np.float32)
  errors = _relative_errors(jax.jit(model.apply)(variables, images),
                            _torch_outputs(torch_model, images))
  assert len(errors) == 6
  assert max(errors) < 1e-4


def test_train_mode_uses_batch_statistics_like_pytorch(torch_model):
  model = LightweightOpenPose(num_refinement_stages=1)
  state = {k: v.clone() for k, v in torch_model.state_dict().items()}
  variables = convert.variables_from_torch(model, state, input_shape=(1, 64, 64, 3))
  images = np.random.default_rng(3).normal(size=(2, 64, 64, 3)).astype(np.float32)
  reference_model = torch_openpose.PoseEstimationWithMobileNet(1)
  reference_model.load_state_dict(state)
  reference = _torch_outputs(reference_model.train(), images)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
  ours, updates = apply(variables, images)
  assert max(_relative_errors(ours, reference)) < 1e-4
  # Running means move by the same momentum as PyTorch's (variances differ by
  # design: PyTorch keeps the unbiased batch variance).
  ours_mean = updates['batch_stats']['refinement_stages_0']['trunk_2']['trunk_0_1']['mean']
  reference_mean = reference_model.state_dict()[
      'refinement_stages.0.trunk.2.trunk.0.1.running_mean'].numpy()
  assert not np.allclose(ours_mean, state['refinement_stages.0.trunk.2.trunk.0.1.running_mean'])
  np.testing.assert_allclose(ours_mean, reference_mean, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('key', [
    'model.7.0.weight',
    'model.3.4.running_mean',
    'cpm.trunk.1.2.weight',
    'initial_stage.pafs.1.0.bias',
    'refinement_stages.0.trunk.3.trunk.1.1.running_var',
])
def test_missing_key_is_named(torch_model, key):
  state = dict(torch_model.state_dict())
  del state[key]
  with pytest.raises(convert.CheckpointMismatchError, match=f'missing key {key!r}'):
    convert.variables_from_torch(LightweightOpenPose(), state, input_shape=(1, 64, 64, 3))


def test_unknown_key_is_named(torch_model):
  state = dict(torch_model.state_dict())
  state['refinement_stages.1.heatmaps.1.0.bias'] = torch.zeros(19)
  with pytest.raises(convert.CheckpointMismatchError,
                     match="unknown key.*'refinement_stages.1.heatmaps.1.0.bias'"):
    convert.variables_from_torch(LightweightOpenPose(), state, input_shape=(1, 64, 64, 3))


def test_wrong_number_of_refinement_stages_is_named(torch_model):
  two_stages = torch_openpose.PoseEstimationWithMobileNet(2).state_dict()
  with pytest.raises(convert.CheckpointMismatchError, match=r"'refinement_stages\.1\."):
    convert.variables_from_torch(LightweightOpenPose(1), two_stages, input_shape=(1, 64, 64, 3))
  with pytest.raises(convert.CheckpointMismatchError, match=r"missing key 'refinement_stages\.1\."):
    convert.variables_from_torch(LightweightOpenPose(2), torch_model.state_dict(),
                                 input_shape=(1, 64, 64, 3))


@pytest.mark.parametrize('key,shape', [
    ('cpm.align.0.weight', (128, 256, 1, 1)),
    ('initial_stage.heatmaps.1.0.bias', (18,)),
    ('model.5.0.weight', (256, 256, 3, 3)),  # a full conv where upstream's is depthwise
])
def test_misshapen_key_is_named(torch_model, key, shape):
  state = dict(torch_model.state_dict())
  state[key] = torch.zeros(shape)
  with pytest.raises(convert.CheckpointMismatchError, match=f'key {key!r} has shape'):
    convert.variables_from_torch(LightweightOpenPose(), state, input_shape=(1, 64, 64, 3))


@pytest.mark.slow  # ~23 s; test_hourglass's remat test checks the same mechanism by default
def test_remat_gives_the_same_params_and_gradients_and_is_not_stored():
  # As the hourglass's (tests/test_hourglass.py): each backbone block, the
  # initial stage and each refinement stage are recomputed in the backward
  # pass, exactly up to float32 reassociation, with the params and
  # description of the model without remat. The gradients are those of every
  # param.
  description = {'arch': 'lightweight_openpose', 'num_refinement_stages': 1,
                 'num_channels': 8, 'num_heatmaps': 3, 'num_pafs': 4}
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
  plain = models.create_model(description)
  remat = models.create_model(dict(description, remat=True))
  variables = random_weights.random_variables(plain, images, train=False)
  remat_shapes = jax.eval_shape(lambda: remat.init(jax.random.PRNGKey(0), images, train=False))
  assert jax.tree_util.tree_map(jnp.shape, remat_shapes) == jax.tree_util.tree_map(jnp.shape,
                                                                                    variables)
  stages = variables['params']

  def gradient(model):
    """jit(grad of a loss of every stage's maps, w.r.t. the stages' params), traced once."""
    def loss(stage_params):
      out, _ = model.apply({'params': {**variables['params'], **stage_params},
                            'batch_stats': variables['batch_stats']}, images,
                           train=True, mutable=['batch_stats'])
      return sum(jnp.mean(maps**2) for stage in out for maps in stage)
    return jax.jit(jax.grad(loss)).trace(stages)

  # One remat per backbone block (11) and per stage, initial and refinement
  # (the primitive is `remat2` in JAX 0.10, `checkpoint` in some versions).
  traced = {'plain': gradient(plain), 'remat': gradient(remat)}
  remats = {name: str(t.jaxpr).count('remat2[') + str(t.jaxpr).count('checkpoint[')
            for name, t in traced.items()}
  assert remats == {'plain': 0, 'remat': len(openpose.BACKBONE_BLOCKS) + 2}
  expected, ours = (traced[name].lower().compile()(stages) for name in ('plain', 'remat'))
  flat_expected = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(expected)])
  flat_ours = jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(ours)])
  assert float(jnp.linalg.norm(flat_ours - flat_expected) / jnp.linalg.norm(flat_expected)) < 1e-6
  assert 'remat' not in models.model_config(remat)
