"""The `jaxpose` command as a user runs it: the installed executable in a subprocess.

Exit status (0 success, 2 usage error, 1 failing input), the last line of
stdout (one JSON object), one-line errors without a traceback, `-h` for every
command, quiet stderr, and outputs that are written whole or not at all.
A few parsing details are checked in-process (`cli.run`), where a subprocess
would only add seconds.
"""

import concurrent.futures
import json
import os
import pathlib
import resource
import shutil
import signal
import socket
import subprocess
import sys

import flax
import numpy as np
import onnx
import pytest

from jaxpose import cli, commands
from jaxpose.approaches import protocols
from jaxpose.deploy import export
from jaxpose.training import checkpoint
import layouts

REPO = pathlib.Path(__file__).resolve().parent.parent
JAXPOSE = pathlib.Path(sys.executable).with_name('jaxpose')
COCO = REPO / 'tests' / 'data' / 'coco'
# The quick start, shrunk to seconds: one stack of depth 2 for 2 steps, at a
# non-square 48x64 (W x H) so that a swapped width and height shows.
TINY_QUICKSTART = ['--config.num_train_steps=2', '--config.eval_every_steps=2',
                   '--config.checkpoint_every_steps=2', '--config.log_every_steps=1',
                   '--config.batch_size=4', '--config.warmup_steps=0',
                   '--config.lr_decay_steps=()', '--config.data.num_eval_examples=4',
                   '--config.model.num_stacks=1', '--config.model.depth=2',
                   '--config.input_size=(48,64)']
COCO_EVAL = ['--config.data.source=coco',
             f'--config.data.eval_annotations={COCO / "test_coco.json"}',
             f'--config.data.eval_images={COCO}']


def jaxpose(*arguments: str, **options) -> subprocess.CompletedProcess:
  """Runs the installed `jaxpose ARGUMENTS...` from the repository root, on one CPU device."""
  assert JAXPOSE.is_file(), f'{JAXPOSE}: jaxpose is not installed (pip install -e .)'
  env = dict(os.environ)
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '').replace(
      '--xla_force_host_platform_device_count=8', '')
  return subprocess.run([str(JAXPOSE), *arguments], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600, **options)


def last_json(done: subprocess.CompletedProcess) -> dict:
  assert done.returncode == 0, done.stderr
  return json.loads(done.stdout.strip().splitlines()[-1])


def assert_one_line_error(done: subprocess.CompletedProcess, status: int, *phrases: str) -> None:
  """Failed with `status`, nothing on stdout, one stderr line holding every phrase, no traceback."""
  assert done.returncode == status, (done.returncode, done.stderr)
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in done.stderr, done.stderr
  assert done.stdout == ''
  for phrase in phrases:
    assert phrase in lines[0], (phrase, lines[0])


def assert_quiet(stderr: str) -> None:
  """No third-party notice a user cannot tell from a real problem."""
  for noise in ('read only', 'read_only', 'MFU not reported', 'Traceback', 'DeprecationWarning',
                'UserWarning', 'FutureWarning'):
    assert noise not in stderr, (noise, stderr)


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
  workdir = tmp_path_factory.mktemp('cli') / 'quickstart'
  done = jaxpose('train', '--config=configs/quickstart.py', f'--workdir={workdir}',
                 *TINY_QUICKSTART)
  return workdir, done


@pytest.fixture(scope='module')
def exported(quickstart, tmp_path_factory) -> tuple[pathlib.Path, subprocess.CompletedProcess]:
  workdir, _ = quickstart
  folder = tmp_path_factory.mktemp('export')
  return folder / 'm.onnx', jaxpose('export', f'--workdir={workdir}', f'--out={folder / "m.onnx"}')


def test_train_exits_0_and_ends_with_its_metrics(quickstart):
  workdir, done = quickstart
  metrics = last_json(done)
  assert metrics['step'] == 2 and 0 <= metrics['pck'] <= 1
  assert json.loads((workdir / 'summary.json').read_text())['step'] == 2
  assert_quiet(done.stderr)


def test_export_writes_the_trained_input_size(exported):
  path, done = exported
  written = last_json(done)
  # Trained at 48x64 (W x H): [N, H, W, 3].
  assert written['inputs'] == {'images': ['N', 64, 48, 3]} and written['out'] == str(path)
  graph = onnx.load(path).graph
  assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [64, 48, 3]
  assert written['bytes'] == path.stat().st_size
  assert [p.name for p in path.parent.iterdir()] == ['m.onnx']  # no temporary left behind
  assert_quiet(done.stderr)

