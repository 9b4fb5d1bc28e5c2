"""Benchmark: depthwise 3x3 and 1x1 convs on the CPU, in XLA's fast forms against its convs and PyTorch.

XLA:CPU runs a grouped conv with one group per channel slowly, and a 1x1
conv at less than half the rate of the same matrix product. So on the CPU
backend `jaxpose.models.layers.DepthwiseConv3x3` computes a depthwise conv as
nine shifted multiply-adds and `layers.PointwiseConv` a 1x1 conv as one
matrix product (unless traced inside `layers.portable_convs()`, as ONNX
export is). This prints, for every depthwise conv of Lightweight OpenPose at
a 256x456 input (batch 1) and for the 1x1 conv after each, the jitted
forward time both ways beside PyTorch's `nn.Conv2d` on the same tensor; then
whole models' forward passes (eval mode), JAX in those forms and as lax convs
(`portable_convs`) and PyTorch eager running the
upstream architecture on the same weights (`tests/torch_openpose.py`,
`tests/torch_hourglass.py`): Lightweight OpenPose at 256x456 and the
2-stack hourglass at 256x256, batch 1. Best of --repeats calls after a
warm-up, all on this machine in one run, PyTorch on all its threads.

Usage: python scripts/bench_depthwise.py [--repeats 20]
"""

import argparse
import contextlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxpose import models
from jaxpose.deploy import convert
from jaxpose.models import layers, openpose

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import torch_hourglass  # pylint: disable=g-import-not-at-top,wrong-import-position
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


