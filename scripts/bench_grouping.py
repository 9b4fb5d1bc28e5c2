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
- the bicubic upsampling alone, which every decoder pays;
- CMU OpenPose's decoding as its PyTorch port's body.py does it, on the same
  maps brought to the image's size (x8, as body.py does): the port's Python
  (scripts/upstream_body_py.py) against `paf_body_py.decode` (the same
  people, bit for bit, which the script checks).

Usage: python scripts/bench_grouping.py [--repeats 30]
"""

import argparse
import json
import os
import time

import cv2
import numpy as np

from jaxpose.codecs import paf, paf_body_py
import upstream_body_py
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


def at_image_size(maps):
  """Maps [h, w, C] -> [8h, 8w, C] float64, upsampled as body.py does (its crop is none here)."""
  up = cv2.resize(maps, (0, 0), fx=STRIDE, fy=STRIDE, interpolation=cv2.INTER_CUBIC)
  return up.reshape(up.shape[0], up.shape[1], -1).astype(np.float64)


def port_decode(heatmaps, pafs):
  return upstream_body_py.people(*upstream_body_py.decode(heatmaps, pafs))


def time_methods(methods, frames, repeats):
  """{label: fn(heatmaps, pafs)}, frames of (heatmaps, pafs) -> {label: (best, median) ms per frame}."""
  # Interleaved, so that a change of load on the machine hits all alike.
  times = {m: np.zeros((repeats, len(frames))) for m in methods}
  for method in methods.values():  # warm-up
    for heatmaps, pafs in frames:
      method(heatmaps, pafs)
  for r in range(repeats):
    for i, (heatmaps, pafs) in enumerate(frames):
      for label, method in methods.items():
        start = time.perf_counter()
        method(heatmaps, pafs)
        times[label][r, i] = time.perf_counter() - start
  summary = {}
  for label in methods:
    best = times[label].min(0).mean() * 1e3
    median = np.median(times[label], 0).mean() * 1e3
    summary[label] = best, median
    print(f'{label:34s} {best:7.2f} {median:7.2f}')
  return summary


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

  print(f'{"ms per frame":34s} {"best":>7s} {"median":>7s}')
  summary = time_methods(methods, [(h, p) for _, h, p, _ in frames], args.repeats)
  upstream_best, upstream_median = summary['upstream extract+group (Python)']
  best, median = summary['jaxpose paf.decode (default)']
  floor_best, floor_median = summary['bicubic upsampling alone']
  print(f'paf.decode is {upstream_best / best:.1f}x faster than upstream (best), '
        f'{upstream_median / median:.1f}x (median); without the shared upsampling '
        f'{(upstream_best - floor_best) / (best - floor_best):.0f}x (best)')

  # CMU OpenPose, the port's body.py, at the images' sizes.
  body_frames = [(at_image_size(h), at_image_size(p)) for _, h, p, _ in frames]
  sizes = ', '.join(f'{h.shape[1]}x{h.shape[0]}' for h, _ in body_frames)
  print(f'\nbody.py decoding at the image size ({sizes})')
  for (name, _, _, annotated), (heatmaps, pafs) in zip(frames, body_frames):
    ref_people, ref_scores = port_decode(heatmaps, pafs)
    people, scores = paf_body_py.decode(heatmaps, pafs)
    np.testing.assert_array_equal(people, ref_people)
    np.testing.assert_array_equal(scores, ref_scores)
    print(f'{name:18s} annotated {annotated:3d}, the port and paf_body_py find {len(people):3d}')
  print(f'{"ms per frame":34s} {"best":>7s} {"median":>7s}')
  body = time_methods({'port body.py decode (Python)': port_decode,
                       'jaxpose paf_body_py.decode': paf_body_py.decode},
                      body_frames, args.repeats)
  (port_best, port_median), (best, median) = body.values()
  print(f'paf_body_py.decode is {port_best / best:.1f}x faster than the port (best), '
        f'{port_median / median:.1f}x (median)')


if __name__ == '__main__':
  main()
