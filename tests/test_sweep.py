"""Sweeps: the helpers that build points, seeds and their spread, rerunning, refusing a reused workdir, plots.

Also the package's shape: no module of jaxpose/sweep imports one that imports
it back, and a point's process (`jaxpose.sweep.worker`) imports jax only
after setting its CPU affinity.

Most tests replace the trainer with `_FakeTrainer`, which writes what
`trainer.train_and_evaluate` writes (summary.json, metrics.csv) from numbers set
by the config, so the tables can be checked against known values in
milliseconds; the end-to-end runs are marked slow.
"""

import ast
import csv
import glob
import io
import json
import os
import pathlib
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from jaxpose import sweep
from jaxpose.sweep import scheduler
from jaxpose.sweep import worker
from jaxpose.training import trainer as trainer_module

REPO = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = REPO / 'configs' / 'quickstart.py'


def _pck(config) -> float:
  return 0.1 * config.model.num_stacks + 10 * config.learning_rate + 0.01 * config.seed ** 2


class _FakeTrainer:
  """Stands in for trainer.train_and_evaluate: records calls; `fail_at` (1-based) interrupts that call."""

  def __init__(self, fail_at: int | None = None):
    self.calls, self.resumed, self.fail_at = [], [], fail_at

  def __call__(self, config, workdir):
    self.calls.append(os.path.basename(workdir))
    os.makedirs(workdir, exist_ok=True)
    marker = os.path.join(workdir, 'checkpoint_at_step_1')
    if os.path.exists(marker):
      self.resumed.append(os.path.basename(workdir))
    pck = _pck(config)
    logged = os.path.join(workdir, 'metrics.csv')
    new = not os.path.exists(logged)
    with open(logged, 'a') as f:  # appended on resuming, as metric_writers does
      f.write('step,name,value\n' if new else '')
      f.write('0,eval/pck,0.0\n1,train/images_per_second,10.0\n'
              f'1,eval/pck,{pck + 0.05}\n')
      if len(self.calls) == self.fail_at:
        open(marker, 'w').close()
        raise KeyboardInterrupt('killed')
      f.write(f'2,train/images_per_second,{20.0 + config.seed}\n2,eval/pck,{pck}\n')
    with open(os.path.join(workdir, 'summary.json'), 'w') as f:
      json.dump({'pck': pck, 'loss': 1 - pck, 'step': config.num_train_steps}, f)
    return {'pck': pck}


def _sweep_file(tmp_path, body: str, name: str = 'sweep.py', base=QUICKSTART) -> str:
  path = tmp_path / name
  path.write_text('import ml_collections\nfrom jaxpose.sweep import sweep, product, zipped\n'
                  'def get_config():\n  s = ml_collections.ConfigDict()\n'
                  f'  s.base = {str(base)!r}\n' + ''.join(f'  {line}\n' for line in
                                                          body.splitlines()) + '  return s\n')
  return str(path)


GRID = ("s.points = product(sweep('model.num_stacks', [1, 2]), sweep('learning_rate', [1e-3, 2e-3]))\n"
        's.seeds = 2')


def _read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def test_helpers_expand_to_override_dicts(tmp_path, capsys):
  grid = sweep.product(sweep.sweep('a', [1, 2, 3]), sweep.sweep('b.c', ['x', 'y']))
  assert grid[:3] == [{'a': 1, 'b.c': 'x'}, {'a': 1, 'b.c': 'y'}, {'a': 2, 'b.c': 'x'}]
  seeded = sweep.with_seeds(grid, 2)
  assert len(seeded) == 12 and seeded[-1] == {'a': 3, 'b.c': 'y', 'seed': 1}
  assert len({json.dumps(p, sort_keys=True) for p in seeded}) == 12
  assert sweep.zipped(sweep.sweep('a', [1, 2]), sweep.sweep('b', [3, 4])) == [
      {'a': 1, 'b': 3}, {'a': 2, 'b': 4}]
  assert sweep.zip_ is sweep.zipped
  with pytest.raises(ValueError, match=r'different lengths \[2, 3\]'):
    sweep.zipped(sweep.sweep('a', [1, 2]), sweep.sweep('b', [3, 4, 5]))
  # An old file listing `points` expands to exactly its list.
  old = sweep.load_config_file(str(REPO / 'configs' / 'sweeps' / 'quickstart_stacks.py'))
  assert sweep.expand(old) == [{'model.num_stacks': 1}, {'model.num_stacks': 2}]
  # `seeds` in a sweep file: 2 x 2 values x 2 seeds, each a printed command.
  sweep.run(_sweep_file(tmp_path, GRID), str(tmp_path / 'out'), print_only=True)
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 8 and lines[1].endswith(
      '--config.model.num_stacks=1 --config.learning_rate=0.001 --config.seed=1')
  assert str(tmp_path / 'out' / 'num_stacks=2,learning_rate=0.002,seed=1') in lines[7]
  for example in (REPO / 'configs' / 'sweeps').glob('*.py'):  # the shipped sweeps are valid
    assert sweep.plan(str(example), str(tmp_path / example.stem))[2]


