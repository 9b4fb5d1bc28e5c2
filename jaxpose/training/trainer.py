"""Training: the train state, the per-device train and eval steps, and the loop.

Reads top to bottom as the flax examples do: `create_model`, `create_learning_rate_fn`,
`create_optimizer`, `compute_loss`, `train_step`, `eval_step`,
`create_train_state`, `train_and_evaluate`.

A batch from the loader holds uint8 images and joint coordinates. The step
normalises the images and makes the targets on the device, runs the model
with BatchNorm statistics averaged across devices, takes the loss (optionally
with a frozen teacher's outputs), averages gradients and metrics with
`pmean`, and applies the optax update. What is specific to top-down or
bottom-up (normalisation, targets, loss, metrics, data transform) is the
config's approach (`jaxpose.approaches`). `jaxpose.training.parallel` runs the one
per-device body under pmap, shard_map or on one device; `jaxpose.training.mfu` counts
the compiled step's FLOPs (logged as TFLOP/s per device and MFU) and traces
the steps `config.profile_steps` names.
"""

import functools
import json
import os
import time
from typing import Any

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxpose import approaches, models
from jaxpose.training import checkpoint
from jaxpose.training import hosts
from jaxpose.training import mfu
from jaxpose.training import parallel
from jaxpose.training import preemption
from jaxpose.training import progressive
from jaxpose import config as config_lib
from jaxpose.data import loader, sources
from jaxpose.training import metric_writers


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a PyTree of arrays."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # raw uint32 key, so that Orbax stores it as a plain array


def compute_dtype_name(config: ml_collections.ConfigDict) -> str:
  """config.compute_dtype on this backend: 'float32' | 'bfloat16' ('auto' resolved)."""
  return config_lib.compute_dtype(config, jax.default_backend())


def create_model(config: ml_collections.ConfigDict, axis_name: str | None = None,
                 approach: approaches.Approach | None = None) -> nn.Module:
  """The config's model, computing in its compute dtype; `axis_name` makes BatchNorm average across devices.

  `approach`: the config's, if the caller holds it already (the trainer builds it once).
  """
  return (approach or approaches.for_config(config)).create_model(
      axis_name=axis_name, compute_dtype=jnp.dtype(compute_dtype_name(config)))


def create_learning_rate_fn(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warm-up to `learning_rate`, then times `lr_decay_factor` at each of `lr_decay_steps`."""
  decays = {int(step): config.lr_decay_factor for step in config.lr_decay_steps}
  constant = optax.piecewise_constant_schedule(config.learning_rate, decays)
  if not config.warmup_steps:
    return constant
  warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
  return optax.join_schedules([warmup, constant], [config.warmup_steps])


def create_optimizer(config: ml_collections.ConfigDict,
                     learning_rate_fn: optax.Schedule) -> optax.GradientTransformation:
  """RMSprop, Adam or SGD with PyTorch's defaults, and L2 weight decay as PyTorch adds it."""
  if config.optimizer == 'rmsprop':
    # torch.optim.RMSprop: alpha 0.99, eps 1e-8 added outside the square root.
    optimizer = optax.rmsprop(learning_rate_fn, decay=0.99, eps=1e-8, eps_in_sqrt=False)
  elif config.optimizer == 'adam':
    optimizer = optax.adam(learning_rate_fn)
  elif config.optimizer == 'sgd':
    # torch.optim.SGD(momentum=0.9, nesterov=True)
    optimizer = optax.sgd(learning_rate_fn, momentum=0.9, nesterov=True)
  else:
    raise ValueError('config.optimizer: expected "rmsprop", "adam" or "sgd", got '
                     f'{config.optimizer!r}')
  if config.weight_decay:
    optimizer = optax.chain(optax.add_decayed_weights(config.weight_decay), optimizer)
  if config.freeze_biases_before_batchnorm:
    # See models.batchnorm_cancelled_biases: these biases only collect noise.
    cancelled = functools.partial(models.batchnorm_cancelled_biases, config.model.arch)
    optimizer = optax.chain(optimizer, optax.masked(optax.set_to_zero(), cancelled))
  return optimizer


def compute_loss(params, batch_stats, batch: dict, targets: dict, teacher_outputs: Any, *,
                 approach: approaches.Approach, model: nn.Module,
                 config: ml_collections.ConfigDict):
  """Loss of one device's batch -> (loss, (new batch_stats, metrics, outputs))."""
  outputs, new_state = approach.forward(model, {'params': params, 'batch_stats': batch_stats},
                                        batch, train=True, mutable=['batch_stats'])
  loss, metrics = approach.loss(outputs, batch, targets, teacher_outputs, config)
  return loss, (new_state['batch_stats'], metrics, outputs)


def train_step(state: TrainState, batch: dict, teacher_variables: Any, *,
               approach: approaches.Approach, model: nn.Module,
               teacher: approaches.Approach | None,
               tx: optax.GradientTransformation, learning_rate_fn: optax.Schedule,
               config: ml_collections.ConfigDict,
               axis_name: str | None) -> tuple[TrainState, dict]:
  """One optimisation step on one device's share of the batch; collectives over `axis_name`."""
  targets = approach.make_targets(batch, config)
  teacher_outputs = None
  if teacher is not None:
    # The teacher's own normalisation: a converted checkpoint may differ from
    # the student. It computes in the student's dtype (a family without one:
    # float32); its outputs are float32.
    teacher_outputs = teacher.network_fn(
        teacher_variables, compute_dtype=getattr(model, 'compute_dtype', None))(batch['image'])

  grad_fn = jax.value_and_grad(
      functools.partial(compute_loss, approach=approach, model=model, config=config),
      has_aux=True)
  (loss, (batch_stats, metrics, outputs)), grads = grad_fn(
      parallel.as_per_device(state.params, axis_name), state.batch_stats, batch,
      targets, teacher_outputs)
  grads = parallel.pmean(grads, axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)

  metrics['loss'] = loss
  metrics.update(approach.train_metrics(jax.lax.stop_gradient(outputs), batch, config))
  metrics = parallel.pmean(metrics, axis_name)
  metrics['learning_rate'] = learning_rate_fn(state.step)
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state)
  return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, approach: approaches.Approach,
              model: nn.Module, config: ml_collections.ConfigDict,
              axis_name: str | None) -> dict:
  """Eval-mode forward on one device's share -> metric sums over all devices."""
  outputs = approach.forward(model, {'params': state.params, 'batch_stats': state.batch_stats},
                             batch, train=False)
  targets = approach.make_targets(batch, config)
  weight = batch['example_mask'].astype(jnp.float32)
  sums = approach.eval_sums(outputs, batch, targets, weight, config)
  sums['examples'] = jnp.sum(weight)
  return parallel.psum(sums, axis_name)


