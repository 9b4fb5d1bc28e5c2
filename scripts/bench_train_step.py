"""Benchmark: the jitted jaxpose hourglass train step vs PyTorch eager, images/s on one device.

Both sides train the same network, bearpaw/pytorch-pose's `HourglassNet`
(jaxpose's `StackedHourglass`; `tests/torch_hourglass.py` for PyTorch), on the
same batch with RMSprop (PyTorch's defaults, lr 2.5e-4, the MPII recipe) and
the intermediate-supervision MSE summed over every stack:

- jaxpose: `jaxpose.train.train_step` under `jax.jit` (`parallel='none'`), the
  whole step in one program: uint8 -> float normalisation, the Gaussian
  targets made from joint coordinates on the device, forward, backward, the
  optax update and the step's metrics (loss, PCK);
- PyTorch eager: the images already normalised to float and the target
  heatmaps precomputed (as its data loader would hand them over), so it times
  forward, loss, backward and `optimizer.step()` only. All cores
  (`torch.set_num_threads(os.cpu_count())`), in contiguous (NCHW) and
  channels_last memory formats.

Compilation (JAX) and the first steps (both) are timed apart and excluded;
then every repeat times `--steps` steps of each implementation in turn
(interleaved, so that a load change on a shared machine hits all of them), and
the table gives the median over repeats with the spread (min-max), the speed
relative to the faster PyTorch memory format (median and best repeat) and the
achieved GFLOP/s (XLA's FLOP count of the step over the median time).

Usage: python scripts/bench_train_step.py [--batch-size 8] [--num-stacks 2]
  [--num-features 128] [--input-size 256] [--steps 10] [--repeats 3]
Smoke check: --num-features 32 --input-size 64 --steps 2 --repeats 1
"""

import argparse
import dataclasses
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
import torch
from torch import nn

from jaxpose import config as config_lib
from jaxpose import approaches, convert, parallel, train
from jaxpose.codecs import heatmap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import torch_hourglass  # pylint: disable=g-import-not-at-top

NUM_JOINTS = 16  # MPII
LEARNING_RATE = 2.5e-4  # Newell et al. / bearpaw's MPII recipe
SIGMA = 1.0  # heatmap pixels, the same recipe
WARMUP_STEPS = 2  # untimed steps after compilation: allocation, oneDNN primitive set-up
JAX_NAME = 'jaxpose train_step (jax.jit)'
TORCH_MEMORY_FORMATS = {'PyTorch eager, contiguous': torch.contiguous_format,
                        'PyTorch eager, channels_last': torch.channels_last}


@dataclasses.dataclass
class Timing:
  """One implementation's measurements, in seconds."""
  name: str
  setup: float  # JAX: lower + compile; PyTorch: 0 (eager)
  warmup: float  # the untimed first steps, together
  per_step: list[float] = dataclasses.field(default_factory=list)  # mean over --steps, per repeat


def jax_config(args: argparse.Namespace):
  """The trainer's config for the benchmarked step: one device, RMSprop, the args' model."""
  config = config_lib.default_config()
  config.model = config_lib.hourglass_model(num_stacks=args.num_stacks, num_blocks=1,
                                            num_joints=NUM_JOINTS,
                                            num_features=args.num_features)
  config.parallel = 'none'
  config.optimizer = 'rmsprop'
  config.learning_rate = LEARNING_RATE
  config.batch_size = args.batch_size
  config.input_size = (args.input_size, args.input_size)
  config.sigma = SIGMA
  return config


def make_batch(args: argparse.Namespace, seed: int = 0) -> dict[str, np.ndarray]:
  """A random pipeline batch: uint8 'image' [B, H, W, 3], 'joints' [B, J, 2], 'visible' [B, J]."""
  rng = np.random.default_rng(seed)
  size, batch = args.input_size, args.batch_size
  return {
      'image': rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8),
      'joints': rng.uniform(0, size, (batch, NUM_JOINTS, 2)).astype(np.float32),
      'visible': (rng.random((batch, NUM_JOINTS)) > 0.2).astype(np.float32),
  }


def count_parameters(tree) -> int:
  """Number of scalars in a PyTree of arrays."""
  return sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


