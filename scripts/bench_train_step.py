"""Benchmark: the jitted jaxpose train step vs PyTorch, images/s, MFU and peak memory on one device.

Runs on whatever backend is present: JAX's default backend for the jaxpose
rows, and CUDA if PyTorch sees a GPU (else the CPU) for the PyTorch rows.
Both sides train the same network on the same batch, from the same initial
weights (PyTorch's, converted with `jaxpose.deploy.convert`), with RMSprop
(PyTorch's defaults, lr 2.5e-4) and the approach's loss:

- `--model hg2` / `hg8`: bearpaw/pytorch-pose's `HourglassNet` with 2 / 8
  stacks (jaxpose's `StackedHourglass`; `tests/torch_hourglass.py`), 16
  joints, 256x256 by default, intermediate-supervision MSE;
- `--model lwop`: Lightweight OpenPose, 1 refinement stage
  (`tests/torch_openpose.py`), 368x368 by default, the staged masked L2 of
  heatmaps and part affinity fields of 3 people per image.

Rows (`--rows`, further filtered by `--dtype`; set up in the order of `ROWS`):
- jaxpose-bf16, jaxpose-f32, jaxpose-f32-remat: `jaxpose.training.trainer.train_step`
  under `jax.jit` (`parallel='none'`), the whole step in one program (uint8 ->
  float normalisation, targets made on the device, forward, backward, the
  optax update, metrics), with `config.compute_dtype` 'bfloat16' / 'float32'
  and, for remat, `config.model.remat = True`;
- torch-eager, torch-eager-cl: PyTorch eager float32 in NCHW / channels_last;
- torch-amp-bf16-cl: `torch.autocast(bfloat16)` forward, channels_last, the
  loss in float32;
- torch-compile-cl: `torch.compile` of the float32 forward and loss,
  channels_last (backward compiled by AOTAutograd; the optimizer step eager).
PyTorch is handed the images already normalised and the targets precomputed
(by the same jaxpose code), as its data loader would; so it times forward,
loss, backward and `optimizer.step()` only. A row whose set-up fails (no C++
compiler for torch.compile, out of memory, an option this jaxpose lacks) is
reported as "unavailable: <reason>" instead of stopping the script.

Each row is set up and run `WARMUP_STEPS` untimed steps (JAX compile and
PyTorch's first steps timed apart); then every repeat times `--steps` steps
of each row in turn (interleaved, so that a load change on a shared machine
hits all of them). Columns: images/s (median over repeats, min-max); speed
vs the fastest PyTorch row (its median time / this row's, and the same for
the best repeats); TFLOP/s and MFU from the model FLOPs, i.e. XLA's count of
the jaxpose step without remat (float32 if it ran, else bfloat16) over the
row's median time, MFU against `jaxpose.training.mfu`'s peak for the device and the
row's dtype (only where it knows the device); peak memory: for jaxpose from
`compiled.memory_analysis()`, arguments + outputs + temporaries - the
donated state that the outputs alias (with the temporaries alone in
brackets); for PyTorch on CUDA `torch.cuda.max_memory_allocated()` during
the row's set-up and warm-up, less what was allocated before (its weights,
optimizer state, batch and activations); on the CPU n/a.

Usage: python scripts/bench_train_step.py [--model hg2|hg8|lwop] [--batch-size 8]
  [--input-size N] [--steps 10] [--repeats 3] [--rows ROW ...] [--dtype float32 bfloat16]
  [--num-features 128] [--hourglass-depth 4] [--setup-budget SECONDS] [--json PATH]
  [--torch-threads N] [--quick-compile]
Smoke check: --num-features 16 --input-size 64 --hourglass-depth 2 --steps 1 --repeats 1
  --quick-compile
The one prepared GPU run: scripts/device_bench.sh.
"""

import argparse
import dataclasses
import functools
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable

# The PyTorch rows share the GPU with JAX, whose default is to take 75 % of it
# at start; allocating on demand leaves them the rest.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
import torch

