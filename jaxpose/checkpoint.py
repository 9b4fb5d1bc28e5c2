"""Orbax checkpoints of model variables, with the model's description beside them.

A jaxpose workdir holds `checkpoints/<step>/` written by an Orbax
`CheckpointManager`, each step with two items:
- `variables`: {'params', 'batch_stats'} (a PyTree of arrays);
- `model`: the JSON description of the model (`jaxpose.models.model_config`),
  so that a checkpoint can be loaded, evaluated or exported knowing only its
  directory.

`jaxpose convert` writes one at step 0; training writes them as it goes.
"""

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_SUBDIR = 'checkpoints'


def _manager(workdir: str, **options) -> ocp.CheckpointManager:
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
  return ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=True, **options),
      item_names=('variables', 'model'))


def save_variables(workdir: str, variables: dict, model: dict[str, Any],
                   step: int = 0) -> str:
  """Writes {'params', 'batch_stats'} and the model description at `step`; returns the step's path."""
  variables = jax.tree_util.tree_map(np.asarray, variables)
  with _manager(workdir) as manager:
    manager.save(step, args=ocp.args.Composite(
        variables=ocp.args.StandardSave(variables),
        model=ocp.args.JsonSave(model)), force=True)
    manager.wait_until_finished()
    return str(manager.directory / str(step))


def restore_variables(workdir: str, step: int | None = None) -> tuple[dict, dict[str, Any]]:
  """The latest (or given) step of a workdir -> ({'params', 'batch_stats'}, model description)."""
  with _manager(workdir, read_only=True) as manager:
    if step is None:
      step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(
          f'{os.path.join(workdir, CHECKPOINT_SUBDIR)}: no checkpoint found '
          f'(expected a workdir written by `jaxpose train` or `jaxpose convert`)')
    if step not in manager.all_steps():
      raise FileNotFoundError(
          f'{os.path.join(workdir, CHECKPOINT_SUBDIR)}: no checkpoint at step {step}; '
          f'available: {sorted(manager.all_steps())}')
    restored = manager.restore(step, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(), model=ocp.args.JsonRestore()))
  return dict(restored.variables), dict(restored.model)
