"""jaxpose.training.checkpoint: which steps are kept, and restoring past a corrupt latest step."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jaxpose.training import checkpoint

MODEL = {'arch': 'tiny', 'num_joints': 3}


def _state(step: int) -> dict:
  """A tiny train state whose every value depends on `step`.

  'w' is random (incompressible), so the largest file of a step directory
  is the chunk that holds it (4096 float32, 16 KiB before compression).
  """
  rng = np.random.default_rng(step)
  return {'params': {'w': rng.normal(size=4096).astype(np.float32)},
          'batch_stats': {'mean': np.full(3, step, np.float32)},
          'step': np.int32(step)}


def _save(workdir: str, steps, **options) -> None:
  """Saves `_state(step)` at each step, with pck = step / 10 when a best metric is tracked."""
  with checkpoint.Checkpointer(workdir, async_save=False, **options) as checkpointer:
    for step in steps:
      metrics = {'pck': step / 10} if options.get('best_metric') else None
      checkpointer.save(step, _state(step), MODEL, metrics=metrics, wait=True)


def _step_dir(workdir: str, step: int) -> str:
  return os.path.join(checkpoint.checkpoint_dir(workdir), str(step))


def _files(directory: str) -> list[str]:
  """Every file under `directory`, as sorted paths relative to it."""
  return sorted(os.path.relpath(os.path.join(root, name), directory)
                for root, _, names in os.walk(directory) for name in names)


def _truncate_largest_file(step_dir: str) -> str:
  """Halves the largest file under a step directory (a write cut short) -> its path."""
  largest = max((os.path.join(step_dir, name) for name in _files(step_dir)), key=os.path.getsize)
  size = os.path.getsize(largest)
  # w's chunk: 16 KiB of random float32, which compression barely shrinks.
  assert size > 12 * 1024, f'{largest}: expected the chunk of w, got {size} bytes'
  with open(largest, 'r+b') as f:
    f.truncate(size // 2)
  return largest


def _assert_is_state(restored, step: int) -> None:
  expected = _state(step)
  np.testing.assert_array_equal(restored['params']['w'], expected['params']['w'])
  np.testing.assert_array_equal(restored['batch_stats']['mean'], np.full(3, step, np.float32))
  assert int(restored['step']) == step


def _listed(workdir: str) -> list[int]:
  """The steps a new read-only checkpointer lists."""
  with checkpoint.Checkpointer(workdir, read_only=True) as checkpointer:
    return checkpointer.all_steps()


def _warnings(caplog) -> list[str]:
  """The warnings jaxpose's checkpoint module logged (Orbax logs its own through absl too)."""
  return [record.getMessage() for record in caplog.records
          if record.levelno == logging.WARNING and record.pathname == checkpoint.__file__]


def test_keep_two_keeps_the_latest_two_and_the_best(tmp_path):
  for name, options, kept in (('default', {}, [4, 5]),
                              ('keep1', {'keep': 1}, [5]),
                              ('keep3', {'keep': 3}, [3, 4, 5])):
    workdir = str(tmp_path / name)
    _save(workdir, range(1, 6), **options)
    assert _listed(workdir) == kept, name
  # The best (step 2 here) stays when it is older than the latest two.
  workdir = str(tmp_path / 'best')
  with checkpoint.Checkpointer(workdir, best_metric='pck', async_save=False,
                               keep=2) as checkpointer:
    for step, pck in ((1, 0.5), (2, 0.9), (3, 0.4), (4, 0.3), (5, 0.2)):
      checkpointer.save(step, _state(step), MODEL, metrics={'pck': pck}, wait=True)
    assert checkpointer.all_steps() == [2, 4, 5]
    assert checkpointer.best_step() == 2 and checkpointer.latest_step() == 5
    checkpointer.save(6, _state(6), MODEL, wait=True)  # no eval at this step
    assert checkpointer.all_steps() == [2, 5, 6] and checkpointer.best_step() == 2
  assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ['2', '5', '6']
  with pytest.raises(ValueError, match=r'keep \(config.keep_checkpoints\).*got 0'):
    checkpoint.Checkpointer(str(tmp_path / 'none'), keep=0)