def test_unknown_field_fails_before_any_training(tmp_path, monkeypatch):
  trainer = _FakeTrainer()
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', trainer)
  path = _sweep_file(tmp_path, "s.points = [{'model.num_stacks': 1}, {'model.num_stacks': 2},\n"
                     "            {'model.num_stakcs': 3}]")
  with pytest.raises(ValueError, match=r"points\[2\].*'model.num_stakcs'.*no field 'num_stakcs'"):
    sweep.run(path, str(tmp_path / 'out'))
  assert trainer.calls == [] and not (tmp_path / 'out').exists()
  # A value of the wrong type fails before training too.
  path = _sweep_file(tmp_path, "s.points = [{'batch_size': 8}, {'batch_size': 'eight'}]")
  with pytest.raises(ValueError, match=r"points\[1\].*'batch_size'"):
    sweep.run(path, str(tmp_path / 'out'))
  assert trainer.calls == []


def test_seeds_give_mean_and_sample_std_per_point(tmp_path, monkeypatch):
  trainer = _FakeTrainer()
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', trainer)
  out = tmp_path / 'out'
  rows = sweep.run(_sweep_file(tmp_path, GRID), str(out))
  assert len(trainer.calls) == 8 and len(rows) == 8
  table = _read_csv(out / 'sweep_results.csv')
  assert [row['point'] for row in table] == [
      'num_stacks=1,learning_rate=0.001', 'num_stacks=1,learning_rate=0.002',
      'num_stacks=2,learning_rate=0.001', 'num_stacks=2,learning_rate=0.002']
  for row in table:
    summaries = [json.loads((out / f'{row["point"]},seed={seed}' / 'summary.json').read_text())
                 for seed in (0, 1)]
    pcks = [s['pck'] for s in summaries]
    assert float(row['pck_mean']) == pytest.approx(np.mean(pcks), abs=1e-12)
    assert float(row['pck_std']) == pytest.approx(np.std(pcks, ddof=1), abs=1e-12)
    assert float(row['pck_std']) == pytest.approx(0.01 / np.sqrt(2))  # seeds 0, 1: 0.00 and 0.01
    assert row['n'] == '2' and float(row['step_mean']) == 400
    assert float(row['best_pck_mean']) == pytest.approx(np.mean(pcks) + 0.05)
    assert float(row['images_per_second_mean']) == pytest.approx(np.mean([15.0, 15.5]))
    assert float(row['wall_seconds_mean']) >= 0
  runs = _read_csv(out / 'sweep_runs.csv')
  assert len(runs) == 8 and runs[3]['run'] == 'num_stacks=1,learning_rate=0.002,seed=1'
  assert float(runs[3]['pck']) == pytest.approx(0.1 + 0.02 + 0.01)
  assert runs[3]['best_step'] == '1' and float(runs[3]['images_per_second']) == 15.5
  markdown = (out / 'sweep_results.md').read_text()
  assert 'sample standard deviation (ddof=1)' in markdown and '| n |' in markdown


def test_rerun_trains_only_unfinished_runs(tmp_path, monkeypatch):
  path = _sweep_file(tmp_path, GRID)
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', _FakeTrainer())
  sweep.run(path, str(tmp_path / 'whole'))
  interrupted = _FakeTrainer(fail_at=3)
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', interrupted)
  with pytest.raises(KeyboardInterrupt):
    sweep.run(path, str(tmp_path / 'out'))
  assert len(interrupted.calls) == 3
  rerun = _FakeTrainer()
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', rerun)
  sweep.run(path, str(tmp_path / 'out'))
  # The two finished runs are skipped, the killed one resumes, the rest start.
  names = [f'num_stacks={s},learning_rate={lr},seed={seed}'
           for s in (1, 2) for lr in (0.001, 0.002) for seed in (0, 1)]
  assert interrupted.calls == names[:3] and rerun.calls == names[2:]
  assert rerun.resumed == ['num_stacks=1,learning_rate=0.002,seed=0']
  # Deleting one summary retrains that run alone; the table is the uninterrupted one.
  os.remove(tmp_path / 'out' / 'num_stacks=2,learning_rate=0.001,seed=1' / 'summary.json')
  again = _FakeTrainer()
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', again)
  sweep.run(path, str(tmp_path / 'out'))
  assert again.calls == ['num_stacks=2,learning_rate=0.001,seed=1']

  def without_wall_time(name):
    return [{k: v for k, v in row.items() if not k.startswith('wall_seconds')}
            for row in _read_csv(tmp_path / name / 'sweep_results.csv')]
  assert without_wall_time('out') == without_wall_time('whole')


