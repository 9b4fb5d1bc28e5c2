"""Planning and running a sweep: a base config plus a list of overrides, trained into one table.

A sweep file is a config file whose `get_config()` returns
  base: path of the experiment config, relative to the sweep file
  points: a list of {'dotted.field': value} overrides, one per point; written
    out, or built with `jaxpose.sweep.points` (`sweep`, `product`, `zipped`,
    `with_seeds`)
  seeds (optional): runs per point, overriding `seed_field` with 0..seeds-1
  seed_field (optional, default 'seed'): points that differ only in it are
    seeds of one point, averaged in the table
`plan` loads it (`jaxpose.config.load_config_file`) and checks every point
against the base config before the first one trains. Each run trains into
WORKDIR/<run name> (a rerun skips finished runs, resumes interrupted ones from
their checkpoint and refuses a workdir trained with another config);
WORKDIR/sweep_runs.csv/.md hold one row per run, WORKDIR/sweep_results.csv/.md
one per point (mean, sample std, n over seeds), WORKDIR/sweep_plot_<field>.png/.csv
a metric against each swept field, and each run's tensorboard/hparams its
overrides and results for TensorBoard's HPARAMS tab (`jaxpose.sweep.report`).
`run(..., parallel=N)` trains N points at once in separate processes
(`jaxpose.sweep.scheduler` starts them, each running `jaxpose.sweep.worker`,
which calls `train_run` here); `print_only` prints the equivalent
`jaxpose train` commands instead.
"""

import csv
import json
import os
import time
from typing import Any

import ml_collections
import numpy as np

from jaxpose import config as config_lib
from jaxpose.sweep import scheduler
from jaxpose.sweep.points import expand, point_name
from jaxpose.sweep.report import plot_metric, write_hparams, write_table
from jaxpose.training import trainer

POINT_FILE = 'sweep_point.json'
STD_NOTE = ('mean ± std over the n seeds of each point; std is the sample standard deviation '
            '(ddof=1), blank when n = 1')


def _plain(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def plan(sweep_path: str, workdir: str) -> tuple[str, ml_collections.ConfigDict, list[dict]]:
  """(base path, sweep config, runs): every run checked before any trains.

  A run is {'index', 'name', 'overrides', 'config', 'workdir'}. An unknown
  field, an invalid config, two runs of one name, or a run whose workdir holds
  another config fails, naming the point.
  """
  sweep_config = config_lib.load_config_file(sweep_path)
  for field in ('base', 'points'):
    if field not in sweep_config:
      raise ValueError(f'{sweep_path}: a sweep config needs the field {field!r}')
  base = os.path.normpath(os.path.join(os.path.dirname(sweep_path), sweep_config.base))
  base_config = config_lib.load_config_file(base)
  runs, names = [], {}
  for index, overrides in enumerate(expand(sweep_config)):
    where = f'{sweep_path}: points[{index}] {overrides}'
    config = config_lib.apply_overrides(base_config, overrides, where)
    try:
      config_lib.validate(config)
    except ValueError as e:
      raise ValueError(f'{where}: {e}') from e
    name = point_name(overrides, index)
    if name in names:
      raise ValueError(f'{where}: the same run as points[{names[name]}] ({name})')
    names[name] = index
    run_workdir = os.path.join(workdir, name)
    stored = _read_json(os.path.join(run_workdir, POINT_FILE)) or {  # or trained before sweeps recorded it
        'config': _read_json(os.path.join(run_workdir, 'config.json'))}
    if stored['config'] is not None and stored['config'] != _plain(config):
      changed = sorted(_differences(stored['config'], _plain(config)))
      raise ValueError(f'{where}: {run_workdir} was trained with another config '
                       f'(differs in {", ".join(changed)}); give the sweep another --workdir '
                       'or delete that directory')
    runs.append(dict(index=index, name=name, overrides=overrides, config=config,
                     workdir=run_workdir))
  return base, sweep_config, runs


def _differences(a: Any, b: Any, prefix: str = '') -> list[str]:
  if isinstance(a, dict) and isinstance(b, dict):
    return [d for k in set(a) | set(b)
            for d in _differences(a.get(k), b.get(k), f'{prefix}{k}.')]
  return [] if a == b else [prefix.rstrip('.')]


def _read_json(path: str) -> Any:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, value: Any) -> None:
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=2)
  os.replace(path + '.tmp', path)


def finished(run: dict) -> bool:
  """Whether the run's summary.json is there and reached the config's last step."""
  summary = _read_json(os.path.join(run['workdir'], 'summary.json'))
  return bool(summary) and summary.get('step') == run['config'].num_train_steps