from jaxpose import approaches
from jaxpose.deploy import convert
from jaxpose.training import mfu
from jaxpose.training import parallel
from jaxpose.training import trainer
from jaxpose import config as config_lib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import torch_hourglass  # pylint: disable=g-import-not-at-top
import torch_openpose  # pylint: disable=g-import-not-at-top

LEARNING_RATE = 2.5e-4  # Newell et al. / bearpaw's MPII recipe
WARMUP_STEPS = 2  # untimed steps after set-up: allocation, autotuning, oneDNN primitive set-up
MIB = 2 ** 20


def nchw(array) -> torch.Tensor:
  """[B, H, W, C] array -> a contiguous [B, C, H, W] float tensor."""
  return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(array), -1, 1)))


class Hourglass:
  """bearpaw's stacked hourglass, one residual per stage, on MPII's 16 joints."""
  default_input_size = 256
  sigma = 1.0  # heatmap pixels, the MPII recipe
  num_joints = 16

  def __init__(self, num_stacks: int):
    self.num_stacks = num_stacks

  def model_config(self, args):
    return config_lib.hourglass_model(num_stacks=self.num_stacks, num_blocks=1,
                                      num_joints=self.num_joints,
                                      num_features=args.num_features, depth=args.hourglass_depth)

  def torch_model(self, args) -> torch.nn.Module:
    torch.manual_seed(0)  # every call, the same initial weights
    model = torch_hourglass.HourglassNet(self.num_stacks, 1, self.num_joints,
                                         num_feats=args.num_features)
    if args.hourglass_depth != 4:  # HourglassNet builds bearpaw's depth 4 only
      model.hg = torch.nn.ModuleList(
          torch_hourglass.Hourglass(1, args.num_features, depth=args.hourglass_depth)
          for _ in range(self.num_stacks))
    return model

  def batch(self, size: int, batch_size: int, rng) -> dict[str, np.ndarray]:
    """Crops: uint8 'image' [B, S, S, 3], 'joints' [B, J, 2], 'visible' [B, J]."""
    return {'image': rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
            'joints': rng.uniform(0, size, (batch_size, self.num_joints, 2)).astype(np.float32),
            'visible': (rng.random((batch_size, self.num_joints)) > 0.2).astype(np.float32)}

  def torch_targets(self, targets: dict, batch: dict) -> tuple[torch.Tensor, ...]:
    del batch
    return nchw(targets['heatmaps']), torch.from_numpy(np.array(targets['weight']))

  @staticmethod
  def torch_loss(outputs, heatmaps, weight) -> torch.Tensor:
    """Per-stack [B, J, H, W] -> `jaxpose.losses.intermediate_supervision`."""
    return sum(0.5 * torch.mean(torch.square((o - heatmaps) * weight[:, :, None, None]))
               for o in outputs)