def test_a_workdir_of_another_config_is_refused(tmp_path, monkeypatch):
  base = tmp_path / 'base.py'
  base.write_text(QUICKSTART.read_text())
  path = _sweep_file(tmp_path, GRID, base=base)
  trainer = _FakeTrainer()
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', trainer)
  sweep.run(path, str(tmp_path / 'out'))
  base.write_text(QUICKSTART.read_text().replace('config.sigma = 1.0', 'config.sigma = 2.0'))
  with pytest.raises(ValueError, match=r'points\[0\].*num_stacks=1,learning_rate=0.001,seed=0 '
                     r'was trained with another config \(differs in sigma\)'):
    sweep.run(path, str(tmp_path / 'out'))
  assert len(trainer.calls) == 8  # nothing more trained
  sweep.run(path, str(tmp_path / 'elsewhere'))  # a fresh workdir is fine
  assert len(trainer.calls) == 16


def test_plot_and_its_data_match_the_table(tmp_path, monkeypatch):
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', _FakeTrainer())
  out = tmp_path / 'out'
  sweep.run(_sweep_file(tmp_path, GRID), str(out))
  table = {row['point']: row for row in _read_csv(out / 'sweep_results.csv')}
  for field, other in (('model.num_stacks', 'learning_rate'), ('learning_rate', 'model.num_stacks')):
    image = cv2.imread(str(out / f'sweep_plot_{field}.png'))
    assert image.shape == (500, 800, 3) and (image < 128).any()  # drawn on
    plotted = _read_csv(out / f'sweep_plot_{field}.csv')
    assert len(plotted) == 4 and {row['series'] for row in plotted} == {
        f'{other}={v}' for v in ((0.001, 0.002) if other == 'learning_rate' else (1, 2))}
    for row in plotted:
      values = {field: row[field], other: row['series'].split('=')[1]}
      point = table[f'num_stacks={values["model.num_stacks"]},learning_rate={values["learning_rate"]}']
      assert (row['pck_mean'], row['pck_std'], row['n']) == (
          point['pck_mean'], point['pck_std'], point['n'])
  sweep.run(_sweep_file(tmp_path, GRID), str(out), metric='loss')
  assert float(_read_csv(out / 'sweep_plot_learning_rate.csv')[0]['loss_mean']) == pytest.approx(
      1 - float(table['num_stacks=1,learning_rate=0.001']['pck_mean']))
  with pytest.raises(ValueError, match=r"--metric 'pkc'.*'pck'"):
    sweep.run(_sweep_file(tmp_path, GRID), str(out), metric='pkc')


def _events(directory) -> list:
  """The tensorboard Event protos of DIRECTORY's event files (TFRecord framing: length, crc, data, crc)."""
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = []
  for path in sorted(glob.glob(os.path.join(directory, 'events.out.tfevents.*'))):
    data = pathlib.Path(path).read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
      offset += 12 + length + 4
  return events


def test_hparams_sessions_hold_each_runs_overrides_and_results(tmp_path, monkeypatch):
  from tensorboardX.proto import plugin_hparams_pb2  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', _FakeTrainer())
  out = tmp_path / 'out'
  path = _sweep_file(tmp_path, GRID)
  for _ in range(2):  # a rebuild replaces the sessions rather than adding to them
    rows = sweep.run(path, str(out), plot=False)
  for row in rows:
    session = out / row['run'] / 'tensorboard' / 'hparams'
    assert len(glob.glob(str(session / 'events.out.tfevents.*'))) == 1
    values = [v for e in _events(session) for v in e.summary.value]
    start = [v for v in values if v.tag == '_hparams_/session_start_info']
    assert len(start) == 1
    hparams = plugin_hparams_pb2.HParamsPluginData.FromString(
        start[0].metadata.plugin_data.content).session_start_info.hparams
    assert {k: v.number_value for k, v in hparams.items()} == pytest.approx(
        {'model.num_stacks': row['model.num_stacks'], 'learning_rate': row['learning_rate'],
         'seed': row['seed']})
    scalars = {v.tag: v.simple_value for v in values if v.tag.startswith('sweep/')}
    assert scalars['sweep/pck'] == pytest.approx(row['pck'])
    assert scalars['sweep/best_pck'] == pytest.approx(row['best_pck'])
    assert 'sweep/model.num_stacks' not in scalars


