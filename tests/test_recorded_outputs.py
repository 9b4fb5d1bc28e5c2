"""`jaxpose infer` and `jaxpose eval` on the bundled samples give the outputs recorded in tests/data/recorded.

The files were written by this test (`JAXPOSE_RECORD=1 python -m pytest
tests/test_recorded_outputs.py`) at commit 7b31dff, before the package was
reorganised into approaches (issue 12), so that the reorganisation could be
checked to change no result: the same tiny randomly initialised models
(`inference_models`, fan-in scaled weights from a fixed seed) run through the
command line on the COCO sample images, its detections file and the demo
video. Record again only for a change that is meant to move these outputs,
and say why in the commit.
"""

import json
import os
import pathlib

import numpy as np
import pytest

from jaxpose import cli
import inference_models

DATA = pathlib.Path(__file__).parent / 'data'
RECORDED = DATA / 'recorded'
CONFIGS = pathlib.Path(__file__).parent.parent / 'configs'
COCO_DIR = DATA / 'coco'
COCO_JSON = COCO_DIR / 'test_coco.json'
DETECTIONS = COCO_DIR / 'test_coco_det_AP_H_56.json'
DEMO_VIDEO = DATA / 'video' / 'demo.mp4'
RECORD = os.environ.get('JAXPOSE_RECORD') == '1'
# Positions are heatmap argmaxes plus quarter-pixel shifts mapped back to the
# image: any change of a peak moves them by a whole heatmap pixel (>= 1 px).
KEYPOINT_TOLERANCE = 1e-3  # pixels
SCORE_RELATIVE_TOLERANCE = 1e-5


@pytest.fixture(scope='module')
def workdirs():
  # The run's shared models (seed 0): the weights the recordings were made with.
  return inference_models.shared_models()


def _compare_or_record(name: str, found) -> None:
  """Compares `found` (JSON-able) with tests/data/recorded/NAME.json, or writes it when recording."""
  path = RECORDED / f'{name}.json'
  if RECORD:
    RECORDED.mkdir(exist_ok=True)
    path.write_text(json.dumps(found, indent=1, sort_keys=True) + '\n')
    return
  expected = json.loads(path.read_text())
  _assert_close(found, expected, name)


def _assert_close(found, expected, where: str) -> None:
  """Same structure, same ints and strings; floats within the tolerances above."""
  if isinstance(expected, dict):
    assert sorted(found) == sorted(expected), where
    for key in expected:
      _assert_close(found[key], expected[key], f'{where}.{key}')
  elif isinstance(expected, list):
    assert len(found) == len(expected), where
    if expected and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in expected):
      tolerance = KEYPOINT_TOLERANCE if where.endswith('keypoints') or where.endswith('bbox') else 0
      np.testing.assert_allclose(found, expected, rtol=SCORE_RELATIVE_TOLERANCE, atol=tolerance,
                                 err_msg=where)
      assert [isinstance(v, int) for v in found] == [isinstance(v, int) for v in expected], where
    else:
      for i, (f, e) in enumerate(zip(found, expected)):
        _assert_close(f, e, f'{where}[{i}]')
  elif isinstance(expected, float):
    assert found == pytest.approx(expected, rel=SCORE_RELATIVE_TOLERANCE, abs=1e-9), where
  else:
    assert found == expected, where


def _infer(out: pathlib.Path, *flags: str) -> dict:
  cli.run(['infer', *flags, '--out', str(out)])
  return {'results': json.loads((out / 'results.json').read_text()),
          'frames': json.loads((out / 'frames.json').read_text())}


@pytest.mark.slow  # ~35 s: every detection's crop and its mirror; the HOG case below runs by default
def test_infer_topdown_on_the_coco_images_with_detections_and_flip_test(workdirs, tmp_path):
  found = _infer(tmp_path, '--workdir', workdirs['hourglass'], '--images', str(COCO_DIR),
                 '--detections', str(DETECTIONS), '--flip-test')
  assert len(found['frames']) == 4 and len(found['results']) > 10
  _compare_or_record('infer_topdown_coco_detections', found)


def test_infer_topdown_with_the_hog_detector(workdirs, tmp_path):
  found = _infer(tmp_path, '--workdir', workdirs['hourglass'],
                 '--image', str(COCO_DIR / '000000196141.jpg'))
  assert len(found['results']) >= 1
  _compare_or_record('infer_topdown_hog', found)


def test_infer_bottomup_on_the_demo_video(workdirs, tmp_path):
  found = _infer(tmp_path, '--workdir', workdirs['openpose'], '--video', str(DEMO_VIDEO))
  assert len(found['frames']) == 5
  _compare_or_record('infer_bottomup_video', found)


def _eval(config: str, workdir: str, results: pathlib.Path, *flags: str) -> dict:
  metrics = cli.run(['eval', f'--config={CONFIGS / config}', f'--workdir={workdir}',
                      f'--config.data.eval_annotations={COCO_JSON}',
                      f'--config.data.eval_images={COCO_DIR}', f'--results={results}', *flags])
  return {'metrics': metrics, 'results': json.loads(results.read_text())}


@pytest.mark.slow  # 30 s at 256x256; test_evaluation checks a top-down eval with detections against pycocotools by default
def test_eval_topdown_coco_with_detections(workdirs, tmp_path):
  found = _eval('hourglass_coco.py', workdirs['hourglass'], tmp_path / 'results.json',
                '--config.input_size=(256,256)', f'--detections={DETECTIONS}')
  assert len(found['results']) > 10
  _compare_or_record('eval_topdown_coco_detections', found)


def test_eval_bottomup_coco_at_two_scales(workdirs, tmp_path):
  found = _eval('lightweight_openpose_coco.py', workdirs['openpose'], tmp_path / 'results.json',
                '--scales=0.5,1')
  _compare_or_record('eval_bottomup_coco', found)
