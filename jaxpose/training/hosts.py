"""Several processes as one run: joining them, and failing fast, by name, when one is lost.

  hosts.initialize(config.distributed, coordinator_address='10.0.0.2:1234',
                   num_processes=2, process_id=0)

`initialize` calls `jax.distributed.initialize` with the timeouts of
`config.distributed` (`heartbeat_timeout_seconds`: a process silent this
long is lost; `shutdown_timeout_seconds`: how long the last barrier waits;
`initialization_timeout_seconds`: how long the processes wait for each
other at the start), and, on more than one process, starts a watch.

A lost process (killed, out of memory, its machine gone) without the watch:
the survivors' next collective fails (CPU) or blocks (GPU, TPU) until the
coordination service misses its heartbeats, then JAX aborts them with a
hundred lines of C++ log and a stack dump, the lost process's number buried
in it. jaxpose instead turns on JAX's recoverability, so that the service
reports the lost process rather than aborting everyone, and the watch asks
it every `POLL_SECONDS` which processes are alive. When one is missing, or
the coordinator (process 0) no longer answers, the watch ends this process
with exit status 1 and one last line on stderr (`lost_message`): which
process was lost, and what to do: rerun all processes with the same
command, from the step the trainer last saved (`set_resume_step`).

A process that ends its command normally says so first (`finish`): the
others' watches do not count it as lost when it leaves before them.
"""

from collections.abc import Sequence
import os
import sys
import threading
import time

from absl import logging
import jax
import ml_collections

POLL_SECONDS = 1.0
SHUTDOWN_GRACE_SECONDS = 2.0
LOST_STATUS = 1
_FINISHED_KEY = 'jaxpose/finished/{}'
_resume = {'step': None, 'directory': None}


def set_resume_step(step: int | None, directory: str) -> None:
  """Records the last checkpoint this run saved or restored, for `lost_message`."""
  _resume.update(step=step, directory=directory)


def lost_message(lost: Sequence[int], num_processes: int, heartbeat_timeout: float,
                 resume_step: int | None = None, directory: str | None = None) -> str:
  """The last line of a survivor: which process was lost and what to do.

  >>> lost_message([1], 2, 60, 40, '/w/checkpoints')
  'jaxpose: process 1 of 2 lost (no heartbeat for 60 s): rerun all 2 processes with the same command; training resumes from step 40 (/w/checkpoints/40)'
  """
  names = ', '.join(str(index) for index in lost)
  what = f'process {names} of {num_processes}' if len(lost) == 1 else (
      f'processes {names} of {num_processes}')
  why = ('the coordinator no longer answers' if list(lost) == [0]
         else f'no heartbeat for {heartbeat_timeout:g} s')
  then = (f'; training resumes from step {resume_step} ({directory}/{resume_step})'
          if resume_step is not None else
          '; training starts again from the beginning (no checkpoint saved yet)'
          if directory is not None else '')
  return (f'jaxpose: {what} lost ({why}): rerun all {num_processes} processes with the same '
          f'command{then}')


class _LostProcessWatch:
  """A daemon thread that ends this process, naming the lost one, when a process of the run is lost."""

  def __init__(self, client, num_processes: int, heartbeat_timeout: float):
    self._client = client
    self._num_processes = num_processes
    self._heartbeat_timeout = heartbeat_timeout
    self.fired = threading.Event()
    self.stopped = threading.Event()
    threading.Thread(target=self._watch, name='jaxpose lost process watch', daemon=True).start()

  def _finished(self, index: int) -> bool:
    try:
      return bool(self._client.key_value_try_get(_FINISHED_KEY.format(index)))
    except Exception:  # pylint: disable=broad-except
      return False  # not set: still running

  def _watch(self) -> None:
    everyone = list(range(self._num_processes))
    while not self.stopped.wait(POLL_SECONDS):
      try:
        live = set(self._client.get_live_nodes(everyone))
      except Exception:  # pylint: disable=broad-except
        if self.stopped.is_set():  # this process's own shutdown
          return
        # The coordination service lives in process 0: no answer is its loss.
        lost = [0]
      else:
        lost = [index for index in everyone if index not in live and not self._finished(index)]
      if lost and not self.stopped.is_set():
        self._end(lost)

  def _end(self, lost: list[int]) -> None:
    self.fired.set()
    # On a line of its own: a progress bar may have left the cursor mid-line.
    sys.stderr.write('\n' + lost_message(lost, self._num_processes, self._heartbeat_timeout,
                                  _resume['step'], _resume['directory']) + '\n')
    sys.stderr.flush()
    # Not sys.exit: the exit handlers would wait at JAX's shutdown barrier
    # for the lost process, and a collective in flight would never return.
    os._exit(LOST_STATUS)  # pylint: disable=protected-access


