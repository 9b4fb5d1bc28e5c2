"""jaxpose.training.trainer: data-parallel equivalence, distillation, resumption, failures."""

import functools
import json
import logging
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import flax
import grain.python as grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxpose import approaches, losses, models, skeletons, sweep
from jaxpose.training import checkpoint
from jaxpose.training import parallel
from jaxpose.training import trainer
from jaxpose.codecs import heatmap
from jaxpose.models import normalization
from jaxpose import config as config_lib
import random_weights

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = REPO / 'configs' / 'quickstart.py'


def tiny_config(**overrides):
  """The quick start, shrunk so that a step compiles and runs in seconds.

  Depth 2 at 32x32 (8x8 heatmaps halved to a 2x2 bottom): what these tests
  check (equal updates under every wrapper, the losses, resumption) does not
  depend on the size, and XLA's compile time, most of a test here, grows
  with the hourglass's depth.
  """
  config = sweep.load_config_file(str(QUICKSTART))
  # The generated people's COCO-17, written out: these tests build models and
  # teachers from config.model directly, where 0 (the data's) is not resolved.
  config.model.num_joints = 17
  config.model.num_features = 8
  config.model.num_stacks = 1
  config.model.depth = 2
  config.input_size = (32, 32)
  config.batch_size = 16
  config.num_train_steps = 3
  config.log_every_steps = 1
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.data.num_train_examples = 64
  config.data.num_eval_examples = 8
  config.data.image_size = (48, 48)
  config.warmup_steps = 0
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


def _leaves(workdir):
  variables, _ = checkpoint.restore_variables(str(workdir))
  return jax.tree_util.tree_leaves_with_path(variables)


def compiled_train_step(data: parallel.DataParallel, config, tx, learning_rate_fn):
  """trainer.train_step without a teacher, wrapped for `data`'s mode: (state, batch, None) -> (state, metrics)."""
  return data.compile(functools.partial(
      trainer.train_step, approach=approaches.for_config(config),
      model=trainer.create_model(config, data.axis_name), teacher=None,
      tx=tx, learning_rate_fn=learning_rate_fn, config=config, axis_name=data.axis_name),
      num_replicated_args=1)


def _max_relative_difference(a, b):
  """Largest |a - b| over a collection, relative to the collection's largest |a|."""
  scale = max(np.abs(x).max() for x in jax.tree_util.tree_leaves(a))
  return max(np.abs(x - y).max() for x, y in
             zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))) / scale


def _relative_l2_error(a, b):
  """||a - b|| / ||a|| over a whole collection of arrays.

  Why not elementwise: after an Adam step a parameter moves by
  lr * m / (sqrt(v) + eps); where a gradient element is ~1e-7, near eps, the
  float32 rounding of a differently ordered sum (one device vs eight) moves
  that element's step by a few percent. Such elements are rare, so the
  collection's relative error stays ~1e-6.
  """
  a, b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  difference = sum(np.sum((np.asarray(x, np.float64) - y) ** 2) for x, y in zip(a, b))
  return np.sqrt(difference / sum(np.sum(np.asarray(x, np.float64) ** 2) for x in a))


def _three_batches_and_a_start(config):
  """The config's first three training batches, its schedule and optimizer, and a fresh TrainState."""
  source, _ = trainer.create_sources(config)
  loader = iter(trainer.train_loader(source, config))
  batches = [next(loader) for _ in range(3)]
  learning_rate_fn = trainer.create_learning_rate_fn(config)
  tx = trainer.create_optimizer(config, learning_rate_fn)
  return batches, learning_rate_fn, tx, trainer.create_train_state(config, trainer.create_model(config),
                                                                 tx)


def test_pmap_shard_map_and_one_device_give_the_same_update():
  # Three steps of the quick start, each from the same state, on the same
  # global batch, with SGD. Adam and RMSprop normalise each gradient element
  # by its own running magnitude, so an element whose float32 value is mostly
  # rounding (the gradient of an early layer passes several BatchNorm
  # backward subtractions) moves by a random fraction of lr whatever its
  # size, and the order of the device sum decides which: measured on this
  # config at hourglass depth 4, 1.3e-6 after one Adam step but 6e-5 after the second and 1.6e-3
  # after three. SGD's step is proportional to the gradient, so the same
  # rounding stays at the 1e-6 level.
  assert jax.device_count() == 8
  config = tiny_config(optimizer='sgd', learning_rate=0.01)
  batches, learning_rate_fn, tx, start = _three_batches_and_a_start(config)

  steps = {}
  for mode in ('none', 'pmap', 'shard_map'):
    data = parallel.DataParallel(mode)
    steps[mode] = data, compiled_train_step(data, config, tx, learning_rate_fn)

  def one_step(mode, state, batch):
    data, step = steps[mode]
    new_state, metrics = step(data.replicate(state), data.shard_batch(batch), None)
    return data.unreplicate(new_state), data.unreplicate(metrics)

  state = start
  for batch in batches:
    reference, reference_metrics = one_step('none', state, batch)
    for mode in ('pmap', 'shard_map'):
      ours, metrics = one_step(mode, state, batch)
      np.testing.assert_allclose(metrics['loss'], reference_metrics['loss'], rtol=1e-6)
      assert _relative_l2_error(reference.params, ours.params) < 1e-5
      assert _relative_l2_error(reference.batch_stats, ours.batch_stats) < 1e-5
      assert int(ours.step) == int(reference.step)
    assert _max_relative_difference(state.params, reference.params) > 1e-4  # it trained
    state = reference


