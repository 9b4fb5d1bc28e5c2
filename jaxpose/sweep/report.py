"""A sweep's report: its tables (CSV and Markdown), its plots, and TensorBoard's hparams view.

`jaxpose.sweep.runner` runs the points; this module only turns their rows into files:
`write_table` (PATH.csv with every digit, PATH.md with mean ± std cells),
`plot_metric` (a PNG of a metric against one swept field, and its numbers as
CSV) and `write_hparams` (each run's overrides and final metrics as a
TensorBoard hparams session, so that `tensorboard --logdir WORKDIR` compares
the points in its HPARAMS tab).
"""

import csv
import json
import math
import os
import shutil
from typing import Any

import cv2
import numpy as np

def _cell(value: Any) -> str:
  if isinstance(value, float):
    return f'{value:.4g}'
  return '' if value is None else str(value)


def write_table(rows: list[dict], path: str, note: str | None = None) -> str:
  """rows -> PATH.csv (all digits) and PATH.md (mean ± std cells); returns the Markdown."""
  columns = list(dict.fromkeys(k for row in rows for k in row))
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path + '.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  shown = [c for c in columns if not c.endswith('_std')]
  header = [c[:-5] + ' (mean ± std)' if c.endswith('_mean') else c for c in shown]

  def cell(row, column):
    text = _cell(row.get(column))
    std = row.get(column[:-5] + '_std') if column.endswith('_mean') else None
    return text + (f' ± {std:.2g}' if std is not None else '')
  lines = ([note, ''] if note else []) + ['| ' + ' | '.join(header) + ' |',
                                          '|' + ' --- |' * len(shown)]
  lines += ['| ' + ' | '.join(cell(row, c) for c in shown) + ' |' for row in rows]
  table = '\n'.join(lines)
  with open(path + '.md', 'w') as f:
    f.write(table + '\n')
  return table


COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def _positions(values: list) -> tuple[list, dict]:
  """Sorted distinct values -> their x in [0, 1]: by value (log if they span 100x), else evenly."""
  distinct = sorted(set(map(_key, values)))
  values = [json.loads(v) for v in distinct]
  numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
  if numeric and len(values) > 1:
    scale = (math.log if min(values) > 0 and max(values) >= 100 * min(values) else float)
    low, high = scale(min(values)), scale(max(values))
    return values, {k: (scale(v) - low) / (high - low) for k, v in zip(distinct, values)}
  return values, {k: (i + 0.5) / len(distinct) for i, k in enumerate(distinct)}


def _key(value: Any) -> str:
  return json.dumps(value, default=str)