class LightweightOpenPose:
  """Lightweight OpenPose with 1 refinement stage, COCO's keypoints as OpenPose's 18."""
  default_input_size = 368
  sigma = 7.0  # input pixels (configs/lightweight_openpose_coco.py)
  num_people = 3

  def model_config(self, args):
    del args  # fixed width
    return config_lib.lightweight_openpose_model(num_refinement_stages=1)

  def torch_model(self, args) -> torch.nn.Module:
    del args
    torch.manual_seed(0)
    return torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages=1)

  def batch(self, size: int, batch_size: int, rng) -> dict[str, np.ndarray]:
    """Whole images: 'image', 'keypoints' [B, P, 18, 2], 'visible', 'person_mask', 'mask'."""
    people = (batch_size, self.num_people)
    return {'image': rng.integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8),
            'keypoints': rng.uniform(0, size, (*people, 18, 2)).astype(np.float32),
            'visible': (rng.random((*people, 18)) > 0.2).astype(np.float32),
            'person_mask': np.ones(people, bool),
            'mask': np.ones((batch_size, size // 8, size // 8), np.float32)}

  def torch_targets(self, targets: dict, batch: dict) -> tuple[torch.Tensor, ...]:
    return nchw(targets['heatmaps']), nchw(targets['pafs']), torch.from_numpy(batch['mask'])

  @staticmethod
  def torch_loss(outputs, heatmaps, pafs, mask) -> torch.Tensor:
    """Flat [heatmaps, pafs] per stage -> `jaxpose.losses.staged_l2`."""
    mask = mask[:, None]
    l2 = lambda p, t: torch.sum(torch.square((p - t) * mask)) / 2 / p.shape[0]
    return sum(l2(h, heatmaps) + l2(p, pafs) for h, p in zip(outputs[0::2], outputs[1::2]))


NETWORKS = {'hg2': Hourglass(2), 'hg8': Hourglass(8), 'lwop': LightweightOpenPose()}


@dataclasses.dataclass
class Bench:
  """What every row shares: the args, the network, one batch and PyTorch's initial weights."""
  args: argparse.Namespace
  network: Hourglass | LightweightOpenPose
  batch: dict[str, np.ndarray]
  torch_device: torch.device
  torch_images: torch.Tensor = None  # normalised [B, 3, H, W]
  torch_targets: tuple = ()
  state_dict: dict = None

  def __post_init__(self):
    config = jax_config(self, 'float32')
    approach = approaches.for_config(config)
    self.torch_images = nchw(approach.normalize(self.batch['image']))
    targets = jax.jit(functools.partial(approach.make_targets, config=config))(self.batch)
    self.torch_targets = self.network.torch_targets(targets, self.batch)
    self.state_dict = self.network.torch_model(self.args).state_dict()


def jax_config(bench: Bench, compute_dtype: str, remat: bool = False):
  """The trainer's config for the benchmarked step: one device, RMSprop, the bench's model."""
  args = bench.args
  config = config_lib.default_config()
  config.model = bench.network.model_config(args)
  if remat:
    config.model.remat = True
  if 'compute_dtype' in config:
    config.compute_dtype = compute_dtype  # explicitly: its default 'auto' is bfloat16 on a GPU
  elif compute_dtype != 'float32':
    raise ValueError('this jaxpose has no config.compute_dtype')
  config.parallel = 'none'
  config.optimizer = 'rmsprop'
  config.learning_rate = LEARNING_RATE
  config.batch_size = args.batch_size
  config.input_size = (args.input_size, args.input_size)
  config.sigma = bench.network.sigma
  return config


class JaxStep:
  """The jitted jaxpose train step on one device, its state advanced in place by `run`."""

  def __init__(self, bench: Bench, compute_dtype: str, remat: bool = False):
    config = jax_config(bench, compute_dtype, remat)
    data = parallel.DataParallel(config.parallel)
    learning_rate_fn = trainer.create_learning_rate_fn(config)
    tx = trainer.create_optimizer(config, learning_rate_fn)
    size = bench.args.input_size
    # PyTorch's initial weights, so that the first steps' losses can be compared.
    variables = convert.variables_from_torch(trainer.create_model(config), bench.state_dict,
                                             input_shape=(1, size, size, 3))
    # Not `trainer.create_train_state`: it would compile `model.init` for weights replaced here.
    host_state = trainer.TrainState(
        step=np.zeros((), np.int32), params=variables['params'],
        batch_stats=variables['batch_stats'], opt_state=tx.init(variables['params']),
        rng=np.asarray(jax.random.PRNGKey(config.seed)))
    approach = approaches.for_config(config)
    step = data.compile(functools.partial(
        trainer.train_step, approach=approach, model=trainer.create_model(config), teacher=None,
        tx=tx, learning_rate_fn=learning_rate_fn, config=config, axis_name=data.axis_name))
    self.state = data.replicate(host_state)
    self.batch = data.shard_batch(bench.batch)
    start = time.perf_counter()
    options = {'xla_backend_optimization_level': 0} if bench.args.quick_compile else None
    self._compiled = step.lower(self.state, self.batch, None).compile(options)
    self.compile_seconds = time.perf_counter() - start
    self.flops = mfu.step_flops(self._compiled)
    self.device_kind = jax.devices()[0].device_kind
    self.metrics = None

  def run(self, steps: int) -> None:
    """`steps` train steps on the same batch, waiting for the last to finish."""
    for _ in range(steps):
      self.state, self.metrics = self._compiled(self.state, self.batch, None)
    jax.block_until_ready((self.state, self.metrics))

  def last_loss(self) -> float:
    return float(self.metrics['loss'])

  def memory(self) -> tuple[int | None, int | None]:
    """(peak bytes, temporary bytes) of XLA's buffer assignment; (None, None) if it has none."""
    try:
      analysis = self._compiled.memory_analysis()
    except Exception:  # pylint: disable=broad-except
      analysis = None  # a backend without one raises instead of answering
    if analysis is None:
      return None, None
    temp = analysis.temp_size_in_bytes
    # The donated state comes back in place: counted once, as an argument.
    return (analysis.argument_size_in_bytes + analysis.output_size_in_bytes + temp
            - analysis.alias_size_in_bytes), temp


class TorchStep:
  """A PyTorch train step of the upstream architecture: eager, AMP or torch.compile."""

  def __init__(self, bench: Bench, memory_format: torch.memory_format, amp: bool = False,
               compiled: bool = False):
    self.device = bench.torch_device
    self.model = bench.network.torch_model(bench.args).to(self.device).train()
    self.model = self.model.to(memory_format=memory_format)
    self.compile_seconds = 0.0  # torch.compile compiles at the first (warm-up) step
    self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=LEARNING_RATE)
    self.images = bench.torch_images.to(self.device).contiguous(memory_format=memory_format)
    self.targets = tuple(t.to(self.device) for t in bench.torch_targets)
    self.amp, self.torch_loss = amp, bench.network.torch_loss
    self.loss_of = torch.compile(self._loss_of) if compiled else self._loss_of
    self.flops, self.loss = None, None
    self.device_kind = (torch.cuda.get_device_name(self.device) if self.device.type == 'cuda'
                        else 'cpu')

  def _loss_of(self, images: torch.Tensor) -> torch.Tensor:
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
      outputs = self.model(images)
    return self.torch_loss([o.float() for o in outputs], *self.targets)

  def run(self, steps: int) -> None:
    """`steps` train steps on the same batch, waiting for the device."""
    for _ in range(steps):
      self.optimizer.zero_grad(set_to_none=True)
      self.loss = self.loss_of(self.images)
      self.loss.backward()
      self.optimizer.step()
    if self.device.type == 'cuda':
      torch.cuda.synchronize(self.device)

  def last_loss(self) -> float:
    return float(self.loss.detach())

  def memory(self) -> tuple[None, None]:
    return None, None  # measured around the set-up (`set_up`), on CUDA only


@dataclasses.dataclass(frozen=True)
class Row:
  key: str  # --rows
  label: str
  dtype: str  # compute dtype: 'float32' | 'bfloat16' (--dtype; the MFU's peak)
  make: Callable[[Bench], JaxStep | TorchStep]

  @property
  def is_pytorch(self) -> bool:
    return self.key.startswith('torch')


# In the order they are set up and listed: the issue's comparison (bfloat16)
# first, so that a --setup-budget that runs out skips the least wanted rows.
ROWS = (
    Row('jaxpose-bf16', 'jaxpose bfloat16', 'bfloat16', lambda b: JaxStep(b, 'bfloat16')),
    Row('torch-amp-bf16-cl', 'PyTorch AMP bfloat16, channels_last', 'bfloat16',
        lambda b: TorchStep(b, torch.channels_last, amp=True)),
    Row('jaxpose-f32', 'jaxpose float32', 'float32', lambda b: JaxStep(b, 'float32')),
    Row('torch-eager-cl', 'PyTorch eager float32, channels_last', 'float32',
        lambda b: TorchStep(b, torch.channels_last)),
    Row('torch-eager', 'PyTorch eager float32, NCHW', 'float32',
        lambda b: TorchStep(b, torch.contiguous_format)),
    Row('jaxpose-f32-remat', 'jaxpose float32, remat', 'float32',
        lambda b: JaxStep(b, 'float32', remat=True)),
    Row('torch-compile-cl', 'torch.compile float32, channels_last', 'float32',
        lambda b: TorchStep(b, torch.channels_last, compiled=True)),
)


@dataclasses.dataclass
class Result:
  """One row's measurements; seconds and bytes."""
  row: Row
  unavailable: str = ''  # the reason, if the row could not run
  setup: float = 0.0  # JAX: lower + compile
  warmup: float = 0.0  # the untimed first steps, together (torch.compile compiles here)
  per_step: list[float] = dataclasses.field(default_factory=list)  # mean over --steps, per repeat
  peak_bytes: float | None = None
  temp_bytes: float | None = None
  flops: float | None = None  # XLA's count of this row's own step (JAX)
  device_kind: str = ''
  first_loss: float | None = None


class Deadline:
  """From `seconds` on (None: never), raises TimeoutError every second until cancelled.

  Again and again, because one raised inside a callback (a GC callback, a
  `__del__`) is printed and dropped.
  """

  def __init__(self, seconds: float | None):
    self.armed = seconds is not None
    if self.armed:
      signal.signal(signal.SIGALRM, self._raise)
      signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3), 1.0)

  def _raise(self, signum, frame):
    del signum, frame
    if self.armed:
      raise TimeoutError('set-up ran past --setup-budget')

  def cancel(self) -> None:
    self.armed = False
    signal.setitimer(signal.ITIMER_REAL, 0)