@pytest.mark.slow  # ~3 min: three runs; one step's equality under every wrapper runs by default
def test_three_quickstart_steps_checkpoint_the_same_variables_under_every_wrapper(tmp_path):
  # The acceptance: the whole loop, three steps of the quick start
  # (its model, data, Adam and warm-up) per wrapper with the same global
  # batch and seed, compared in the checkpoints. Measured, params / batch
  # statistics: one device vs a wrapper 1.4e-6 / 6.4e-7, pmap vs shard_map
  # 4.7e-7 / 8.8e-8 (3.2e-6 / 1.9e-6 and 2.2e-6 / 9e-8 on the loader's
  # batches before the global stream). (At upstream's hourglass depth 4 the
  # quick start's 16x16 heatmaps bottom out at 1x1 and one device vs a
  # wrapper was 1.9e-5 / 4.2e-5: see the reordered-batch test below.)
  results = {}
  for mode in ('none', 'pmap', 'shard_map'):
    config = sweep.load_config_file(str(QUICKSTART))
    config.parallel = mode
    config.num_train_steps = 3
    config.eval_every_steps = config.checkpoint_every_steps = 1000
    config.data.num_eval_examples = 8
    metrics = trainer.train_and_evaluate(config, str(tmp_path / mode))
    assert metrics['step'] == 3 and np.isfinite(metrics['loss'])
    results[mode], model_config = checkpoint.restore_variables(str(tmp_path / mode))
    # The config's model (less `remat`, how it ran; its joints the data's), the
    # normalisation, size and keypoint layout it was trained with.
    described = {name: value for name, value in config.model.items() if name != 'remat'}
    assert model_config == dict(described, num_joints=17,
                                normalization=normalization.IMAGENET.to_dict(),
                                input_size=list(config.input_size), stride=4,
                                skeleton=skeletons.to_dict(skeletons.COCO))
  for collection in ('params', 'batch_stats'):
    assert _relative_l2_error(results['pmap'][collection],
                              results['shard_map'][collection]) < 1e-5, collection
    for mode in ('pmap', 'shard_map'):
      assert _relative_l2_error(results['none'][collection],
                                results[mode][collection]) < 1e-5, (mode, collection)
  start = trainer.create_train_state(config, trainer.create_model(config),
                                   trainer.create_optimizer(config, lambda step: 0.0))
  assert _relative_l2_error(start.params, results['none']['params']) > 1e-4  # it trained


def _three_steps_per_wrapper(config, reorderings: int = 0) -> dict:
  """{mode: TrainState} after three steps from the same state; `reorderings` adds 'none' runs on shuffled batches."""
  batches, learning_rate_fn, tx, start = _three_batches_and_a_start(config)
  size = len(batches[0]['image'])
  rng = np.random.default_rng(0)
  runs = [('none', 'none', None), ('pmap', 'pmap', None), ('shard_map', 'shard_map', None)]
  runs += [(f'none, reordered {i}', 'none', rng.permutation(size)) for i in range(reorderings)]
  states = {}
  for name, mode, order in runs:
    data = parallel.DataParallel(mode)
    step = compiled_train_step(data, config, tx, learning_rate_fn)
    state = data.replicate(start)
    for batch in batches:
      if order is not None:  # the same examples, so the same mean loss, summed in another order
        batch = {key: value[order] for key, value in batch.items()}
      state, _ = step(state, data.shard_batch(batch), None)
    states[name] = data.unreplicate(state)
  return states


# A data-parallel step may differ from one device by this factor more than one
# device differs from itself on reordered examples: both are rounding noise,
# whose size varies from one order of the sums to another (below).
NOISE_MARGIN = 1.25


@pytest.mark.slow  # ~2 min: four reorderings of a batch under 8 devices
def test_wrappers_differ_from_one_device_as_reordered_examples_do():
  # Where float32 training is ill-conditioned, no data-parallel step can match
  # one device more closely than one device matches itself when the same
  # examples come in another order: here Adam at its full rate from the first
  # step (the first Adam step is lr * sign(gradient), and some gradient
  # elements are mostly rounding after several BatchNorm backward passes).
  # Measured (jax 0.10.2, CPU), relative L2 of params / batch statistics
  # against one device: pmap 4.35e-3 / 3.42e-3, shard_map 4.31e-3 / 3.44e-3;
  # one device on three random reorderings 4.33-4.36e-3 / 3.31-3.44e-3. (The
  # reversed or rolled batch is no measure of the floor: 6.4e-4 / 1.9e-4 and
  # 4.3e-4 / 6.6e-5, as XLA's reduction tree sums those orders alike.) A
  # BatchNorm that does not average its statistics over devices (pmap with
  # the model's axis_name unset) gives 4.3e-2 / 1.9e-1. The full quick start
  # at its depth 3 sits at the noise floor: 2.4e-6 / 1.9e-6.
  config = tiny_config()
  assert config.warmup_steps == 0 and config.optimizer == 'adam'
  states = _three_steps_per_wrapper(config, reorderings=3)
  reference = states['none']
  for collection in ('params', 'batch_stats'):
    floors = [_relative_l2_error(getattr(reference, collection), getattr(state, collection))
              for name, state in states.items() if name.startswith('none, reordered')]
    assert min(floors) > 0  # the order of the sums matters at all
    for mode in ('pmap', 'shard_map'):
      error = _relative_l2_error(getattr(reference, collection), getattr(states[mode], collection))
      assert error <= NOISE_MARGIN * max(floors), (mode, collection, error, floors)