def depthwise_shapes() -> list[tuple[int, int, int, int, int, int]]:
  """(height, width, channels, stride, dilation, features after its 1x1) at each depthwise conv."""
  height, width, channels = HEIGHT // 2, WIDTH // 2, openpose.STEM_FEATURES
  shapes = []
  for features, stride, dilation in openpose.BACKBONE_BLOCKS:
    shapes.append((height, width, channels, stride, dilation, features))
    height, width, channels = -(-height // stride), -(-width // stride), features
  shapes += [(height, width, 128, 1, 1, 128)] * 3  # the CPM's three, at num_channels
  return shapes


def _jax_milliseconds(layer, variables: dict, images: np.ndarray, repeats: int) -> float:
  apply = jax.jit(layer.apply)
  x = jnp.asarray(images)
  return best_milliseconds(lambda: apply(variables, x).block_until_ready(), repeats)


def _torch_milliseconds(conv: torch.nn.Module, images: np.ndarray, repeats: int) -> float:
  torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    return best_milliseconds(lambda: conv.eval()(torch_images), repeats)


def layer_tables(repeats: int) -> tuple[list[tuple], list[tuple]]:
  """Rows (label, fast form ms, lax conv ms, PyTorch ms) of the depthwise convs, then of the 1x1 convs."""
  depthwise, pointwise = [], []
  rng = np.random.default_rng(0)
  for height, width, channels, stride, dilation, features in depthwise_shapes():
    images = rng.normal(size=(1, height, width, channels)).astype(np.float32)
    variables = {'params': {'kernel': jnp.asarray(
        rng.normal(size=(3, 3, 1, channels)).astype(np.float32))}}
    timings = [_jax_milliseconds(
        layers.DepthwiseConv3x3(stride, dilation, use_bias=False, by_shifts=by_shifts),
        variables, images, repeats) for by_shifts in (True, False)]
    timings.append(_torch_milliseconds(torch.nn.Conv2d(
        channels, channels, 3, stride, dilation, dilation, groups=channels, bias=False),
        images, repeats))
    depthwise.append((f'{height}x{width}x{channels} s{stride} d{dilation}', *timings))
    # The 1x1 conv that follows, on the depthwise conv's output size.
    height, width = -(-height // stride), -(-width // stride)
    images = rng.normal(size=(1, height, width, channels)).astype(np.float32)
    variables = {'params': {'kernel': jnp.asarray(
        rng.normal(size=(1, 1, channels, features)).astype(np.float32))}}
    timings = [_jax_milliseconds(layers.PointwiseConv(features, use_bias=False, by_dot=by_dot),
                                 variables, images, repeats) for by_dot in (True, False)]
    timings.append(_torch_milliseconds(torch.nn.Conv2d(channels, features, 1, bias=False),
                                       images, repeats))
    pointwise.append((f'{height}x{width}x{channels} -> {features}', *timings))
  return depthwise, pointwise


def model_rows(repeats: int) -> list[tuple]:
  """Rows (label, JAX CPU forms ms, JAX lax convs ms, PyTorch ms) of whole forward passes."""
  hourglass = {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1, 'num_joints': 16}
  # (label, model config, PyTorch model, input (batch, height, width)).
  cases = [
      ('Lightweight OpenPose, 1 refinement stage, 256x456, 1 image',
       {'arch': 'lightweight_openpose', 'num_refinement_stages': 1},
       torch_openpose.randomize(
           torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages=1)),
       (1, HEIGHT, WIDTH)),
      ('stacked hourglass, 2 stacks, 256x256, 1 crop', hourglass,
       torch_hourglass.randomize(torch_hourglass.HourglassNet(2, 1, num_classes=16)),
       (1, 256, 256)),
      ('stacked hourglass, 2 stacks, 256x256, 4 crops', hourglass,
       torch_hourglass.randomize(torch_hourglass.HourglassNet(2, 1, num_classes=16)),
       (4, 256, 256)),
  ]
  rows = []
  for label, config, torch_model, (batch, height, width) in cases:
    torch_model = torch_model.eval()
    variables = convert.variables_from_torch(models.create_model(config), torch_model.state_dict(),
                                             (1, height, width, 3))
    # Normalised images, as the models take them (`models.normalize_images` runs before).
    images = np.random.default_rng(1).normal(size=(batch, height, width, 3)).astype(np.float32)
    timings, outputs = {}, {}
    model = models.create_model(config)
    for cpu_forms in (True, False):
      apply = jax.jit(lambda v, x, model=model: model.apply(v, x, train=False)[-1])
      x = jnp.asarray(images)
      # The form is fixed when `apply` is traced, at its first (warm-up) call:
      # a fresh jit per form, called inside the context for the lax convs.
      with contextlib.nullcontext() if cpu_forms else layers.portable_convs():
        timings[cpu_forms] = best_milliseconds(
            lambda apply=apply, x=x: jax.block_until_ready(apply(variables, x)), repeats)
        outputs[cpu_forms] = np.asarray(jax.tree_util.tree_leaves(apply(variables, x))[-1])
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
      timings['torch'] = best_milliseconds(lambda: torch_model(torch_images), repeats)
      expected = torch_model(torch_images)[-1].numpy().transpose(0, 2, 3, 1)
    for ours in outputs.values():  # same function: the timings compare like with like
      np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max())
    rows.append((label, timings[True], timings[False], timings['torch']))
  return rows


def _print_table(title: str, rows: list[tuple]) -> None:
  print(f'| {title} | JAX fast form ms | JAX lax conv ms | PyTorch ms | fast vs lax | '
        'fast vs PyTorch |')
  print('| --- | ---: | ---: | ---: | ---: | ---: |')
  for name, fast, lax_conv, pytorch in rows:
    print(f'| {name} | {fast:.2f} | {lax_conv:.2f} | {pytorch:.2f} | {lax_conv / fast:.1f}x '
          f'| {pytorch / fast:.2f}x |')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=20)
  args = parser.parse_args()
  print(f'{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}; jax '
        f'{jax.__version__} on {jax.default_backend()}, torch {torch.__version__} '
        f'({torch.get_num_threads()} threads); layers at batch 1; best of {args.repeats}')
  depthwise, pointwise = layer_tables(args.repeats)
  for title, rows in (('depthwise 3x3 (input HxWxC), by shifts', depthwise),
                      ('1x1 conv (input HxWxC -> C\'), by dot', pointwise)):
    rows.append((f'all {len(rows)}', *(sum(row[i] for row in rows) for i in (1, 2, 3))))
    _print_table(title, rows)
    print()
  _print_table('whole model, CPU forms / portable_convs', model_rows(args.repeats))


if __name__ == '__main__':
  main()
