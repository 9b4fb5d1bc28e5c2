"""The quick start: targets on the bundled COCO people round-trip, and a picture is written."""

import cv2
import pytest

from jaxpose import cli, demo


def test_demo_round_trips_targets_and_writes_a_picture(tmp_path):
  figures = demo.run(str(tmp_path))
  assert figures['people'] == 12  # 14 annotations, 2 without keypoints
  # Decoding a Gaussian target recovers the joint to within the rounding to
  # the 4-pixel heatmap grid plus the quarter-pixel shift.
  assert figures['max_error_px'] <= 2 * 2**0.5 + 1
  picture = cv2.imread(str(tmp_path / 'targets.png'))
  assert picture.shape == (6 * 256, 512, 3)


def test_cli_demo_names_a_missing_sample(tmp_path):
  with pytest.raises(SystemExit, match=r'nowhere/test_coco\.json: COCO sample not found'):
    cli.main(['demo', '--out', str(tmp_path), '--data', str(tmp_path / 'nowhere')])
