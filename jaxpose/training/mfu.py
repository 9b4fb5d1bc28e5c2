"""Step performance: XLA's FLOP count of the compiled train step, MFU, activation memory, and the profiler window.

MFU (model FLOPs utilisation) = achieved FLOP/s / the chip's peak dense
FLOP/s. The achieved figure is XLA's count of the compiled step
(`compiled.cost_analysis()`, 2 FLOPs per multiply-add, elementwise ops
counted too) times the measured steps per second. Under pmap and shard_map
the compiled program is the per-device one, so its count and the TFLOP/s
derived from it are per device, which is what the per-chip peak divides.
XLA counts the program as compiled for the backend: a rewrite that does more
work counts it (XLA:CPU computes a depthwise conv's kernel gradient as a dense
conv, C times the multiply-adds), so compare counts of one backend only.
"""

from collections.abc import Callable
import contextlib
import io
import re
from typing import Any, NamedTuple

from absl import logging
import jax
from jax.ad_checkpoint import print_saved_residuals
import numpy as np


def step_flops(compiled: Any) -> float | None:
  """FLOPs of one call of a compiled step (`jit(...).lower(...).compile()`), or None if unknown.

  Under pmap / shard_map: one device's program, i.e. the FLOPs of one
  device's share of the batch (the collectives' additions included).
  `cost_analysis()` returns a dict in recent JAX and a list of one dict per
  HLO module in older releases; some backends have none.
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception as error:  # pylint: disable=broad-except
    # A backend without a cost model raises instead of answering: no FLOP count, no MFU.
    logging.info('no FLOP count of the train step: %s', error)
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


# A line of `print_saved_residuals`: "f32[8,64,64,256] output of ..." or "... from the argument x".
_RESIDUAL = re.compile(r'^(?P<dtype>[a-z]+[0-9]*)\[(?P<shape>[0-9,]*)\] (?P<what>.*)$')


def saved_activation_bytes(fn: Callable[..., jax.Array], *args) -> int:
  """Bytes that reverse-mode differentiation of scalar `fn(*args)` keeps from the forward pass for the backward one, the arguments left out.

  JAX's own account of the residuals (`jax.ad_checkpoint.print_saved_residuals`),
  whatever the backend: what `nn.remat` / `jax.checkpoint` exists to shrink.
  XLA:CPU's buffer assignment does not show that saving in a compiled step's
  peak memory (`compiled.memory_analysis()`, the same with and without remat:
  BENCHMARKS.md), so this count is the measure that holds on any backend.
  """
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    print_saved_residuals(fn, *args)
  total = 0
  for line in printed.getvalue().splitlines():
    match = _RESIDUAL.match(line.strip())
    if match is None:
      raise ValueError(f'saved_activation_bytes: unexpected residual line {line!r}')
    if match['what'].startswith('from the argument'):
      continue
    name = match['dtype']  # f32, bf16, i32, u8, bool (e.g. a ReLU's mask)
    bits = name.lstrip('abcdefghijklmnopqrstuvwxyz')
    if name not in ('bool', 'pred') and not bits:
      raise ValueError(f'saved_activation_bytes: unknown dtype in {line!r}')
    itemsize = 1 if name in ('bool', 'pred') else int(bits) // 8
    count = int(np.prod([int(d) for d in match['shape'].split(',') if d]))
    total += count * itemsize
  return total


class Peak(NamedTuple):
  """One chip's peak dense TFLOP/s (10^12 FLOP/s) at each compute dtype."""
  name: str
  pattern: str  # regex searched in the lower-cased `device_kind`
  bfloat16: float
  float32: float


# Peak dense (no sparsity) TFLOP/s per chip. `device_kind` as JAX reports it
# in brackets. First match wins, so the more specific patterns come first.
#
# float32: JAX's default matmul and conv precision for float32 inputs is the
# fast one (docs.jax.dev "Matmul precision": bfloat16 passes on TPU, TF32 on
# NVIDIA GPUs since Ampere), so a float32 training step runs its convolutions
# on the matrix units at those rates. The float32 column is therefore the MXU's
# bf16 peak on TPU (Google publishes no other) and the TF32 tensor-core peak
# on NVIDIA, not the CUDA cores' FP32 peak (A100 19.5, H100/H200 SXM 67), which
# a float32 run would exceed (MFU > 1) wherever its convs use tensor cores.
# With jax_default_matmul_precision='highest' the float32 figures overstate
# the peak (TPU: 6 bf16 passes; GPU: the CUDA-core FP32 peak applies).
PEAKS = (
    # cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16 per chip. ('TPU v4'; not the
    # inference chip 'TPU v4 lite'.)
    Peak('TPU v4', r'^tpu v4$', 275.0, 275.0),
    # cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16 per chip. ('TPU v5 lite')
    Peak('TPU v5e', r'^tpu v5 ?(lite|e)\b', 197.0, 197.0),
    # cloud.google.com/tpu/docs/v5p: 459 TFLOP/s bf16 per chip. ('TPU v5', 'TPU v5p')
    Peak('TPU v5p', r'^tpu v5p?$', 459.0, 459.0),
    # cloud.google.com/tpu/docs/v6e: 918 TFLOP/s bf16 per chip. ('TPU v6 lite', 'TPU v6e')
    Peak('TPU v6e (Trillium)', r'^tpu (v6 ?(lite|e)\b|trillium)', 918.0, 918.0),
    # NVIDIA A100 datasheet (SXM and PCIe alike): BF16 tensor core 312, TF32
    # 156 (the datasheet's 624 / 312 are with sparsity). ('NVIDIA A100-SXM4-80GB',
    # 'NVIDIA A100-SXM4-40GB', 'NVIDIA A100-PCIE-40GB')
    Peak('NVIDIA A100', r'\ba100\b', 312.0, 156.0),
    # NVIDIA H100 datasheet, SXM: BF16 1979 and TF32 989 with sparsity, halved.
    # ('NVIDIA H100 80GB HBM3'; PCIe and NVL have lower peaks and match nothing.)
    Peak('NVIDIA H100 SXM', r'\bh100\b(?!.*(pcie|nvl))', 989.5, 494.5),
    # NVIDIA H200 datasheet, SXM: as H100 SXM (same GH100 die and clocks).
    # ('NVIDIA H200'; the H200 NVL has lower peaks and matches nothing.)
    Peak('NVIDIA H200 SXM', r'\bh200\b(?!.*nvl)', 989.5, 494.5),
)


