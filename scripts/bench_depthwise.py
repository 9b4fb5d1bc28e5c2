"""Benchmark: depthwise 3x3 convs on the CPU, by shifts against XLA's grouped conv and PyTorch.

Lightweight OpenPose's MobileNet backbone and CPM have 14 depthwise 3x3
convs. XLA:CPU runs a grouped conv with one group per channel slowly, so on
the CPU backend `jaxpose.models.layers.DepthwiseConv3x3` computes it as nine
shifted multiply-adds instead. This prints, for every depthwise conv of the
model at a 256x456 input (batch 1), the jitted forward time both ways beside
PyTorch's `nn.Conv2d(groups=C)` on the same tensor, then the whole model's
forward pass (eval mode): JAX by shifts, JAX by grouped convs, and PyTorch
eager running upstream's architecture (`tests/torch_openpose.py`) on the same
weights. Best of --repeats calls after a warm-up, all on this machine in one
run, PyTorch on all its threads.

Usage: python scripts/bench_depthwise.py [--repeats 20]
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxpose import convert, models
from jaxpose.models import layers, openpose

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import torch_openpose  # pylint: disable=g-import-not-at-top,wrong-import-position

HEIGHT, WIDTH = 256, 456


def best_milliseconds(fn, repeats: int) -> float:
  """Best wall time of `fn()` over `repeats` calls, after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return 1e3 * min(times)


def depthwise_shapes() -> list[tuple[int, int, int, int, int]]:
  """(height, width, channels, stride, dilation) at the input of each depthwise conv."""
  height, width, channels = HEIGHT // 2, WIDTH // 2, openpose.STEM_FEATURES
  shapes = []
  for features, stride, dilation in openpose.BACKBONE_BLOCKS:
    shapes.append((height, width, channels, stride, dilation))
    height, width, channels = -(-height // stride), -(-width // stride), features
  shapes += [(height, width, 128, 1, 1)] * 3  # the CPM's three, at num_channels
  return shapes


def layer_table(repeats: int) -> list[tuple]:
  rows = []
  rng = np.random.default_rng(0)
  for height, width, channels, stride, dilation in depthwise_shapes():
    images = rng.normal(size=(1, height, width, channels)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 1, channels)).astype(np.float32)
    variables = {'params': {'kernel': jnp.asarray(kernel)}}
    timings = {}
    for by_shifts in (True, False):
      conv = layers.DepthwiseConv3x3(stride, dilation, use_bias=False, by_shifts=by_shifts)
      apply = jax.jit(conv.apply)
      x = jnp.asarray(images)
      timings[by_shifts] = best_milliseconds(
          lambda apply=apply, x=x: apply(variables, x).block_until_ready(), repeats)
    torch_conv = torch.nn.Conv2d(channels, channels, 3, stride, dilation, dilation,
                                 groups=channels, bias=False).eval()
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
      timings['torch'] = best_milliseconds(lambda: torch_conv(torch_images), repeats)
    rows.append((f'{height}x{width}x{channels} s{stride} d{dilation}', timings[True],
                 timings[False], timings['torch']))
  return rows


def model_row(repeats: int) -> tuple:
  torch_model = torch_openpose.randomize(
      torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages=1)).eval()
  config = {'arch': 'lightweight_openpose', 'num_refinement_stages': 1}
  variables = convert.variables_from_torch(models.create_model(config), torch_model.state_dict(),
                                           (1, HEIGHT, WIDTH, 3))
  images = np.random.default_rng(1).normal(size=(1, HEIGHT, WIDTH, 3)).astype(np.float32)
  timings, outputs = {}, {}
  for by_shifts in (True, False):
    model = models.create_model(config, depthwise_by_shifts=by_shifts)
    apply = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False)[-1][1])
    x = jnp.asarray(images)
    timings[by_shifts] = best_milliseconds(
        lambda apply=apply, x=x: apply(variables, x).block_until_ready(), repeats)
    outputs[by_shifts] = np.asarray(apply(variables, x))
  torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    timings['torch'] = best_milliseconds(lambda: torch_model(torch_images), repeats)
    expected = torch_model(torch_images)[-1].numpy().transpose(0, 2, 3, 1)
  for ours in outputs.values():  # same function: the timings compare like with like
    np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max())
  return ('whole model, 1 refinement stage', timings[True], timings[False], timings['torch'])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args()
  print(f'{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; jax '
        f'{jax.__version__} on {jax.default_backend()}, torch {torch.__version__} '
        f'({torch.get_num_threads()} threads); Lightweight OpenPose at {HEIGHT}x{WIDTH}, batch 1; '
        f'best of {args.repeats}')
  print('| depthwise conv (input HxWxC) | JAX by shifts ms | JAX grouped conv ms | '
        'PyTorch ms | shifts vs grouped | shifts vs PyTorch |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  rows = layer_table(args.repeats)
  totals = tuple(sum(row[i] for row in rows) for i in (1, 2, 3))
  rows.append(('all 14 depthwise convs', *totals))
  rows.append(model_row(args.repeats))
  for name, shifts, grouped, pytorch in rows:
    print(f'| {name} | {shifts:.2f} | {grouped:.2f} | {pytorch:.2f} | {grouped / shifts:.1f}x '
          f'| {pytorch / shifts:.2f}x |')


if __name__ == '__main__':
  main()
