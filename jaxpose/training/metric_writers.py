"""Training logs: TensorBoard event files, a CSV of every logged value, a JSON summary, a progress bar."""

import csv
import json
import os
import sys

from absl import logging
import tqdm


class MetricWriter:
  """Writes scalars to TensorBoard (tensorboardX) and `metrics.csv`; only where `enabled`."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.workdir = workdir
    self.enabled = enabled
    self._tensorboard = None
    self._csv_file = None
    if not enabled:
      return
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'))
    except ImportError:
      logging.warning('tensorboardX not installed: no TensorBoard events, CSV only')
    path = os.path.join(workdir, 'metrics.csv')
    new = not os.path.exists(path)
    self._csv_file = open(path, 'a', newline='')
    self._csv = csv.writer(self._csv_file)
    if new:
      self._csv.writerow(['step', 'name', 'value'])

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.enabled:
      return
    for name, value in scalars.items():
      value = float(value)
      if self._tensorboard is not None:
        self._tensorboard.add_scalar(name, value, step)
      self._csv.writerow([step, name, value])
    self._csv_file.flush()
    if any(name.startswith('eval/') for name in scalars):  # rare: show them above the bar
      tqdm.tqdm.write(f'step {step}: ' + ', '.join(
          f'{k}={float(v):.4g}' for k, v in scalars.items()), file=sys.stderr)
    logging.info('step %d: %s', step, ', '.join(f'{k}={float(v):.5g}' for k, v in scalars.items()))

  def write_summary(self, metrics: dict) -> None:
    """The run's final metrics, as `summary.json`."""
    if self.enabled:
      with open(os.path.join(self.workdir, 'summary.json'), 'w') as f:
        json.dump(metrics, f, indent=2)

  def close(self) -> None:
    if self._tensorboard is not None:
      self._tensorboard.close()
      self._tensorboard = None
    if self._csv_file is not None:
      self._csv_file.close()
      self._csv_file = None


class Progress:
  """A progress bar over training steps, with the latest logged figures; silent when not `enabled`."""

  def __init__(self, total: int, initial: int = 0, enabled: bool = True):
    self._bar = tqdm.tqdm(total=total, initial=initial, unit='step', file=sys.stderr,
                          dynamic_ncols=True, mininterval=1.0, disable=not enabled)

  def update(self, step: int, summary: dict[str, float]) -> None:
    self._bar.update(step - self._bar.n)
    short = {k.split('/')[-1]: f'{v:.4g}' for k, v in summary.items()}
    self._bar.set_postfix(short, refresh=False)

  def close(self) -> None:
    self._bar.close()