@pytest.mark.slow  # ~45 s each: two compiled steps under a wrapper
@pytest.mark.parametrize('mode', ['pmap', 'shard_map'])
def test_a_remat_step_under_a_wrapper_is_the_step_without_remat(mode):
  # config.model.remat under pmap and shard_map: BatchNorm's cross-device
  # mean sits inside every rematerialised block and is recomputed in the
  # backward pass; the update is the plain one's on the same global batch.
  config = tiny_config(optimizer='sgd', learning_rate=0.01)
  batches, learning_rate_fn, tx, start = _three_batches_and_a_start(config)
  data = parallel.DataParallel(mode)
  updates = {}
  for remat in (False, True):
    config.model.remat = remat
    step = compiled_train_step(data, config, tx, learning_rate_fn)
    new_state, metrics = step(data.replicate(start), data.shard_batch(batches[0]), None)
    updates[remat] = data.unreplicate(new_state), data.unreplicate(metrics)
  (plain, plain_metrics), (ours, metrics) = updates[False], updates[True]
  np.testing.assert_allclose(metrics['loss'], plain_metrics['loss'], rtol=1e-6)
  assert _relative_l2_error(plain.params, ours.params) < 1e-6
  assert _relative_l2_error(plain.batch_stats, ours.batch_stats) < 1e-6
  assert _max_relative_difference(start.params, plain.params) > 1e-4  # it trained


def test_adam_leaves_the_biases_batchnorm_cancels_where_they_were():
  config = tiny_config()
  assert config.optimizer == 'adam' and config.freeze_biases_before_batchnorm
  source, _ = trainer.create_sources(config)
  batch = next(iter(trainer.train_loader(source, config)))
  learning_rate_fn = trainer.create_learning_rate_fn(config)
  tx = trainer.create_optimizer(config, learning_rate_fn)
  start = trainer.create_train_state(config, trainer.create_model(config), tx)
  data = parallel.DataParallel('none')
  step = compiled_train_step(data, config, tx, learning_rate_fn)
  state, _ = step(data.replicate(start), data.shard_batch(batch), None)
  state = data.unreplicate(state)
  frozen = models.batchnorm_cancelled_biases('hourglass', start.params)
  moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()),
                                 start.params, state.params)
  for is_frozen, change in zip(jax.tree_util.tree_leaves(frozen), jax.tree_util.tree_leaves(moved)):
    assert (change == 0.0) == bool(is_frozen)  # Adam's first step moves every other leaf by ~lr


def test_gradients_are_averaged_not_summed_under_shard_map():
  # Under shard_map's default checks the gradient of a replicated parameter is
  # already summed over devices; the step casts params to per-device first.
  data = parallel.DataParallel('shard_map')
  w = data.replicate(np.ones(3, np.float32))
  x = data.shard_batch(np.arange(24, dtype=np.float32).reshape(8, 3))

  def body(w, x):
    grad = jax.grad(lambda w: jnp.sum(w * x))(parallel.as_per_device(w, parallel.BATCH_AXIS))
    return parallel.pmean(grad, parallel.BATCH_AXIS), {}

  grad, _ = data.compile(body, donate_state=False)(w, x)
  np.testing.assert_allclose(data.unreplicate(grad), np.arange(24).reshape(8, 3).mean(0))