def test_a_truncated_latest_step_is_moved_aside_and_the_previous_one_restored(tmp_path, caplog):
  workdir = str(tmp_path)
  _save(workdir, [1, 2, 3], best_metric='pck')
  bad = _step_dir(workdir, 3)
  files_before = _files(bad)
  _truncate_largest_file(bad)

  with caplog.at_level(logging.WARNING), checkpoint.Checkpointer(
      workdir, best_metric='pck', async_save=False) as checkpointer:
    restored, model = checkpointer.restore(state_template=_state(0))
    _assert_is_state(restored, 2)
    assert model == MODEL and checkpointer.restored_step == 2
    assert checkpointer.latest_step() == 2 and checkpointer.all_steps() == [2]
    # The run goes on: it saves step 3 again, beside the corrupt one.
    checkpointer.save(3, _state(3), MODEL, metrics={'pck': 0.3}, wait=True)
    assert checkpointer.latest_step() == 3
    again, _ = checkpointer.restore()
    _assert_is_state(again, 3)

  [warning] = _warnings(caplog)
  assert f'step 3 at {bad} failed to read' in warning
  assert f'moved to {bad}.corrupt;' in warning and 'ValueError' in warning
  assert _files(bad + '.corrupt') == files_before  # moved whole, nothing deleted
  assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ['2', '3', '3.corrupt']
  assert _listed(workdir) == [2, 3]

  # Step 3 corrupt once more: a second name, the first one kept.
  _truncate_largest_file(bad)
  with checkpoint.Checkpointer(workdir) as checkpointer:
    _assert_is_state(checkpointer.restore()[0], 2)
  assert os.path.isdir(bad + '.corrupt') and os.path.isdir(bad + '.corrupt-2')


@pytest.mark.parametrize('damage', ['delete state/_METADATA', 'garble state/_METADATA',
                                    'garble model/metadata', 'garble metrics/metrics',
                                    'empty the directory'])
def test_a_missing_or_garbled_metadata_file_falls_back(tmp_path, caplog, damage):
  workdir = str(tmp_path)
  _save(workdir, [1, 2], best_metric='pck')
  bad = _step_dir(workdir, 2)
  verb, name = damage.split(' ', 1)
  if verb == 'delete':
    os.remove(os.path.join(bad, name))
  elif verb == 'garble':
    with open(os.path.join(bad, name), 'w') as f:
      f.write('{"truncated": ')
  else:
    for file in _files(bad):
      os.remove(os.path.join(bad, file))

  # Opening (a garbled metrics file fails there, in Orbax) and restoring.
  with caplog.at_level(logging.WARNING), checkpoint.Checkpointer(
      workdir, best_metric='pck') as checkpointer:
    restored, _ = checkpointer.restore()
    assert checkpointer.latest_step() == 1 and checkpointer.best_step() == 1
  _assert_is_state(restored, 1)
  assert any(f'step 2 at {bad}' in warning for warning in _warnings(caplog))
  assert not os.path.exists(bad) and os.path.isdir(bad + '.corrupt')


def test_every_step_corrupt_is_an_error_naming_each_step(tmp_path, caplog):
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  for step in (1, 2):
    _truncate_largest_file(_step_dir(workdir, step))
  with caplog.at_level(logging.WARNING), checkpoint.Checkpointer(workdir) as checkpointer:
    with pytest.raises(FileNotFoundError) as error:
      checkpointer.restore()
  message = str(error.value)
  assert message.startswith(checkpoint.checkpoint_dir(workdir) + ': no readable checkpoint')
  assert 'steps [2, 1] failed to read' in message
  assert len(_warnings(caplog)) == 2
  assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ['1.corrupt', '2.corrupt']


  # Training there afterwards would start afresh: refused, naming both.
  with pytest.raises(ValueError, match=r': every checkpoint is unreadable \(moved aside: '
                     r'1\.corrupt, 2\.corrupt\)'):
    checkpoint.refuse_if_every_step_is_corrupt(checkpoint.checkpoint_dir(workdir))


def test_a_step_left_beside_corrupt_ones_or_an_empty_workdir_is_no_refusal(tmp_path):
  directory = tmp_path / 'checkpoints'
  checkpoint.refuse_if_every_step_is_corrupt(str(directory))  # no directory yet: a fresh run
  (directory / '4.corrupt').mkdir(parents=True)
  (directory / '2').mkdir()
  checkpoint.refuse_if_every_step_is_corrupt(str(directory))  # step 2 resumes
  (directory / '2').rename(directory / '2.corrupt')
  with pytest.raises(ValueError, match='2.corrupt, 4.corrupt'):
    checkpoint.refuse_if_every_step_is_corrupt(str(directory))


def test_an_explicit_step_that_fails_is_an_error_and_stays(tmp_path):
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  bad = _step_dir(workdir, 2)
  _truncate_largest_file(bad)
  with checkpoint.Checkpointer(workdir) as checkpointer:
    with pytest.raises(ValueError, match=f'{bad}: checkpoint step 2 failed to restore'):
      checkpointer.restore(2)
    assert checkpointer.all_steps() == [1, 2]
    _assert_is_state(checkpointer.restore(1)[0], 1)
  assert os.path.isdir(bad) and not os.path.exists(bad + '.corrupt')


