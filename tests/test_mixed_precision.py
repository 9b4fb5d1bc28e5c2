"""config.compute_dtype: bfloat16 convolutions and activations; float32 params, statistics, losses and outputs."""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import approaches, models, sweep
from jaxpose.training import checkpoint
from jaxpose.training import parallel
from jaxpose.deploy import predictor
from jaxpose.training import trainer
from jaxpose import config as config_lib
from jaxpose.models import layers
from test_train import QUICKSTART, compiled_train_step, tiny_config

# The matrix products of a network: where its FLOPs are, and what bfloat16 is for.
_PRODUCTS = ('conv_general_dilated', 'dot_general')

# One tiny model of each family.
_FAMILIES = {
    'hourglass': dict(arch='hourglass', num_stacks=2, num_features=8, num_joints=5, depth=2,
                      layer2_features=64),
    'mmpose_hourglass': dict(arch='mmpose_hourglass', num_stacks=2, num_joints=5,
                             stage_channels=(256, 16, 16), stage_blocks=(1, 1, 1),
                             feat_channel=16),
    'lightweight_openpose': dict(arch='lightweight_openpose', num_refinement_stages=1,
                                 num_channels=16),
    'openpose': dict(arch='openpose'),
    'staf': dict(arch='staf', num_channels=16, taf_channels=16, backbone_width=0.25),
}


def _products(jaxpr) -> list[tuple[tuple[str, tuple[int, ...]], ...]]:
  """A jaxpr -> for each conv and dot in it, nested calls (jit, remat, custom_jvp) included, its operands' (dtype name, shape)."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in _PRODUCTS:
      found.append(tuple((str(v.aval.dtype), v.aval.shape) for v in eqn.invars))
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        sub = getattr(sub, 'jaxpr', sub)  # a ClosedJaxpr's Jaxpr
        if hasattr(sub, 'eqns'):
          found += _products(sub)
  return found


def _product_dtypes(jaxpr) -> list[set[str]]:
  """A jaxpr -> for each conv and dot in it, the set of its operands' dtype names."""
  return [{dtype for dtype, _ in operands} for operands in _products(jaxpr)]


def _dtypes(tree) -> set[str]:
  return {str(leaf.dtype) for leaf in jax.tree_util.tree_leaves(tree)}


@pytest.mark.parametrize('arch', sorted(_FAMILIES))
def test_every_family_multiplies_in_bfloat16_and_keeps_float32_variables_and_outputs(arch):
  images = jnp.zeros((2, 32, 32, 3), jnp.float32)
  model = models.create_model(_FAMILIES[arch], compute_dtype=jnp.bfloat16)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
  assert _dtypes(variables) == {'float32'}  # params and BatchNorm statistics
  jaxpr, (outputs, new_state) = jax.make_jaxpr(
      lambda v: model.apply(v, images, train=True, mutable=['batch_stats']),
      return_shape=True)(variables)
  products = _product_dtypes(jaxpr.jaxpr)
  assert len(products) >= 20 and all(dtypes == {'bfloat16'} for dtypes in products)
  assert _dtypes(outputs) == {'float32'} and _dtypes(new_state) <= {'float32'}


@pytest.mark.parametrize('cpu_form', [True, False], ids=['cpu_form', 'conv'])
def test_the_shared_convs_take_and_give_bfloat16_and_round_once(cpu_form):
  # Both forms of each layer (XLA:CPU's, and the convs of GPUs, TPUs and
  # ONNX). Inputs 64 + k/2 and small integer weights are exact in bfloat16
  # and their sums exact in float32, so float32 gives the exact result; a
  # bfloat16 layer that sums in float32 and rounds once, as a conv's
  # accumulator does, is within two bfloat16 roundings (sum, then bias) of
  # 2^-8 each. The depthwise conv's nine shifted products summed in
  # bfloat16 instead put 11 % of the outputs outside that, by up to 5.5.
  rng = np.random.default_rng(0)
  x = jnp.asarray(64 + rng.integers(0, 32, size=(2, 8, 8, 16)) / 2, jnp.float32)
  for layer in (layers.DepthwiseConv3x3(2, 2, by_shifts=cpu_form),
                layers.PointwiseConv(8, by_dot=cpu_form)):
    shapes = jax.eval_shape(lambda: layer.init(jax.random.key(0), x))  # pylint: disable=cell-var-from-loop
    variables = {'params': {
        'kernel': jnp.asarray(rng.integers(-2, 3, size=shapes['params']['kernel'].shape),
                              jnp.float32),
        'bias': jnp.full(shapes['params']['bias'].shape, 0.5, jnp.float32)}}
    expected = layer.apply(variables, x)
    ours = layer.clone(dtype=jnp.bfloat16).apply(variables, x)
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(ours, np.float32), expected, rtol=2**-7, atol=0,
                               err_msg=type(layer).__name__)