def test_distillation_loss_is_alpha_kd_plus_one_minus_alpha_gt(tmp_path):
  teacher_model = models.create_model(dict(tiny_config().model.to_dict(), num_stacks=2))
  # Any teacher will do; random weights cost no compile, flax's init tens of seconds.
  teacher_variables = random_weights.random_variables(teacher_model, jnp.zeros((1, 32, 32, 3)))
  teacher_dir = tmp_path / 'teacher'
  checkpoint.save_variables(str(teacher_dir), teacher_variables,
                            models.model_config(teacher_model))
  config = tiny_config(**{'teacher.workdir': str(teacher_dir),
                          'teacher.kdloss_alpha': 0.3, 'parallel': 'none'})
  model = trainer.create_model(config)
  tx = trainer.create_optimizer(config, trainer.create_learning_rate_fn(config))
  state = trainer.create_train_state(config, model, tx)
  approach = approaches.for_config(config)
  teacher, loaded = trainer.load_teacher(config, approach)
  source, _ = trainer.create_sources(config)
  batch = next(iter(trainer.train_loader(source, config)))
  step = jax.jit(functools.partial(trainer.train_step, approach=approach, model=model,
                                   teacher=teacher, tx=tx,
                                   learning_rate_fn=trainer.create_learning_rate_fn(config),
                                   config=config, axis_name=None))
  # Every example labelled (as without the key, which every other training
  # test runs), then half of them: one compiled step for both.
  _, metrics = step(state, dict(batch, labelled=np.ones(config.batch_size, np.float32)), loaded)

  # The same loss computed independently from the two models' outputs.
  # The hourglass's ImageNet normalisation, written out.
  images = ((jnp.asarray(batch['image'], jnp.float32) / 255.0 - jnp.asarray((0.485, 0.456, 0.406)))
            / jnp.asarray((0.229, 0.224, 0.225)))
  # Op by op: one forward each, cheaper than compiling them.
  student_out, _ = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, images,
                               train=True, mutable=['batch_stats'])
  teacher_out = teacher_model.apply(teacher_variables, images, train=False)[-1]
  target, weight = heatmap.encode(batch['joints'], batch['visible'], image_size=(32, 32),
                                        heatmap_size=(8, 8), sigma=config.sigma)
  kd = sum(losses.heatmap_mse(o, teacher_out, weight) for o in student_out)
  gt = sum(losses.heatmap_mse(o, target, weight) for o in student_out)
  assert abs(kd - gt) > 1e-3  # the two terms differ, so alpha matters
  np.testing.assert_allclose(metrics['kd_loss'], kd, rtol=1e-5)
  np.testing.assert_allclose(metrics['gt_loss'], gt, rtol=1e-5)
  np.testing.assert_allclose(metrics['loss'], 0.3 * kd + 0.7 * gt, rtol=1e-5)

  # Unlabelled images (Fast Pose Distillation's extra data): the teacher is
  # their only target, every joint weighted 1.
  labelled = np.arange(config.batch_size) % 2 == 0
  _, metrics = step(state, dict(batch, labelled=labelled.astype(np.float32)), loaded)
  target = np.where(labelled[:, None, None, None], target, teacher_out)
  weight = np.where(labelled[:, None], weight, 1.0)
  kd = sum(losses.heatmap_mse(o, teacher_out, weight) for o in student_out)
  gt = sum(losses.heatmap_mse(o, target, weight) for o in student_out)
  np.testing.assert_allclose(metrics['loss'], 0.3 * kd + 0.7 * gt, rtol=1e-5)
  np.testing.assert_allclose(metrics['kd_loss'], kd, rtol=1e-5)


@pytest.mark.slow  # teacher and student runs; the distillation loss itself is tested by default
def test_distillation_runs_end_to_end_and_rejects_a_missing_teacher(tmp_path):
  teacher_model = models.create_model(dict(tiny_config().model.to_dict(), num_stacks=2))
  checkpoint.save_variables(
      str(tmp_path / 'teacher'),
      teacher_model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))),
      models.model_config(teacher_model))
  metrics = trainer.train_and_evaluate(
      tiny_config(**{'teacher.workdir': str(tmp_path / 'teacher'),
                     'num_train_steps': 2}), str(tmp_path / 'student'))
  assert np.isfinite(metrics['loss'])
  with pytest.raises(FileNotFoundError, match='nowhere'):
    trainer.train_and_evaluate(tiny_config(**{'teacher.workdir': str(tmp_path / 'nowhere')}),
                             str(tmp_path / 'student2'))


def test_unknown_config_field_and_empty_dataset_are_named(tmp_path):
  config = tiny_config()
  config.data.num_train_exmaples = 5
  with pytest.raises(ValueError, match=r'config\.data\.num_train_exmaples: unknown field'):
    trainer.train_and_evaluate(config, str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='empty dataset'):
    trainer.train_and_evaluate(tiny_config(**{'data.num_train_examples': 0}), str(tmp_path / 'b'))
  with pytest.raises(ValueError, match=r'config\.parallel'):
    trainer.train_and_evaluate(tiny_config(parallel='tpu'), str(tmp_path / 'c'))


@pytest.mark.slow  # ~1 min: two training runs
def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path / 'run')
  trainer.train_and_evaluate(tiny_config(num_train_steps=2), workdir)
  good = _leaves(workdir)
  with pytest.raises(FloatingPointError, match='non-finite'):
    trainer.train_and_evaluate(tiny_config(num_train_steps=4, learning_rate=float('nan')),
                             workdir)
  with checkpoint.Checkpointer(workdir, read_only=True) as checkpointer:
    assert checkpointer.latest_step() == 2
  for (_, before), (_, after) in zip(good, _leaves(workdir)):
    np.testing.assert_array_equal(before, after)


