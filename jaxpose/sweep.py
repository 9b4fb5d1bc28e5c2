"""Sweeps: a base config plus a list of overrides, run one after another into one table.

A sweep file is a config file whose `get_config()` returns
  base: path of the experiment config, relative to the sweep file
  points: a list of {'dotted.field': value} overrides, one per run
Each point trains into WORKDIR/<point name>; the final metrics of all points
go to WORKDIR/sweep_results.csv and .md. `--print_only` prints the equivalent
`jaxpose train` commands instead, to launch them elsewhere (one per TPU slice).
"""

import csv
import importlib.util
import os
from typing import Any

import ml_collections

from jaxpose import config as config_lib
from jaxpose import train


def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """A configs/*.py file (optionally 'path:arg') -> its get_config(arg)."""
  if arg is None and ':' in os.path.basename(path):
    path, arg = path.rsplit(':', 1)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: config file not found')
  spec = importlib.util.spec_from_file_location(
      f'jaxpose_config_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ValueError(f'{path}: a config file must define get_config()')
  return module.get_config() if arg is None else module.get_config(arg)


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any],
                    where: str) -> ml_collections.ConfigDict:
  """Copy of `config` with {'a.b': value} overrides; unknown fields fail, naming `where`."""
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split('.')
    node = config
    for name in parents:
      if name not in node:
        raise ValueError(f'{where}: override {dotted!r}: config has no field {name!r}')
      node = node[name]
    if leaf not in node:
      raise ValueError(f'{where}: override {dotted!r}: config has no field {leaf!r}')
    node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], tuple) else value
  return config


def point_name(overrides: dict[str, Any], index: int) -> str:
  """{'model.num_stacks': 2} -> 'num_stacks=2' (a directory name)."""
  parts = [f'{k.split(".")[-1]}={v}' for k, v in overrides.items()]
  name = ','.join(parts).replace('/', '_').replace(' ', '')
  return name or f'point{index}'


def run(sweep_path: str, workdir: str, print_only: bool = False) -> list[dict]:
  """Runs (or prints) every point of the sweep file; returns one row of final metrics per point."""
  sweep = load_config_file(sweep_path)
  for field in ('base', 'points'):
    if field not in sweep:
      raise ValueError(f'{sweep_path}: a sweep config needs the field {field!r}')
  base = os.path.normpath(os.path.join(os.path.dirname(sweep_path), sweep.base))
  base_config = load_config_file(base)
  rows = []
  for index, point in enumerate(sweep.points):
    point = dict(point)
    name = point_name(point, index)
    config = apply_overrides(base_config, point, f'{sweep_path}: points[{index}]')
    config_lib.validate(config)
    point_workdir = os.path.join(workdir, name)
    if print_only:
      flags = ' '.join(f'--config.{k}={v}' for k, v in point.items())
      print(f'jaxpose train --config {base} --workdir {point_workdir} {flags}'.rstrip())
      continue
    print(f'[{index + 1}/{len(sweep.points)}] {name} -> {point_workdir}')
    metrics = train.train_and_evaluate(config, point_workdir)
    rows.append({'point': name, **point, **metrics})
  if rows:
    _write_table(rows, workdir)
  return rows


def _write_table(rows: list[dict], workdir: str) -> None:
  columns = list(dict.fromkeys(k for row in rows for k in row))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'sweep_results.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)

  def cell(value):
    return f'{value:.4g}' if isinstance(value, float) else str(value)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + ' --- |' * len(columns)]
  lines += ['| ' + ' | '.join(cell(row.get(c, '')) for c in columns) + ' |' for row in rows]
  table = '\n'.join(lines)
  with open(os.path.join(workdir, 'sweep_results.md'), 'w') as f:
    f.write(table + '\n')
  print(table)