def create_sources(config: ml_collections.ConfigDict,
                   approach: approaches.Approach | None = None):
  """config.data -> (train source, eval source) of the kind the config's approach reads.

  Raises ValueError first if the model cannot learn the dataset's keypoints.
  """
  approach = approach or approaches.for_config(config)
  approach.check_data(config, sources.data_skeleton(config))
  return sources.create_sources(config, approach.per_person)


def create_transform(config: ml_collections.ConfigDict, train: bool,
                     approach: approaches.Approach | None = None):
  """The approach's grain transform of the config's examples; augmented only for training."""
  approach = approach or approaches.for_config(config)
  return approach.transform(config, sources.data_skeleton(config), train)


def train_loader(source, config: ml_collections.ConfigDict, start_step: int = 0,
                 approach: approaches.Approach | None = None):
  """Endless, shuffled, augmented training batches of this host from `start_step` on (grain)."""
  return loader.train_loader(source, create_transform(config, train=True, approach=approach),
                             config, start_step)


def create_train_state(config: ml_collections.ConfigDict, model: nn.Module,
                       tx: optax.GradientTransformation) -> TrainState:
  """A fresh host-side state: initialised variables, optimizer state, step 0."""
  rng = jax.random.PRNGKey(config.seed)
  init_rng, state_rng = jax.random.split(rng)
  width, height = config.input_size
  variables = jax.jit(functools.partial(model.init, train=False))(
      init_rng, jnp.zeros((1, height, width, 3), jnp.float32))
  params = variables['params']
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     batch_stats=variables.get('batch_stats', {}),
                     opt_state=tx.init(params), rng=state_rng)
  return jax.tree_util.tree_map(np.asarray, state)


def init_from(state: TrainState, config: ml_collections.ConfigDict) -> TrainState:
  """A fresh state -> its params and BatchNorm statistics taken from config.init_from where path and shape match.

  The rest (another layout's heads) keep their initialisation, and the
  optimizer state stays fresh. Logs how many were copied and which were not.
  """
  variables, _ = checkpoint.restore_variables(config.init_from, config.init_from_step)
  fresh_variables = {'params': state.params, 'batch_stats': state.batch_stats}
  merged, copied, fresh = checkpoint.copy_matching(fresh_variables, variables)
  sizes = {path: int(np.size(leaf)) for path, leaf in
           flax.traverse_util.flatten_dict(fresh_variables, sep='/').items()}
  total = max(sum(sizes.values()), 1)
  # On by default (a warning's level): which weights a run starts from is
  # what a user checks first when fine-tuning goes wrong.
  logging.warning('config.init_from %s: copied %d of %d arrays (%.1f%% of the values); fresh: %s',
               config.init_from, len(copied), len(sizes),
               100 * sum(sizes[path] for path in copied) / total, ', '.join(fresh) or 'none')
  if not copied:
    raise ValueError(f'config.init_from: {config.init_from} holds no parameter of this model\'s '
                     f'paths and shapes (config.model.arch {config.model.arch!r})')
  return state.replace(params=merged['params'], batch_stats=merged['batch_stats'])