def test_checkpoints_keep_latest_and_best(tmp_path):
  """keep=1: the latest and the best (test_checkpoint.py tests keep=2, the default)."""
  workdir = str(tmp_path / 'run')
  with checkpoint.Checkpointer(workdir, best_metric='pck', async_save=False,
                               keep=1) as checkpointer:
    state = {'w': np.zeros(2, np.float32)}
    for step, pck in ((1, 0.5), (2, 0.9), (3, 0.4), (4, 0.3)):
      checkpointer.save(step, state, {'arch': 'x'}, metrics={'pck': pck}, wait=True)
    checkpointer.save(5, state, {'arch': 'x'}, wait=True)  # no eval at this step
    assert checkpointer.all_steps() == [2, 5]
    assert checkpointer.best_step() == 2 and checkpointer.latest_step() == 5


def test_a_checkpoint_holding_an_old_grain_iterator_state_restores(tmp_path, caplog):
  # Before the data position was the step, checkpoints also held each host's
  # grain iterator state (a `data` item), written here as jaxpose wrote it.
  old_loader = grain.DataLoader(
      data_source=list(range(8)), operations=[grain.Batch(2)],
      sampler=grain.IndexSampler(8, grain.ShardByJaxProcess(drop_remainder=True), shuffle=True,
                                 seed=0))
  iterator = iter(old_loader)
  next(iterator)
  state = {'w': np.arange(3, dtype=np.float32)}
  with ocp.CheckpointManager(
      checkpoint.checkpoint_dir(str(tmp_path)),
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'model': ocp.JsonCheckpointHandler(),
                     'data': grain.PyGrainCheckpointHandler()}) as manager:
    manager.save(7, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                            model=ocp.args.JsonSave({'arch': 'x'}),
                                            data=grain.PyGrainCheckpointSave(iterator)))
    manager.wait_until_finished()
  assert (tmp_path / 'checkpoints' / '7' / 'data').is_dir()
  with caplog.at_level(logging.INFO), checkpoint.Checkpointer(
      str(tmp_path), read_only=True) as checkpointer:
    restored, model = checkpointer.restore(state_template=state)
  np.testing.assert_array_equal(restored['w'], state['w'])
  assert model == {'arch': 'x'} and 'ignoring its grain iterator state' in caplog.text


def _train_command(workdir, steps):
  return [sys.executable, '-m', 'jaxpose.cli', 'train', f'--config={QUICKSTART}',
          f'--workdir={workdir}', '--config.model.num_features=8', '--config.model.num_stacks=1',
          '--config.batch_size=16', f'--config.num_train_steps={steps}',
          '--config.log_every_steps=1', '--config.eval_every_steps=1000',
          '--config.checkpoint_every_steps=4', '--config.data.num_train_examples=64',
          '--config.data.num_eval_examples=8', '--config.data.image_size=(48, 48)',
          '--config.model.depth=2', '--config.input_size=(32, 32)',
          '--config.data.read_threads=1']  # an unset (placeholder) field takes an int


def _run_to_the_end(command: list[str], env: dict) -> None:
  """Runs a `jaxpose train` command; a failure shows the end of its stderr."""
  result = subprocess.run(command, env=env, capture_output=True)
  assert result.returncode == 0, result.stderr.decode(errors='replace')[-3000:]


@pytest.mark.slow  # ~2 min: three training processes
def test_sigterm_saves_and_the_rerun_ends_where_an_uninterrupted_run_does(tmp_path):
  steps = 12
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  _run_to_the_end(_train_command(tmp_path / 'straight', steps), env)

  interrupted = tmp_path / 'interrupted'
  process = subprocess.Popen(_train_command(interrupted, steps), env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  metrics_csv = interrupted / 'metrics.csv'
  deadline = time.time() + 120
  while time.time() < deadline and process.poll() is None:
    if metrics_csv.exists() and metrics_csv.read_text().count('train/loss') >= 5:
      break
    time.sleep(0.05)
  process.send_signal(signal.SIGTERM)
  stdout, stderr = process.communicate(timeout=120)
  # A preemption is not a failure: saved, exit 0, the step on the last line.
  assert process.returncode == 0, stderr.decode(errors='replace')[-3000:]
  assert b'SIGTERM: saved' in stderr
  with checkpoint.Checkpointer(str(interrupted), read_only=True) as checkpointer:
    stopped_at = checkpointer.latest_step()
  assert 5 <= stopped_at < steps
  assert json.loads(stdout.decode().strip().splitlines()[-1]) == {
      'preempted': True, 'step': stopped_at, 'checkpoint': f'{interrupted}/checkpoints/{stopped_at}'}

  _run_to_the_end(_train_command(interrupted, steps), env)
  for (path, a), (_, b) in zip(_leaves(tmp_path / 'straight'), _leaves(interrupted)):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7, err_msg=str(path))


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('localhost', 0))
    return probe.getsockname()[1]


def _two_processes(workdir: pathlib.Path, steps: int, port: int) -> list[subprocess.Popen]:
  """Two `jaxpose train` processes of 4 CPU devices each, one run (shard_map over 8), started."""
  command = _train_command(workdir, steps) + [
      '--config.parallel=shard_map', f'--coordinator_address=localhost:{port}',
      '--num_processes=2', '--config.distributed.heartbeat_timeout_seconds=10']
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  return [subprocess.Popen(command + [f'--process_id={index}'], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE) for index in range(2)]


