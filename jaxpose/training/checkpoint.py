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

`Checkpointer` keeps the latest `keep` checkpoints (default 2) and the best
one by an eval metric (a preservation policy that keeps both: `best_fn` with
`max_to_keep` alone would delete the latest when it is not the best).

A corrupt checkpoint never ends a run. Orbax writes a step into
`checkpoints/<step>.orbax-checkpoint-tmp` and renames it to `<step>` once every
file is written; it lists only names that are a bare step number, so a save
killed before the rename leaves a temporary directory that is never restored
(a writer removes it when it opens the workdir). A committed step can still
be damaged afterwards (a full or failing disk, an interrupted copy of the
workdir). `Checkpointer.restore()` of the latest step then warns, moves the
step's directory aside to `<step>.corrupt` (never deleted; a name Orbax never
lists) and restores the previous one, down to the oldest; an explicit step
that fails is an error and is left where it is. Read-only checkpointers
(`eval`, `infer`, `export`) move it aside too, so that every later open,
training's resume included, agrees on the latest step and the bad one is
read once; where the workdir cannot be written they skip it in place.
"""

from collections.abc import Mapping
import json
import os
from typing import Any

from absl import logging
import flax
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy

from jaxpose import models

CHECKPOINT_SUBDIR = 'checkpoints'
# `<step>` + this: where an unreadable step's directory is moved. Orbax lists
# only directories named by a bare step number, so it never sees it again.
CORRUPT_SUFFIX = '.corrupt'
# Orbax's per-step metrics file (`<step>/metrics/metrics`), which it reads for
# every step when a CheckpointManager opens the directory.
_METRICS_FILE = os.path.join('metrics', 'metrics')


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def corrupt_path(step_path: str) -> str:
  """A step's directory -> the free name to move it to: `<step>.corrupt`, else `.corrupt-2`, -3..."""
  candidate, number = step_path + CORRUPT_SUFFIX, 1
  while os.path.lexists(candidate):
    number += 1
    candidate = f'{step_path}{CORRUPT_SUFFIX}-{number}'
  return candidate


def corrupt_steps(directory: str) -> list[str]:
  """A checkpoints directory -> the names of the step directories moved aside there (sorted)."""
  if not os.path.isdir(directory):
    return []
  return sorted(name for name in os.listdir(directory) if CORRUPT_SUFFIX in name)


def refuse_if_every_step_is_corrupt(directory: str) -> None:
  """Raises ValueError if `directory` holds steps moved aside and no step left to resume from.

  Starting afresh there would silently throw away the run's progress. It
  reads the directory only, so it can run before Orbax opens it (and starts
  its threads).
  """
  set_aside = corrupt_steps(directory)
  if set_aside and not any(name.isdigit() for name in os.listdir(directory)):
    raise ValueError(f'{directory}: every checkpoint is unreadable (moved aside: '
                     f'{", ".join(set_aside)}); move them out of the workdir to train from the '
                     'start')


def move_aside(step_path: str) -> str:
  """Renames a step's directory to `corrupt_path(step_path)` -> that path; raises OSError if it cannot."""
  destination = corrupt_path(step_path)
  os.rename(step_path, destination)
  return destination


def steps_with_unreadable_metrics(directory: str) -> list[int]:
  """A checkpoints directory -> the steps (sorted) whose metrics file exists but is not JSON."""
  unreadable = []
  for name in os.listdir(directory):
    path = os.path.join(directory, name, _METRICS_FILE)
    if not (name.isdigit() and os.path.isfile(path)):
      continue
    try:
      with open(path, 'rb') as f:
        json.loads(f.read())
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
      unreadable.append(int(name))
  return sorted(unreadable)


def _processes() -> tuple[int, int]:
  """(this process's index, the number of processes): who renames, and whether to synchronise."""
  return jax.process_index(), jax.process_count()


def _describe(error: BaseException) -> str:
  """An exception -> 'Type: first line of its message', for a one-line warning."""
  lines = str(error).strip().splitlines()
  return f'{type(error).__name__}: {lines[0] if lines else ""}'.rstrip(': ')


