"""scripts/bench_crowd.py without its network: scenes that decode into their people, rows, table, plot."""

import os
import sys

import numpy as np
import pytest

from jaxpose.codecs import paf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import bench_crowd  # pylint: disable=g-import-not-at-top

STAGE_KEYS = {'decoding_ms', 'grouping_ms', 'tracking_ms', 'upstream_ms', 'decoding_best_ms',
              'grouping_best_ms', 'tracking_best_ms', 'upstream_best_ms'}
NETWORK = {'jax': (40.0, 38.0), 'onnx': (60.0, 55.0)}  # (median, best) ms, made up


@pytest.mark.parametrize('num_people', [3, 20])
def test_a_scene_decodes_into_its_people_and_its_row_times_every_stage(num_people):
  scene = bench_crowd.crowd_scene(num_people)
  assert scene.draws == 1  # only scenes of 40 people or more may need a redraw
  result = bench_crowd.row(scene, repeats=1, track_frames=3)
  # The row's own check: decoding + grouping give paf.decode's people.
  assert result['people'] == num_people
  assert result['found'] == num_people
  assert result['upstream_found'] == num_people  # upstream's rules group them too
  assert set(result) == STAGE_KEYS | {'people', 'scene_draws', 'found', 'upstream_found',
                                      'keypoints_per_person'}
  assert 15 <= result['keypoints_per_person'] <= 18
  assert all(result[key] > 0 for key in STAGE_KEYS)
  assert all(result[f'{stage}_best_ms'] <= result[f'{stage}_ms']
             for stage in ('decoding', 'grouping', 'tracking', 'upstream'))


def test_decoding_then_grouping_is_paf_decode_on_a_crowd():
  heatmaps, pafs = bench_crowd.scene_maps(bench_crowd.crowd_scene(30, seed=3))
  people, scores = bench_crowd.grouping(bench_crowd.decoding(heatmaps), pafs)
  expected_people, expected_scores = paf.decode(heatmaps, pafs)
  assert len(people) == 30
  np.testing.assert_array_equal(people, expected_people)
  np.testing.assert_array_equal(scores, expected_scores)


def test_scenes_are_deterministic_inside_the_frame_and_change_with_the_seed():
  scene = bench_crowd.crowd_scene(10)
  again = bench_crowd.crowd_scene(10)
  other = bench_crowd.crowd_scene(10, seed=1)
  assert scene.input_size == (456, 256)  # 640x360 letterboxed to height 256
  assert scene.keypoints.shape == (10, 18, 2) and scene.velocity.shape == (10, 2)
  np.testing.assert_array_equal(scene.keypoints, again.keypoints)
  assert not np.allclose(scene.keypoints, other.keypoints)
  width, height = scene.input_size
  assert (scene.keypoints >= 0).all()
  assert (scene.keypoints[..., 0] < width).all() and (scene.keypoints[..., 1] < height).all()
  assert bench_crowd.input_size_for((640, 360), 368) == (656, 368)


def test_tracking_keeps_the_ids_of_moving_people():
  people = np.zeros((2, 18, 3), np.float32)
  people[..., 0] = np.linspace(10, 60, 18) + np.array([[0], [200]])
  people[..., 1] = np.linspace(20, 120, 18)
  people[..., 2] = 0.9
  people[0, 5] = (-1, -1, 0)  # a keypoint not found stays where it is
  frames = bench_crowd.moving_people(people, np.array([[3.0, 0.0], [0.0, -2.0]]), 4)
  np.testing.assert_allclose(frames[3][1, 0, :2], people[1, 0, :2] + (0, -6))
  np.testing.assert_array_equal(frames[3][0, 5], (-1, -1, 0))
  seconds, first_ids, last_ids = bench_crowd.tracking(frames)
  assert seconds > 0 and first_ids.tolist() == last_ids.tolist() == [0, 1]


def test_the_table_shows_the_network_on_every_row_and_the_frame_totals():
  rows = [dict.fromkeys(bench_crowd.ROW_KEYS, 0.5) | {
      'people': n, 'found': n, 'upstream_found': n, 'decoding_ms': 1.0, 'grouping_ms': 0.5 * n,
      'tracking_ms': 0.25, 'upstream_ms': 3.0 * n} for n in (2, 40)]
  table = bench_crowd.markdown_table(rows, NETWORK).splitlines()
  assert len(table) == 4 and table[1].startswith('| ---: |')
  assert table[2] == ('| 2 | 2 (2) | 40.0 | 60.0 | 1.00 | 1.00 | 0.25 | 2.00 | 6.00 | '
                      '3.0x | 42.2 | 62.2 |')
  assert table[3].endswith('| 120.00 | 5.7x | 61.2 | 81.2 |')
  # The best: the *_best_ms keys (all 0.5 here) and the networks' best.
  best = bench_crowd.markdown_table(rows, NETWORK, 'best').splitlines()
  assert best[2] == ('| 2 | 2 (2) | 38.0 | 55.0 | 0.50 | 0.50 | 0.50 | 1.00 | 0.50 | 0.5x | '
                     '39.5 | 56.5 |')


def test_the_plot_is_a_png(tmp_path):
  rows = [dict.fromkeys(bench_crowd.ROW_KEYS, 1.0) | {'people': n} for n in (1, 5)]
  path = tmp_path / 'plots' / 'crowd.png'
  bench_crowd.plot_curve(rows, NETWORK, path, statistic='best')
  assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('argv', [['--people', '1,x'], ['--people', '0'], ['--height', '250'],
                                  ['--track-frames', '1']])
def test_bad_arguments_are_refused(argv):
  with pytest.raises(SystemExit):
    bench_crowd.parse_args(argv)
