"""scripts/bench_train_step.py at a tiny size: its table's rows, speeds, FLOPs and memory."""

import json
import os
import re
import sys
import time
import types

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import bench_train_step  # pylint: disable=g-import-not-at-top

# A 2-stack hourglass 32 channels wide with 2 halvings, batch 2 at 64x64: its
# train step compiles in ~11 s of CPU time (~19 s with XLA's optimisations,
# ~25 at depth 4). One PyTorch thread: on a machine shared with other jobs,
# two threads waiting for each other made a step 80x slower.
TINY = ['--num-features', '16', '--input-size', '64', '--hourglass-depth', '2',
        '--batch-size', '2', '--steps', '1', '--repeats', '1', '--quick-compile',
        '--torch-threads', '1']


@pytest.fixture(autouse=True)
def _keep_torch_threads():
  threads = torch.get_num_threads()
  yield
  torch.set_num_threads(threads)  # main sets them for the whole process


@pytest.mark.slow  # ~13 s: both frameworks train; the rows' set-up and arguments are checked by default
def test_the_jaxpose_and_pytorch_rows_train_the_same_network(tmp_path, capsys):
  path = tmp_path / 'rows.json'
  rows = bench_train_step.main(TINY + ['--rows', 'jaxpose-f32', 'torch-eager', '--json', str(path)])
  jax_row, torch_row = rows
  assert [jax_row['key'], torch_row['key']] == ['jaxpose-f32', 'torch-eager']
  assert not jax_row['unavailable'] and not torch_row['unavailable']
  # Same initial weights, batch and loss: the first step's losses agree to float rounding.
  assert jax_row['first_loss'] == pytest.approx(torch_row['first_loss'], rel=1e-5)
  assert jax_row['images_per_s'] > 0 and torch_row['images_per_s'] > 0
  assert torch_row['vs_torch_median'] == 1.0  # the only PyTorch row is its own reference
  assert jax_row['vs_torch_median'] == pytest.approx(
      jax_row['images_per_s'] / torch_row['images_per_s'])
  # TFLOP/s: XLA's count (a 1.6 GFLOP step) over the median time.
  assert jax_row['model_gflop'] == pytest.approx(1.6, rel=0.1)
  assert jax_row['tflops'] == pytest.approx(
      jax_row['model_gflop'] / 1e3 * jax_row['images_per_s'] / 2)
  assert jax_row['mfu'] is None  # no peak known for a CPU
  # The step's arguments alone hold the weights and RMSprop's second moment.
  parameters = sum(p.numel() for p in bench_train_step.NETWORKS['hg2'].torch_model(
      bench_train_step.parse_args(TINY)).parameters())
  assert jax_row['peak_mib'] > jax_row['temp_mib'] > 0
  assert jax_row['peak_mib'] * 2 ** 20 > 2 * 4 * parameters
  assert torch_row['peak_mib'] is None  # on the CPU, not measured
  table = capsys.readouterr().out
  assert '| jaxpose float32 | ' in table and '| PyTorch eager float32, NCHW | ' in table
  assert json.loads(path.read_text())['rows'] == rows


def test_a_row_that_fails_to_set_up_is_reported_unavailable(capsys):
  def broken(bench):
    raise RuntimeError('no C++ compiler\nfound')
  row = bench_train_step.Row('torch-compile-cl', 'torch.compile float32', 'float32', broken)
  result, step = bench_train_step.set_up(
      row, types.SimpleNamespace(torch_device=torch.device('cpu')))
  assert step is None and result.unavailable == 'RuntimeError: no C++ compiler found'
  args = bench_train_step.parse_args(TINY)
  bench_train_step.print_table(args, bench_train_step.summarise([result], 2))
  assert '| torch.compile float32 | unavailable: RuntimeError: no C++ compiler found |' in (
      capsys.readouterr().out)


def test_set_up_stops_at_its_time_limit_even_if_the_first_stop_is_dropped():
  def slow(bench):
    try:
      while True:
        np.linalg.eigvals(np.eye(4))
    except TimeoutError:
      pass  # as a GC callback drops what it raises
    while True:
      np.linalg.eigvals(np.eye(4))
  row = bench_train_step.Row('torch-eager', 'PyTorch', 'float32', slow)
  start = time.perf_counter()
  result, step = bench_train_step.set_up(
      row, types.SimpleNamespace(torch_device=torch.device('cpu')), seconds=0.1)
  assert step is None and result.unavailable.startswith('TimeoutError: set-up ran past')
  assert time.perf_counter() - start < 10  # the second stop, a second after the first


@pytest.mark.parametrize('argv, message', [
    (['--input-size', '96'], r'--input-size: hourglass needs .* multiples of 64'),
    (['--model', 'lwop', '--input-size', '100'], r'multiples of 8'),
    (['--steps', '0'], r'expected positive numbers'),
    (['--rows', 'torch-amp-bf16-cl', '--dtype', 'float32'], r'no row is both'),
])
def test_bad_arguments_are_named(argv, message, capsys):
  with pytest.raises(SystemExit):
    bench_train_step.parse_args(argv)
  assert re.search(message, capsys.readouterr().err)


@pytest.mark.slow
@pytest.mark.parametrize('model', ['hg2', 'lwop'])
def test_every_row_runs_and_bfloat16_and_remat_train_the_same_network(model):
  # Every row but torch.compile's, whose Inductor build takes minutes on a CPU.
  keys = [row.key for row in bench_train_step.ROWS if row.key != 'torch-compile-cl']
  rows = {row['key']: row for row in bench_train_step.main(TINY + ['--model', model, '--rows',
                                                                   *keys])}
  assert [key for key, row in rows.items() if row['unavailable']] == []
  f32 = rows['jaxpose-f32']['first_loss']
  assert rows['jaxpose-f32-remat']['first_loss'] == pytest.approx(f32, rel=1e-6)
  assert rows['jaxpose-bf16']['first_loss'] == pytest.approx(f32, rel=0.02)
  assert rows['torch-amp-bf16-cl']['first_loss'] == pytest.approx(f32, rel=0.02)
  assert rows['torch-eager-cl']['first_loss'] == pytest.approx(f32, rel=1e-5)