class Checkpointer:
  """Saves and restores a workdir's checkpoints: async saves, the latest `keep` and the best kept."""

  def __init__(self, workdir: str, *, best_metric: str | None = None,
               best_mode: str = 'max', read_only: bool = False,
               async_save: bool = True, keep: int = 2):
    self.directory = checkpoint_dir(workdir)
    if not isinstance(keep, int) or keep < 1:
      raise ValueError(f'{self.directory}: keep (config.keep_checkpoints) is the number of '
                       f'latest checkpoints to keep: expected an integer >= 1, got {keep!r}')
    policies = [preservation_policy.LatestN(keep)]
    if best_metric:
      policies.append(preservation_policy.BestN(
          get_metric_fn=lambda metrics: metrics[best_metric],
          reverse=best_mode == 'min', n=1, keep_checkpoints_without_metrics=False))
    self._options = ocp.CheckpointManagerOptions(
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=async_save,
        # best_fn makes Orbax write each step's metrics (read back on resume);
        # which steps survive is the preservation policy's decision.
        best_fn=(lambda metrics: metrics[best_metric]) if best_metric else None,
        best_mode=best_mode,
        preservation_policy=preservation_policy.AnyPreservationPolicy(policies),
        # A save killed before its commit leaves `<step>.orbax-checkpoint-tmp`,
        # never restorable: a writer removes it (Orbax's own cleanup, which
        # touches nothing else, so `<step>.corrupt` directories stay).
        cleanup_tmp_directories=not read_only)
    self.best_metric = best_metric
    self._best_mode = best_mode
    # Steps that failed to read: hidden from this checkpointer's listing (the
    # only way out of it for one that could not be moved aside, e.g. on a
    # read-only mount).
    self._skipped_steps: set[int] = set()
    # The step the last `restore` read (the latest may have been unreadable).
    self.restored_step: int | None = None
    self._manager = self._open_manager()

  def _new_manager(self) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        self.directory, options=self._options,
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'model': ocp.JsonCheckpointHandler()})

  def _open_manager(self) -> ocp.CheckpointManager:
    """The CheckpointManager, after moving aside any step whose metrics file is garbled.

    Orbax reads every step's metrics when it opens the directory and raises on
    one that is not JSON, before any restore could fall back; such a step is
    damaged, so it goes where an unreadable latest step goes.
    """
    try:
      return self._new_manager()
    except Exception as error:  # pylint: disable=broad-except
      damaged = (steps_with_unreadable_metrics(self.directory)
                 if os.path.isdir(self.directory) else [])
      if not damaged:
        raise
      for step in damaged:
        moved = self._set_aside(step, error, what=f'has a {_METRICS_FILE} that is not JSON',
                                then='the other steps are listed')
        if not moved:
          raise ValueError(
              f'{self._step_path(step)}/{_METRICS_FILE}: expected the JSON metrics Orbax '
              f'wrote ({_describe(error)}), and the step could not be moved aside; move '
              'or delete that step directory') from error
      return self._new_manager()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def best_step(self) -> int | None:
    """The kept step with the best `best_metric`, or None if none was evaluated."""
    if not self.best_metric:
      return None
    scored = []
    for step in self.all_steps():
      metrics = self._manager.metrics(step) or {}
      if self.best_metric in metrics:
        scored.append((metrics[self.best_metric], step))
    if not scored:
      return None
    return (min(scored) if self._best_mode == 'min' else max(scored))[1]

  def all_steps(self) -> list[int]:
    return sorted(set(self._manager.all_steps()) - self._skipped_steps)

  def save(self, step: int, state: Any, model: dict[str, Any], *,
           metrics: dict[str, float] | None = None, wait: bool = False) -> None:
    """Saves host arrays `state` and the model description at `step`."""
    items = {'state': ocp.args.StandardSave(state), 'model': ocp.args.JsonSave(model)}
    if metrics is not None:
      metrics = {k: float(v) for k, v in metrics.items()}
    self._skipped_steps.discard(step)  # written anew
    self._manager.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)
    if wait:
      self._manager.wait_until_finished()

  def restore(self, step: int | None = None, *, state_template: Any = None
              ) -> tuple[Any, dict[str, Any]]:
    """Step (default latest) -> (state, model description).

    With `state_template` (a host PyTree of the same structure, e.g. a freshly
    initialised state) the state comes back in that structure as numpy arrays;
    without, as the nested dicts Orbax stored.

    The latest step falls back: one that fails to read is moved aside
    (`move_aside`, with a warning) and the previous one is tried, until one
    reads; FileNotFoundError names every step that failed when none does. An
    explicit `step` that fails raises ValueError and stays where it is. A
    state that reads but does not fit `state_template` (another model) is the
    caller's mistake, not a damaged step: it raises, nothing is moved. On
    several processes every process calls it: they agree on each step's
    outcome (an all-gather) before any moves on.
    """
    if step is not None:
      self._check_step(step)
      try:
        restored = self._restore_step(step, state_template)
        self.restored_step = step
        return restored
      except Exception as error:  # pylint: disable=broad-except
        raise ValueError(
            f'{self._step_path(step)}: checkpoint step {step} failed to restore '
            f'({_describe(error)}); a step asked for by number is not skipped or moved '
            f'aside: ask for another (available: {self.all_steps()}) or none for the '
            'latest readable one') from error
    self._check_step(None)
    failed = []
    while (step := self.latest_step()) is not None:
      try:
        restored, error = self._restore_step(step, state_template), None
      except Exception as caught:  # pylint: disable=broad-except
        restored, error = None, caught
        if state_template is not None and self._reads_without_template(step):
          raise ValueError(
              f'{self._step_path(step)}: the checkpoint reads but does not match the '
              f'expected state ({_describe(caught)}); was it written by another model '
              'or config?') from caught
      # Every process restores the same step: one whose read failed anywhere
      # is skipped everywhere.
      if not self._failed_on_any_process(error is not None):
        self.restored_step = step
        return restored
      failed.append(step)
      self._set_aside(step, error)
      self._manager.reload()  # Orbax caches the step list
    raise FileNotFoundError(
        f'{self.directory}: no readable checkpoint; steps {failed} failed to read (each '
        f'logged, moved aside to <step>{CORRUPT_SUFFIX} where the directory is writable)')

  def _restore_step(self, step: int, state_template: Any) -> tuple[Any, dict[str, Any]]:
    target = None
    if state_template is not None:
      target = jax.tree_util.tree_map(np.asarray, state_template)
    items = {'state': ocp.args.StandardRestore(target), 'model': ocp.args.JsonRestore()}
    if os.path.isdir(os.path.join(self._step_path(step), 'data')):
      # Warned: the run goes on with this version's global stream at `step`,
      # not the batches the older loader would have read next.
      logging.warning('%s/%d: ignoring its grain iterator state (an older format); the data '
                      'position is the step', self.directory, step)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored['state'], dict(restored['model'])

  def _reads_without_template(self, step: int) -> bool:
    """Whether `step` reads as stored (so a failure with a template is a mismatch, not damage)."""
    try:
      self._restore_step(step, None)
      return True
    except Exception:  # pylint: disable=broad-except
      return False

  def _failed_on_any_process(self, failed_here: bool) -> bool:
    if _processes()[1] == 1:
      return failed_here
    return bool(np.any(multihost_utils.process_allgather(np.asarray(failed_here))))

  def _set_aside(self, step: int, error: BaseException | None, *,
                 what: str = 'failed to read',
                 then: str = 'restoring the previous step') -> bool:
    """Takes an unreadable step out of the listing -> whether its directory was moved aside.

    Process 0 renames it (`move_aside`) and every process waits for that;
    where the rename fails (a read-only mount) the step is skipped by this
    checkpointer only. One warning names the step, its path and the error.
    The caller re-lists the steps (Orbax caches them).
    """
    path = self._step_path(step)
    process_index, process_count = _processes()
    destination, rename_error = None, None
    if process_index == 0:
      try:
        destination = move_aside(path)
      except OSError as caught:
        rename_error = caught
    if process_count > 1:
      multihost_utils.sync_global_devices(f'jaxpose_checkpoint_step_{step}_moved_aside')
    moved = not os.path.lexists(path)  # the same answer on every process
    # Hidden either way, so that restore moves on even if a listing still
    # showed it; a new save of this step number shows it again.
    self._skipped_steps.add(step)
    if moved:
      outcome = f'moved to {destination or path + CORRUPT_SUFFIX + "* by process 0"}'
    else:
      cause = f': {_describe(rename_error)}' if rename_error else ''
      outcome = f'skipped in place (could not move it aside{cause})'
    reason = _describe(error) if error is not None else 'failed on another process'
    logging.warning('Checkpoint step %d at %s %s (%s); %s; %s', step, path, what, reason,
                    outcome, then)
    return moved

  def _step_path(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _check_step(self, step: int | None) -> None:
    if step is None:
      if self.latest_step() is None:
        raise FileNotFoundError(
            f'{self.directory}: no checkpoint found (expected a workdir written by '
            '`jaxpose train` or `jaxpose convert`)')
    elif step not in self.all_steps():
      raise FileNotFoundError(f'{self.directory}: no checkpoint at step {step}; '
                              f'available: {self.all_steps()}')


def save_variables(workdir: str, variables: dict, model: dict[str, Any],
                   step: int = 0) -> str:
  """Writes {'params', 'batch_stats'} and the model description at `step`; returns the step's path."""
  variables = jax.tree_util.tree_map(np.asarray, variables)
  with Checkpointer(workdir, async_save=False) as checkpointer:
    checkpointer.save(step, variables, model, wait=True)
  return os.path.join(checkpoint_dir(workdir), str(step))


def restore_variables(workdir: str, step: int | None = None) -> tuple[dict, dict[str, Any]]:
  """A workdir from `jaxpose train` or `convert` -> ({'params', 'batch_stats'}, model description).

  Without `step`, the latest readable one (`Checkpointer.restore`).
  """
  variables, model, _ = restore_variables_and_step(workdir, step)
  return variables, model


def restore_variables_and_step(workdir: str, step: int | None = None
                               ) -> tuple[dict, dict[str, Any], int]:
  """`restore_variables`, and the step it read (the latest may have been unreadable)."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    raise FileNotFoundError(f'{checkpoint_dir(workdir)}: no checkpoint directory (expected '
                            'a workdir written by `jaxpose train` or `jaxpose convert`)')
  with Checkpointer(workdir, read_only=True) as checkpointer:
    state, model = checkpointer.restore(step)
    step = checkpointer.restored_step
  variables = {'params': state['params'], 'batch_stats': state.get('batch_stats', {})}
  return variables, models.upgrade_description(model, variables['params']), step


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