def plot_metric(table: list[dict], field: str, fields: list[str], metric: str,
                workdir: str) -> str:
  """`metric` (mean, error bar = sample std) against `field`, one line per value of the other fields.

  Writes WORKDIR/sweep_plot_<field>.png and the plotted numbers as .csv; returns the PNG's path.
  """
  if not any(f'{metric}_mean' in row for row in table):
    known = sorted(k[:-5] for row in table for k in row if k.endswith('_mean'))
    raise ValueError(f'--metric {metric!r}: not in the results; one of {sorted(set(known))}')
  others = [f for f in fields if f != field]
  data = [{field: row.get(field), 'series': ','.join(f'{f}={row.get(f)}' for f in others),
           f'{metric}_mean': row.get(f'{metric}_mean'), f'{metric}_std': row.get(f'{metric}_std'),
           'n': row['n']} for row in table if field in row]
  path = os.path.join(workdir, 'sweep_plot_' + field.replace('/', '_'))
  with open(path + '.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, list(data[0]) if data else [field])
    writer.writeheader()
    writer.writerows(data)
  width, height, left, right, top, bottom = 800, 500, 80, 220, 40, 60
  image = np.full((height, width, 3), 255, np.uint8)
  values, xs = _positions([d[field] for d in data])
  points = [(xs[_key(d[field])], d[f'{metric}_mean'], d[f'{metric}_std'] or 0.0, d['series'])
            for d in data if d[f'{metric}_mean'] is not None]
  ys = [y + s for _, y, s, _ in points] + [y - s for _, y, s, _ in points] or [0.0]
  low, high = min(ys), max(ys)
  low, high = (low - 0.05 * (high - low), high + 0.05 * (high - low)) if high > low else (
      low - 0.5, high + 0.5)

  def pixel(x, y):
    return (int(left + 20 + x * (width - left - right - 40)),
            int(top + (high - y) / (high - low) * (height - top - bottom)))
  font, black = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
  cv2.rectangle(image, (left, top), (width - right, height - bottom), black, 1)
  for i in range(5):
    y = low + (high - low) * i / 4
    cv2.putText(image, f'{y:.3g}', (5, pixel(0, y)[1] + 4), font, 0.4, black, 1, cv2.LINE_AA)
  for value in values:
    x = pixel(xs[_key(value)], low)[0]
    cv2.line(image, (x, height - bottom), (x, height - bottom + 5), black, 1)
    cv2.putText(image, _cell(value)[:10], (x - 20, height - bottom + 20), font, 0.4, black, 1,
                cv2.LINE_AA)
  cv2.putText(image, field, (left, height - 15), font, 0.5, black, 1, cv2.LINE_AA)
  cv2.putText(image, f'{metric} (mean, bars: sample std over seeds)', (left, 25), font, 0.5,
              black, 1, cv2.LINE_AA)
  for number, series in enumerate(dict.fromkeys(p[3] for p in points)):
    colour = COLOURS[number % len(COLOURS)]
    line = sorted((x, y, s) for x, y, s, name in points if name == series)
    for (x0, y0, _), (x1, y1, _) in zip(line, line[1:]):
      cv2.line(image, pixel(x0, y0), pixel(x1, y1), colour, 2, cv2.LINE_AA)
    for x, y, s in line:
      cv2.circle(image, pixel(x, y), 4, colour, -1, cv2.LINE_AA)
      if s:
        (px, p0), (_, p1) = pixel(x, y - s), pixel(x, y + s)
        cv2.line(image, (px, p0), (px, p1), colour, 1)
        for end in (p0, p1):
          cv2.line(image, (px - 4, end), (px + 4, end), colour, 1)
    cv2.putText(image, (series or metric)[:28], (width - right + 10, top + 20 + 20 * number),
                font, 0.4, colour, 1, cv2.LINE_AA)
  cv2.imwrite(path + '.png', image)
  return path + '.png'


HPARAMS_RUN = 'hparams'


def _hparam_value(value: Any) -> bool | int | float | str:
  """An override's value as TensorBoard's hparams accept it: numbers and strings; the rest as JSON."""
  if isinstance(value, (bool, int, float, str)):
    return value
  return json.dumps(value, default=str)


def write_hparams(run_workdir: str, overrides: dict[str, Any], row: dict[str, Any]) -> str:
  """One run's overrides and numeric results as a TensorBoard hparams session.

  Written into RUN_WORKDIR/tensorboard/hparams (replaced on every rebuild, so
  that a rerun of the sweep does not add a second session of the same run);
  the metrics are tagged 'sweep/<column>' so that they do not clash with the
  run's own 'eval/...' scalars. Returns the session's directory.
  """
  from tensorboardX import SummaryWriter, summary  # pylint: disable=g-import-not-at-top
  session = os.path.join(run_workdir, 'tensorboard', HPARAMS_RUN)
  shutil.rmtree(session, ignore_errors=True)
  skip = set(overrides) | {'run'}
  metrics = {f'sweep/{k}': float(v) for k, v in row.items()
             if k not in skip and isinstance(v, (int, float)) and not isinstance(v, bool)}
  # What SummaryWriter.add_hparams writes, without the empty events file its
  # outer writer would leave among the run's own scalars.
  experiment, session_start, session_end = summary.hparams(
      {k: _hparam_value(v) for k, v in overrides.items()}, metrics)
  with SummaryWriter(session) as writer:
    for proto in (experiment, session_start, session_end):
      writer.file_writer.add_summary(proto)
    for tag, value in metrics.items():
      writer.add_scalar(tag, value, row.get('step'))
  return session
