"""Benchmark: DARK decoding on the CPU, jitted `decode(..., dark_kernel)` vs plain `decode` and mmpose's loop.

Prints, measured in one run on the same heatmaps (batch 32 people x 17 joints,
64x48 maps holding one to three Gaussians of sigma 2 per joint, kernel 11):
- `jaxpose.codecs.heatmap.decode`, jitted, the whole batch at once: argmax
  and quarter-pixel shift;
- the same with `dark_kernel=11`: DARK's blur, log and Newton step;
- mmpose's `MSRAHeatmap(unbiased=True).decode` transcribed in numpy + cv2
  (`tests/mmpose_dark_reference.py`), called per person on [17, 64, 48] maps
  as mmpose calls it.
Each is timed after a warm-up call (which compiles the jitted ones), with
`block_until_ready`; median and best of --repeats runs, ms per batch.

Usage: python scripts/bench_dark.py [--batch 32] [--kernel 11] [--repeats 50]
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

from jaxpose.codecs import heatmap

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import mmpose_dark_reference  # pylint: disable=g-import-not-at-top


def timings(fn, repeats):
  """(median, best) wall time in ms of `repeats` calls, after one warm-up call."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times)), 1e3 * min(times)


def gaussian_maps(rng, n, height, width, joints, sigma=2.):
  """[n, H, W, J] float32: per joint one to three Gaussians at sub-pixel centres."""
  centres = rng.uniform([0, 0], [width, height], (n, joints, 3, 2))
  amplitude = rng.uniform(0.2, 1., (n, joints, 3))
  amplitude[..., 1:] *= rng.random((n, joints, 2)) < 0.5
  x = np.arange(width)[:, None, None, None]
  y = np.arange(height)[:, None, None, None, None]
  d2 = (x - centres[..., 0])**2 + (y - centres[..., 1])**2  # [H, W, n, J, 3]
  maps = (amplitude * np.exp(-d2 / (2 * sigma**2))).sum(-1)
  return np.ascontiguousarray(maps.transpose(2, 0, 1, 3), np.float32)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--joints', type=int, default=17)
  parser.add_argument('--kernel', type=int, default=11)
  parser.add_argument('--repeats', type=int, default=50)
  args = parser.parse_args()
  height, width = 64, 48

  maps = gaussian_maps(np.random.default_rng(0), args.batch, height, width, args.joints)
  device_maps = jax.device_put(maps)
  # mmpose's layout, [K, H, W] per person, prepared outside the timing.
  per_person = [np.ascontiguousarray(m.transpose(2, 0, 1)) for m in maps]

  plain = jax.jit(heatmap.decode)
  dark = jax.jit(heatmap.decode, static_argnames='dark_kernel')

  def reference():
    return [mmpose_dark_reference.decode(m, args.kernel) for m in per_person]

  dark_name = f'DARK decode, kernel {args.kernel} (jit)'
  results = {
      'plain decode (jit)': timings(lambda: plain(device_maps), args.repeats),
      dark_name: timings(lambda: dark(device_maps, dark_kernel=args.kernel), args.repeats),
      'mmpose transcription (numpy + cv2)': timings(reference, args.repeats),
  }
  # The two DARK implementations decode the same points (to rounding).
  ours = np.asarray(dark(device_maps, dark_kernel=args.kernel)[0])
  theirs = np.stack([keypoints[0] for keypoints, _ in reference()])
  print(f'batch {args.batch} x {args.joints} joints, {height}x{width} maps, '
        f'{args.repeats} repeats, {jax.devices()[0].platform}, {os.cpu_count()} CPUs')
  print(f'{"":40s} {"median ms":>10s} {"best ms":>10s}')
  for name, (median, best) in results.items():
    print(f'{name:40s} {median:10.2f} {best:10.2f}')
  plain_ms, dark_ms, mmpose_ms = (median for median, _ in results.values())
  print(f'medians: DARK / plain {dark_ms / plain_ms:.2f}x, mmpose / DARK {mmpose_ms / dark_ms:.1f}x; '
        f'largest difference DARK vs mmpose {np.abs(ours - theirs).max():.1e} px')


if __name__ == '__main__':
  main()