def set_up(row: Row, bench: Bench, seconds: float | None = None
           ) -> tuple[Result, JaxStep | TorchStep | None]:
  """A row's step, set up and warmed up within `seconds`; an error makes the row unavailable.

  The time limit interrupts Python code (torch.compile's), not a call into
  C++ (an XLA compile), which it stops when that returns.
  """
  result = Result(row)
  cuda = bench.torch_device.type == 'cuda' and row.is_pytorch
  deadline = Deadline(seconds)
  try:
    if cuda:
      torch.cuda.synchronize()
      torch.cuda.reset_peak_memory_stats()
      before = torch.cuda.memory_allocated()
    step = row.make(bench)
    start = time.perf_counter()
    step.run(1)
    result.first_loss = step.last_loss()
    step.run(WARMUP_STEPS - 1)
    result.warmup = time.perf_counter() - start
  except Exception as error:  # pylint: disable=broad-except
    deadline.cancel()
    # Whatever stops one row (no C++ compiler, out of memory) must not stop the others.
    result.unavailable = ' '.join(f'{type(error).__name__}: {error}'.split())[:160]
    if cuda:
      torch.cuda.empty_cache()
    return result, None
  finally:
    deadline.cancel()
  result.setup, result.flops = step.compile_seconds, step.flops
  result.device_kind = step.device_kind
  result.peak_bytes, result.temp_bytes = step.memory()
  if cuda:
    result.peak_bytes = torch.cuda.max_memory_allocated() - before
  return result, step


