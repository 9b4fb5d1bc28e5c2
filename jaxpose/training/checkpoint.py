"""Orbax checkpoints: train state and model description.

A jaxpose workdir holds `checkpoints/<step>/`, written by an Orbax
`CheckpointManager`, each step with these items:
- `state`: a PyTree of arrays. For training, the whole `TrainState` (step,
  params, batch_stats, opt_state, rng); for `jaxpose convert`, only
  {'params', 'batch_stats'}. Saved unreplicated, so it restores onto any number
  of devices.
- `model`: the JSON description of the model (`jaxpose.models.model_config`),
  so a checkpoint can be evaluated or exported knowing only its directory.
The data position is the train step (`jaxpose.data.loader.make_loader`
starts at it), so a resumed run sees the batches an uninterrupted one would,
on any number of processes, devices and grain workers. Checkpoints written
before held a `data` item too, grain's iterator state per host, which
resumed only on the topology that wrote it; restoring ignores it (logged).

`Checkpointer` keeps the latest checkpoint and the best one by an eval metric
(a preservation policy that keeps both: `best_fn` with `max_to_keep` alone
would delete the latest when it is not the best).
"""

from collections.abc import Mapping
import os
from typing import Any

from absl import logging
import flax
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from jaxpose import models

CHECKPOINT_SUBDIR = 'checkpoints'


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


class Checkpointer:
  """Saves and restores a workdir's checkpoints (async saves, latest + best kept)."""

  def __init__(self, workdir: str, *, best_metric: str | None = None,
               best_mode: str = 'max', read_only: bool = False,
               async_save: bool = True):
    policies = [preservation_policy.LatestN(1)]
    if best_metric:
      policies.append(preservation_policy.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric],
          reverse=best_mode == 'min', n=1, keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save,
        # best_fn makes Orbax write each step's metrics (read back on resume);
        # which steps survive is the preservation policy's decision.
        best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
        best_mode=best_mode,
        preservation_policy=preservation_policy.AnyPreservationPolicy(policies))
    self.directory = checkpoint_dir(workdir)
    self.best_metric = best_metric
    self._best_mode = best_mode
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'model': ocp.JsonCheckpointHandler()})

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def best_step(self) -> int | None:
    """The kept step with the best `best_metric`, or None if none was evaluated."""
    if not self.best_metric:
      return None
    scored = []
    for step in self._manager.all_steps():
      metrics = self._manager.metrics(step) or {}
      if self.best_metric in metrics:
        scored.append((metrics[self.best_metric], step))
    if not scored:
      return None
    return (min(scored) if self._best_mode == 'min' else max(scored))[1]

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, model: dict[str, Any], *,
           metrics: dict[str, float] | None = None, wait: bool = False) -> None:
    """Saves host arrays `state` and the model description at `step`."""
    items = {'state': ocp.args.StandardSave(state), 'model': ocp.args.JsonSave(model)}
    if metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()}
    self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    if wait:
      self._manager.wait_until_finished()

  def restore(self, step: int | None = None, *, state_template: Any = None
              ) -> tuple[Any, dict[str, Any]]:
    """Step (default latest) -> (state, model description).

    With `state_template` (a host PyTree of the same structure, e.g. a freshly
    initialised state) the state comes back in that structure as numpy arrays;
    without, as the nested dicts Orbax stored.
    """
    step = self._check_step(step)
    target = None
    if state_template is not None:
      target = jax.tree_util.tree_map(np.asarray, state_template)
    items = {'state': ocp.args.StandardRestore(target), 'model': ocp.args.JsonRestore()}
    if os.path.isdir(os.path.join(self.directory, str(step), 'data')):
      # Warned: the run goes on with this version's global stream at `step`,
      # not the batches the older loader would have read next.
      logging.warning('%s/%d: ignoring its grain iterator state (an older format); the data '
                      'position is the step', self.directory, step)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored['state'], dict(restored['model'])

  def _check_step(self, step: int | None) -> int:
    if step is None:
      step = self._manager.latest_step()
      if step is None:
        raise FileNotFoundError(
            f'{self.directory}: no checkpoint found (expected a workdir written by '
            '`jaxpose train` or `jaxpose convert`)')
    elif step not in self._manager.all_steps():
      raise FileNotFoundError(f'{self.directory}: no checkpoint at step {step}; '
                              f'available: {self.all_steps()}')
    return step


def save_variables(workdir: str, variables: dict, model: dict[str, Any],
                   step: int = 0) -> str:
  """Writes {'params', 'batch_stats'} and the model description at `step`; returns the step's path."""
  variables = jax.tree_util.tree_map(np.asarray, variables)
  with Checkpointer(workdir, async_save=False) as checkpointer:
    checkpointer.save(step, variables, model, wait=True)
  return os.path.join(checkpoint_dir(workdir), str(step))


def restore_variables(workdir: str, step: int | None = None) -> tuple[dict, dict[str, Any]]:
  """A workdir from `jaxpose train` or `convert` -> ({'params', 'batch_stats'}, model description)."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise FileNotFoundError(f'{checkpoint_dir(workdir)}: no checkpoint directory (expected '
                            'a workdir written by `jaxpose train` or `jaxpose convert`)')
  with Checkpointer(workdir, read_only=True) as checkpointer:
    state, model = checkpointer.restore(step)
  variables = {'params': state['params'], 'batch_stats': state.get('batch_stats', {})}
  return variables, models.upgrade_description(model, variables['params'])


def copy_matching(target: Mapping, source: Mapping) -> tuple[dict, list[str], list[str]]:
  """Variables of a new model, and of another -> (the new ones with every leaf copied whose path and shape match, copied paths, fresh paths).

  Fine-tuning (`config.init_from`): the backbone of a run on another layout
  carries over; its heads, whose shapes follow the number of keypoints,
  keep their fresh initialisation. Copied leaves take the target's dtype.
  Paths are '/'-joined, e.g. 'params/score_0/kernel'.
  """
  flat_source = flax.traverse_util.flatten_dict(flax.core.unfreeze(source), sep='/')
  flat_target = flax.traverse_util.flatten_dict(flax.core.unfreeze(target), sep='/')
  copied, fresh = [], []
  for path, value in flat_target.items():
    other = flat_source.get(path)
    if other is not None and np.shape(other) == np.shape(value):
      flat_target[path] = np.asarray(other, np.asarray(value).dtype)
      copied.append(path)
    else:
      fresh.append(path)
  return flax.traverse_util.unflatten_dict(flat_target, sep='/'), copied, fresh
