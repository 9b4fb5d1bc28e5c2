"""Layers shared by the models: BatchNorm as the PyTorch originals run it, and 1x1 and depthwise 3x3 convs fast on the CPU."""

from collections.abc import Iterator
import contextlib
import contextvars
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's BatchNorm2d defaults: running = 0.9 running + 0.1 batch, eps 1e-5.
BATCH_NORM_MOMENTUM = 0.9
BATCH_NORM_EPSILON = 1e-5


# True inside `portable_convs`. A ContextVar rather than a global so that
# threads (and asyncio tasks) tracing at the same time do not see each other's.
_PORTABLE_CONVS = contextvars.ContextVar('jaxpose_portable_convs', default=False)


@contextlib.contextmanager
def portable_convs() -> Iterator[None]:
  """Within it, `DepthwiseConv3x3` and `PointwiseConv` trace as plain `lax.conv_general_dilated`.

  That is the form ONNX runtimes, GPUs and TPUs run fast, and the one an
  exported graph should hold (Conv nodes). Outside it the layers trace the
  forms XLA:CPU runs fast (shifted multiply-adds, a matrix product) when
  `jax.default_backend()` is 'cpu', and the convs otherwise. A layer's
  explicit `by_shifts` / `by_dot` overrides both.

  The choice is made when a function is traced, not when it runs: a function
  jitted outside the context keeps the form it was traced with, since jit's
  cache does not see the context. That cache is keyed on the Python function
  and shared by `jax.jit` and `jax.make_jaxpr` (JAX 0.10), so even a new
  `jax.jit(f)` of an `f` already traced outside reuses the old form. Whatever
  needs the convs, such as ONNX export, must therefore trace a function not
  traced before, inside the context.

  Yields:
    None.
  """
  token = _PORTABLE_CONVS.set(True)
  try:
    yield
  finally:
    _PORTABLE_CONVS.reset(token)


def _cpu_forms() -> bool:
  """Whether the layers trace their XLA:CPU forms: on the CPU backend, outside `portable_convs`."""
  return not _PORTABLE_CONVS.get() and jax.default_backend() == 'cpu'


def batch_norm(train: bool, axis_name: str | None, name: str, dtype: Any = None) -> nn.BatchNorm:
  """BatchNorm with PyTorch's momentum and epsilon; batch statistics averaged over `axis_name` in training.

  `dtype` is that of its output (None: the input's and params'). Flax keeps
  the statistics, scale and bias in float32 and normalises in float32
  whatever it is: a bfloat16 BatchNorm rounds only its output.
  """
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BATCH_NORM_MOMENTUM,
      epsilon=BATCH_NORM_EPSILON,
      axis_name=axis_name if train else None,
      # Two-pass variance, mean((x - mean)^2): E[x^2] - E[x]^2 loses the
      # variance of near-constant channels (the 1x1 bottom of an hourglass)
      # to cancellation, differently for each way the batch is split.
      use_fast_variance=False,
      dtype=dtype,
      name=name)


def float32_outputs(outputs: Any, compute_dtype: Any) -> Any:
  """A model's outputs (any tree of arrays) -> float32 when the model computed in `compute_dtype`.

  Targets, losses, metrics and decoding take float32 maps; None (the
  inputs' and params' dtype, float64 under x64) leaves them as they are.
  """
  if compute_dtype is None:
    return outputs
  return jax.tree_util.tree_map(lambda maps: maps.astype(jnp.float32), outputs)


def _compute_dtype(x: jax.Array, kernel: jax.Array, dtype: Any) -> Any:
  """As nn.Conv: `dtype` where given, else the wider of the input's and the kernel's (float64 under x64)."""
  return jnp.result_type(x, kernel) if dtype is None else dtype