def test_input_size_overrides_the_recorded_one(quickstart, monkeypatch):
  # In-process, where the export itself is recorded rather than traced again.
  workdir, _ = quickstart
  asked = []
  monkeypatch.setattr(export, 'export_onnx', lambda *args, **kwargs: asked.append(kwargs))
  export.export_workdir(str(workdir), 'unused.onnx', input_size=(32, 32))
  export.export_workdir(str(workdir), 'unused.onnx')
  assert [kwargs['input_size'] for kwargs in asked] == [(32, 32), (48, 64)]


def test_infer_and_eval_exit_0_and_end_with_json(quickstart, tmp_path):
  workdir, _ = quickstart
  done = jaxpose('infer', f'--workdir={workdir}', f'--images={COCO}', f'--out={tmp_path / "o"}')
  summary = last_json(done)
  assert summary['frames'] == 4 and summary['approach'] == 'top-down'
  records = json.loads((tmp_path / 'o' / 'results.json').read_text())
  assert len(records) == summary['people']
  assert sorted(p.name for p in (tmp_path / 'o').glob('*.png')) == sorted(
      p.with_suffix('.png').name for p in COCO.glob('*.jpg'))
  assert_quiet(done.stderr)
  done = jaxpose('eval', '--config=configs/quickstart.py', f'--workdir={workdir}',
                 *TINY_QUICKSTART, *COCO_EVAL, f'--results={tmp_path / "r.json"}')
  metrics = last_json(done)
  assert set(metrics) == {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'AR50', 'AR75', 'ARm',
                          'ARl', 'step'} and metrics['step'] == 2
  assert all(0 <= metrics[name] <= 1 for name in metrics if name != 'step')
  assert (tmp_path / 'r.json').is_file()
  assert_quiet(done.stderr)


def test_old_protocol_values_map_to_names_with_a_warning_and_unknown_names_are_refused(capsys):
  assert commands.protocol_name(None, 'eval') is None
  assert commands.protocol_name('cmu_openpose', 'eval') == 'cmu_openpose'
  assert commands.protocol_name('bearpaw', 'eval', 'mpii_protocol') == 'bearpaw_mpii'
  assert ('jaxpose eval: --mpii_protocol=bearpaw is deprecated: use --protocol=bearpaw_mpii'
          in capsys.readouterr().err)
  assert commands.protocol_name('jaxpose', 'infer') is None  # the model's own
  assert "or leave it out: the model's own" in capsys.readouterr().err
  with pytest.raises(commands.UsageError, match="--protocol: expected one of jaxpose_topdown, "
                     "mmpose_topdown, bearpaw_mpii, lightweight_openpose, cmu_openpose, got 'x'"):
    commands.protocol_name('x', 'eval')


@pytest.mark.slow  # ~1 min: six eval and infer processes
def test_protocols_are_chosen_by_name_and_the_old_flags_still_work(quickstart, tmp_path):
  workdir, _ = quickstart
  evaluate = ['eval', '--config=configs/quickstart.py', f'--workdir={workdir}',
              *TINY_QUICKSTART, *COCO_EVAL]
  infer = ['infer', f'--workdir={workdir}', f'--image={COCO / "000000196141.jpg"}',
           f'--detections={COCO / "test_coco_det_AP_H_56.json"}']
  runs = {
      'eval_mmpose': evaluate + ['--protocol=mmpose_topdown', f'--results={tmp_path / "a.json"}'],
      'eval_old': evaluate + ['--coco_protocol=mmpose', f'--results={tmp_path / "b.json"}'],
      'eval_wrong_kind': evaluate + ['--protocol=lightweight_openpose'],
      'eval_unknown': evaluate + ['--protocol=openpose_v2'],
      'infer_mmpose': infer + ['--protocol=mmpose_topdown', f'--out={tmp_path / "c"}'],
      'infer_old': infer + ['--protocol=mmpose', f'--out={tmp_path / "d"}'],
  }
  with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
    done = dict(zip(runs, pool.map(lambda arguments: jaxpose(*arguments), runs.values())))
  # The old spelling runs the same procedure, and says what to write instead.
  assert last_json(done['eval_old']) == last_json(done['eval_mmpose'])
  assert (tmp_path / 'a.json').read_text() == (tmp_path / 'b.json').read_text()
  assert ('--coco_protocol=mmpose is deprecated: use --protocol=mmpose_topdown'
          in done['eval_old'].stderr)
  assert_quiet(done['eval_mmpose'].stderr)
  last_json(done['infer_old']), last_json(done['infer_mmpose'])
  assert ((tmp_path / 'c' / 'results.json').read_text()
          == (tmp_path / 'd' / 'results.json').read_text())
  assert '--protocol=mmpose is deprecated: use --protocol=mmpose_topdown' in done['infer_old'].stderr
  # A protocol of the other approach, and a name that is none.
  assert_one_line_error(done['eval_wrong_kind'], 1,
                        '--protocol lightweight_openpose is a bottom-up protocol', 'jaxpose_topdown')
  assert_one_line_error(done['eval_unknown'], 2,
                        '--protocol: expected one of jaxpose_topdown, mmpose_topdown, bearpaw_mpii, '
                        "lightweight_openpose, cmu_openpose, got 'openpose_v2'")