def test_a_state_of_another_model_is_an_error_not_a_corrupt_step(tmp_path):
  workdir = str(tmp_path)
  _save(workdir, [1, 2])
  other_model = {'params': {'w': np.zeros(4096, np.float32), 'extra': np.zeros(2, np.float32)},
                 'batch_stats': {'mean': np.zeros(3, np.float32)}, 'step': np.int32(0)}
  with checkpoint.Checkpointer(workdir) as checkpointer:
    with pytest.raises(ValueError, match=f'{_step_dir(workdir, 2)}: the checkpoint reads but '
                       'does not match the expected state'):
      checkpointer.restore(state_template=other_model)
    assert checkpointer.all_steps() == [1, 2]
  assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ['1', '2']


def test_restore_variables_falls_back_and_moves_the_step_aside(tmp_path, caplog):
  # What `jaxpose export`, `infer` and `eval` call: a read-only checkpointer.
  workdir = str(tmp_path)
  _save(workdir, [1, 2, 3])
  bad = _step_dir(workdir, 3)
  _truncate_largest_file(bad)
  with caplog.at_level(logging.WARNING):
    variables, model, step = checkpoint.restore_variables_and_step(workdir)
  assert step == 2 and model == MODEL
  np.testing.assert_array_equal(variables['params']['w'], _state(2)['params']['w'])
  np.testing.assert_array_equal(variables['batch_stats']['mean'], np.full(3, 2, np.float32))
  [warning] = _warnings(caplog)
  assert f'step 3 at {bad} failed to read' in warning and f'moved to {bad}.corrupt' in warning
  assert os.path.isdir(bad + '.corrupt')
  # Every later open agrees: the next `eval` or resumed run starts from step 2.
  variables, _ = checkpoint.restore_variables(workdir)
  np.testing.assert_array_equal(variables['params']['w'], _state(2)['params']['w'])
  assert _listed(workdir) == [2]  # keep=2 had kept steps 2 and 3


def test_a_step_that_cannot_be_moved_aside_is_skipped_in_place(tmp_path, caplog, monkeypatch):
  # A read-only mount: the rename fails (monkeypatched: tests may run as root).
  workdir = str(tmp_path)
  _save(workdir, [1, 2, 3])
  bad = _step_dir(workdir, 3)
  _truncate_largest_file(bad)

  def read_only_mount(path):
    raise PermissionError(13, 'Read-only file system', path)

  monkeypatch.setattr(checkpoint, 'move_aside', read_only_mount)
  with caplog.at_level(logging.WARNING):
    variables, _, step = checkpoint.restore_variables_and_step(workdir)
  assert step == 2
  np.testing.assert_array_equal(variables['params']['w'], _state(2)['params']['w'])
  [warning] = _warnings(caplog)
  assert f'step 3 at {bad} failed to read' in warning
  assert 'skipped in place (could not move it aside: PermissionError' in warning
  assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ['2', '3']


@pytest.mark.parametrize('process_index', [0, 1])
def test_on_several_processes_process_0_renames_and_all_wait(tmp_path, caplog, monkeypatch,
                                                             process_index):
  workdir = str(tmp_path)
  _save(workdir, [1, 2, 3])
  bad = _step_dir(workdir, 3)
  if process_index == 0:
    _truncate_largest_file(bad)
  # Process 1 read step 3 well; process 0 did not: both must skip it.
  gathered = []
  monkeypatch.setattr(checkpoint, '_processes', lambda: (process_index, 2))

  def allgather(failed_here):
    gathered.append(bool(failed_here))
    return np.array([len(gathered) == 1, bool(failed_here)])  # process 0 failed on step 3

  monkeypatch.setattr(checkpoint.multihost_utils, 'process_allgather', allgather)
  barriers = []

  def barrier(name):
    # Process 0 renames before it reaches the barrier; the others never do.
    assert os.path.isdir(bad) == (process_index != 0)
    if process_index != 0:
      checkpoint.move_aside(bad)  # what process 0 does meanwhile
    barriers.append(name)

  monkeypatch.setattr(checkpoint.multihost_utils, 'sync_global_devices', barrier)
  with caplog.at_level(logging.WARNING), checkpoint.Checkpointer(workdir) as checkpointer:
    restored, _ = checkpointer.restore()
  _assert_is_state(restored, 2)
  assert gathered == [process_index == 0, False]  # step 3 failed here or not; step 2 read
  assert barriers == ['jaxpose_checkpoint_step_3_moved_aside']
  [warning] = _warnings(caplog)
  assert ('ValueError' if process_index == 0 else 'failed on another process') in warning
  assert f'moved to {bad}.corrupt' in warning
  assert os.path.isdir(bad + '.corrupt') and not os.path.exists(bad)


