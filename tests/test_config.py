"""jaxpose.config: the large-batch scaling rule, the pod recipe, and config files (loading, overrides, mistakes)."""

import pathlib
import re

import pytest

from jaxpose import config as config_lib

CONFIGS = pathlib.Path(__file__).parent.parent / 'configs'


def test_scaling_keeps_the_examples_seen_and_scales_the_rate():
  config = config_lib.load_config_file(str(CONFIGS / 'hourglass_coco.py'))
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
  config = config_lib.load_config_file(str(CONFIGS / 'hourglass_coco_pod.py'))
  config_lib.validate(config)
  assert config.parallel == 'shard_map' and config.batch_size == 1024
  assert config.learning_rate == pytest.approx(2.5e-4 * 32 ** 0.5)
  assert config.warmup_steps == 732


def test_a_config_file_loads_with_its_argument_and_fails_naming_the_file(tmp_path):
  pod = str(CONFIGS / 'hourglass_coco_pod.py')
  assert config_lib.load_config_file(pod + ':2048').batch_size == 2048  # config_flags' FILE:ARG
  assert config_lib.load_config_file(pod, '512').batch_size == 512
  missing = re.escape(str(tmp_path / 'nosuch.py'))
  with pytest.raises(FileNotFoundError, match=rf'^{missing}: config file not found'):
    config_lib.load_config_file(str(tmp_path / 'nosuch.py'))
  (tmp_path / 'no_function.py').write_text('x = 1\n')
  with pytest.raises(ValueError, match='must define get_config'):
    config_lib.load_config_file(str(tmp_path / 'no_function.py'))


def test_overrides_change_a_copy_and_unknown_fields_name_where_they_came_from():
  config = config_lib.default_config()
  changed = config_lib.apply_overrides(
      config, {'model.num_stacks': 4, 'input_size': [128, 96]}, 'here')
  assert changed.model.num_stacks == 4 and changed.input_size == (128, 96)  # a tuple stays one
  assert config.model.num_stacks == 2 and config.input_size == (256, 256)
  with pytest.raises(ValueError, match=r"here: override 'model.num_stakcs': config has no "
                     r"field 'num_stakcs'"):
    config_lib.apply_overrides(config, {'model.num_stakcs': 4}, 'here')
  with pytest.raises(ValueError, match=r"here: override 'modle.depth': config has no field "
                     r"'modle'"):
    config_lib.apply_overrides(config, {'modle.depth': 4}, 'here')
  with pytest.raises(ValueError, match=r"here: override 'batch_size': "):
    config_lib.apply_overrides(config, {'batch_size': 'eight'}, 'here')


def test_check_config_file_names_a_missing_file_and_a_syntax_error_line(tmp_path):
  config_lib.check_config_file(str(CONFIGS / 'quickstart.py'))  # a good file passes
  missing = tmp_path / 'nosuch.py'
  with pytest.raises(FileNotFoundError, match=rf'^{re.escape(str(missing))}: no such file; '
                     'expected a Python config file with get_config'):
    config_lib.check_config_file(str(missing))
  broken = tmp_path / 'syntax.py'
  broken.write_text('import ml_collections\n\ndef get_config(:\n')
  with pytest.raises(ValueError, match=rf'^{re.escape(str(broken))}:3: SyntaxError: '):
    config_lib.check_config_file(str(broken))
  runs_badly = tmp_path / 'runs_badly.py'  # checked, not run: what it raises shows later
  runs_badly.write_text('undefined_at_import\n')
  config_lib.check_config_file(str(runs_badly))


def test_config_file_error_finds_the_line_that_raised_through_wrappers(tmp_path):
  raises = tmp_path / 'raises.py'
  raises.write_text('def get_config():\n  return {}\n\nundefined_at_import\n')
  with pytest.raises(RuntimeError) as wrapped:
    try:
      config_lib.load_config_file(str(raises))
    except NameError as e:  # as absl wraps it, while parsing the --config flag
      raise RuntimeError('parsing --config failed') from e
  assert config_lib.config_file_error(wrapped.value, str(raises)) == (
      f"{raises}:4: NameError: name 'undefined_at_import' is not defined")
  # An exception raised elsewhere is not blamed on the file.
  assert config_lib.config_file_error(ValueError('elsewhere'), str(raises)) is None


def test_the_custom_keypoints_config_takes_its_layout_from_the_hand_file(monkeypatch):
  from jaxpose import approaches  # pylint: disable=g-import-not-at-top
  from jaxpose.data import sources  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(CONFIGS.parent)  # its sample paths are the repository's
  config = config_lib.load_config_file(str(CONFIGS / 'custom_keypoints.py'))
  config_lib.validate(config)
  assert config.model.num_joints == config_lib.FROM_DATA
  approach = approaches.for_config(config)
  assert approach.description['num_joints'] == 21  # OneHand10K's wrist and 20 finger joints
  layout = sources.data_skeleton(config)
  assert layout.name == 'hand' and layout.flip_pairs == () and len(layout.limbs) == 20
  # An explicit number that the data contradicts is named, with the data's.
  config.model.num_joints = 17
  with pytest.raises(ValueError, match=r"config.model.num_joints is 17, but config.data.source "
                     r"'coco' has the 21 hand keypoints \(0 follows the data\)"):
    approaches.for_config(config).check_data(config, layout)
  # Overrides from the command line's dotted fields, checked against the 21 keypoints.
  config.data.skeleton.flip_pairs = ((1, 5),)
  assert sources.data_skeleton(config).flip_pairs == ((1, 5),)
  config.data.skeleton.sigmas = (0.1,) * 20
  with pytest.raises(ValueError, match='config.data.skeleton.sigmas: expected 21 positive numbers'):
    sources.data_skeleton(config)
