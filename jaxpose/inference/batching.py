"""One model call for several streams: each stream predicts on its own thread, their network calls are stacked.

  network = GatheredNetwork(predictor, slots=2)
  people = network.run_round([lambda: estimator_a(frame_a), lambda: estimator_b(frame_b)])

Each stream's prediction is its approach's own code (`Approach.predict`:
letterbox or crops, network, decoding), unchanged: it runs on a thread of
its own, and where it calls the network, the call waits until every other
stream of the round has called it too or finished. The waiting inputs are
then stacked into one batch per input shape, run once, and each stream
gets its rows back. A stream's people are therefore those it would have
found alone (the network's rows do not depend on each other: BatchNorm
runs on its statistics), while the model runs once per round.

Every batch is padded to at least `slots` rows (one per stream), so a
round in which a stream has no frame (a live camera between two frames, a
file that ended) runs the same compiled shape as a full one.
"""

from collections.abc import Callable, Sequence
import concurrent.futures
import threading
from typing import Any, TypeVar

import numpy as np

Result = TypeVar('Result')


class GatheredNetwork:
  """A predictor (`deploy.predictor.Predictor`) whose calls from the threads of one round run as one batch.

  Every attribute other than the call (`approach`, `source`, `input_size`,
  `variables`, ...) is the wrapped predictor's.
  """

  def __init__(self, network, slots: int):
    self._network = network
    self.slots = slots
    self._lock = threading.Condition()
    self._active = 0  # the round's predictions still running
    self._waiting: dict[int, np.ndarray] = {}  # ticket -> inputs [n, H, W, 3]
    self._answers: dict[int, Any] = {}  # ticket -> outputs or the exception raised
    self._next_ticket = 0
    self._executor: concurrent.futures.ThreadPoolExecutor | None = None
    self.calls = 0  # network calls made, for tests and benchmarks

  def __getattr__(self, name: str):
    return getattr(self._network, name)

  def run_round(self, predictions: Sequence[Callable[[], Result]]) -> list[Result]:
    """Runs each prediction on a thread of its own, their network calls batched -> their results, in order."""
    if len(predictions) == 1:  # nothing to gather with: no thread
      return [predictions[0]()]
    if self._executor is None:
      self._executor = concurrent.futures.ThreadPoolExecutor(self.slots,
                                                             thread_name_prefix='stream')
    with self._lock:
      self._active = len(predictions)
    futures = [self._executor.submit(self._run_one, prediction) for prediction in predictions]
    return [future.result() for future in futures]

  def _run_one(self, prediction: Callable[[], Result]) -> Result:
    try:
      return prediction()
    finally:
      with self._lock:
        self._active -= 1
        self._run_if_all_waiting()

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs [n, H, W, 3] -> {name: [n, ...]}, run together with the other streams' inputs of the round."""
    with self._lock:
      if self._active <= 1:  # outside a round, or the last stream still predicting
        self.calls += 1
        return self._network(images)
      ticket = self._next_ticket
      self._next_ticket += 1
      self._waiting[ticket] = np.asarray(images)
      self._run_if_all_waiting()
      self._lock.wait_for(lambda: ticket in self._answers)
      answer = self._answers.pop(ticket)
    if isinstance(answer, BaseException):
      raise answer
    return answer

  def _run_if_all_waiting(self) -> None:
    """With the lock held: once every running prediction waits on the network, runs their inputs."""
    if not self._waiting or len(self._waiting) < self._active:
      return
    waiting, self._waiting = self._waiting, {}
    by_shape: dict[tuple, list[int]] = {}
    for ticket, inputs in waiting.items():
      by_shape.setdefault((inputs.shape[1:], inputs.dtype.str), []).append(ticket)
    for tickets in by_shape.values():
      try:
        self._answers.update(self._run_stacked({t: waiting[t] for t in tickets}))
      except Exception as error:  # pylint: disable=broad-except
        self._answers.update({ticket: error for ticket in tickets})
    self._lock.notify_all()

  def _run_stacked(self, inputs: dict[int, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """{ticket: inputs [n_t, ...]} of one shape -> {ticket: outputs [n_t, ...]}: one call, padded to `slots` rows."""
    stacked = np.concatenate(list(inputs.values()))
    count = len(stacked)
    if count < self.slots:
      stacked = np.concatenate([stacked, np.zeros((self.slots - count, *stacked.shape[1:]),
                                                  stacked.dtype)])
    self.calls += 1
    outputs = self._network(stacked)
    answers, start = {}, 0
    for ticket, rows in inputs.items():
      answers[ticket] = {name: value[start:start + len(rows)] for name, value in outputs.items()}
      start += len(rows)
    return answers

  def close(self) -> None:
    if self._executor is not None:
      self._executor.shutdown()
      self._executor = None