def timed(run: Callable[[int], None], steps: int) -> float:
  """Seconds per step over `steps` consecutive steps."""
  start = time.perf_counter()
  run(steps)
  return (time.perf_counter() - start) / steps


def summarise(results: list[Result], batch_size: int) -> list[dict]:
  """Results -> one dict per row of the table's figures (None where unknown)."""
  ran = [r for r in results if not r.unavailable]
  counted = {r.row.key: r.flops for r in ran if r.flops and r.row.key != 'jaxpose-f32-remat'}
  model_flops = counted.get('jaxpose-f32', counted.get('jaxpose-bf16'))
  torch_rows = [r for r in ran if r.row.is_pytorch]
  reference = min(torch_rows, key=lambda r: statistics.median(r.per_step), default=None)
  rows = []
  for r in results:
    row = {'key': r.row.key, 'implementation': r.row.label, 'dtype': r.row.dtype,
           'unavailable': r.unavailable or None, 'model_gflop': model_flops and model_flops / 1e9}
    if not r.unavailable:
      median = statistics.median(r.per_step)
      row.update(
          images_per_s=batch_size / median, images_per_s_min=batch_size / max(r.per_step),
          images_per_s_max=batch_size / min(r.per_step), ms_per_step=1e3 * median,
          vs_torch_median=reference and statistics.median(reference.per_step) / median,
          vs_torch_best=reference and min(reference.per_step) / min(r.per_step),
          tflops=model_flops and model_flops / median / 1e12,
          mfu=model_flops and mfu.mfu(model_flops, median, r.device_kind, r.row.dtype),
          peak_mib=r.peak_bytes and r.peak_bytes / MIB,
          temp_mib=r.temp_bytes and r.temp_bytes / MIB,
          step_gflop=r.flops and r.flops / 1e9, compile_s=r.setup, warmup_s=r.warmup,
          first_loss=r.first_loss, device_kind=r.device_kind, reference=reference.row.key
          if reference else None)
    rows.append(row)
  return rows


