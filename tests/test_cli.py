"""The `jaxpose` command: one absl front, each command with only its own flags."""

import pytest

from jaxpose import cli


def test_a_flag_of_another_command_is_refused(tmp_path):
  # --detections belongs to eval: train does not accept it (it once did, and ignored it).
  with pytest.raises(SystemExit, match=r'jaxpose train: .*detections'):
    cli.main(['train', '--config=configs/quickstart.py', f'--workdir={tmp_path}',
              '--detections=dets.json'])
  assert not any(tmp_path.iterdir())  # nothing was started


def test_missing_required_flags_are_named(tmp_path):
  with pytest.raises(SystemExit, match=r'jaxpose infer: .*--out'):
    cli.main(['infer', '--workdir', str(tmp_path), '--image', 'x.jpg'])
  with pytest.raises(SystemExit, match=r'jaxpose score: .*coco_annotations'):
    cli.main(['score', '--results', 'r.json'])


def test_unknown_command_and_stray_arguments(tmp_path):
  with pytest.raises(SystemExit, match="unknown command 'fly'"):
    cli.main(['fly'])
  with pytest.raises(SystemExit, match=r"unexpected arguments \['extra'\]"):
    cli.main(['score', '--coco_annotations', 'a.json', '--results', 'r.json', 'extra'])


def test_flags_are_spelled_with_dashes_or_underscores():
  assert cli._absl_spelling('--flip-test') == '--flip_test'
  assert cli._absl_spelling('--no-track') == '--notrack'
  assert cli._absl_spelling('--input-size=64,48') == '--input_size=64,48'
  assert cli._absl_spelling('--config.data.coco-dir=/a-b') == '--config.data.coco-dir=/a-b'
  assert cli._absl_spelling('/path/with-dash') == '/path/with-dash'


def test_a_misspelt_config_field_is_named(tmp_path):
  with pytest.raises(SystemExit, match=r'unknown config field in --config\.lerning_rate=1'):
    cli.main(['train', '--config=configs/quickstart.py', f'--workdir={tmp_path}',
              '--config.lerning_rate=1'])


def test_help_lists_the_commands_and_a_commands_flags(capsys):
  cli.main(['--help'])
  out = capsys.readouterr().out
  assert all(name in out for name in cli.COMMANDS)
  cli.main(['export', '--help'])
  out = capsys.readouterr().out
  assert '--input_size' in out and 'last_only' in out and '--detections' not in out
