"""Benchmark: the crowd curve, bottom-up inference per frame against the number of people.

Retail scenes are crowded, and bottom-up grouping must not become the
bottleneck (Lightweight OpenPose's issues #39 and #66: its Python decoding
was slower than its network). For scenes of --people people, this times
each stage of a Lightweight OpenPose frame separately, in ms per frame:

- network: Lightweight OpenPose as configs/lightweight_openpose_coco.py
  describes it (1 refinement stage, 128 channels) with random fan-in-scaled
  weights (tests/random_weights.py, as tests/test_export.py draws them), on
  one frame at the network input's size: jitted JAX (`JaxPredictor`) and the
  model exported by `jaxpose.deploy.export.export_onnx` on onnxruntime
  (`OnnxPredictor`, its default threads). Its time does not depend on what
  the frame shows: it runs on one frame of noise at that size, --repeats
  times beside each scene's stages, and one figure per backend, over all
  those runs, is shown on every row;
- decoding: the heatmaps' bicubic upsampling (x4, as `paf.decode`) and the
  peak search (`paf_grouping.find_peaks`, `paf.decode`'s default rules);
- grouping: the PAFs' upsampling, limb scoring (`paf_grouping.score_limbs`)
  and assembly into people (`paf_grouping.assemble`, then `paf.decode`'s
  filter), i.e. the rest of `paf.decode`, whose people the split is checked
  to give, number for number;
- tracking: `jaxpose.tracking.Tracker.update` with the decoded people,
  moving a few pixels per frame, over --track-frames frames (the mean of the
  updates after the first, which only starts the tracks);
- the reference, in the same run: upstream Lightweight OpenPose's Python
  post-processing (scripts/upstream_grouping.py, its `extract_keypoints` and
  `group_keypoints` with demo.py's upsampling) on the same maps, which
  covers what decoding + grouping cover.

A random-weights network's maps hold nobody (Flax's initialisation) or
hundreds of noise "people" (fan-in-scaled weights; scripts/bench_video.py),
not the N of the scene: decoding and grouping run on the maps `paf.encode`
renders for the scene's people instead (ground truth: the peaks and fields
a trained network gives for them, sharper). The scenes (`crowd_scene`) are
a retail camera's 640x360 frame letterboxed to the Lightweight OpenPose
demo's height 256 (456x256 network input, maps 57x32; --height 368 for
upstream val.py's) with N standing figures of `jaxpose.data.synthetic` in
rows, deterministic in --seed, drawn until `paf.decode` finds exactly N
people in them. The table gives the people found, and upstream's count
beside it; the script fails if a count other than N is found.

The stages, the reference and the networks run interleaved, --repeats times
per scene, so that a change of load on the machine (a shared one) hits all
alike. Prints two markdown tables, of the median and of the best of those
runs (where other jobs come and go, the best is the least disturbed), draws
the curve of --statistic to --plot (PNG; matplotlib: pip install -e
'.[bench]'), and with --json writes every figure.

Usage: python scripts/bench_crowd.py [--people 1,2,5,10,20,30,40,50] [--repeats 20]
           [--height 256] [--plot docs/crowd_curve.png] [--statistic median|best]
           [--json crowd.json]
"""

import argparse
from collections.abc import Callable, Sequence
import json
import math
import os
import pathlib
import shlex
import sys
import tempfile
import time
from typing import Any, NamedTuple

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import config as config_lib
from jaxpose import models, skeletons
from jaxpose.codecs import paf, paf_grouping
from jaxpose.data import synthetic
from jaxpose.deploy import export, predictor
from jaxpose.tracking import Tracker

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
import random_weights  # pylint: disable=g-import-not-at-top
import upstream_grouping  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL_CONFIG_FILE = ROOT / 'configs' / 'lightweight_openpose_coco.py'
DEFAULT_PEOPLE = (1, 2, 5, 10, 20, 30, 40, 50)
FRAME_SIZE = (640, 360)  # a retail camera's (width, height)
STRIDE = 8
# paf.decode's defaults, which the split below reproduces.
UPSAMPLE, PEAK_THRESHOLD = 4, 0.1
MIN_KEYPOINTS, MIN_SCORE = 3, 0.2
# Scene layout, in fractions of the camera frame or of a person's height.
_MARGIN = 0.04  # of the frame's height, below the front row's feet and above the back row's heads
_ROW_STEP = 0.6  # rows of feet this far apart: a row's heads overlap the legs of the row behind
_MAX_HEIGHT = 0.85  # of the frame's height: one person alone
_CELL_FILL = 0.8  # of a column's width, a figure's widest extent at most
# People's speed, input pixels per frame (the rms of each person's
# constant velocity): a slow walk at 30 frames/s, for people 50-190 px tall.
_SPEED = 2.0
# Draws allowed per figure and per scene before the scene is given up (see `crowd_scene`).
_MAX_FIGURE_DRAWS = 20
_MAX_SCENE_DRAWS = 10
# `row` keys, in the table's and the JSON's order (ms are per frame).
ROW_KEYS = ('people', 'scene_draws', 'found', 'upstream_found', 'keypoints_per_person',
            'decoding_ms', 'grouping_ms', 'tracking_ms', 'upstream_ms', 'decoding_best_ms',
            'grouping_best_ms', 'tracking_best_ms', 'upstream_best_ms')


