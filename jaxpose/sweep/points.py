"""A sweep's points: lists of {'dotted.field': value} overrides, and the names of their runs.

Sweep files build their `points` with `sweep`, `product`, `zipped` and
`with_seeds` (`from jaxpose.sweep import sweep, product`); `expand` turns a
sweep file's config into its runs' overrides and `point_name` names a run's
folder. Plain Python on lists of dicts: importing this module imports no
other module of jaxpose, so a sweep file that loads it stays cheap.
"""

import itertools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the annotation of `expand`
  import ml_collections


def sweep(field: str, values) -> list[dict[str, Any]]:
  """One dotted field over values: sweep('model.num_stacks', [1, 2]) -> [{'model.num_stacks': 1}, ...].

  Args:
    field: a dotted config field, e.g. 'model.num_stacks'.
    values: an iterable of the field's values.

  Returns:
    One {field: value} dict per value, in order.
  """
  return [{field: value} for value in values]


def product(*sweeps: list[dict]) -> list[dict[str, Any]]:
  """Cartesian product of sweeps, the last varying fastest.

  Args:
    *sweeps: lists of override dicts (e.g. from `sweep`).

  Returns:
    len(sweeps[0]) * len(sweeps[1]) * ... dicts, each the union of one dict of each sweep.
  """
  return [{k: v for point in combo for k, v in point.items()} for combo in itertools.product(*sweeps)]


def zipped(*sweeps: list[dict]) -> list[dict[str, Any]]:
  """Element-wise union of sweeps of equal length.

  Args:
    *sweeps: lists of override dicts, all of one length N.

  Returns:
    N dicts, the i-th the union of each sweep's i-th dict.

  Raises:
    ValueError: the sweeps differ in length.
  """
  lengths = [len(s) for s in sweeps]
  if len(set(lengths)) > 1:
    raise ValueError(f'zipped: sweeps of different lengths {lengths}')
  return [{k: v for point in combo for k, v in point.items()} for combo in zip(*sweeps)]


zip_ = zipped


def with_seeds(points: list[dict], n: int, field: str = 'seed') -> list[dict[str, Any]]:
  """Each point n times, with `field` = 0..n-1 (len(points) * n dicts, a point's seeds together)."""
  return [{**dict(point), field: seed} for point in points for seed in range(n)]


def expand(sweep_config: 'ml_collections.ConfigDict') -> list[dict[str, Any]]:
  """The sweep file's runs: its points, each repeated over `seeds` seeds if it sets them.

  Args:
    sweep_config: a sweep file's get_config(): `points`, optional `seeds` and `seed_field`.

  Returns:
    One override dict per run.
  """
  points = [dict(point) for point in sweep_config.points]
  seeds = sweep_config.get('seeds')
  return with_seeds(points, seeds, sweep_config.get('seed_field', 'seed')) if seeds else points


def point_name(overrides: dict[str, Any], index: int) -> str:
  """{'model.num_stacks': 2} -> 'num_stacks=2' (a directory name); a leaf named twice keeps its path.

  Args:
    overrides: a run's {'dotted.field': value} overrides.
    index: the run's position in the sweep, naming a run without overrides ('point3').

  Returns:
    'leaf=value,...' with '/' and spaces removed, so that it is one path component.
  """
  leaves = [k.split('.')[-1] for k in overrides]
  parts = [f'{k if leaves.count(leaf) > 1 else leaf}={v}' for (k, v), leaf in
           zip(overrides.items(), leaves)]
  name = ','.join(parts).replace('/', '_').replace(' ', '')
  return name or f'point{index}'