class JaxStep:
  """The jitted jaxpose train step on one device, its state advanced in place by `run`."""

  def __init__(self, args: argparse.Namespace, batch: dict[str, np.ndarray],
               torch_state_dict: dict[str, torch.Tensor]):
    config = jax_config(args)
    data = parallel.DataParallel(config.parallel)
    model = train.create_model(config, axis_name=data.axis_name)
    learning_rate_fn = train.create_learning_rate_fn(config)
    tx = train.create_optimizer(config, learning_rate_fn)
    host_state = train.create_train_state(config, train.create_model(config), tx)
    # PyTorch's initial weights, so that both sides take the same steps and
    # their losses after the run can be compared.
    variables = convert.variables_from_torch(
        train.create_model(config), torch_state_dict,
        input_shape=(1, args.input_size, args.input_size, 3))
    host_state = host_state.replace(params=variables['params'],
                                    batch_stats=variables['batch_stats'],
                                    opt_state=tx.init(variables['params']))
    self.num_parameters = count_parameters(host_state.params)
    step = data.compile(functools.partial(
        train.train_step, approach=approaches.for_config(config), model=model, teacher=None,
        tx=tx,
        learning_rate_fn=learning_rate_fn, config=config, axis_name=data.axis_name))
    self.state = data.replicate(host_state)
    self.batch = data.shard_batch(batch)
    start = time.perf_counter()
    self._compiled = step.lower(self.state, self.batch, None).compile()
    self.compile_seconds = time.perf_counter() - start
    # XLA's count, 2 per multiply-add; PyTorch runs the same convolutions.
    self.flops = float(self._compiled.cost_analysis().get('flops', 0.0))
    self.metrics = None

  def run(self, steps: int) -> None:
    """`steps` train steps on the same batch, waiting for the last to finish."""
    for _ in range(steps):
      self.state, self.metrics = self._compiled(self.state, self.batch, None)
    jax.block_until_ready((self.state, self.metrics))

  def last_loss(self) -> float:
    return float(self.metrics['loss'])


def torch_model(args: argparse.Namespace) -> nn.Module:
  """bearpaw's HourglassNet (tests/torch_hourglass.py) at the args' width, one block per residual."""
  torch.manual_seed(0)  # every call, the same initial weights
  return torch_hourglass.HourglassNet(args.num_stacks, 1, NUM_JOINTS, num_feats=args.num_features)


class TorchStep:
  """A PyTorch eager train step of bearpaw's architecture, in one memory format."""

  def __init__(self, args: argparse.Namespace, batch: dict[str, np.ndarray],
               memory_format: torch.memory_format):
    self.model = torch_model(args).train().to(memory_format=memory_format)
    self.num_parameters = sum(p.numel() for p in self.model.parameters())
    self.compile_seconds = 0.0  # eager: nothing to compile
    self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=LEARNING_RATE)
    self.images, self.target, self.weight = torch_inputs(args, batch)
    self.images = self.images.contiguous(memory_format=memory_format)
    self.loss = None

  def run(self, steps: int) -> None:
    """`steps` train steps on the same batch (eager: done when this returns)."""
    for _ in range(steps):
      self.optimizer.zero_grad(set_to_none=True)
      outputs = self.model(self.images)
      self.loss = sum(torch_heatmap_mse(o, self.target, self.weight) for o in outputs)
      self.loss.backward()
      self.optimizer.step()

  def last_loss(self) -> float:
    return float(self.loss.detach())


def torch_heatmap_mse(predicted: torch.Tensor, target: torch.Tensor,
                      weight: torch.Tensor) -> torch.Tensor:
  """Predicted, target [B, J, H, W], weight [B, J] -> `jaxpose.losses.heatmap_mse`."""
  return 0.5 * torch.mean(torch.square((predicted - target) * weight[:, :, None, None]))


def torch_inputs(args: argparse.Namespace, batch: dict[str, np.ndarray]):
  """Pipeline batch -> (normalised images [B, 3, H, W], targets [B, J, H/4, W/4], weights [B, J]).

  Made outside the timed step: the targets with the same `heatmap.encode`
  that the JAX step runs inside itself.
  """
  size = args.input_size
  target, weight = heatmap.encode(batch['joints'], batch['visible'], image_size=(size, size),
                                  heatmap_size=(size // 4, size // 4), sigma=SIGMA)
  mean = np.asarray([0.485, 0.456, 0.406], np.float32)
  std = np.asarray([0.229, 0.224, 0.225], np.float32)
  images = (batch['image'].astype(np.float32) / 255.0 - mean) / std
  return (torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))),
          torch.from_numpy(np.ascontiguousarray(np.asarray(target).transpose(0, 3, 1, 2))),
          torch.from_numpy(np.array(weight)))


def timed(run: Callable[[int], None], steps: int) -> float:
  """Seconds per step over `steps` consecutive steps."""
  start = time.perf_counter()
  run(steps)
  return (time.perf_counter() - start) / steps