def test_compute_dtype_is_checked_resolved_per_backend_and_not_stored():
  config = config_lib.default_config()
  assert config.compute_dtype == 'auto'
  assert [config_lib.compute_dtype(config, backend) for backend in ('cpu', 'gpu', 'tpu')] == [
      'float32', 'bfloat16', 'bfloat16']
  config.compute_dtype = 'bfloat16'
  assert config_lib.compute_dtype(config, 'cpu') == 'bfloat16'
  model = trainer.create_model(config)
  assert model.compute_dtype == jnp.bfloat16
  assert models.model_config(model) == models.model_config(
      models.create_model(approaches.for_config(config).description))
  config.compute_dtype = 'float16'
  with pytest.raises(ValueError, match=r"config.compute_dtype: expected one of .*'bfloat16'.*"
                                       r"got 'float16'"):
    config_lib.validate(config)


def _first_batch(config) -> dict:
  source, _ = trainer.create_sources(config)
  return next(iter(trainer.train_loader(source, config)))


def test_the_teacher_computes_in_the_students_dtype_and_predictors_in_float32(tmp_path):
  images = jnp.zeros((1, 64, 64, 3))
  # Twice the student's width, so that its convs have shapes of their own.
  teacher_model = models.create_model(dict(tiny_config().model.to_dict(), num_features=16))
  shapes = jax.eval_shape(lambda: teacher_model.init(jax.random.key(7), images))
  teacher_description = models.model_config(teacher_model)
  checkpoint.save_variables(str(tmp_path), jax.tree_util.tree_map(
      lambda s: np.ones(s.shape, s.dtype), shapes), teacher_description)
  config = tiny_config(**{'teacher.workdir': str(tmp_path), 'compute_dtype': 'bfloat16'})
  approach = approaches.for_config(config)
  model = trainer.create_model(config)
  tx = trainer.create_optimizer(config, trainer.create_learning_rate_fn(config))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  state = trainer.TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                           batch_stats=variables['batch_stats'],
                           opt_state=jax.eval_shape(tx.init, variables['params']),
                           rng=jax.random.PRNGKey(0))
  teacher, loaded = trainer.load_teacher(config, approach)

  # What predictors and `jaxpose export` run (the same `network_fn`): a
  # description holds no compute dtype, so float32.
  jax_predictor = predictor.JaxPredictor.from_variables(loaded, teacher_description)
  teacher_forward = _products(jax.make_jaxpr(jax_predictor._forward)(  # pylint: disable=protected-access
      np.zeros((1, 64, 64, 3), np.uint8)).jaxpr)
  assert teacher_forward and all(dtype == 'float32' for operands in teacher_forward
                                 for dtype, _ in operands)
  # In a training step the same convs compute in the student's bfloat16.
  step = functools.partial(trainer.train_step, approach=approach, model=model, teacher=teacher,
                           tx=tx, learning_rate_fn=trainer.create_learning_rate_fn(config),
                           config=config, axis_name=None)
  products = _products(jax.make_jaxpr(step)(state, _first_batch(config), loaded).jaxpr)
  assert all(dtype == 'bfloat16' for operands in products for dtype, _ in operands)
  # The teacher's weights (the second operands) are all among them; the batch differs.
  kernels = lambda products: collections.Counter(operands[1][1] for operands in products)
  in_step = kernels(products)
  assert all(in_step[shape] >= count for shape, count in kernels(teacher_forward).items())


