"""SIGTERM (a TPU preemption, a scheduler's kill) as a step at which every process saves and stops.

On one process a SIGTERM handler raises a flag; `Preemption.reached(step)`
is True at the first step after it. On several processes (`jax.distributed`)
the signal reaches the hosts at different times, and a host that stopped
alone would leave the others waiting in their next collective: there JAX's
preemption sync manager catches the SIGTERM (jaxpose installs no handler of
its own, which would replace JAX's), the coordination service tells every
process, and `reached(step)` (`multihost_utils.reached_preemption_sync_point`)
is True on all of them at the same step, one past the furthest any had
reached. The train loop calls it at every step, saves that step and raises
`Preempted`; running the same command again resumes from it.
"""

import signal

import jax
from jax.experimental import multihost_utils


class Preemption:
  """A SIGTERM on any process -> `reached(step)` True at one step agreed by every process."""

  def __init__(self):
    self.requested = False
    self._previous = None
    self._agreed = False

  def __enter__(self):
    self._agreed = jax.process_count() > 1
    if self._agreed:
      return self  # JAX's preemption sync manager holds SIGTERM
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: cannot install handlers
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def reached(self, step: int) -> bool:
    """Whether to save `step` and stop: the same answer on every process. Call it at every step."""
    if self._agreed:
      self.requested = self.requested or multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class Preempted(SystemExit):
  """Raised after the checkpoint that a SIGTERM asked for is written: the command exits 0.

  `step` is the step saved, `checkpoint` its directory.
  """

  def __init__(self, message: str, step: int, checkpoint: str):
    super().__init__(message)
    self.message = message
    self.step = step
    self.checkpoint = checkpoint
