"""SIGTERM (a TPU preemption, a scheduler's kill) as a flag the train loop checks between steps.

The loop saves a checkpoint at the step where the flag is up and raises
`Preempted`; running the same command again resumes from it.
"""

import signal


class Preemption:
  """Turns SIGTERM (TPU preemption, scheduler kill) into a flag checked between steps."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: cannot install handlers
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class Preempted(SystemExit):
  """Raised after the checkpoint that a SIGTERM asked for is written."""