def _figure(value, spec: str, missing: str = 'n/a') -> str:
  return missing if value is None else format(value, spec)


def print_table(args: argparse.Namespace, rows: list[dict]) -> None:
  """The rows as a markdown table; unavailable rows say why."""
  gflop = rows[0]['model_gflop']
  print(f'\n{args.model}, batch {args.batch_size}, {args.input_size}x{args.input_size}; '
        f'{args.repeats} repeats x {args.steps} steps; median (min-max); model FLOPs '
        f'{_figure(gflop, ".1f")} GFLOP per step (XLA, jaxpose step without remat); '
        'vs: the fastest PyTorch row\'s time / this row\'s, median / best; peak MiB: jaxpose '
        'arguments + outputs + temporaries - aliased (temporaries), PyTorch CUDA max allocated')
  print('| implementation | images/s | vs PyTorch | TFLOP/s | MFU | peak MiB (temp) '
        '| compile s | warm-up s |')
  print('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |')
  for row in rows:
    if row['unavailable']:
      print(f'| {row["implementation"]} | unavailable: {row["unavailable"]} '
            '| - | - | - | - | - | - |')
      continue
    images = (f'{row["images_per_s"]:.2f} ({row["images_per_s_min"]:.2f}-'
              f'{row["images_per_s_max"]:.2f})')
    speed = (f'{row["vs_torch_median"]:.2f}x / {row["vs_torch_best"]:.2f}x'
             if row['vs_torch_median'] else 'n/a')
    memory = _figure(row['peak_mib'], '.0f')
    if row['temp_mib'] is not None:
      memory += f' ({row["temp_mib"]:.0f})'
    mfu_percent = row['mfu'] and 100 * row['mfu']
    print(f'| {row["implementation"]} | {images} | {speed} | {_figure(row["tflops"], ".3f")} '
          f'| {_figure(mfu_percent, ".1f")}{"" if mfu_percent is None else " %"} | {memory} '
          f'| {row["compile_s"]:.1f} | {row["warmup_s"]:.1f} |')


