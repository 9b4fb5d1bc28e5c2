"""Timing shared by the benchmark scripts: functions timed taking turns, so that load hits each alike.

Also the one set of onnxruntime session options every ONNX benchmark times with.
"""

from collections.abc import Callable
import time

import onnxruntime as ort


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


def onnx_session(path: str, threads: int,
                 optimized_path: str | None = None) -> ort.InferenceSession:
  """Every timed model gets these options: all graph optimisations, `threads` intra-op threads, sequential.

  With `optimized_path`, onnxruntime also writes the graph it runs there.
  """
  options = ort.SessionOptions()
  if optimized_path:
    options.optimized_model_filepath = optimized_path
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = threads
  options.inter_op_num_threads = 1
  options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
  options.log_severity_level = 3
  return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
