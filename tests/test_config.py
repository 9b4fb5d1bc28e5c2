"""jaxpose.config: the large-batch scaling rule and the pod recipe built with it."""

import pathlib

import pytest

from jaxpose import config as config_lib
from jaxpose import sweep

CONFIGS = pathlib.Path(__file__).parent.parent / 'configs'


def test_scaling_keeps_the_examples_seen_and_scales_the_rate():
  config = sweep.load_config_file(str(CONFIGS / 'hourglass_coco.py'))
  steps, decays, rate = config.num_train_steps, config.lr_decay_steps, config.learning_rate
  scaled = config_lib.scale_to_global_batch(config, 1024, rule='linear',
                                            examples_per_epoch=config_lib.COCO_TRAIN_PEOPLE)
  assert scaled.batch_size == 1024
  assert scaled.learning_rate == pytest.approx(rate * 32)
  # The same number of examples (within a step's rounding), decays at the same epochs.
  assert abs(scaled.num_train_steps * 1024 - steps * 32) <= 1024
  assert all(abs(a * 1024 - b * 32) <= 1024 for a, b in zip(scaled.lr_decay_steps, decays))
  # Goyal et al.'s 5 epochs of warm-up: 5 x 149813 / 1024 = 731.5 steps.
  assert scaled.warmup_steps == 732


def test_sqrt_rule_and_bad_arguments():
  config = config_lib.default_config()
  config.batch_size, config.learning_rate = 16, 1e-3
  config_lib.scale_to_global_batch(config, 64, rule='sqrt')
  assert config.learning_rate == pytest.approx(2e-3)
  assert config.warmup_steps == 0  # no epoch size given: no warm-up invented
  with pytest.raises(ValueError, match="rule 'linear' or 'sqrt'"):
    config_lib.scale_to_global_batch(config, 64, rule='cubic')


def test_pod_recipe_is_valid_and_shards_over_every_device():
  config = sweep.load_config_file(str(CONFIGS / 'hourglass_coco_pod.py'))
  config_lib.validate(config)
  assert config.parallel == 'shard_map' and config.batch_size == 1024
  assert config.learning_rate == pytest.approx(2.5e-4 * 32 ** 0.5)
  assert config.warmup_steps == 732