def test_resource_slices_split_gpus_or_cores():
  slices = scheduler.resource_slices(2, gpus=['0', '1', '2', '3'])
  assert [s['env'] for s in slices] == [{'CUDA_VISIBLE_DEVICES': '0,1'},
                                        {'CUDA_VISIBLE_DEVICES': '2,3'}]
  with pytest.raises(ValueError, match=r'--parallel 3: this host has 2 GPU\(s\)'):
    scheduler.resource_slices(3, gpus=['0', '1'])
  assert [s['cpus'] for s in scheduler.resource_slices(2, gpus=[], cpus=[0, 1, 2, 3, 4])] == [
      [0, 1], [2, 3]]
  assert [s['cpus'] for s in scheduler.resource_slices(3, gpus=[], cpus=[5, 7])] == [
      [5], [7], [5]]
  assert scheduler.local_gpus({'CUDA_VISIBLE_DEVICES': '3, 5'}) == ['3', '5']
  assert scheduler.local_gpus({'CUDA_VISIBLE_DEVICES': ''}) == []
  with pytest.raises(ValueError, match='--parallel: expected a positive'):
    scheduler.resource_slices(0, gpus=[])


def _sweep_imports() -> dict[str, set[str]]:
  """Module of jaxpose/sweep -> the modules of jaxpose/sweep it imports ('__init__' for the package).

  The package's own imports are the lazy ones its `_SOURCES` names.
  """
  package = REPO / 'jaxpose' / 'sweep'
  modules = {path.stem for path in package.glob('*.py')}
  imports = {}
  for path in package.glob('*.py'):
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom) and node.module == 'jaxpose.sweep':
        found |= {a.name if a.name in modules else '__init__' for a in node.names}
      elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('jaxpose.sweep.'):
        found.add(node.module.split('.')[2])
      elif isinstance(node, ast.Import):
        found |= {(a.name.split('.') + ['__init__'])[2] for a in node.names
                  if a.name.split('.')[:2] == ['jaxpose', 'sweep']}
    imports[path.stem] = found
  imports['__init__'] |= {source.split('.')[2] for source in sweep._SOURCES.values()  # pylint: disable=protected-access
                          if source.startswith('jaxpose.sweep.')}
  return imports


def test_no_sweep_module_imports_one_that_imports_it_back():
  imports = _sweep_imports()
  assert imports['runner'] >= {'points', 'scheduler', 'report'} and 'runner' in imports['worker']
  cycles = []
  for module in imports:
    reached, todo = set(), list(imports[module])
    while todo:
      name = todo.pop()
      if name not in reached:
        reached.add(name)
        todo += imports.get(name, ())
    if module in reached:
      cycles.append(module)
  assert not cycles, imports


def test_the_worker_imports_jax_only_after_its_affinity():
  # What a point's process imports before `main` sets its CPU affinity, and a
  # sweep file that only builds points: neither reaches jax (or the runner).
  code = ('import sys\nimport jaxpose.sweep.worker\nfrom jaxpose.sweep import product, sweep\n'
          'print(sorted(m for m in sys.modules if m in ("jax", "jaxpose.sweep.runner")))')
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                        cwd=REPO, timeout=120, check=True)
  assert done.stdout.strip() == '[]'


def test_the_worker_refuses_wrong_arguments_with_its_usage(tmp_path):
  assert scheduler.WORKER_MODULE == 'jaxpose.sweep.worker'  # what the scheduler starts
  done = subprocess.run([sys.executable, '-m', 'jaxpose.sweep.worker', 'only_a_sweep.py'],
                        capture_output=True, text=True, cwd=REPO, timeout=120)
  assert done.returncode == 1
  assert done.stderr.strip() == worker.USAGE == (
      'usage: python -m jaxpose.sweep.worker SWEEP_FILE WORKDIR RUN_NAME')
  # A run the sweep does not have is named, with the runs it has; nothing trains.
  sweep_file = REPO / 'configs' / 'sweeps' / 'quickstart_stacks.py'
  done = subprocess.run([sys.executable, '-m', 'jaxpose.sweep.worker', str(sweep_file),
                         str(tmp_path / 'out'), 'num_stacks=3'],
                        capture_output=True, text=True, cwd=REPO, timeout=300)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f"{sweep_file}: no run named 'num_stacks=3'; runs: ['num_stacks=1', 'num_stacks=2']")
  assert not (tmp_path / 'out').exists()