class CrowdScene(NamedTuple):
  """N people in a frame, in network-input pixels.

  keypoints: float32 [N, 18, 2] (x, y), OpenPose-18 order (`paf.encode`'s).
  visible: float32 [N, 18], 2 where annotated (every keypoint here).
  velocity: float32 [N, 2], each person's motion, input pixels per frame.
  input_size: (width, height) of the network input, multiples of the stride.
  draws: the scenes drawn until this one, which decodes into its N people.
  """
  keypoints: np.ndarray
  visible: np.ndarray
  velocity: np.ndarray
  input_size: tuple[int, int]
  draws: int = 1


def input_size_for(frame_size: tuple[int, int], height: int) -> tuple[int, int]:
  """A camera frame (width, height) scaled to `height` -> (width, height), the width padded to the stride.

  As upstream's demo letterboxes: 640x360 at height 256 -> 456x256.
  """
  frame_width, frame_height = frame_size
  if height % STRIDE:
    raise ValueError(f'height {height}: expected a multiple of the stride {STRIDE}')
  width = round(frame_width * height / frame_height)
  return -(-width // STRIDE) * STRIDE, height


def _standing_figure(rng: np.random.Generator) -> np.ndarray:
  """A random body with a shopper's pose -> COCO-17 keypoints [17, 2], image axes (y down), unit height.

  `synthetic.random_figure`'s shape, but arms hanging or reaching (not
  raised: a raised arm crosses a neighbour's) and legs nearly straight; the
  figure's widest extent is centred on x = 0 and its lowest point at y = 0.
  """
  figure = synthetic.random_figure(rng)._replace(
      arm=np.radians(rng.uniform(-10, 45, 2)), elbow=np.radians(rng.uniform(-20, 90, 2)),
      leg=np.radians(rng.uniform(-5, 15, 2)), knee=np.radians(rng.uniform(-20, 10, 2)))
  body, _, _ = synthetic.figure_points(figure)
  points = body @ synthetic.body_to_image(1.0, math.radians(rng.uniform(-5, 5))).T
  low, high = points.min(0), points.max(0)
  return points - [(low[0] + high[0]) / 2, high[1]]


def _decodes_alone(keypoints: np.ndarray, visible: np.ndarray,
                   input_size: tuple[int, int]) -> bool:
  """One person's keypoints [18, 2], visible [18] -> whether `paf.decode` finds one person in their maps."""
  heatmaps, pafs = paf.encode(keypoints[None], visible[None], image_size=input_size,
                              stride=STRIDE)
  return len(paf.decode(heatmaps, pafs, stride=STRIDE)[0]) == 1


def _draw_crowd(rng: np.random.Generator, num_people: int, input_size: tuple[int, int],
                frame_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One draw of `crowd_scene`'s people -> (keypoints [N, 18, 2], visible [N, 18], velocity [N, 2])."""
  frame_width, frame_height = frame_size
  scale = input_size[1] / frame_height  # camera pixels -> network input pixels
  rows = max(1, round(math.sqrt(num_people / 2.5)))
  columns = -(-num_people // rows)
  # Every other row is shifted by half a column, as people in a crowd stand
  # between those in front: in line, a neck and the hip of the person in
  # front of it score as well as the person's own torso.
  column_width = frame_width / (columns + (0.5 if rows > 1 else 0))
  margin = _MARGIN * frame_height
  tallest = min(_MAX_HEIGHT * frame_height,
                (frame_height - 2 * margin) / (1 + _ROW_STEP * (rows - 1)))
  feet = frame_height - margin - (rows - 1 - np.arange(rows)) * _ROW_STEP * tallest
  cells = np.sort(rng.choice(rows * columns, num_people, replace=False))
  keypoints = np.zeros((num_people, paf.NUM_KEYPOINTS, 2), np.float32)
  visible = np.full((num_people, paf.NUM_KEYPOINTS), 2, np.float32)
  for person, cell in enumerate(cells):
    row, column = divmod(int(cell), columns)
    x = (column + 0.5 + 0.5 * (row % 2) + rng.uniform(-0.1, 0.1)) * column_width
    for _ in range(_MAX_FIGURE_DRAWS):
      figure = _standing_figure(rng)
      person_height = min(tallest * rng.uniform(0.85, 1.0),
                          _CELL_FILL * column_width / np.ptp(figure[:, 0]))
      coco = (figure * person_height + [x, feet[row]]) * scale
      openpose, _ = skeletons.openpose_from_coco(coco, np.ones(len(coco)))
      if _decodes_alone(openpose.astype(np.float32), visible[person], input_size):
        keypoints[person] = openpose
        break
    else:
      raise ValueError(f'crowd_scene: {num_people} people are too small to decode in a '
                       f'{frame_width}x{frame_height} frame at height {input_size[1]}')
  velocity = rng.normal(0, _SPEED / math.sqrt(2), (num_people, 2)).astype(np.float32)
  return keypoints, visible, velocity


def crowd_scene(num_people: int, *, height: int = 256,
                frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> CrowdScene:
  """N standing people in a retail camera's frame, letterboxed to the network's `height`.

  The frame has rows of columns, about 2.5 columns per row (1 row up to 3
  people, 4 rows for 40 to 50), every other row shifted by half a column;
  the people stand in N of the cells, drawn at random, feet on the row's
  line, rows 0.6 of a person's height apart (nearer rows lower, their heads
  over the legs of the row behind). People are as tall as the rows allow
  (at most 0.85 of the frame, 0.85-1x that at random) and at most 0.8 of a
  column wide: on the network input at height 256, the keypoints of each of
  50 people span ~48 px from the eyes to the ankles, of 1 person ~190.

  The scene must decode into exactly N people (`paf.decode` on `scene_maps`),
  else the grouping timed would not be that of N people. Two things redraw:
  - a figure that does not decode into one person even alone (about 1 in
    20: upstream's PAF rendering, `paf.encode`, gives a short limb lying
    just above a cell row's boundary one row of field only, which the 10
    samples of limb scoring then half miss), at most 20 times;
  - a scene where a person splits in two (about 1 draw in 5 of 40 or 50
    people: a neck and a neighbour's hip or shoulder score as well as the
    person's own limb, the crowd failure of PAF grouping), at most 10 times;
    `CrowdScene.draws` says how many it took.

  Returns:
    The scene; a pure function of (num_people, height, frame_size, seed).

  Raises:
    ValueError: num_people < 1, or too many to draw a scene that decodes.
  """
  if num_people < 1:
    raise ValueError(f'crowd_scene: expected at least one person, got {num_people}')
  input_size = input_size_for(frame_size, height)
  for draw in range(_MAX_SCENE_DRAWS):
    rng = np.random.default_rng([seed, num_people, draw])
    scene = CrowdScene(*_draw_crowd(rng, num_people, input_size, frame_size), input_size,
                       draws=draw + 1)
    if len(paf.decode(*scene_maps(scene), stride=STRIDE)[0]) == num_people:
      return scene
  raise ValueError(f'crowd_scene: no draw of {num_people} people in {_MAX_SCENE_DRAWS} '
                   'decodes into as many people')


def scene_maps(scene: CrowdScene) -> tuple[np.ndarray, np.ndarray]:
  """Scene -> `paf.encode`'s (heatmaps [H/8, W/8, 19], pafs [H/8, W/8, 38]), numpy float32."""
  heatmaps, pafs = paf.encode(scene.keypoints, scene.visible, image_size=scene.input_size,
                              stride=STRIDE)
  return np.asarray(heatmaps), np.asarray(pafs)


def _upsampled(maps: np.ndarray) -> np.ndarray:
  """[h, w, C] -> [4h, 4w, C], bicubic (cv2), as `paf.decode` and upstream's demo."""
  maps = np.ascontiguousarray(maps, np.float32)
  return cv2.resize(maps, (0, 0), fx=UPSAMPLE, fy=UPSAMPLE,
                    interpolation=cv2.INTER_CUBIC).reshape(
                        maps.shape[0] * UPSAMPLE, maps.shape[1] * UPSAMPLE, -1)


def decoding(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Heatmaps [h, w, 19] -> peaks (x, y, type, value [M]), upsampled pixels: `paf.decode`'s first half."""
  return paf_grouping.find_peaks(_upsampled(heatmaps[..., :paf.NUM_KEYPOINTS]),
                                 PEAK_THRESHOLD, upstream=False)


def grouping(peaks: tuple[np.ndarray, ...], pafs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """`decoding`'s peaks and pafs [h, w, 38] -> (people [P, 18, 3], scores [P]): `paf.decode`'s second half.

  Limb scoring, assembly and the filter of people with fewer than 3
  keypoints or a mean score under 0.2, as `paf.decode` with its defaults.
  """
  x, y, kind, value = peaks
  limb, a, b, score = paf_grouping.score_limbs(x, y, kind, _upsampled(pafs))
  found = [(ids, s) for ids, s, count in paf_grouping.assemble(limb, a, b, score, value)
           if count >= MIN_KEYPOINTS and s / count >= MIN_SCORE]
  people = np.zeros((len(found), paf.NUM_KEYPOINTS, 3), np.float32)
  people[..., :2] = -1
  if found:
    ids = np.array([ids for ids, _ in found])
    present = ids >= 0
    peak = ids[present]
    people[present] = np.stack([x[peak] * STRIDE / UPSAMPLE, y[peak] * STRIDE / UPSAMPLE,
                                value[peak]], -1)
  return people, np.array([s for _, s in found], np.float32)


def moving_people(people: np.ndarray, velocity: np.ndarray, num_frames: int) -> list[np.ndarray]:
  """People [P, 18, 3] and velocities [P, 2] (px per frame) -> [num_frames] people, keypoints found moved."""
  present = people[..., 2:] > 0
  frames = []
  for t in range(num_frames):
    moved = people.copy()
    moved[..., :2] = np.where(present, people[..., :2] + t * velocity[:, None, :],
                              people[..., :2])
    frames.append(moved)
  return frames


def tracking(frames: Sequence[np.ndarray]) -> tuple[float, np.ndarray, np.ndarray]:
  """Frames of people [P, 18, 3] -> (mean seconds per update after the first, first ids [P], last ids [P]).

  A fresh tracker with the OpenPose-18 sigmas, updated once per frame, as
  `jaxpose infer` tracks bottom-up people (boxes around the keypoints).
  """
  tracker = Tracker(skeletons.OPENPOSE.sigmas)
  first_ids = tracker.update(frames[0][..., :2], frames[0][..., 2])
  start = time.perf_counter()
  for people in frames[1:]:
    ids = tracker.update(people[..., :2], people[..., 2])
  seconds = (time.perf_counter() - start) / (len(frames) - 1)
  return seconds, first_ids, ids


def _summary(seconds: Sequence[float]) -> tuple[float, float]:
  """Run times (s) -> (median, best) ms."""
  return float(np.median(seconds)) * 1e3, float(np.min(seconds)) * 1e3


def row(scene: CrowdScene, repeats: int, track_frames: int = 10,
        networks: dict[str, Callable[[], float]] | None = None) -> dict[str, Any]:
  """One scene -> its row: people found, ms per frame of each post-processing stage and of upstream's.

  Checks that the decoding + grouping split gives `paf.decode`'s people
  and that tracking keeps every id; the count of people found is the
  caller's to check (`found` against `people`). `networks` (name -> a run
  returning its seconds, `network_runs`) are run in the same interleaved
  loop, so that they meet the same load; their seconds are under
  'network_seconds' ({name: [repeats]}), the row's other keys `ROW_KEYS`.
  """
  if repeats < 1 or track_frames < 2:
    raise ValueError(f'row: expected repeats >= 1 and track_frames >= 2, got {repeats}, '
                     f'{track_frames}')
  heatmaps, pafs = scene_maps(scene)
  peaks = decoding(heatmaps)
  people, scores = grouping(peaks, pafs)
  expected_people, expected_scores = paf.decode(heatmaps, pafs, stride=STRIDE)
  np.testing.assert_array_equal(people, expected_people)
  np.testing.assert_array_equal(scores, expected_scores)
  upstream_people, _ = upstream_grouping.decode_like_upstream(heatmaps, pafs, stride=STRIDE,
                                                              upsample=UPSAMPLE)
  # Decoded people come in upstream's order, not the scene's; any of the
  # scene's velocities tracks, so decoded person i takes the i-th.
  velocity = scene.velocity[np.arange(len(people)) % len(scene.velocity)]
  frames = moving_people(people, velocity, track_frames)
  _, first_ids, last_ids = tracking(frames)
  if not np.array_equal(first_ids, last_ids):
    raise AssertionError(f'{len(scene.keypoints)} people: tracking lost ids, '
                         f'{first_ids.tolist()} -> {last_ids.tolist()}')

  stages: dict[str, Callable[[], float]] = {
      'decoding': lambda: _timed(decoding, heatmaps),
      'grouping': lambda: _timed(grouping, peaks, pafs),
      'tracking': lambda: tracking(frames)[0],
      'upstream': lambda: _timed(upstream_grouping.decode_like_upstream, heatmaps, pafs,
                                 STRIDE, UPSAMPLE),
  }
  networks = networks or {}
  times = {stage: [] for stage in [*stages, *networks]}
  for _ in range(repeats):  # interleaved: a change of load hits every stage alike
    for stage, run in [*stages.items(), *networks.items()]:
      times[stage].append(run())
  result = {'people': len(scene.keypoints), 'scene_draws': scene.draws, 'found': len(people),
            'upstream_found': len(upstream_people),
            'keypoints_per_person': float((people[..., 2] > 0).sum(-1).mean()) if len(people)
                                    else 0.0}
  for stage in stages:
    result[f'{stage}_ms'], result[f'{stage}_best_ms'] = _summary(times[stage])
  result = {key: result[key] for key in ROW_KEYS}
  if networks:
    result['network_seconds'] = {name: times[name] for name in networks}
  return result


def _timed(fn: Callable[..., Any], *args) -> float:
  """Seconds one call of fn(*args) takes."""
  start = time.perf_counter()
  fn(*args)
  return time.perf_counter() - start


def network_model() -> dict[str, Any]:
  """configs/lightweight_openpose_coco.py's model description, as a plain dict."""
  return dict(config_lib.load_config_file(str(MODEL_CONFIG_FILE)).model)


def network_runs(input_size: tuple[int, int], folder: pathlib.Path,
                 seed: int = 0) -> dict[str, Callable[[], float]]:
  """Lightweight OpenPose on one frame [1, H, W, 3] -> {'jax': a run returning its seconds, 'onnx': ...}.

  Random fan-in-scaled weights (`random_weights.random_variables`, O(1)
  activations as trained weights give); the ONNX file is written to `folder`
  (kept while the runs are) without export's comparison with JAX, which
  only costs time here. Each backend is warmed up before it is returned.
  """
  config = network_model()
  width, height = input_size
  variables = random_weights.random_variables(
      models.create_model(config), jnp.zeros((1, height, width, 3)), seed=seed, train=False)
  onnx_path = export.export_onnx(variables, config, str(folder / 'lightweight_openpose.onnx'),
                                 input_size=input_size, check=False)
  backends = {'jax': predictor.JaxPredictor.from_variables(variables, config,
                                                            whole_images=True),
              'onnx': predictor.OnnxPredictor(onnx_path, whole_images=True)}
  frame = np.random.default_rng(seed).integers(0, 256, (1, height, width, 3), np.uint8)
  # The first call compiles (JAX) or allocates (onnxruntime); a few more
  # settle the thread pools.
  for network in backends.values():
    for _ in range(5):
      network(frame)
  # Predictors return numpy arrays: when the call returns, the work is done.
  return {name: (lambda network=network: _timed(network, frame))
          for name, network in backends.items()}


STATISTICS = ('median', 'best')


def stage_ms(result: dict[str, Any], stage: str, statistic: str = 'median') -> float:
  """A row's ms per frame of 'decoding', 'grouping', 'tracking' or 'upstream', median or best."""
  return result[f'{stage}_ms' if statistic == 'median' else f'{stage}_best_ms']


def frame_total(result: dict[str, Any], network_ms: float, statistic: str = 'median') -> float:
  """A row and a network's ms -> ms per frame of the whole: network, decoding, grouping, tracking."""
  return network_ms + sum(stage_ms(result, stage, statistic)
                          for stage in ('decoding', 'grouping', 'tracking'))


def markdown_table(rows: Sequence[dict[str, Any]], network: dict[str, tuple[float, float]],
                   statistic: str = 'median') -> str:
  """Rows and network (median, best) ms -> the markdown table of that statistic, ms per frame."""
  jax_ms, onnx_ms = (network[name][STATISTICS.index(statistic)] for name in ('jax', 'onnx'))
  lines = ['| people | found (upstream) | network JAX | network ONNX | decoding | grouping | '
           'tracking | decoding + grouping | upstream Python (reference) | speed-up vs upstream | '
           'frame, JAX | frame, ONNX |',
           '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
  for result in rows:
    decoding_ms, grouping_ms, tracking_ms, upstream_ms = (
        stage_ms(result, stage, statistic)
        for stage in ('decoding', 'grouping', 'tracking', 'upstream'))
    post = decoding_ms + grouping_ms
    lines.append(
        f'| {result["people"]} | {result["found"]} ({result["upstream_found"]}) | '
        f'{jax_ms:.1f} | {onnx_ms:.1f} | {decoding_ms:.2f} | {grouping_ms:.2f} | '
        f'{tracking_ms:.2f} | {post:.2f} | {upstream_ms:.2f} | {upstream_ms / post:.1f}x | '
        f'{frame_total(result, jax_ms, statistic):.1f} | '
        f'{frame_total(result, onnx_ms, statistic):.1f} |')
  return '\n'.join(lines)


def _pyplot():
  """matplotlib.pyplot on the file-only Agg backend, or SystemExit saying how to install it."""
  try:
    import matplotlib  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit("bench_crowd.py: the plot needs matplotlib: pip install -e '.[bench]' "
                     "(or --plot '' to skip the plot)") from None
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def plot_curve(rows: Sequence[dict[str, Any]], network: dict[str, tuple[float, float]],
               path: str | os.PathLike, title: str = '', statistic: str = 'median') -> None:
  """Draws ms per frame against people (log scale: the stages span 3 decades) to the PNG `path`."""
  plt = _pyplot()
  people = [r['people'] for r in rows]
  figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=100)
  which = STATISTICS.index(statistic)
  axes.axhline(network['jax'][which], color='tab:blue', linewidth=2, label='network, JAX (jit)')
  axes.axhline(network['onnx'][which], color='tab:cyan', linewidth=2,
               label='network, onnxruntime')
  for stage, label, color in (('decoding', 'decoding (upsampling, peaks)', 'tab:green'),
                              ('grouping', 'grouping (limbs, people)', 'tab:red'),
                              ('tracking', 'tracking', 'tab:purple')):
    axes.plot(people, [stage_ms(r, stage, statistic) for r in rows], marker='o',
              markersize=4, color=color, label=label)
  axes.plot(people, [stage_ms(r, 'decoding', statistic) + stage_ms(r, 'grouping', statistic)
                     for r in rows], marker='.', color='black', linewidth=1,
            label='decoding + grouping')
  axes.plot(people, [stage_ms(r, 'upstream', statistic) for r in rows], linestyle='--',
            marker='.', color='tab:orange', label="upstream's Python (reference)")
  axes.set_yscale('log')
  axes.set_xlabel('people in the frame')
  axes.set_ylabel(f'ms per frame ({statistic})')
  axes.set_title(title, fontsize=9)
  axes.grid(True, which='both', alpha=0.3)
  # Below the axes: inside, it would hide the network's lines at the top.
  axes.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.13), ncol=3)
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.savefig(path)
  plt.close(figure)


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo, as lscpu shows it), or the platform's machine name."""
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  import platform  # pylint: disable=g-import-not-at-top
  return platform.machine()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--people', default=','.join(map(str, DEFAULT_PEOPLE)),
                      help='comma-separated people per scene (default %(default)s)')
  parser.add_argument('--repeats', type=int, default=20,
                      help='timed runs of each stage per scene, and of each network')
  parser.add_argument('--track-frames', type=int, default=10,
                      help='frames the tracker is updated with per run')
  parser.add_argument('--height', type=int, default=256,
                      help='network input height: 256 (upstream demo) or 368 (upstream val)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--plot', default='docs/crowd_curve.png',
                      help="PNG of the curve ('' for none)")
  parser.add_argument('--statistic', choices=STATISTICS, default='median',
                      help="the plot's: the median of the runs, or the best (on a machine "
                           'shared with other jobs, the least disturbed)')
  parser.add_argument('--json', help='also write every figure to this JSON file')
  args = parser.parse_args(argv)
  try:
    args.people = [int(n) for n in args.people.split(',')]
  except ValueError:
    parser.error(f'--people: expected comma-separated integers, got {args.people!r}')
  if min(args.people) < 1 or args.repeats < 1 or args.track_frames < 2:
    parser.error('expected --people >= 1, --repeats >= 1 and --track-frames >= 2')
  if args.height % STRIDE:
    parser.error(f'--height: expected a multiple of {STRIDE}, got {args.height}')
  return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
  args = parse_args(argv)
  if args.plot:
    _pyplot()  # before minutes of timing: say now if matplotlib is missing
  input_size = input_size_for(FRAME_SIZE, args.height)
  load_at_start = os.getloadavg()[0]
  machine = f'{cpu_model()}, {os.cpu_count()} CPU cores'
  header = (f'{FRAME_SIZE[0]}x{FRAME_SIZE[1]} frames letterboxed to {input_size[0]}x'
            f'{input_size[1]} (maps {input_size[0] // STRIDE}x{input_size[1] // STRIDE}, x'
            f'{UPSAMPLE} for decoding); {machine}; jax {jax.__version__} on '
            f'{jax.devices()[0].platform}, numpy {np.__version__}, opencv {cv2.__version__}; '
            f'load average {load_at_start:.1f}; {args.repeats} runs of each')
  print(header, flush=True)
  rows, network_seconds = [], {}
  with tempfile.TemporaryDirectory(prefix='bench_crowd_') as scratch:
    networks = network_runs(input_size, pathlib.Path(scratch), args.seed)
    for num_people in args.people:
      scene = crowd_scene(num_people, height=args.height, seed=args.seed)
      result = row(scene, args.repeats, args.track_frames, networks)
      for name, seconds in result.pop('network_seconds').items():
        network_seconds.setdefault(name, []).extend(seconds)
      rows.append(result)
      print(f'{num_people} people (scene draw {scene.draws}): decode finds {result["found"]}, '
            f'upstream {result["upstream_found"]} ({result["keypoints_per_person"]:.1f} '
            'keypoints each)', flush=True)
  # The network's time does not depend on the scene: one figure per backend,
  # over its runs beside every scene.
  network = {name: _summary(seconds) for name, seconds in network_seconds.items()}
  print(f'network, {len(network_seconds["jax"])} runs each: JAX {network["jax"][0]:.1f} ms '
        f'median, {network["jax"][1]:.1f} best; onnxruntime {network["onnx"][0]:.1f} median, '
        f'{network["onnx"][1]:.1f} best')
  wrong = [(r['people'], r['found']) for r in rows if r['found'] != r['people']]
  for statistic in STATISTICS:
    print(f'\n{statistic} of {args.repeats} runs, ms per frame:\n')
    print(markdown_table(rows, network, statistic))
  command = 'python scripts/bench_crowd.py ' + shlex.join(sys.argv[1:] if argv is None else argv)
  print(f'\ncommand: {command.strip()} (load average {os.getloadavg()[0]:.1f} at the end)')
  if args.plot:
    plot_curve(rows, network, args.plot, statistic=args.statistic,
               title=f'Lightweight OpenPose, {input_size[0]}x{input_size[1]}, {machine}, '
                     f'{args.statistic} of {args.repeats}')
    print(f'plot: {args.plot}')
  report = {'command': command.strip(), 'machine': machine, 'jax': jax.__version__,
            'load_average_at_start': load_at_start,
            'frame_size': FRAME_SIZE, 'input_size': input_size, 'repeats': args.repeats,
            'network_ms': {name: {'median': median, 'best': best}
                           for name, (median, best) in network.items()},
            'rows': rows}
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(report, f, indent=1)
  if wrong:
    raise SystemExit(f'decode found the wrong number of people (people, found): {wrong}; '
                     'the grouping times are not those of that many people')
  return report


if __name__ == '__main__':
  main()
