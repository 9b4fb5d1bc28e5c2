"""Sweeps: a base config and a list of overrides, trained into one table.

One module per job, none importing another that imports it back:
  points: building points (`sweep`, `product`, `zipped`, `with_seeds`,
    `expand`, `point_name`); imports nothing of jaxpose
  runner: planning and running (`plan`, `train_run`, `run`, `finished`);
    imports points, scheduler, report, `jaxpose.config` and the trainer
  scheduler: slicing this host and running points side by side, one process
    each; imports only the standard library
  worker: a point's process (`python -m jaxpose.sweep.worker`); imports the
    scheduler, then the runner once its CPU affinity is set
  report: the tables, plots and TensorBoard hparams of a finished sweep

This package gives the public names of points and runner, and
`load_config_file` / `apply_overrides` of `jaxpose.config`, as attributes
(`from jaxpose.sweep import sweep, product` in a sweep file, `sweep.run(...)`).
"""

import importlib

# Public name -> the module that defines it. They are imported on first use
# (PEP 562's module __getattr__), not here: Python runs this file before any
# submodule, also before `jaxpose.sweep.worker`, which must set its CPU
# affinity before jax is imported; an eager import of the runner (and through
# the trainer, jax) here would come first. A sweep file that only builds its
# points thus loads `points` alone.
_SOURCES = {
    'sweep': 'jaxpose.sweep.points',
    'product': 'jaxpose.sweep.points',
    'zipped': 'jaxpose.sweep.points',
    'zip_': 'jaxpose.sweep.points',
    'with_seeds': 'jaxpose.sweep.points',
    'expand': 'jaxpose.sweep.points',
    'point_name': 'jaxpose.sweep.points',
    'plan': 'jaxpose.sweep.runner',
    'train_run': 'jaxpose.sweep.runner',
    'run': 'jaxpose.sweep.runner',
    'finished': 'jaxpose.sweep.runner',
    'load_config_file': 'jaxpose.config',
    'apply_overrides': 'jaxpose.config',
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
  """`jaxpose.sweep.NAME` for a name of `_SOURCES`: imports its module, caches and returns it."""
  if name not in _SOURCES:
    # An AttributeError also lets `from jaxpose.sweep import scheduler` fall back to
    # importing the submodule.
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_SOURCES[name]), name)
  globals()[name] = value  # later lookups skip this function
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(_SOURCES))