# A stand-in for a point's process: writes what _FakeTrainer writes, without importing jax.
_FAKE_POINT = """
import json, os, sys, time
workdir, pck, rate, steps, fail = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(workdir, 'metrics.csv'), 'w') as f:
  f.write(f'step,name,value\\n0,eval/pck,0.0\\n1,train/images_per_second,10.0\\n1,eval/pck,{pck + 0.05}\\n')
  f.flush()
  time.sleep(0.3)
  if fail == '1':
    sys.exit(3)
  f.write(f'2,train/images_per_second,{rate}\\n2,eval/pck,{pck}\\n')
with open(os.path.join(workdir, 'summary.json'), 'w') as f:
  json.dump({'pck': pck, 'loss': 1 - pck, 'step': steps}, f)
"""


class _FakeProcesses:
  """`start` for run_side_by_side: runs _FAKE_POINT, recording the most points running at once."""

  def __init__(self, fail: str = ''):
    self.started, self.most_at_once, self.fail, self.processes = [], 0, fail, []

  def __call__(self, sweep_path, workdir, run, resources):
    del sweep_path, workdir
    config = run['config']
    running = sum(p.poll() is None for p in self.processes)
    self.most_at_once = max(self.most_at_once, running + 1)
    self.started.append((run['name'], resources['label']))
    process = subprocess.Popen([sys.executable, '-c', _FAKE_POINT, run['workdir'],
                                repr(_pck(config)), repr(20.0 + config.seed),
                                str(config.num_train_steps), str(int(run['name'] == self.fail))])
    self.processes.append(process)
    return process


def test_parallel_points_give_the_sequential_table(tmp_path, monkeypatch):
  path = _sweep_file(tmp_path, GRID)
  monkeypatch.setattr(trainer_module, 'train_and_evaluate', _FakeTrainer())
  sweep.run(path, str(tmp_path / 'one_at_a_time'), plot=False)
  fake = _FakeProcesses()
  real_run_side_by_side = scheduler.run_side_by_side
  status = io.StringIO()
  monkeypatch.setattr(scheduler, 'run_side_by_side', lambda *a: real_run_side_by_side(
      *a, out=status, poll_seconds=0.05, start=fake))
  sweep.run(path, str(tmp_path / 'two_at_a_time'), plot=False, parallel=2)
  assert len(fake.started) == 8 and fake.most_at_once == 2
  assert {label for _, label in fake.started} == {
      s['label'] for s in scheduler.resource_slices(2)}

  def table(name):
    return [{k: v for k, v in row.items() if not k.startswith('wall_seconds')}
            for row in _read_csv(tmp_path / name / 'sweep_results.csv')]
  assert table('two_at_a_time') == table('one_at_a_time')
  lines = status.getvalue().splitlines()
  for name, _ in fake.started:  # a line per point as it starts, moves and finishes
    assert any(line.endswith(f'{name}: step 1/400') for line in lines)
    assert any(f'{name}: finished in' in line for line in lines)


def test_a_failed_point_is_named_and_the_others_finish(tmp_path, monkeypatch):
  path = _sweep_file(tmp_path, GRID)
  failing = 'num_stacks=1,learning_rate=0.002,seed=0'
  fake = _FakeProcesses(fail=failing)
  real_run_side_by_side = scheduler.run_side_by_side
  monkeypatch.setattr(scheduler, 'run_side_by_side', lambda *a: real_run_side_by_side(
      *a, out=io.StringIO(), poll_seconds=0.05, start=fake))
  with pytest.raises(RuntimeError, match=rf'1 point\(s\) failed: {failing} \(exit 3'):
    sweep.run(path, str(tmp_path / 'out'), plot=False, parallel=2)
  assert len(fake.started) == 8
  finished = [r for r in sweep.plan(path, str(tmp_path / 'out'))[2] if sweep.finished(r)]
  assert len(finished) == 7 and failing not in [r['name'] for r in finished]