def load_teacher(config: ml_collections.ConfigDict, approach: approaches.Approach
                 ) -> tuple[approaches.Approach | None, Any]:
  """The frozen teacher of a distillation config: (its approach, variables), or (None, None)."""
  if not config.teacher.workdir:
    return None, None
  approach.check_teacher(approach.description, config.teacher.workdir)  # can it be taught?
  variables, description = checkpoint.restore_variables(config.teacher.workdir)
  approach.check_teacher(description, config.teacher.workdir)
  return approaches.for_description(description), variables


def _check_finite(metrics: dict, step: int, workdir: str) -> None:
  if not all(np.isfinite(v) for v in metrics.values()):
    raise FloatingPointError(
        f'{workdir}: non-finite training metrics at step {step}: {metrics}. Stopping '
        'without saving, so the last checkpoint stays the last good one; lower '
        'config.learning_rate or check the data.')


def evaluate_model(state, eval_fn, data: parallel.DataParallel, eval_source, eval_transform,
                   config, approach: approaches.Approach) -> dict:
  """One pass over the eval split -> summarised metrics."""
  totals = None
  for batch in loader.eval_batches(eval_source, eval_transform,
                                   data.host_batch_size(config.batch_size)):
    sums = data.unreplicate(eval_fn(state, data.shard_batch(batch)))
    totals = sums if totals is None else jax.tree_util.tree_map(np.add, totals, sums)
  if totals is None:
    raise ValueError('eval split: no examples (config.data.num_eval_examples)')
  host = data.unreplicate(state)  # the approach's host-side metrics (STAF: MOTA)
  return approach.summarize(totals, totals.get('examples', 1)) | approach.host_eval(
      {'params': host.params, 'batch_stats': host.batch_stats}, config)