def test_infer_with_the_exported_model(exported, tmp_path):
  path, _ = exported
  image = COCO / '000000196141.jpg'
  summary = last_json(jaxpose('infer', f'--onnx={path}', f'--image={image}',
                              f'--out={tmp_path / "o"}'))
  assert summary['frames'] == 1 and (tmp_path / 'o' / '000000196141.png').is_file()


def test_every_command_has_help_with_a_line_per_flag():
  with concurrent.futures.ThreadPoolExecutor(len(cli.COMMANDS)) as pool:
    helps = dict(zip(cli.COMMANDS, pool.map(lambda name: jaxpose(name, '-h'), cli.COMMANDS)))
  for name, done in helps.items():
    assert done.returncode == 0, (name, done.stderr)
    lines = done.stdout.splitlines()
    flag_values = cli._define_flags(cli.COMMANDS[name], [f'jaxpose {name}'])  # pylint: disable=protected-access
    for flag in set(flag_values) - {'help', 'verbosity'}:
      spelled = (f'--[no]{flag}' if flag_values[flag].boolean else f'--{flag}') + ' '
      assert sum(line.strip().startswith(spelled) for line in lines) == 1, (name, flag)
  assert '--config.FIELD=VALUE' in helps['train'].stdout
  assert '--input_size' in helps['export'].stdout and '--detections' not in helps['export'].stdout
  for name in ('eval', 'infer'):  # --protocol's help names every protocol
    assert all(protocol in helps[name].stdout for protocol in protocols.PROTOCOLS), name


def _full_disk(limit_bytes: int):
  """A preexec_fn: writes past `limit_bytes` fail (EFBIG), as on a full disk, instead of a signal."""
  def limit():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
  return limit


def test_a_failed_export_leaves_the_earlier_file_as_it_was(quickstart, tmp_path):
  workdir, _ = quickstart
  out = tmp_path / 'model.onnx'
  out.write_bytes(b'the previous export')
  done = jaxpose('export', f'--workdir={workdir}', f'--out={out}',
                 preexec_fn=_full_disk(100_000))
  assert_one_line_error(done, 1, str(out), 'not written', 'unchanged')
  assert out.read_bytes() == b'the previous export'
  assert [p.name for p in tmp_path.iterdir()] == ['model.onnx']