def print_machine() -> None:
  device = jax.devices()[0]
  print(f'machine: {platform.machine()} {platform.processor() or ""}, '
        f'{os.cpu_count()} CPU cores; python {platform.python_version()}')
  print(f'jax {jax.__version__} on {device.platform} ({device.device_kind}), '
        f'{len(jax.devices())} device(s); XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')
  print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
        f'mkldnn {torch.backends.mkldnn.is_available()}')


def print_table(args: argparse.Namespace, timings: list[Timing], reference: str,
                flops: float) -> None:
  """Median images/s and ms/step (min-max over repeats); speed vs the reference, median and best.

  On a shared machine the best repeat is the one least disturbed by other
  processes, so both ratios are given: reference's time / this row's time.
  """
  median = {t.name: statistics.median(t.per_step) for t in timings}
  best = {t.name: min(t.per_step) for t in timings}
  print(f'\nbatch {args.batch_size}, {args.input_size}x{args.input_size}, '
        f'{args.num_stacks} stacks, num_features {args.num_features} '
        f'({2 * args.num_features} channels), {NUM_JOINTS} joints; '
        f'{args.repeats} repeats x {args.steps} steps; median (min-max); '
        f'{flops / 1e9:.1f} GFLOP per step (XLA cost analysis)')
  header = (f'| {"implementation":34s} | {"images/s":>22s} | {"ms/step":>26s} | '
            f'{"vs fastest PyTorch, median / best":>33s} | {"GFLOP/s":>7s} | '
            f'{"compile s":>9s} | {"warm-up s":>9s} |')
  print(header)
  print('|' + '|'.join('-' * (len(c)) for c in header.split('|')[1:-1]) + '|')
  for t in timings:
    rates = sorted(args.batch_size / s for s in t.per_step)
    ms = sorted(1e3 * s for s in t.per_step)
    images = f'{args.batch_size / median[t.name]:.2f} ({rates[0]:.2f}-{rates[-1]:.2f})'
    step_ms = f'{1e3 * median[t.name]:.1f} ({ms[0]:.1f}-{ms[-1]:.1f})'
    ratio = (f'{median[reference] / median[t.name]:.2f}x / '
             f'{best[reference] / best[t.name]:.2f}x')
    compile_s = f'{t.setup:.1f}' if t.setup else '-'
    print(f'| {t.name:34s} | {images:>22s} | {step_ms:>26s} | {ratio:>33s} | '
          f'{flops / 1e9 / median[t.name]:>7.1f} | {compile_s:>9s} | {t.warmup:>9.1f} |')


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch-size', type=int, default=8)
  parser.add_argument('--num-stacks', type=int, default=2)
  parser.add_argument('--num-features', type=int, default=128,
                      help='bottleneck width; the hourglass carries twice as many channels '
                      '(bearpaw: 128, i.e. 256 channels)')
  parser.add_argument('--input-size', type=int, default=256,
                      help='square input side, divisible by 64; heatmaps are a quarter')
  parser.add_argument('--steps', type=int, default=10, help='timed steps per repeat')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  if args.input_size % 64:
    parser.error(f'--input-size: expected a multiple of 64, got {args.input_size}')
  return args


def main():
  args = parse_args()
  torch.set_num_threads(os.cpu_count())
  print_machine()
  batch = make_batch(args)

  steps = {JAX_NAME: JaxStep(args, batch, torch_model(args).state_dict())}
  for name, memory_format in TORCH_MEMORY_FORMATS.items():
    steps[name] = TorchStep(args, batch, memory_format)
  print(f'parameters: { {name: step.num_parameters for name, step in steps.items()} }')

  timings, first_losses = [], {}
  for name, step in steps.items():
    start = time.perf_counter()
    step.run(1)
    first_losses[name] = step.last_loss()
    step.run(WARMUP_STEPS - 1)
    timings.append(Timing(name, step.compile_seconds, time.perf_counter() - start))
  # Same weights, batch and loss: the first step's losses agree to float
  # rounding, which shows that both sides time the same computation. Later
  # ones drift apart: RMSprop's first updates are lr * g / |g| elementwise, so
  # rounding-level differences in near-zero gradients flip whole updates.
  print(f'loss at the first step (same initial weights and batch): {first_losses}')

  for _ in range(args.repeats):
    for timing in timings:
      timing.per_step.append(timed(steps[timing.name].run, args.steps))
  print(f'loss at the last step: { {name: step.last_loss() for name, step in steps.items()} }')
  fastest_torch = min(timings[1:], key=lambda t: min(t.per_step))
  print_table(args, timings, fastest_torch.name, steps[JAX_NAME].flops)


if __name__ == '__main__':
  main()