class DepthwiseConv3x3(nn.Module):
  """3x3 depthwise conv padded by `dilation`: [B, H, W, C] -> [B, ceil(H/stride), ceil(W/stride), C].

  The parameters are those of `nn.Conv(C, (3, 3), feature_group_count=C)`
  ('kernel' [3, 3, 1, C], 'bias' [C]) with the same initialiser, so
  checkpoints and converted upstream weights fit either way of computing it.

  Attributes:
    stride: spatial stride.
    dilation: kernel dilation; the padding equals it, as in upstream's convs.
    use_bias: add a per-channel bias.
    dtype: dtype of the computation and output (e.g. bfloat16; the params
      stay float32); None: as nn.Conv, the input's and kernel's.
    by_shifts: compute the conv as nine shifted multiply-adds instead of a
      grouped `lax.conv`. XLA:CPU runs a grouped conv with one group per
      channel at ~1 GFLOP/s (~19 ns per input element, 4-18 ms per layer of
      Lightweight OpenPose at 256x456); the nine multiply-adds, which XLA
      fuses into one loop, are ~50x faster (scripts/bench_depthwise.py).
      None: by shifts on the CPU backend, except inside `portable_convs`
      (which ONNX export traces in: its runtimes have fast depthwise convs);
      on GPU and TPU the conv is kept, as it was not measured there.
  """
  stride: int = 1
  dilation: int = 1
  use_bias: bool = True
  by_shifts: bool | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, 1, channels),
                        jnp.float32)
    dtype = _compute_dtype(x, kernel, self.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    by_shifts = self.by_shifts
    if by_shifts is None:
      by_shifts = _cpu_forms()
    pad = self.dilation
    if by_shifts:
      out_height = (x.shape[1] - 1) // self.stride + 1
      out_width = (x.shape[2] - 1) // self.stride + 1
      # Summed in at least float32 and rounded once, as convs accumulate: a
      # bfloat16 running sum is rounded to its partial sums' magnitude, which
      # can be far above the result's.
      accumulate = jnp.promote_types(dtype, jnp.float32)
      x, kernel = x.astype(accumulate), kernel.astype(accumulate)
      x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
      y = None
      for row in range(3):
        for column in range(3):
          top, left = row * self.dilation, column * self.dilation
          window = jax.lax.slice(
              x, (0, top, left, 0),
              (x.shape[0], top + (out_height - 1) * self.stride + 1,
               left + (out_width - 1) * self.stride + 1, channels),
              (1, self.stride, self.stride, 1))
          term = window * kernel[row, column, 0]
          y = term if y is None else y + term
      y = y.astype(dtype)
    else:
      y = jax.lax.conv_general_dilated(
          x, kernel, (self.stride, self.stride), ((pad, pad), (pad, pad)),
          rhs_dilation=(self.dilation, self.dilation),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=channels)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(), (channels,),
                         jnp.float32).astype(dtype)
    return y


class PointwiseConv(nn.Module):
  """1x1 conv, stride 1: [B, H, W, C] -> [B, H, W, features].

  The parameters are those of `nn.Conv(features, (1, 1))` ('kernel' [1, 1,
  C, features], 'bias' [features]) with the same initialisers, so checkpoints
  and converted upstream weights fit either way of computing it.

  Attributes:
    features: output channels.
    use_bias: add a per-channel bias.
    dtype: dtype of the computation and output, as `DepthwiseConv3x3`'s.
    by_dot: compute it as one matrix product over the channels instead of a
      `lax.conv`. XLA:CPU runs a 1x1 conv at ~40 % of the rate of the same
      product (165-190 against 400-420 GFLOP/s on the hourglass's shapes on
      the 2-core VM of BENCHMARKS.md): Lightweight OpenPose's forward pass
      takes ~12 % less time, the hourglass's 16 % less for 4 crops (the same
      for one) (scripts/bench_depthwise.py). None: by dot on the CPU backend,
      except inside `portable_convs` (which ONNX export traces in); GPU and
      TPU keep the conv, as it was not measured there.
  """
  features: int
  use_bias: bool = True
  by_dot: bool | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (1, 1, x.shape[-1], self.features), jnp.float32)
    dtype = _compute_dtype(x, kernel, self.dtype)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    by_dot = self.by_dot
    if by_dot is None:
      by_dot = _cpu_forms()
    if by_dot:
      y = jax.lax.dot_general(x, kernel[0, 0], (((x.ndim - 1,), (0,)), ((), ())))
    else:
      y = jax.lax.conv_general_dilated(x, kernel, (1, 1), 'VALID',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(), (self.features,),
                         jnp.float32).astype(dtype)
    return y