def test_sweep_prints_one_command_per_point(tmp_path, capsys):
  sweep_file = REPO / 'configs' / 'sweeps' / 'quickstart_stacks.py'
  sweep.run(str(sweep_file), str(tmp_path), print_only=True)
  lines = capsys.readouterr().out.strip().splitlines()
  assert len(lines) == 2
  assert lines[0].startswith('jaxpose train --config ')
  assert lines[0].endswith('--config.model.num_stacks=1')
  assert str(tmp_path / 'num_stacks=2') in lines[1]


TINY = ("{'model.num_stacks': 1, 'model.num_features': 8, 'num_train_steps': 2,\n"
        "  'batch_size': 8, 'data.num_eval_examples': 8}")


@pytest.mark.slow
def test_sweep_runs_points_into_one_table(tmp_path):
  sweep_file = tmp_path / 'tiny_sweep.py'
  sweep_file.write_text(
      'import ml_collections\n'
      'def get_config():\n'
      '  s = ml_collections.ConfigDict()\n'
      f'  s.base = {str(QUICKSTART)!r}\n'
      "  s.points = [{'model.num_stacks': 1, 'model.num_features': 8, 'num_train_steps': 2,\n"
      "               'batch_size': 8, 'data.num_eval_examples': 8},\n"
      "              {'model.num_stacks': 1, 'model.num_features': 8, 'num_train_steps': 2,\n"
      "               'batch_size': 8, 'data.num_eval_examples': 8, 'learning_rate': 0.0}]\n"
      '  return s\n')
  rows = sweep.run(str(sweep_file), str(tmp_path / 'out'))
  assert len(rows) == 2 and all('pck' in row for row in rows)
  table = (tmp_path / 'out' / 'sweep_results.csv').read_text().splitlines()
  assert len(table) == 3 and 'pck' in table[0]
  bad = tmp_path / 'bad_sweep.py'
  bad.write_text(sweep_file.read_text().replace("'batch_size'", "'batch_sise'"))
  with pytest.raises(ValueError, match=r"points\[0\].*'batch_sise'"):
    sweep.run(str(bad), str(tmp_path / 'bad'))


@pytest.mark.slow
def test_real_runs_over_seeds_and_a_resumed_run(tmp_path):
  # Two seeds of one tiny point, trained for real; then one run loses its
  # summary.json, as if killed after its last checkpoint: the rerun resumes it
  # from that checkpoint (no step left, no evaluation) and the table stays.
  path = _sweep_file(tmp_path, f's.points = [{TINY}]\ns.seeds = 2')
  out = tmp_path / 'out'
  rows = sweep.run(path, str(out))
  assert [row['seed'] for row in rows] == [0, 1] and all(row['step'] == 2 for row in rows)
  table = _read_csv(out / 'sweep_results.csv')
  assert len(table) == 1 and table[0]['n'] == '2'
  assert float(table[0]['pck_mean']) == pytest.approx(np.mean([row['pck'] for row in rows]))
  assert float(table[0]['pck_std']) == pytest.approx(np.std([row['pck'] for row in rows], ddof=1))
  os.remove(out / 'num_stacks=1,num_features=8,num_train_steps=2,batch_size=8,'
            'num_eval_examples=8,seed=1' / 'summary.json')
  again = sweep.run(path, str(out))
  assert [row['pck'] for row in again] == [row['pck'] for row in rows]
  assert _read_csv(out / 'sweep_results.csv')[0]['pck_mean'] == table[0]['pck_mean']


@pytest.mark.slow
def test_real_points_in_two_processes_give_the_one_process_table(tmp_path):
  # Two tiny points trained for real, one after another here and side by side
  # in two processes (each on its own core, with this run's 8 forced CPU
  # devices): the trainer is deterministic per point, so the tables agree.
  path = _sweep_file(tmp_path, f's.points = [{TINY}, {{**{TINY}, "learning_rate": 0.0}}]')
  sweep.run(path, str(tmp_path / 'one'), plot=False)
  sweep.run(path, str(tmp_path / 'two'), plot=False, parallel=2)
  one, two = (_read_csv(tmp_path / name / 'sweep_runs.csv') for name in ('one', 'two'))
  timing = ('wall_seconds', 'images_per_second')
  for a, b in zip(one, two, strict=True):
    assert {k: v for k, v in a.items() if k not in timing} == {
        k: v for k, v in b.items() if k not in timing}
    assert float(a['pck']) == float(b['pck'])