def test_mistakes_fail_in_one_line(quickstart, tmp_path):
  workdir, _ = quickstart
  (tmp_path / 'a_file').write_text('')
  (tmp_path / 'syntax.py').write_text('import ml_collections\n\ndef get_config(:\n')
  no_keypoints = layouts.broken(layouts.COCO_FILE, tmp_path / 'no_keypoints.json',
                                lambda content: content['categories'][0].update(keypoints=[]))
  past_k = layouts.broken(layouts.COCO_FILE, tmp_path / 'past_k.json',
                          lambda content: content['categories'][0]['skeleton'].append([17, 18]))

  def train_on(annotations):
    return ['train', '--config=configs/quickstart.py', f'--workdir={tmp_path / "w"}',
            '--config.data.source=coco', f'--config.data.train_annotations={annotations}',
            f'--config.data.train_images={COCO}', f'--config.data.eval_annotations={annotations}',
            f'--config.data.eval_images={COCO}']
  cases = {
      'no keypoints': (train_on(no_keypoints), 1,
                       [f'{no_keypoints}: categories[0].keypoints: expected a list of keypoint '
                        'names, got []']),
      'limb past K': (train_on(past_k), 1,
                      [f'{past_k}: categories[0].skeleton[19] is [17, 18]: expected two 1-based '
                       'keypoint indices in 1..17']),
      'unwritable': (['export', f'--workdir={workdir}', '--out=/proc/model.onnx'],
                     2, ['--out /proc/model.onnx', 'cannot write']),
      'under a file': (['infer', f'--workdir={workdir}', f'--images={COCO}',
                        f'--out={tmp_path / "a_file" / "out"}'],
                       2, [f'{tmp_path / "a_file"} is a file, not a folder']),
      'missing config': (['train', '--config=configs/nosuch.py', f'--workdir={tmp_path / "w"}'],
                         2, ['--config configs/nosuch.py: no such file']),
      'syntax error': (['train', f'--config={tmp_path / "syntax.py"}',
                        f'--workdir={tmp_path / "w"}'],
                       2, [f'{tmp_path / "syntax.py"}:3: SyntaxError']),
  }
  with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
    done = dict(zip(cases, pool.map(lambda case: jaxpose(*case[0]), cases.values())))
  for name, (_, status, phrases) in cases.items():
    assert_one_line_error(done[name], status, *phrases)
  assert not (tmp_path / 'w').exists()  # nothing was started


@pytest.mark.parametrize('arguments, status, phrases', [
    (['fly'], 2, ["jaxpose: unknown command 'fly'", 'train, sweep, eval']),
    (['score', '--detections=d.json'], 2, ['jaxpose score: ', 'detections', '--help']),
    (['score', f'--coco_annotations={COCO / "test_coco.json"}', '--results=/nonexistent.json'],
     1, ['jaxpose score: ', '/nonexistent.json']),
    (['infer', '--onnx=m.onnx', '--video=rtsp://u:pw@127.0.0.1:9/s', '--reconnect_attempts=-1',
      '--out=/tmp/jaxpose_test_unwritten'], 2, ['--reconnect_attempts: expected 0 or more, got -1']),
])
def test_more_mistakes_in_one_line_in_process(arguments, status, phrases, capsys):
  # What main() returns is the executable's exit status, and its stderr.
  assert cli.main(arguments) == status
  output = capsys.readouterr()
  lines = output.err.strip().splitlines()
  assert len(lines) == 1 and output.out == '', output
  for phrase in phrases:
    assert phrase in lines[0]


def test_a_config_that_raises_names_its_file_and_line(tmp_path):
  (tmp_path / 'raises.py').write_text('def get_config():\n  return undefined_name\n\n'
                                      'undefined_at_import\n')
  with pytest.raises(cli.CommandFailed, match=rf'{tmp_path / "raises.py"}:4: NameError: '
                     ".*'undefined_at_import'") as failed:
    cli.run(['eval', f'--config={tmp_path / "raises.py"}', f'--workdir={tmp_path}'])
  assert failed.value.status == 2


@pytest.mark.slow  # ~2 min: the acceptance, the quick start as shipped
def test_the_quickstart_as_shipped_then_infer_eval_export(tmp_path):
  workdir = tmp_path / 'quickstart'
  trained = last_json(jaxpose('train', '--config=configs/quickstart.py', f'--workdir={workdir}',
                              '--config.num_train_steps=10'))
  assert trained['step'] == 10
  summary = last_json(jaxpose('infer', f'--workdir={workdir}', f'--images={COCO}',
                              f'--out={tmp_path / "infer"}'))
  assert summary['frames'] == 4
  metrics = last_json(jaxpose('eval', '--config=configs/quickstart.py', f'--workdir={workdir}',
                              *COCO_EVAL))
  assert metrics['step'] == 10 and 0 <= metrics['AP'] <= 1
  written = last_json(jaxpose('export', f'--workdir={workdir}', f'--out={tmp_path / "q.onnx"}'))
  assert written['inputs'] == {'images': ['N', 64, 64, 3]}  # the quick start's 64x64


# In-process: parsing details.