def peak_for(device_kind: str) -> Peak | None:
  """The table's entry for a `jax.devices()[0].device_kind`, or None (CPU, other chips)."""
  kind = ' '.join(device_kind.lower().split())
  for peak in PEAKS:
    if re.search(peak.pattern, kind):
      return peak
  return None


def peak_tflops(device_kind: str, dtype: str = 'float32') -> float | None:
  """Peak dense TFLOP/s of one chip at a compute dtype ('float32' | 'bfloat16'), or None if unknown."""
  if dtype not in ('float32', 'bfloat16'):
    raise ValueError(f"compute dtype: expected 'float32' or 'bfloat16', got {dtype!r}")
  peak = peak_for(device_kind)
  return None if peak is None else getattr(peak, dtype)


def mfu(flops_per_step: float, seconds_per_step: float, device_kind: str,
        dtype: str = 'float32') -> float | None:
  """Achieved / peak FLOP/s of one device, a fraction; None for a device kind not in `PEAKS`.

  `flops_per_step` must be per device (`step_flops` of the per-device program).
  """
  peak = peak_tflops(device_kind, dtype)
  if peak is None:
    return None
  return flops_per_step / seconds_per_step / (peak * 1e12)


class Throughput:
  """TFLOP/s per device and MFU of a compiled train step, for the loop's log lines."""

  def __init__(self, compiled: Any, dtype: str = 'float32', device_kind: str | None = None):
    self.flops = step_flops(compiled)
    self.dtype = dtype
    self.device_kind = jax.devices()[0].device_kind if device_kind is None else device_kind
    if self.flops is not None:
      logging.info('train step: %.4g GFLOP per device (XLA cost analysis)', self.flops / 1e9)
    if peak_tflops(self.device_kind, dtype) is None:  # once per run
      # A CPU has no peak to compare with, which is expected (-v says so); an
      # accelerator missing from PEAKS deserves a warning.
      report = logging.info if jax.devices()[0].platform == 'cpu' else logging.warning
      report('MFU not reported: no peak FLOP/s known for device kind %r (jaxpose/mfu.py PEAKS)',
             self.device_kind)

  def summary(self, seconds_per_step: float) -> dict[str, float]:
    """{'train/tflops_per_device', 'train/mfu'} at a measured time per step; those known."""
    if self.flops is None or seconds_per_step <= 0:
      return {}
    out = {'train/tflops_per_device': self.flops / seconds_per_step / 1e12}
    utilisation = mfu(self.flops, seconds_per_step, self.device_kind, self.dtype)
    if utilisation is not None:
      out['train/mfu'] = utilisation
    return out


class StepTrace:
  """A `jax.profiler` trace of train steps first .. first + count - 1, from `config.profile_steps`.

  `profile_steps` is () or None (off) or (first_step, num_steps), in the
  run's step numbers (1-based, as logged). A resumed run that starts inside
  the window traces the rest of it. The trace goes to `log_dir` as
  TensorBoard's profile plugin lays it out (plugins/profile/RUN/HOST.xplane.pb
  and .trace.json.gz) plus a perfetto_trace.json.gz for ui.perfetto.dev. Used
  as a context manager, so that a run that stops inside the window (an error,
  preemption, the last step) still writes what it traced.
  """

  def __init__(self, profile_steps, log_dir: str):
    self.log_dir = log_dir
    self.first = self.last = None
    self._active = self._done = False
    if profile_steps:
      if len(profile_steps) != 2 or min(profile_steps) < 1:
        raise ValueError('config.profile_steps: expected (first_step, num_steps), both >= 1, '
                         f'got {tuple(profile_steps)!r}')
      self.first, count = (int(n) for n in profile_steps)
      self.last = self.first + count - 1

  def __enter__(self) -> 'StepTrace':
    return self

  def __exit__(self, *exc) -> None:
    self.stop()

  def before(self, step: int) -> None:
    """Called before dispatching `step`: starts the trace at the window's first step."""
    if self.first is not None and not (self._active or self._done) and (
        self.first <= step <= self.last):
      jax.profiler.start_trace(self.log_dir, create_perfetto_trace=True)
      self._active = True

  def after(self, step: int, outputs: Any) -> None:
    """Called after dispatching `step`: at the window's last step, waits for `outputs`, then stops."""
    if self._active and step >= self.last:
      # Dispatch is asynchronous: without the wait the trace would end before
      # the device ran the last steps.
      jax.block_until_ready(outputs)
      self.stop()

  def stop(self) -> None:
    if self._active:
      jax.profiler.stop_trace()
      self._active, self._done = False, True
      logging.info('profile of steps %d-%d written to %s', self.first, self.last, self.log_dir)
