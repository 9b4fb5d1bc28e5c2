"""Progressive resizing: the phases of config.input_size_schedule, and the trainer switching between them."""

import jax
import numpy as np
import pytest

from jaxpose import approaches
from jaxpose.training import progressive
from jaxpose.training import trainer
from test_train import _leaves, tiny_config


def _scheduled_config(**overrides):
  config = tiny_config(**{"input_size": (64, 64), **overrides})  # sigma 1
  config.num_train_steps = 8
  config.input_size_schedule = ((3, (32, 32)), (5, (32, 64)))
  return config


def test_each_step_trains_at_its_phase_s_size_and_scaled_sigma():
  config = _scheduled_config()
  sizes = {step: tuple(progressive.phase_config(config, step).input_size) for step in range(1, 9)}
  assert sizes == {1: (32, 32), 2: (32, 32), 3: (32, 32), 4: (32, 64), 5: (32, 64),
                   6: (64, 64), 7: (64, 64), 8: (64, 64)}
  # Scaled by width: the Gaussian covers the same part of a person.
  assert progressive.phase_config(config, 1).sigma == 0.5
  assert progressive.phase_config(config, 6) is config and config.sigma == 1.0
  assert [progressive.phase_end(config, step) for step in range(1, 9)] == [3, 3, 3, 5, 5, 8, 8, 8]
  # The phase's copy leaves the config as it was.
  assert tuple(config.input_size) == (64, 64)


@pytest.mark.parametrize('schedule, message', [
    (((3, (32, 32)), (3, (64, 64))), r'input_size_schedule\[1\]: until_step must increase'),
    (((8, (32, 32)),), r'input_size_schedule\[0\]: until_step must increase and stay below '
                       r'config.num_train_steps \(8\), got 8'),
    (((3, (40, 32)),), r'input_size_schedule\[0\]: .*multiples of 16, got 40x32'),
    (((3, 32),), r'input_size_schedule\[0\]: expected \(until_step, \(width, height\)\)'),
])
def test_a_schedule_the_trainer_cannot_follow_is_named(schedule, message):
  config = _scheduled_config()
  config.input_size_schedule = schedule
  with pytest.raises(ValueError, match=message):
    progressive.check(config, approaches.for_config(config))


def _recorded_loaders(monkeypatch) -> list:
  """Makes trainer.train_loader record (input_size, sigma, start_step) of each loader it builds."""
  loaders = []
  original_loader = trainer.train_loader

  def recording_loader(source, config, start_step=0, approach=None):
    loaders.append((tuple(config.input_size), config.sigma, start_step))
    return original_loader(source, config, start_step, approach)

  monkeypatch.setattr(trainer, 'train_loader', recording_loader)
  return loaders


@pytest.mark.slow  # ~3 min of CPU: five tiny training runs
def test_a_scheduled_run_is_a_small_run_resumed_at_the_full_size(tmp_path, monkeypatch):
  # The trainer changes loader and step at the phase boundary: steps 1-2 at
  # 32x32 (sigma 0.5), steps 3-4 at 64x64; a step compiled for 32x32 batches
  # would refuse the 64x64 ones.
  loaders = _recorded_loaders(monkeypatch)
  config = tiny_config(num_train_steps=4, input_size=(64, 64), input_size_schedule=((2, (32, 32)),))
  final = trainer.train_and_evaluate(config, str(tmp_path / 'scheduled'))
  assert loaders == [((32, 32), 0.5, 0), ((64, 64), 1.0, 2)]
  assert final['step'] == 4 and np.isfinite(final['loss'])
  # The same variables as a 2-step run at 32x32 whose checkpoint a 4-step
  # run at 64x64 resumes, and not those of 4 steps at 64x64.
  small = tiny_config(num_train_steps=2, input_size=(32, 32), sigma=0.5)
  trainer.train_and_evaluate(small, str(tmp_path / 'resumed'))
  trainer.train_and_evaluate(tiny_config(num_train_steps=4, input_size=(64, 64)), str(tmp_path / 'resumed'))
  scheduled, resumed = _leaves(tmp_path / 'scheduled'), _leaves(tmp_path / 'resumed')
  assert [path for path, _ in scheduled] == [path for path, _ in resumed]
  for (path, ours), (_, theirs) in zip(scheduled, resumed):
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7,
                               err_msg=jax.tree_util.keystr(path))
  trainer.train_and_evaluate(tiny_config(num_train_steps=4, input_size=(64, 64)), str(tmp_path / 'full'))
  assert any(not np.allclose(ours, theirs, rtol=1e-3) for (_, ours), (_, theirs)
             in zip(scheduled, _leaves(tmp_path / 'full')))
  # A rerun resumes in the last phase: its loader starts at the checkpoint.
  loaders = _recorded_loaders(monkeypatch)
  trainer.train_and_evaluate(tiny_config(num_train_steps=5, input_size=(64, 64),
                                       input_size_schedule=((2, (32, 32)),)),
                           str(tmp_path / 'scheduled'))
  assert loaders == [((64, 64), 1.0, 4)]