def test_a_flag_of_another_command_is_refused(tmp_path):
  # --detections belongs to eval: train does not accept it (it once did, and ignored it).
  with pytest.raises(cli.CommandFailed, match=r'jaxpose train: .*detections') as failed:
    cli.run(['train', '--config=configs/quickstart.py', f'--workdir={tmp_path}',
             '--detections=dets.json'])
  assert failed.value.status == 2
  assert not any(tmp_path.iterdir())  # nothing was started


def test_missing_required_flags_are_named(tmp_path):
  with pytest.raises(cli.CommandFailed, match=r'jaxpose infer: .*--out'):
    cli.run(['infer', '--workdir', str(tmp_path), '--image', 'x.jpg'])
  with pytest.raises(cli.CommandFailed, match=r'jaxpose score: .*coco_annotations'):
    cli.run(['score', '--results', 'r.json'])


def test_stray_arguments_are_a_usage_error():
  with pytest.raises(cli.CommandFailed, match=r"unexpected arguments \['extra'\]") as failed:
    cli.run(['score', '--coco_annotations', 'a.json', '--results', 'r.json', 'extra'])
  assert failed.value.status == 2


def test_flags_are_spelled_with_dashes_or_underscores():
  assert cli._absl_spelling('--flip-test') == '--flip_test'  # pylint: disable=protected-access
  assert cli._absl_spelling('--no-track') == '--notrack'  # pylint: disable=protected-access
  assert cli._absl_spelling('--input-size=64,48') == '--input_size=64,48'  # pylint: disable=protected-access
  assert cli._absl_spelling('--config.data.coco-dir=/a-b') == '--config.data.coco-dir=/a-b'  # pylint: disable=protected-access
  assert cli._absl_spelling('/path/with-dash') == '/path/with-dash'  # pylint: disable=protected-access


def test_verbosity_spellings():
  spell = cli._verbosity_spelling  # pylint: disable=protected-access
  assert spell(['-v', '-vv', '--verbose', '--verbosity=2', '-x']) == [
      '--verbosity=1', '--verbosity=2', '--verbosity=1', '--verbosity=2', '-x']


def test_a_misspelt_or_mistyped_config_field_is_named(tmp_path):
  with pytest.raises(cli.CommandFailed, match=r'unknown config field in --config\.lerning_rate=1'
                     r'.*Did you mean "learning_rate"'):
    cli.run(['train', '--config=configs/quickstart.py', f'--workdir={tmp_path}',
             '--config.lerning_rate=1'])
  with pytest.raises(cli.CommandFailed, match=r"--config.learning_rate=fast.*'fast'"):
    cli.run(['train', '--config=configs/quickstart.py', f'--workdir={tmp_path}',
             '--config.learning_rate=fast'])


def test_help_lists_the_commands(capsys):
  assert cli.main(['--help']) == 0
  out = capsys.readouterr().out
  assert all(f'  {name} ' in out for name in cli.COMMANDS)


