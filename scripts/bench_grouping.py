"""Benchmark: PAF post-processing, `paf.decode` vs upstream's per-peak Python.

The maps are the targets `paf.encode` renders for the people of the bundled
COCO sample (tests/data/coco, 4 images, at their sizes rounded up to the
stride 8), the same maps for both decoders, which upsample them by 4 with
cv2.resize as upstream's demo does. Prints, per frame (the mean over the
images of the best, and of the median, of --repeats runs):

- upstream: Lightweight OpenPose's `extract_keypoints` + `group_keypoints`
  (scripts/upstream_grouping.py, a transcription of its loops);
- jaxpose `paf.decode(upstream_peaks=True)` (upstream's rules: same people,
  same numbers, which the script checks);
- jaxpose `paf.decode`, its default (ties broken, close peaks suppressed by
  value, which decodes every annotated person of the sample);
- the bicubic upsampling alone, which every decoder pays.

Usage: python scripts/bench_grouping.py [--repeats 30]
"""

import argparse
import json
import os
import time

import cv2
import numpy as np

from jaxpose.codecs import paf
import upstream_grouping

COCO_DIR = os.path.join(os.path.dirname(__file__), '..', 'tests', 'data', 'coco')
STRIDE, UPSAMPLE = 8, 4


def coco_maps():
  """[(image name, heatmaps [H, W, 19], pafs [H, W, 38], annotated people)]."""
  with open(os.path.join(COCO_DIR, 'test_coco.json')) as f:
    data = json.load(f)
  frames = []
  for image in data['images']:
    annotations = [a for a in data['annotations'] if a['image_id'] == image['id']]
    width, height = image['width'], image['height']
    keypoints, visible, mask = upstream_grouping.coco_people(annotations,
                                                             image_size=(width, height))
    size = (-(-width // STRIDE) * STRIDE, -(-height // STRIDE) * STRIDE)
    heatmaps, pafs = paf.encode(keypoints, visible, image_size=size, stride=STRIDE,
                                person_mask=mask)
    people = int(((visible > 0).sum(1) >= 3).sum())
    frames.append((image['file_name'], np.asarray(heatmaps), np.asarray(pafs), people))
  return frames


def upsample_only(heatmaps, pafs):
  for maps in (heatmaps, pafs):
    cv2.resize(maps, (0, 0), fx=UPSAMPLE, fy=UPSAMPLE, interpolation=cv2.INTER_CUBIC)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=30)
  args = parser.parse_args()
  frames = coco_maps()
  methods = {
      'upstream extract+group (Python)': upstream_grouping.decode_like_upstream,
      'paf.decode(upstream_peaks=True)':
          lambda h, p: paf.decode(h, p, upstream_peaks=True),
      'jaxpose paf.decode (default)': paf.decode,
      'bicubic upsampling alone': upsample_only,
  }

  print(f'numpy {np.__version__}, opencv {cv2.__version__}, {os.cpu_count()} CPU cores, '
        f'{cv2.getNumThreads()} OpenCV threads; {len(frames)} COCO frames, '
        f'maps {", ".join(f"{h.shape[1]}x{h.shape[0]}" for _, h, _, _ in frames)} '
        f'(x{UPSAMPLE} for decoding)')
  print(f'{"frame":18s} {"annotated":>9s} {"upstream":>9s} {"exact":>7s} {"decode(default)":>16s}')
  for name, heatmaps, pafs, annotated in frames:
    ref_people, ref_scores = upstream_grouping.decode_like_upstream(heatmaps, pafs)
    people, scores = paf.decode(heatmaps, pafs, upstream_peaks=True)
    if len(people) != len(ref_people):
      raise SystemExit(f'{name}: decode finds {len(people)} people, upstream {len(ref_people)}')
    # Not only the count: the same people, keypoints and scores.
    np.testing.assert_array_equal(people, ref_people)
    np.testing.assert_array_equal(scores, ref_scores)
    robust = paf.decode(heatmaps, pafs)[0]
    print(f'{name:18s} {annotated:9d} {len(ref_people):9d} {len(people):7d} {len(robust):16d}')

  # Interleaved, so that a change of load on the machine hits all alike.
  times = {m: np.zeros((args.repeats, len(frames))) for m in methods}
  for method in methods.values():  # warm-up
    for _, heatmaps, pafs, _ in frames:
      method(heatmaps, pafs)
  for r in range(args.repeats):
    for i, (_, heatmaps, pafs, _) in enumerate(frames):
      for label, method in methods.items():
        start = time.perf_counter()
        method(heatmaps, pafs)
        times[label][r, i] = time.perf_counter() - start

  print(f'{"ms per frame":34s} {"best":>7s} {"median":>7s}')
  summary = {}
  for label in methods:
    best = times[label].min(0).mean() * 1e3
    median = np.median(times[label], 0).mean() * 1e3
    summary[label] = best, median
    print(f'{label:34s} {best:7.2f} {median:7.2f}')
  upstream_best, upstream_median = summary['upstream extract+group (Python)']
  best, median = summary['jaxpose paf.decode (default)']
  floor_best, floor_median = summary['bicubic upsampling alone']
  print(f'paf.decode is {upstream_best / best:.1f}x faster than upstream (best), '
        f'{upstream_median / median:.1f}x (median); without the shared upsampling '
        f'{(upstream_best - floor_best) / (best - floor_best):.0f}x (best)')


if __name__ == '__main__':
  main()