def train_run(run: dict) -> None:
  """Trains one run (resuming from its checkpoint if it has one), recording its config and wall time."""
  os.makedirs(run['workdir'], exist_ok=True)
  path = os.path.join(run['workdir'], POINT_FILE)
  record = _read_json(path) or {'overrides': run['overrides'], 'config': _plain(run['config']),
                                'wall_seconds': 0.0}
  _write_json(path, record)
  start = time.perf_counter()
  try:
    trainer.train_and_evaluate(run['config'], run['workdir'])
  finally:  # an interrupted session's time counts too
    record['wall_seconds'] += time.perf_counter() - start
    _write_json(path, record)


def run_row(run: dict) -> dict[str, Any]:
  """One table row: the run's overrides, final eval metrics, best eval metric, steps, wall time, images/s."""
  config, workdir = run['config'], run['workdir']
  logged: dict[str, dict[int, float]] = {}
  if os.path.exists(os.path.join(workdir, 'metrics.csv')):
    with open(os.path.join(workdir, 'metrics.csv')) as f:
      for row in csv.DictReader(f):  # a resumed run appends: the last value of a step wins
        logged.setdefault(row['name'], {})[int(row['step'])] = float(row['value'])
  summary = _read_json(os.path.join(workdir, 'summary.json')) or {}
  final = {k: v for k, v in summary.items() if k != 'step'}
  if not final:  # a run resumed at its last step evaluates nothing: its last logged evaluation
    final = {name[5:]: values[max(values)] for name, values in logged.items()
             if name.startswith('eval/')}
  row = {'run': run['name'], **run['overrides'], 'step': summary.get('step'), **final}
  evals = {s: v for s, v in logged.get(f'eval/{config.best_metric}', {}).items() if s > 0}
  if evals:
    pick = min if config.best_mode == 'min' else max
    best_step = pick(evals, key=lambda s: (evals[s], -s))
    row.update({f'best_{config.best_metric}': evals[best_step], 'best_step': best_step})
  rates = list(logged.get('train/images_per_second', {}).values())
  row['images_per_second'] = float(np.mean(rates)) if rates else None
  row['wall_seconds'] = (_read_json(os.path.join(workdir, POINT_FILE)) or {}).get('wall_seconds')
  return row


def aggregate(rows: list[dict], runs: list[dict], seed_field: str) -> list[dict[str, Any]]:
  """One row per point (overrides but the seed): n and, per numeric column, mean and sample std."""
  groups: dict[str, list[tuple[dict, dict]]] = {}
  for row, run in zip(rows, runs):
    overrides = {k: v for k, v in run['overrides'].items() if k != seed_field}
    key = json.dumps(overrides, sort_keys=True, default=str)
    groups.setdefault(key, []).append((overrides, row))
  skip = set().union(*(run['overrides'] for run in runs)) | {'run', 'best_step'}
  metrics = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in skip]
  table = []
  for index, members in enumerate(groups.values()):
    out = {'point': point_name(members[0][0], index), **members[0][0], 'n': len(members)}
    for metric in metrics:
      values = [row[metric] for _, row in members if isinstance(row.get(metric), (int, float))]
      if values:
        out[f'{metric}_mean'] = float(np.mean(values))
        out[f'{metric}_std'] = float(np.std(values, ddof=1)) if len(values) > 1 else None
    table.append(out)
  return table


def run(sweep_path: str, workdir: str, print_only: bool = False, metric: str | None = None,
        plot: bool = True, parallel: int = 1) -> list[dict]:
  """Runs (or prints) every run of the sweep file, `parallel` at a time; returns one row per run (see `run_row`)."""
  base, sweep_config, runs = plan(sweep_path, workdir)
  if print_only:
    for r in runs:
      flags = ' '.join(f'--config.{k}={v}' for k, v in r['overrides'].items())
      print(f'jaxpose train --config {base} --workdir {r["workdir"]} {flags}'.rstrip())
    return []
  pending = []
  for number, r in enumerate(runs, 1):
    if finished(r):
      print(f'[{number}/{len(runs)}] {r["name"]}: finished, skipped')
    else:
      pending.append(r)
  if parallel != 1:
    scheduler.run_side_by_side(sweep_path, workdir, pending, parallel)
  else:
    for r in pending:
      print(f'[{runs.index(r) + 1}/{len(runs)}] {r["name"]} -> {r["workdir"]}')
      train_run(r)
  rows = [run_row(r) for r in runs]
  table = aggregate(rows, runs, sweep_config.get('seed_field', 'seed'))
  write_table(rows, os.path.join(workdir, 'sweep_runs'))
  print(write_table(table, os.path.join(workdir, 'sweep_results'), note=STD_NOTE))
  for row, r in zip(rows, runs):
    write_hparams(r['workdir'], r['overrides'], row)
  if plot and runs:
    metric = metric or runs[0]['config'].best_metric
    fields = [k for k in dict.fromkeys(k for r in runs for k in r['overrides'])
              if k != sweep_config.get('seed_field', 'seed')]
    for field in fields:
      print(plot_metric(table, field, fields, metric, workdir))
  return rows