def _wait_for_steps(workdir: pathlib.Path, count: int, processes: list[subprocess.Popen]) -> None:
  """Waits until process 0 has logged `count` train steps (or a process ended)."""
  metrics_csv = workdir / 'metrics.csv'
  deadline = time.time() + 300
  while time.time() < deadline and all(p.poll() is None for p in processes):
    if metrics_csv.exists() and metrics_csv.read_text().count('train/loss') >= count:
      return
    time.sleep(0.1)
  raise AssertionError(f'{workdir}: fewer than {count} steps logged')


def _finish(processes: list[subprocess.Popen], timeout: float = 300
            ) -> list[tuple[int, str, str, float]]:
  """Reads each process to its end (pipes drained, so none blocks on a full one) -> (exit status, stdout, stderr, seconds from now)."""
  start, ended = time.monotonic(), []
  for process in processes:
    stdout, stderr = process.communicate(timeout=timeout)
    ended.append((process.returncode, stdout, stderr, time.monotonic() - start))
  return ended


@pytest.mark.slow  # ~5 min on 2 cores: four two-process runs
def test_sigterm_to_one_process_saves_one_agreed_step_and_a_lost_process_is_named(tmp_path):
  """Issue 29: a SIGTERM to process 1 alone stops both at one step; a SIGKILL of process 1 is named by process 0."""
  steps = 12
  for code, _, stderr, _ in _finish(_two_processes(tmp_path / 'straight', steps, _free_port())):
    assert code == 0, stderr[-3000:]
  # Process 0 alone writes what the run shares: one events file, each step logged once.
  assert len(list((tmp_path / 'straight').rglob('events.out.tfevents*'))) == 1
  logged = [line.split(',')[0] for line in
            (tmp_path / 'straight' / 'metrics.csv').read_text().splitlines()
            if ',train/loss,' in line]
  assert logged == [str(step) for step in range(1, steps + 1)]

  interrupted = tmp_path / 'interrupted'
  processes = _two_processes(interrupted, steps, _free_port())
  _wait_for_steps(interrupted, 5, processes)
  processes[1].send_signal(signal.SIGTERM)  # process 1 only
  results = _finish(processes, timeout=120)  # both end within 120 s, or this raises
  assert [code for code, *_ in results] == [0, 0], [r[2][-2000:] for r in results]
  saved = [json.loads(stdout.strip().splitlines()[-1]) for _, stdout, _, _ in results]
  assert saved[0] == saved[1] and saved[0]['preempted'] is True  # one agreed step
  with checkpoint.Checkpointer(str(interrupted), read_only=True) as checkpointer:
    assert checkpointer.latest_step() == saved[0]['step'] < steps
  assert all('SIGTERM: saved' in stderr for _, _, stderr, _ in results)
  for code, _, stderr, _ in _finish(_two_processes(interrupted, steps, _free_port())):
    assert code == 0, stderr[-3000:]
  straight, resumed = _leaves(tmp_path / 'straight'), _leaves(interrupted)
  assert _relative_l2_error([v for _, v in straight], [v for _, v in resumed]) <= 1e-6

  killed = tmp_path / 'killed'
  processes = _two_processes(killed, steps, _free_port())
  _wait_for_steps(killed, 6, processes)  # a checkpoint every 4 steps: step 4 is saved
  processes[1].kill()
  code, _, stderr, seconds = _finish(processes[:1], timeout=180)[0]
  processes[1].communicate()
  assert code == 1 and seconds < 180
  assert stderr.strip().splitlines()[-1].startswith(
      'jaxpose: process 1 of 2 lost (no heartbeat for 10 s): rerun all 2 processes with the same '
      'command; training resumes from step '), stderr[-2000:]
  for code, _, stderr, _ in _finish(_two_processes(killed, steps, _free_port())):
    assert code == 0, stderr[-3000:]
  with checkpoint.Checkpointer(str(killed), read_only=True) as checkpointer:
    assert checkpointer.latest_step() == steps