@pytest.mark.slow  # ~1-2 min: a tiny training run, an export and two inferences
def test_your_own_keypoints_from_a_coco_format_file_to_a_served_model(quickstart, tmp_path):
  # A 14-keypoint file named as CVAT users name points ("Right Shoulder"):
  # the quick start with only the data paths changed, fine-tuned from the
  # 17-keypoint quick start at learning rate 0, exported, and served from the
  # ONNX file alone.
  coco_workdir, _ = quickstart
  data = tmp_path / 'data'
  data.mkdir()
  annotations = layouts.fourteen_keypoints(data / 'shoppers.json')
  workdir = tmp_path / 'shoppers'
  paths = ['--config.data.source=coco', f'--config.data.train_annotations={annotations}',
           f'--config.data.train_images={COCO}', f'--config.data.eval_annotations={annotations}',
           f'--config.data.eval_images={COCO}']
  done = jaxpose('train', '--config=configs/quickstart.py', f'--workdir={workdir}', *paths,
                 *TINY_QUICKSTART, f'--config.init_from={coco_workdir}',
                 '--config.learning_rate=0.0')
  assert last_json(done)['step'] == 2
  # The layout travels in the description: 14 names, 6 flip pairs, the file's limbs.
  student, description = checkpoint.restore_variables(str(workdir))
  layout = description['skeleton']
  assert description['num_joints'] == 14 and layout['keypoint_names'][2] == 'Right Shoulder'
  assert sorted(map(tuple, layout['flip_pairs'])) == [(5, 2), (6, 3), (7, 4), (11, 8), (12, 9),
                                                      (13, 10)]
  assert layout['limbs'] == [[a - 1, b - 1] for a, b in layouts.FOURTEEN_SKELETON]
  # Fine-tuning copied every parameter whose path and shape match, exactly
  # (learning rate 0 keeps them); the fresh ones are the heads.
  teacher, _ = checkpoint.restore_variables(str(coco_workdir))
  ours = flax.traverse_util.flatten_dict(student['params'], sep='/')
  theirs = flax.traverse_util.flatten_dict(teacher['params'], sep='/')
  copied = [path for path in ours if path in theirs and ours[path].shape == theirs[path].shape]
  fresh = sorted(set(ours) - set(copied))
  for path in copied:
    np.testing.assert_array_equal(ours[path], theirs[path], err_msg=path)
  assert fresh == ['score_0/bias', 'score_0/kernel']
  assert sum(ours[p].size for p in fresh) < sum(v.size for v in ours.values()) / 4
  assert 'fresh: params/score_0/bias, params/score_0/kernel' in done.stderr
  exported = jaxpose('export', f'--workdir={workdir}', f'--out={tmp_path / "shoppers.onnx"}')
  last_json(exported)
  annotations.rename(tmp_path / 'moved_away.json')  # the ONNX file alone serves the model
  served = jaxpose('infer', f'--onnx={tmp_path / "shoppers.onnx"}',
                   f'--image={COCO / "000000196141.jpg"}', f'--out={tmp_path / "out"}')
  summary = last_json(served)
  assert summary['keypoints'] == [name for name, _ in layouts.FOURTEEN]
  records = json.loads((tmp_path / 'out' / 'results.json').read_text())
  assert records and all(len(r['keypoints']) == 3 * 14 for r in records)
  from_workdir = last_json(jaxpose('infer', f'--workdir={workdir}',
                                   f'--image={COCO / "000000196141.jpg"}',
                                   f'--out={tmp_path / "out2"}'))
  assert from_workdir['keypoints'] == summary['keypoints']


@pytest.mark.slow  # ~1 min: a tiny Lightweight OpenPose trained 2 steps, and an inference
def test_your_own_keypoints_bottom_up_with_the_limbs_overridden(tmp_path):
  annotations = layouts.fourteen_keypoints(tmp_path / 'shoppers.json')
  # The file's tree plus the shoulders, from the command line (0-based).
  limbs = [(a - 1, b - 1) for a, b in layouts.FOURTEEN_SKELETON] + [(2, 5)]
  workdir = tmp_path / 'lwop'
  done = jaxpose('train', '--config=configs/lightweight_openpose_coco.py', f'--workdir={workdir}',
                 '--config.data.source=coco', f'--config.data.train_annotations={annotations}',
                 f'--config.data.train_images={COCO}',
                 f'--config.data.eval_annotations={annotations}',
                 f'--config.data.eval_images={COCO}',
                 '--config.data.skeleton.limbs=' + repr(tuple(limbs)).replace(' ', ''),
                 '--config.num_train_steps=2', '--config.eval_every_steps=2',
                 '--config.checkpoint_every_steps=2', '--config.log_every_steps=1',
                 '--config.batch_size=2', '--config.warmup_steps=0', '--config.lr_decay_steps=()',
                 '--config.model.num_channels=16', '--config.input_size=(64,64)',
                 '--config.parallel=none', '--config.data.max_people=4')
  assert last_json(done)['step'] == 2
  _, description = checkpoint.restore_variables(str(workdir))
  assert (description['num_heatmaps'], description['num_pafs']) == (15, 2 * len(limbs))
  assert description['skeleton']['limbs'] == [list(limb) for limb in limbs]
  summary = last_json(jaxpose('infer', f'--workdir={workdir}', f'--image={COCO / "000000196141.jpg"}',
                              '--height=64', f'--out={tmp_path / "out"}'))
  assert summary['keypoints'] == [name for name, _ in layouts.FOURTEEN]
  assert summary['approach'] == 'bottom-up'


