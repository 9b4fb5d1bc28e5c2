"""Timing shared by the benchmark scripts: functions timed taking turns, so that load hits each alike."""

from collections.abc import Callable
import time


def interleaved_times(runs: dict[str, Callable[[], object]],
                      repeats: int) -> dict[str, list[float]]:
  """Seconds per call of each function, the functions taking turns (after 3 warm-ups each)."""
  for fn in runs.values():
    for _ in range(3):
      fn()
  times = {name: [] for name in runs}
  for _ in range(repeats):
    for name, fn in runs.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return times