@pytest.mark.slow  # 21 min at load 10 on 2 cores: two jax.distributed processes, three runs in one
def test_two_processes_and_one_train_alike_and_resume_each_other(tmp_path):
  # The multi-host path for real: two `jaxpose train` processes of 4 CPU
  # devices each, joined by jax.distributed (gloo collectives), shard_map over
  # all 8 devices, each process loading its share of every global batch. One
  # process of 8 devices, same config, reads the same global batches
  # (jaxpose.data.loader.GlobalBatchSampler): before, each host shuffled its
  # own slice and the two ended three steps 4e-2 apart. Measured now, params /
  # batch statistics: 8.5e-6 / 3.6e-6 after three steps. The two processes'
  # checkpoint resumed in one process continues exactly as one process does
  # from that state (0.0), and ends 6.2e-5 / 8.2e-5 from a one-process run
  # straight through: the data are the same (the losses agree to 1e-7 over
  # steps 1-2), but the order of the cross-process sums differs, and Adam
  # amplifies that rounding in the early layers' gradients, which pass several
  # BatchNorm backward subtractions (one process on 1 and on 8 devices parts
  # as fast: 1.4e-6 after three steps, 2.6e-5 after five; SGD at lr 1e-2 no
  # better: 3.6e-5 after three).
  quickstart = sweep.load_config_file(str(QUICKSTART))
  config = tiny_config(parallel='shard_map', warmup_steps=quickstart.warmup_steps)
  workdir = tmp_path / 'two_hosts'
  command = [sys.executable, '-m', 'jaxpose.cli', 'train', f'--config={QUICKSTART}',
             f'--workdir={workdir}', '--config.parallel=shard_map',
             '--config.model.num_joints=17',  # as tiny_config writes it out
             '--config.model.num_features=8', '--config.model.num_stacks=1',
             '--config.batch_size=16', '--config.num_train_steps=3',
             '--config.log_every_steps=1', '--config.eval_every_steps=1000',
             '--config.checkpoint_every_steps=1000', '--config.data.num_train_examples=64',
             '--config.data.num_eval_examples=8', '--config.data.image_size=(48, 48)',
          '--config.model.depth=2', '--config.input_size=(32, 32)',
             f'--coordinator_address=localhost:{_free_port()}', '--num_processes=2']
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=4')
  hosts = [subprocess.Popen(command + [f'--process_id={index}'], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for index in range(2)]
  for host in hosts:
    _, stderr = host.communicate(timeout=600)
    assert host.returncode == 0, stderr.decode(errors='replace')[-3000:]
  saved_config = json.loads((workdir / 'config.json').read_text())
  assert saved_config == json.loads(config.to_json_best_effort())  # the same run, described twice
  two_hosts, _ = checkpoint.restore_variables(str(workdir))

  assert jax.process_count() == 1 and jax.device_count() == 8
  trainer.train_and_evaluate(config, str(tmp_path / 'one_host'))
  one_host, _ = checkpoint.restore_variables(str(tmp_path / 'one_host'))
  for collection in ('params', 'batch_stats'):
    assert _relative_l2_error(one_host[collection], two_hosts[collection]) < 1e-5, collection
  learning_rate_fn = trainer.create_learning_rate_fn(config)
  tx = trainer.create_optimizer(config, learning_rate_fn)
  start = trainer.create_train_state(config, trainer.create_model(config), tx)
  assert _relative_l2_error(start.params, one_host['params']) > 1e-4  # it trained

  # Two processes' checkpoint at step 3, resumed by one process to step 5.
  longer = tiny_config(parallel='shard_map', warmup_steps=quickstart.warmup_steps,
                       num_train_steps=5)
  shutil.copytree(workdir, tmp_path / 'resumed')
  trainer.train_and_evaluate(longer, str(tmp_path / 'resumed'))
  resumed, _ = checkpoint.restore_variables(str(tmp_path / 'resumed'))
  # What it must have done: steps 4 and 5 from their state on the global
  # batches of steps 4 and 5.
  with checkpoint.Checkpointer(str(workdir), read_only=True) as checkpointer:
    state, _ = checkpointer.restore(state_template=start)
  source, _ = trainer.create_sources(longer)
  batches = iter(trainer.train_loader(source, longer, start_step=3))
  data = parallel.DataParallel('shard_map')
  step = compiled_train_step(data, longer, tx, learning_rate_fn)
  state = data.replicate(state)
  for _ in range(2):
    state, _ = step(state, data.shard_batch(next(batches)), None)
  state = data.unreplicate(state)
  trainer.train_and_evaluate(longer, str(tmp_path / 'straight'))
  straight, _ = checkpoint.restore_variables(str(tmp_path / 'straight'))
  for collection in ('params', 'batch_stats'):
    assert _relative_l2_error(getattr(state, collection), resumed[collection]) < 1e-7
    assert _relative_l2_error(straight[collection], resumed[collection]) < 2e-4, collection
  # The BatchNorm statistics follow the last batches: steps 4 and 5 on other
  # batches would have ended far from the straight run.
  assert _relative_l2_error(straight['batch_stats'], one_host['batch_stats']) > 1e-2


def _lightweight_openpose_config():
  config = tiny_config(**{'parallel': 'none', 'input_size': (64, 64), 'sigma': 7.0,
                          'batch_size': 4, 'num_train_steps': 3,
                          'data.max_people': 3, 'best_metric': 'loss', 'best_mode': 'min',
                          'optimizer': 'adam', 'learning_rate': 1e-3})
  config.model = config_lib.lightweight_openpose_model(num_refinement_stages=1)
  return config


def test_lightweight_openpose_targets_are_made_on_the_device():
  # Bottom-up: PAF targets made inside jit from padded people.
  config = _lightweight_openpose_config()
  source, _ = trainer.create_sources(config)
  batch = next(iter(trainer.train_loader(source, config)))
  assert batch['keypoints'].shape == (4, 3, 18, 2) and batch['mask'].shape == (4, 8, 8)
  targets = jax.jit(functools.partial(approaches.for_config(config).make_targets,
                                      config=config))(batch)
  assert targets['heatmaps'].shape == (4, 8, 8, 19) and targets['pafs'].shape == (4, 8, 8, 38)
  assert np.isfinite(targets['pafs']).all() and targets['heatmaps'][..., :18].max() > 0.5


@pytest.mark.slow  # ~30 s: Lightweight OpenPose's train step compiles; its gradients are checked by default (test_openpose's remat test)
def test_lightweight_openpose_trains_on_generated_people(tmp_path):
  # The staged masked L2, three steps and a checkpoint that knows its architecture.
  config = _lightweight_openpose_config()
  metrics = trainer.train_and_evaluate(config, str(tmp_path / 'lwop'))
  assert np.isfinite(metrics['loss']) and metrics['step'] == 3
  _, model_config = checkpoint.restore_variables(str(tmp_path / 'lwop'))
  assert model_config['arch'] == 'lightweight_openpose'
  assert model_config['input_size'] == [64, 64] and model_config['stride'] == 8


def test_cli_names_a_misspelt_config_field(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'jaxpose.cli', 'train', f'--config={QUICKSTART}',
       f'--workdir={tmp_path}', '--config.model.num_stackz=2'],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 2  # a usage error
  assert ('unknown config field in --config.model.num_stackz=2. '
          'Did you mean "num_stacks"') in result.stderr
  assert 'Traceback' not in result.stderr


def test_copy_matching_takes_what_matches_in_path_and_shape():
  target = {'params': {'conv': {'kernel': np.zeros((3, 3, 4, 8), np.float32)},
                       'head': {'kernel': np.zeros((1, 1, 8, 14), np.float32),
                                'bias': np.zeros(14, np.float32)},
                       'extra': {'bias': np.zeros(2, np.float32)}}}
  source = {'params': {'conv': {'kernel': np.ones((3, 3, 4, 8), np.float64)},
                       'head': {'kernel': np.ones((1, 1, 8, 17)), 'bias': np.ones(17)}},
            'batch_stats': {'bn': {'mean': np.ones(8)}}}
  merged, copied, fresh = checkpoint.copy_matching(target, source)
  assert copied == ['params/conv/kernel']
  assert fresh == ['params/head/kernel', 'params/head/bias', 'params/extra/bias']
  np.testing.assert_array_equal(merged['params']['conv']['kernel'], 1.0)
  assert merged['params']['conv']['kernel'].dtype == np.float32  # the target's dtype
  np.testing.assert_array_equal(merged['params']['head']['bias'], 0.0)
  assert 'batch_stats' not in merged  # only the target's own leaves


@pytest.mark.slow  # ~25 s: two Lightweight OpenPose models initialised on the CPU
def test_init_from_copies_what_matches_and_leaves_the_rest_fresh(tmp_path):
  # A bottom-up model: a Lightweight OpenPose of 1 refinement stage is the
  # source; the new one has 2 (its second stage has no counterpart).
  config = tiny_config()
  config.model = config_lib.lightweight_openpose_model(num_refinement_stages=1)
  config.model.num_channels = 16
  source = models.create_model(config.model.to_dict())
  variables = source.init(jax.random.key(3), jnp.zeros((1, 32, 32, 3)), train=False)
  checkpoint.save_variables(str(tmp_path / 'source'), variables,
                            models.describe(source, source.DEFAULT_NORMALIZATION, (32, 32)), step=7)
  config.model.num_refinement_stages = 2
  config.init_from = str(tmp_path / 'source')
  tx = trainer.create_optimizer(config, trainer.create_learning_rate_fn(config))
  fresh_state = _fresh_state(config, tx)
  state = trainer.init_from(fresh_state, config)
  ours = flax.traverse_util.flatten_dict(state.params, sep='/')
  theirs = flax.traverse_util.flatten_dict(variables['params'], sep='/')
  before = flax.traverse_util.flatten_dict(fresh_state.params, sep='/')
  copied = [p for p in ours if p in theirs and ours[p].shape == theirs[p].shape]
  assert copied and len(copied) < len(ours)
  for path in ours:
    expected = theirs[path] if path in copied else before[path]
    np.testing.assert_array_equal(ours[path], expected, err_msg=path)
  stats = flax.traverse_util.flatten_dict(state.batch_stats, sep='/')
  source_stats = flax.traverse_util.flatten_dict(variables['batch_stats'], sep='/')
  assert all(np.array_equal(stats[p], source_stats[p]) for p in stats if p in source_stats)
  # The optimizer state is the fresh one; a checkpoint of another family matches nothing.
  assert jax.tree_util.tree_all(jax.tree_util.tree_map(
      np.array_equal, state.opt_state, fresh_state.opt_state))
  config.model = tiny_config().model
  with pytest.raises(ValueError, match='holds no parameter of this model'):
    trainer.init_from(_fresh_state(config, tx), config)


def _fresh_state(config, tx) -> trainer.TrainState:
  """`trainer.create_train_state`'s state, its model initialised without compiling (seconds, not tens)."""
  variables = trainer.create_model(config).init(jax.random.key(config.seed),
                                                jnp.zeros((1, 32, 32, 3)), train=False)
  return trainer.TrainState(step=np.zeros((), np.int32), params=variables['params'],
                            batch_stats=variables['batch_stats'],
                            opt_state=tx.init(variables['params']),
                            rng=np.zeros(2, np.uint32))
