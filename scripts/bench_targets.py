"""Benchmark: Gaussian target encoding, jitted `encode` vs the seed's per-joint loop.

Prints, measured in one run on the same joints (batch 64 x 16 joints,
256x256 -> 64x64, sigma 2 by default):
- the seed's `generate_target`, called per sample as its data loader does;
- `jaxpose.codecs.heatmap.encode`, jitted, the whole batch at once;
- the memory floor: a jitted `jnp.full` of the output's shape and dtype.

Usage: python scripts/bench_targets.py [--batch 64] [--joints 16] [--repeats 50]
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.codecs import heatmap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import seed_reference  # pylint: disable=g-import-not-at-top


def best_time(fn, repeats):
  """Smallest wall time of `repeats` calls, in seconds (after one warm-up)."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times), float(np.median(times))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--joints', type=int, default=16)
  parser.add_argument('--sigma', type=float, default=2.0)
  parser.add_argument('--repeats', type=int, default=50)
  args = parser.parse_args()
  image_size, heatmap_size = (256, 256), (64, 64)
  sigma = int(args.sigma) if args.sigma.is_integer() else args.sigma

  rng = np.random.default_rng(0)
  joints = rng.uniform(-10, 266, (args.batch, args.joints, 2)).astype(np.float32)
  visible = (rng.random((args.batch, args.joints)) > 0.1).astype(np.float32)

  def seed_loop():
    joints3 = np.concatenate([joints, np.zeros_like(joints[..., :1])], -1)
    vis3 = np.repeat(visible[..., None], 3, -1)
    return [seed_reference.generate_target(
        joints3[i], vis3[i], num_joints=args.joints, image_size=image_size,
        heatmap_size=heatmap_size, sigma=sigma) for i in range(args.batch)]

  encode = jax.jit(lambda j, v: heatmap.encode(
      j, v, image_size=image_size, heatmap_size=heatmap_size, sigma=sigma))
  joints_device, visible_device = jnp.asarray(joints), jnp.asarray(visible)
  out_shape = (args.batch, heatmap_size[1], heatmap_size[0], args.joints)
  fill = jax.jit(lambda value: jnp.full(out_shape, value, jnp.float32))
  value = jnp.float32(0.5)

  seed_best, seed_median = best_time(seed_loop, max(3, args.repeats // 10))
  encode_best, encode_median = best_time(
      lambda: encode(joints_device, visible_device), args.repeats)
  fill_best, fill_median = best_time(lambda: fill(value), args.repeats)

  mib = np.prod(out_shape) * 4 / 2**20
  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, '
        f'{os.cpu_count()} CPU cores; output {out_shape} float32 ({mib:.1f} MiB)')
  print(f'{"":28s} {"best ms":>9s} {"median ms":>10s}')
  print(f'{"seed generate_target loop":28s} {seed_best*1e3:9.3f} {seed_median*1e3:10.3f}')
  print(f'{"jaxpose encode (jit)":28s} {encode_best*1e3:9.3f} {encode_median*1e3:10.3f}')
  print(f'{"jnp.full floor (jit)":28s} {fill_best*1e3:9.3f} {fill_median*1e3:10.3f}')
  print(f'encode is {seed_best / encode_best:.1f}x faster than the seed loop, '
        f'{encode_best / fill_best:.2f}x the memory floor (best times)')


if __name__ == '__main__':
  main()