_watch: _LostProcessWatch | None = None


def initialize(timeouts: ml_collections.ConfigDict, coordinator_address: str | None = None,
               num_processes: int | None = None, process_id: int | None = None) -> None:
  """jax.distributed.initialize with `timeouts` (config.distributed); the lost-process watch on more than one process.

  Unset arguments are detected by JAX from the cluster's environment (TPU
  pods, SLURM).
  """
  global _watch
  # A lost process is reported to the survivors (`get_live_nodes`) instead
  # of aborting them inside JAX: the watch names it and exits.
  jax.config.update('jax_enable_recoverability', True)
  jax.distributed.initialize(
      coordinator_address=coordinator_address, num_processes=num_processes,
      process_id=process_id,
      initialization_timeout=int(timeouts.initialization_timeout_seconds),
      heartbeat_timeout_seconds=int(timeouts.heartbeat_timeout_seconds),
      shutdown_timeout_seconds=int(timeouts.shutdown_timeout_seconds))
  if jax.process_count() > 1:
    from jax._src import distributed  # pylint: disable=import-outside-toplevel
    _watch = _LostProcessWatch(distributed.global_state.client, jax.process_count(),
                               timeouts.heartbeat_timeout_seconds)
  logging.info('JAX process %d of %d, %d local / %d global devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def finish(timeouts: ml_collections.ConfigDict) -> None:
  """This process ended its command normally: the others' watches let it go; all leave together.

  Process 0 holds the coordination service, and with recoverability on JAX
  has no shutdown barrier: had process 0 left first, the others' clients
  would lose the service mid-shutdown and abort. So every process waits at a
  barrier (at most the shutdown timeout; the watch still reports a process
  lost meanwhile), the others disconnect, and process 0 leaves once they
  have.
  """
  if _watch is None:
    return
  from jax._src import distributed  # pylint: disable=import-outside-toplevel
  client = distributed.global_state.client
  client.key_value_set(_FINISHED_KEY.format(jax.process_index()), '1', allow_overwrite=True)
  try:
    client.wait_at_barrier('jaxpose_finish', int(timeouts.shutdown_timeout_seconds * 1000))
  except Exception as error:  # pylint: disable=broad-except
    logging.warning('not every process reached the end of the command: %s', error)
  _watch.stopped.set()
  if jax.process_index() == 0:
    others = list(range(1, jax.process_count()))
    deadline = time.monotonic() + timeouts.shutdown_timeout_seconds
    while time.monotonic() < deadline:
      try:
        if not client.get_live_nodes(others):
          break
      except Exception:  # pylint: disable=broad-except
        break
      time.sleep(0.1)
    # A process is no longer live once the service has its disconnection,
    # before the reply reaches it: leaving at once could take the service
    # away under that reply, and the other process would abort (seen on a
    # loaded machine).
    time.sleep(SHUTDOWN_GRACE_SECONDS)
  jax.distributed.shutdown()


def wait_for_lost_process(timeouts: ml_collections.ConfigDict) -> None:
  """After a failed collective: gives the watch time to find a lost process (it then ends this one).

  On a CPU a collective with a dead peer fails at once, before the
  coordination service has missed a heartbeat; the watch needs up to the
  heartbeat timeout to name the process. Returns (for the caller to raise
  the original error) if no process was lost by then, or on one process.
  """
  if _watch is None:
    return
  if _watch.fired.wait(timeouts.heartbeat_timeout_seconds + 3 * POLL_SECONDS):
    # The watch is writing its line and ending the process: raising now
    # would print a traceback after (or through) it.
    threading.Event().wait()