_KILLED_DURING_SAVE = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    from orbax.checkpoint._src.path import atomicity
    from jaxpose.training import checkpoint

    commit = atomicity.AtomicRenameTemporaryPath.finalize

    async def killed_before_the_commit(self):
      # Step 2's commit (the rename of its temporary directory): the process
      # dies as a SIGKILL mid-save leaves it, every file written, none renamed.
      if self.get_final().name == '2':
        os.kill(os.getpid(), signal.SIGKILL)
      return await commit(self)

    atomicity.AtomicRenameTemporaryPath.finalize = killed_before_the_commit
    checkpointer = checkpoint.Checkpointer(sys.argv[1])
    checkpointer.save(1, {'w': np.full(8, 1, np.float32)}, {'arch': 'tiny'}, wait=True)
    checkpointer.save(2, {'w': np.full(8, 2, np.float32)}, {'arch': 'tiny'})  # async
    checkpointer.close()  # waits for the commit, which never comes
    sys.exit('step 2 was committed: the commit was expected to kill this process')
''')


def test_a_save_killed_before_its_commit_leaves_the_previous_step(tmp_path):
  workdir = str(tmp_path / 'run')
  killed = subprocess.run([sys.executable, '-c', _KILLED_DURING_SAVE, workdir],
                          capture_output=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert killed.returncode == -signal.SIGKILL, killed.stderr.decode(errors='replace')[-3000:]
  directory = checkpoint.checkpoint_dir(workdir)
  # Orbax wrote step 2 under a temporary name that it never lists.
  leftover = os.path.join(directory, '2.orbax-checkpoint-tmp')
  assert sorted(os.listdir(directory)) == ['1', '2.orbax-checkpoint-tmp']
  assert 'state/_METADATA' in _files(leftover)

  with checkpoint.Checkpointer(workdir, read_only=True) as checkpointer:
    assert checkpointer.all_steps() == [1]
    restored, _ = checkpointer.restore()
  np.testing.assert_array_equal(restored['w'], np.full(8, 1, np.float32))
  assert os.path.isdir(leftover)  # a read-only checkpointer leaves it

  # The resumed run saves step 2 again, or first another step: either way
  # the leftover goes (a writer removes temporary directories when it opens).
  shutil.copytree(workdir, tmp_path / 'other')
  for resumed, next_step in ((workdir, 2), (str(tmp_path / 'other'), 3)):
    with checkpoint.Checkpointer(resumed, async_save=False) as checkpointer:
      checkpointer.save(next_step, {'w': np.full(8, next_step, np.float32)}, MODEL, wait=True)
      restored, _ = checkpointer.restore()
      assert checkpointer.all_steps() == [1, next_step]
    np.testing.assert_array_equal(restored['w'], np.full(8, next_step, np.float32))
    assert sorted(os.listdir(checkpoint.checkpoint_dir(resumed))) == ['1', str(next_step)]


_RESTORE_ON_TWO_PROCESSES = textwrap.dedent('''
    import sys
    import jax
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    address, process_id, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(address, num_processes=2, process_id=process_id)
    import numpy as np
    from jaxpose.training import checkpoint
    with checkpoint.Checkpointer(workdir) as checkpointer:
      state, _ = checkpointer.restore()
      checkpointer.save(4, {'w': np.full(4, 4, np.float32)}, {'arch': 'tiny'}, wait=True)
      print('RESULT', checkpointer.restored_step, float(state['w'][0]), checkpointer.all_steps())
''')


@pytest.mark.slow  # ~10 s: two jax.distributed processes (beyond the default suite's budget)
def test_two_processes_fall_back_together(tmp_path):
  workdir = str(tmp_path)
  with checkpoint.Checkpointer(workdir, async_save=False) as checkpointer:
    for step in (1, 2, 3):
      checkpointer.save(step, {'w': np.full(4, step, np.float32)}, MODEL, wait=True)
  bad = _step_dir(workdir, 3)
  os.remove(os.path.join(bad, 'state', '_METADATA'))
  with socket.socket() as probe:
    probe.bind(('localhost', 0))
    address = f'localhost:{probe.getsockname()[1]}'
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)  # one device per process
  processes = [subprocess.Popen([sys.executable, '-c', _RESTORE_ON_TWO_PROCESSES, address,
                                 str(index), workdir], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for index in (0, 1)]
  outputs = [process.communicate(timeout=300) for process in processes]
  for process, (stdout, stderr) in zip(processes, outputs):
    assert process.returncode == 0, stderr[-3000:]
    assert 'RESULT 2 2.0 [2, 4]' in stdout, stdout + stderr[-3000:]
  # One rename (process 0's); process 1 says who moved it.
  assert f'moved to {bad}.corrupt;' in outputs[0][1]
  assert f'moved to {bad}.corrupt* by process 0;' in outputs[1][1]
  assert sorted(os.listdir(checkpoint.checkpoint_dir(workdir))) == ['2', '3.corrupt', '4']
