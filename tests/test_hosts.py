"""Several processes as one run: the lost-process message and watch, and preemption agreed by every process.

The real thing, with two `jaxpose train` processes, is in test_train.py
(slow): a SIGTERM to one, a SIGKILL of one.
"""

import os
import signal
import threading

import ml_collections
import pytest

from jaxpose.training import hosts, preemption

TIMEOUTS = ml_collections.ConfigDict(dict(heartbeat_timeout_seconds=10,
                                          initialization_timeout_seconds=30,
                                          shutdown_timeout_seconds=5))


@pytest.mark.parametrize('lost, resume_step, expected', [
    ([1], 40, 'jaxpose: process 1 of 2 lost (no heartbeat for 10 s): rerun all 2 processes with '
              'the same command; training resumes from step 40 (/w/checkpoints/40)'),
    ([0], None, 'jaxpose: process 0 of 2 lost (the coordinator no longer answers): rerun all 2 '
                'processes with the same command; training starts again from the beginning (no '
                'checkpoint saved yet)'),
    ([2, 3], 7, 'jaxpose: processes 2, 3 of 2 lost (no heartbeat for 10 s): rerun all 2 processes '
                'with the same command; training resumes from step 7 (/w/checkpoints/7)'),
])
def test_lost_message_names_the_process_and_the_step_to_resume_from(lost, resume_step, expected):
  assert hosts.lost_message(lost, 2, 10, resume_step, '/w/checkpoints') == expected


def test_lost_message_outside_training_says_only_what_to_rerun():
  assert hosts.lost_message([1], 4, 60) == (
      'jaxpose: process 1 of 4 lost (no heartbeat for 60 s): rerun all 4 processes with the same '
      'command')


class FakeClient:
  """The coordination service's answers: which processes are live, which said they finished."""

  def __init__(self, live, finished=(), unreachable=False):
    self.live, self.finished, self.unreachable = live, set(finished), unreachable

  def get_live_nodes(self, indices):
    if self.unreachable:
      raise RuntimeError('UNAVAILABLE: failed to connect to all addresses')
    return {index: 1 for index in indices if index in self.live}

  def key_value_try_get(self, key):
    if int(key.rpartition('/')[2]) not in self.finished:
      raise RuntimeError('NOT_FOUND')
    return '1'


def _watch_ends(client, monkeypatch, capsys, num_processes=3) -> tuple[int | None, str]:
  """Runs a watch on `client` until it ends the process (os._exit patched) or 1 s passes -> (status, stderr)."""
  ended = {}
  done = threading.Event()
  created = threading.Event()

  def fake_exit(status):
    ended['status'] = status
    created.wait()
    ended['watch'].stopped.set()  # its loop ends, as os._exit would end everything
    done.set()

  monkeypatch.setattr(hosts.os, '_exit', fake_exit)
  monkeypatch.setattr(hosts, 'POLL_SECONDS', 0.01)
  monkeypatch.setitem(hosts._resume, 'step', 12)  # pylint: disable=protected-access
  monkeypatch.setitem(hosts._resume, 'directory', '/w/checkpoints')  # pylint: disable=protected-access
  watch = hosts._LostProcessWatch(client, num_processes, 10)  # pylint: disable=protected-access
  ended['watch'] = watch
  created.set()
  done.wait(1.0)
  watch.stopped.set()
  return ended.get('status'), capsys.readouterr().err


def test_the_watch_ends_the_process_naming_the_lost_one(monkeypatch, capsys):
  status, stderr = _watch_ends(FakeClient(live={0, 2}), monkeypatch, capsys)
  assert status == 1
  assert stderr == ('\njaxpose: process 1 of 3 lost (no heartbeat for 10 s): rerun all 3 processes '
                    'with the same command; training resumes from step 12 '
                    '(/w/checkpoints/12)\n')


def test_the_watch_names_the_coordinator_when_the_service_does_not_answer(monkeypatch, capsys):
  status, stderr = _watch_ends(FakeClient(live=set(), unreachable=True), monkeypatch, capsys)
  assert status == 1 and stderr.startswith('\njaxpose: process 0 of 3 lost (the coordinator')


def test_a_process_that_finished_is_not_lost(monkeypatch, capsys):
  status, stderr = _watch_ends(FakeClient(live={0, 1}, finished={2}), monkeypatch, capsys)
  assert status is None and stderr == ''


def test_preemption_on_one_process_is_its_own_sigterm():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Preemption() as sigterm:
    assert not sigterm.reached(3)
    os.kill(os.getpid(), signal.SIGTERM)
    assert sigterm.reached(4) and sigterm.reached(5)  # from then on
  assert signal.getsignal(signal.SIGTERM) is before  # restored


def test_preemption_on_several_processes_is_the_agreed_step(monkeypatch):
  """With jax.distributed, JAX's sync point decides (and jaxpose leaves SIGTERM to JAX)."""
  asked = []

  def sync_point(step):
    asked.append(step)
    return step == 7  # the coordination service's agreed step

  monkeypatch.setattr(preemption.jax, 'process_count', lambda: 2)
  monkeypatch.setattr(preemption.multihost_utils, 'reached_preemption_sync_point', sync_point)
  before = signal.getsignal(signal.SIGTERM)
  with preemption.Preemption() as sigterm:
    assert signal.getsignal(signal.SIGTERM) is before  # no handler of ours over JAX's
    assert [sigterm.reached(step) for step in range(5, 10)] == [False, False, True, True, True]
  assert asked == [5, 6, 7]  # asked at every step until it agreed