def print_devices(torch_device: torch.device) -> None:
  device = jax.devices()[0]
  print(f'machine: {platform.machine()} {platform.processor() or ""}, {os.cpu_count()} CPU '
        f'cores; python {platform.python_version()}')
  print(f'jax {jax.__version__}: backend {jax.default_backend()}, device {device.device_kind!r}, '
        f'{len(jax.devices())} device(s); default matmul precision '
        f'{getattr(jax.config, "jax_default_matmul_precision", "?")}; '
        f'XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  name = (torch.cuda.get_device_name(torch_device) if torch_device.type == 'cuda'
          else f'{torch.get_num_threads()} threads, mkldnn {torch.backends.mkldnn.is_available()}')
  print(f'torch {torch.__version__}: device {torch_device} ({name}); cudnn benchmark '
        f'{torch.backends.cudnn.benchmark}, cudnn TF32 '
        f'{getattr(torch.backends.cudnn, "allow_tf32", "?")}')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', choices=sorted(NETWORKS), default='hg2',
                      help='hg2 / hg8: hourglass with 2 / 8 stacks; lwop: Lightweight OpenPose')
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--input-size', type=int, default=None,
                      help='square input side (default: 256 for the hourglass, 368 for lwop)')
  parser.add_argument('--steps', type=int, default=10, help='timed steps per repeat')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--rows', nargs='+', choices=[r.key for r in ROWS],
                      default=[r.key for r in ROWS])
  parser.add_argument('--dtype', nargs='+', choices=('float32', 'bfloat16'),
                      default=['float32', 'bfloat16'], help='keep the rows of these dtypes')
  parser.add_argument('--num-features', type=int, default=128,
                      help='hourglass bottleneck width; it carries twice as many channels')
  parser.add_argument('--hourglass-depth', type=int, default=4,
                      help='hourglass recursion depth (bearpaw: 4); smaller compiles faster')
  parser.add_argument('--setup-budget', type=float, default=0.0,
                      help='seconds after which rows not yet set up are skipped and a '
                      'PyTorch set-up under way is stopped (0: none)')
  parser.add_argument('--json', default='', help='also write the rows to this JSON file')
  parser.add_argument('--torch-threads', type=int, default=os.cpu_count(),
                      help='PyTorch CPU threads (on a machine shared with other jobs, 1 '
                      'avoids its threads waiting for each other)')
  parser.add_argument('--quick-compile', action='store_true',
                      help='XLA backend optimisation level 0: compiles in half the time, for '
                      'smoke checks (the step then runs slower than XLA can)')
  args = parser.parse_args(argv)
  network = NETWORKS[args.model]
  args.input_size = args.input_size or network.default_input_size
  description = network.model_config(args).to_dict()
  try:
    approaches.for_description(description).check_input_size(
        (args.input_size, args.input_size), '--input-size')
  except ValueError as error:
    parser.error(str(error))
  if min(args.batch_size, args.steps, args.repeats) < 1:
    parser.error('--batch-size, --steps and --repeats: expected positive numbers')
  if not any(r.key in args.rows and r.dtype in args.dtype for r in ROWS):
    parser.error(f'--rows {" ".join(args.rows)} and --dtype {" ".join(args.dtype)}: no row '
                 'is both')
  return args


def main(argv: list[str] | None = None) -> list[dict]:
  """Runs the benchmark, prints the table and returns its rows (`summarise`)."""
  started = time.perf_counter()
  args = parse_args(argv)
  torch_device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  if torch_device.type == 'cpu':
    torch.set_num_threads(args.torch_threads)
  else:
    torch.backends.cudnn.benchmark = True  # fixed shapes: as PyTorch users train; XLA autotunes too
  print_devices(torch_device)
  network = NETWORKS[args.model]
  bench = Bench(args, network, network.batch(args.input_size, args.batch_size,
                                             np.random.default_rng(0)), torch_device)

  results, steps = [], {}
  for row in ROWS:
    if row.key not in args.rows or row.dtype not in args.dtype:
      continue
    seconds = args.setup_budget - (time.perf_counter() - started) if args.setup_budget else None
    if seconds is not None and seconds <= 0:
      results.append(Result(row, unavailable=f'skipped: --setup-budget {args.setup_budget:g} s '
                            'spent'))
      continue
    # Only PyTorch's set-up is interrupted at the budget (torch.compile's
    # Inductor build is Python): a JAX set-up stopped after its XLA compile
    # returned once left the process to crash at exit.
    result, step = set_up(row, bench, seconds if row.is_pytorch else None)
    results.append(result)
    if step is not None:
      steps[row.key] = step
      print(f'{row.key}: set up, {result.setup:.1f} + {result.warmup:.1f} s', flush=True)
    else:
      print(f'{row.key}: unavailable: {result.unavailable}', flush=True)
  # Same weights and batch: the first step's float32 losses agree to rounding,
  # which shows that every row times the same computation.
  print(f'loss at the first step: { {r.row.key: r.first_loss for r in results} }')

  for _ in range(args.repeats):
    for result in results:
      if result.row.key in steps:
        result.per_step.append(timed(steps[result.row.key].run, args.steps))
  rows = summarise(results, args.batch_size)
  print_table(args, rows)
  if args.json:
    with open(args.json, 'w') as file:
      json.dump({'args': vars(args), 'rows': rows}, file, indent=1)
  return rows


if __name__ == '__main__':
  main()