def _previous_summary(workdir: str, step: int) -> dict:
  """The metrics of WORKDIR/summary.json if it was written at `step`, else {}."""
  try:
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  except (OSError, ValueError):
    return {}
  return summary if summary.get('step') == step else {}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates as the config says, checkpointing into workdir; returns final metrics."""
  config_lib.validate(config)
  # Built before anything is written: it reads the data's keypoint layout,
  # and a broken annotation file fails here with nothing left behind.
  approach = approaches.for_config(config)
  os.makedirs(workdir, exist_ok=True)
  data = parallel.DataParallel(config.parallel)
  model = create_model(config, axis_name=data.axis_name, approach=approach)
  eval_model = create_model(config, approach=approach)
  learning_rate_fn = create_learning_rate_fn(config)
  tx = create_optimizer(config, learning_rate_fn)
  teacher, teacher_variables = load_teacher(config, approach)
  # What the weights need to be rebuilt and fed as they were trained.
  model_description = models.describe(eval_model, approach.normalization, config.input_size,
                                      sources.data_skeleton(config))

  train_source, eval_source = create_sources(config, approach)
  eval_transform = create_transform(config, train=False, approach=approach)
  progressive.check(config, approach)

  state = create_train_state(config, eval_model, tx)
  checkpoint.refuse_if_every_step_is_corrupt(checkpoint.checkpoint_dir(workdir))
  checkpointer = checkpoint.Checkpointer(workdir, best_metric=config.best_metric,
                                       best_mode=config.best_mode,
                                       keep=config.get('keep_checkpoints', 2))
  hosts.set_resume_step(None, checkpointer.directory)
  if checkpointer.latest_step() is not None:
    state, _ = checkpointer.restore(state_template=state)
    logging.info('Resumed from %s at step %d', checkpointer.directory, int(state.step))
    hosts.set_resume_step(int(state.step), checkpointer.directory)
  elif config.get('init_from'):  # a run's own checkpoints come first: resuming ignores it
    state = init_from(state, config)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))

  def start_phase(step):
    """The loader and train step of the phase that trains `step`, at its input size (`progressive`)."""
    phase = progressive.phase_config(config, step)
    p_train_step = data.compile(
        functools.partial(train_step, approach=approach, model=model, teacher=teacher, tx=tx,
                          learning_rate_fn=learning_rate_fn, config=phase,
                          axis_name=data.axis_name),
        num_replicated_args=1)
    # The data position is the step: the loader starts at it, whatever the topology.
    batches = loader.TimedIterator(parallel.prefetch_to_device(
        train_loader(train_source, phase, step - 1, approach), data))
    return progressive.phase_end(config, step), batches, p_train_step

  p_eval_step = data.compile(
      functools.partial(eval_step, approach=approach, model=eval_model, config=config,
                        axis_name=data.axis_name), donate_state=False)

  start_step = int(state.step)
  device_state = data.replicate(state)
  phase_end, batches, p_train_step = start_phase(start_step + 1)
  device_teacher = data.replicate(teacher_variables) if teacher is not None else None
  writer = metric_writers.MetricWriter(workdir, enabled=jax.process_index() == 0)
  final = {}
  if start_step == 0:
    final = evaluate_model(device_state, p_eval_step, data, eval_source, eval_transform,
                           config, approach)
    writer.write(0, {f'eval/{k}': v for k, v in final.items()})
    logging.info('step 0 (untrained): %s', final)

  def save(step, metrics=None, wait=False):
    host_state = data.unreplicate(device_state)
    # A NaN never overwrites the last good checkpoint.
    variables = (host_state.params, host_state.batch_stats)
    if not all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(variables)):
      raise FloatingPointError(
          f'{workdir}: non-finite parameters at step {step}; not saving, so '
          f'{checkpointer.directory}/{checkpointer.latest_step()} stays the last good '
          'checkpoint. Lower config.learning_rate or check the data.')
    checkpointer.save(step, host_state, model_description, metrics=metrics, wait=wait)
    hosts.set_resume_step(step, checkpointer.directory)  # named if a process is lost

  # One progress bar per run, not per host.
  progress = metric_writers.Progress(config.num_train_steps, initial=start_step,
                                     enabled=jax.process_index() == 0)
  window, window_start = [], time.perf_counter()
  compiled_step = throughput = None
  with preemption.Preemption() as sigterm, mfu.StepTrace(
      config.profile_steps, os.path.join(workdir, 'profile')) as trace:
    for step in range(start_step + 1, config.num_train_steps + 1):
      if step > phase_end:  # the next input size: its loader and compiled step
        phase_end, batches, p_train_step = start_phase(step)
        compiled_step = None
      if not window:  # a log window starts; evaluating and saving are not training
        window_start, _ = time.perf_counter(), batches.take_waited()
      batch = next(batches)
      if compiled_step is None:
        # Compiled ahead of time, once per input size, to hold the program whose FLOPs XLA
        # counts. Compiling is not training either: a window the next input size starts in
        # the middle of leaves its compile time out.
        compile_start = time.perf_counter()
        compiled_step = p_train_step.lower(device_state, batch, device_teacher).compile()
        throughput = mfu.Throughput(compiled_step, compute_dtype_name(config))
        if window:
          window_start += time.perf_counter() - compile_start
        else:
          window_start, _ = time.perf_counter(), batches.take_waited()
      trace.before(step)
      device_state, metrics = compiled_step(device_state, batch, device_teacher)
      trace.after(step, (device_state, metrics))
      window.append(metrics)
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        host = jax.tree_util.tree_map(lambda *x: np.mean(x), *data.unreplicate(window))
        _check_finite(host, step, workdir)
        elapsed = time.perf_counter() - window_start
        summary = {'train/loss': host['loss'], 'train/learning_rate': host['learning_rate'],
                   'train/images_per_second': len(window) * config.batch_size / elapsed,
                   'train/input_wait_fraction': batches.take_waited() / elapsed,
                   **throughput.summary(elapsed / len(window))}
        # The approach's own metrics (top-down: PCK, the distillation's parts).
        summary.update({f'train/{key}': value for key, value in approach.summarize(host).items()
                        if key != 'loss'})
        writer.write(step, summary)
        progress.update(step, summary)
        window = []
      eval_metrics = None
      if step % config.eval_every_steps == 0 or step == config.num_train_steps:
        eval_metrics = evaluate_model(device_state, p_eval_step, data, eval_source,
                                      eval_transform, config, approach)
        writer.write(step, {f'eval/{k}': v for k, v in eval_metrics.items()})
        final = eval_metrics
      # Asked at every step: on several processes the answer is agreed (`preemption`).
      stopping = sigterm.reached(step)
      if (step % config.checkpoint_every_steps == 0 or step == config.num_train_steps
          or eval_metrics is not None or stopping):
        save(step, eval_metrics, wait=stopping)
      if stopping:
        checkpointer.close()
        writer.close()
        raise preemption.Preempted(f'SIGTERM: saved {checkpointer.directory}/{step}; run the '
                                   'same command to resume', step,
                                   f'{checkpointer.directory}/{step}')
  checkpointer.close()
  progress.close()
  if not final:  # a rerun of a finished run: nothing was evaluated now; keep the last summary
    final = _previous_summary(workdir, config.num_train_steps)
  final = dict(final, step=config.num_train_steps)
  writer.write_summary(final)
  writer.close()
  return final