@pytest.mark.slow  # ~1 min: three eval processes
def test_eval_on_two_processes_prints_what_one_process_does(quickstart, tmp_path):
  """Issue 29: each process evaluates every other image; process 0 alone writes and prints, the same AP."""
  workdir, _ = quickstart
  command = ['eval', '--config=configs/quickstart.py', f'--workdir={workdir}', *TINY_QUICKSTART,
             *COCO_EVAL, f'--detections={COCO / "test_coco_det_AP_H_56.json"}']
  alone = last_json(jaxpose(*command, f'--results={tmp_path / "one.json"}'))
  port = socket.socket()
  port.bind(('localhost', 0))
  address = f'localhost:{port.getsockname()[1]}'
  port.close()
  env = dict(os.environ)
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '').replace(
      '--xla_force_host_platform_device_count=8', '')
  processes = [subprocess.Popen(
      [str(JAXPOSE), *command, f'--results={tmp_path / "two.json"}',
       f'--coordinator_address={address}', '--num_processes=2', f'--process_id={index}'],
      cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
      for index in range(2)]
  outputs = [process.communicate(timeout=600) for process in processes]
  assert [process.returncode for process in processes] == [0, 0], [e[-2000:] for _, e in outputs]
  # Process 1 prints no result (Gloo's own connection notes go to stdout too).
  assert not [line for line in outputs[1][0].splitlines() if line.startswith('{')]
  together = json.loads(outputs[0][0].strip().splitlines()[-1])
  assert together == alone
  results = json.loads((tmp_path / 'two.json').read_text())
  assert len(results) > 0 and results == json.loads((tmp_path / 'one.json').read_text())


def _truncate_largest_file(step_directory: pathlib.Path) -> pathlib.Path:
  largest = max((p for p in step_directory.rglob('*') if p.is_file()), key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[:largest.stat().st_size // 2])
  return largest


@pytest.mark.slow  # ~1.5 min: three short trainings, an export
def test_a_truncated_latest_checkpoint_falls_back_in_export_and_training(tmp_path):
  """Issue 29: the latest step's largest file cut in half; export and a rerun of training use the previous step."""
  workdir = tmp_path / 'run'
  steps = ['--config.num_train_steps=4', '--config.checkpoint_every_steps=2']
  done = jaxpose('train', '--config=configs/quickstart.py', f'--workdir={workdir}',
                 *TINY_QUICKSTART, *steps)
  assert done.returncode == 0, done.stderr[-2000:]
  assert sorted(p.name for p in (workdir / 'checkpoints').iterdir() if p.name.isdigit()) == [
      '2', '4']
  _truncate_largest_file(workdir / 'checkpoints' / '4')
  copies = {name: tmp_path / name for name in ('export', 'train', 'all_bad')}
  for copy in copies.values():
    shutil.copytree(workdir, copy)

  done = jaxpose('export', f'--workdir={copies["export"]}', f'--out={tmp_path / "m.onnx"}')
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'step 4' in done.stderr and '4.corrupt' in done.stderr  # the warning names it
  assert (copies['export'] / 'checkpoints' / '4.corrupt').is_dir()  # kept aside, not deleted

  done = jaxpose('train', '--config=configs/quickstart.py', f'--workdir={copies["train"]}',
                 *TINY_QUICKSTART, '--config.num_train_steps=6',
                 '--config.checkpoint_every_steps=2')
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'step 4' in done.stderr and '4.corrupt' in done.stderr
  assert last_json(done)['step'] == 6  # on to the end, from step 2
  assert (copies['train'] / 'checkpoints' / '4.corrupt').is_dir()
  assert sorted(p.name for p in (copies['train'] / 'checkpoints').iterdir()) == [
      '4', '4.corrupt', '6']

  _truncate_largest_file(copies['all_bad'] / 'checkpoints' / '2')
  done = jaxpose('train', '--config=configs/quickstart.py', f'--workdir={copies["all_bad"]}',
                 *TINY_QUICKSTART, *steps)
  assert done.returncode == 1
  assert 'no readable checkpoint; steps [4, 2] failed to read' in done.stderr.splitlines()[-1]
  # Run again: it does not start afresh over a run whose checkpoints went bad.
  done = jaxpose('train', '--config=configs/quickstart.py', f'--workdir={copies["all_bad"]}',
                 *TINY_QUICKSTART, *steps)
  assert_one_line_error(done, 1, 'every checkpoint is unreadable', '2.corrupt, 4.corrupt')