def _lightweight_openpose_config(**overrides):
  config = tiny_config(**{'input_size': (64, 64), 'sigma': 7.0, 'batch_size': 8,
                          'data.max_people': 3, 'optimizer': 'adam', 'learning_rate': 1e-3,
                          **overrides})
  config.model = config_lib.lightweight_openpose_model(num_refinement_stages=1)
  config.model.num_channels = 16
  return config


def _step(config, mode: str, learning_rate_fn, tx):
  data = parallel.DataParallel(mode)
  step = compiled_train_step(data, config, tx, learning_rate_fn)

  def one_step(state, batch):
    new_state, metrics = step(data.replicate(state), data.shard_batch(batch), None)
    return data.unreplicate(new_state), data.unreplicate(metrics)
  return one_step


@pytest.mark.slow  # 10-12 min each on the loaded 2-core VM: 4 compiled train steps
@pytest.mark.parametrize('make_config,float32_steps', [
    (tiny_config, 0), (_lightweight_openpose_config, 60)],
    ids=['topdown_hourglass', 'bottomup_lightweight_openpose'])
def test_a_bfloat16_step_loses_within_1_percent_of_float32_under_every_wrapper(
    make_config, float32_steps):
  # The same state and global batch: float32 on one device, bfloat16 on one
  # device and on 8 under pmap and shard_map (which agree with one device in
  # float32 to 1e-6, tests/test_train.py).
  #
  # Lightweight OpenPose starts from 60 float32 steps: freshly initialised,
  # its 24 train-mode BatchNorm-ReLU layers amplify any perturbation ~1.17x
  # each, so its loss moves by up to 1.5 % in float32 alone when the input
  # is perturbed by bfloat16's rounding (2^-9), and bfloat16 lands within
  # 0.1-1.6 % of it. After 60 steps (loss 1400 -> 200) bfloat16 is within
  # 0.4 % on five batches.
  config32 = make_config(compute_dtype='float32')
  source, _ = trainer.create_sources(config32)
  batches = iter(trainer.train_loader(source, config32))
  learning_rate_fn = trainer.create_learning_rate_fn(config32)
  tx = trainer.create_optimizer(config32, learning_rate_fn)
  state = trainer.create_train_state(config32, trainer.create_model(config32), tx)
  float32_step = _step(config32, 'none', learning_rate_fn, tx)
  for _ in range(float32_steps):
    state, _ = float32_step(state, next(batches))
  batch = next(batches)
  reference, reference_metrics = float32_step(state, batch)
  config16 = make_config(compute_dtype='bfloat16')
  for mode in parallel.MODES:
    ours, metrics = _step(config16, mode, learning_rate_fn, tx)(state, batch)
    relative = abs(metrics['loss'] / reference_metrics['loss'] - 1)
    assert 1e-6 < relative < 0.01, (mode, relative)  # it did compute in bfloat16, and closely
    assert _dtypes((ours.params, ours.batch_stats)) == {'float32'}, mode
    assert _dtypes(ours.opt_state) <= {'float32', 'int32'} and metrics['loss'].dtype == np.float32
    assert (jax.tree_util.tree_structure(ours.params)
            == jax.tree_util.tree_structure(reference.params))


# The quick start's PCK spread over seeds at 400 steps (docs/sweeps.md's
# ablation: num_stacks=2, learning_rate=0.002, 0.322 +- 0.021).
QUICKSTART_PCK_SEED_STD = 0.021


@pytest.mark.slow  # two quick-start runs: 10 min beside the rest of the slow tests
def test_the_quickstart_in_bfloat16_learns_as_float32_does(tmp_path):
  results = {}
  for dtype in ('float32', 'bfloat16'):
    config = sweep.load_config_file(str(QUICKSTART))
    config.compute_dtype = dtype
    results[dtype] = trainer.train_and_evaluate(config, str(tmp_path / dtype))
  assert results['float32']['pck'] > 0.2, results  # from 0.0 untrained
  # bfloat16's rounding sends training down another path from the same seed:
  # its PCK may differ as another seed's does, no more. (The 90 %-of-float32
  # gate this replaces sat at 1.7 standard deviations: 0.317 against 0.353
  # failed it on jax 0.10.2, where 0.351 against 0.344 had passed before.)
  assert (results['bfloat16']['pck'] >=
          results['float32']['pck'] - 2 * QUICKSTART_PCK_SEED_STD), results
