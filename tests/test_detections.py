"""jaxpose.data.detections: person boxes by image id from a COCO results-format detections file."""

import json
import pathlib

import numpy as np
import pytest

from jaxpose.data import detections as detections_lib

DETECTIONS = pathlib.Path(__file__).parent / 'data' / 'coco' / 'test_coco_det_AP_H_56.json'


def test_detections_file_by_image_and_threshold():
  records = json.loads(DETECTIONS.read_text())
  detections = detections_lib.DetectionsFile(str(DETECTIONS), score_threshold=0.5)
  for image_id in {r['image_id'] for r in records}:
    kept = [r for r in records if r['image_id'] == image_id and r['score'] >= 0.5]
    boxes, scores = detections.boxes(image_id)
    assert len(boxes) == len(kept)
    np.testing.assert_allclose(boxes, [r['bbox'] for r in kept] or np.zeros((0, 4)), rtol=1e-6)
    np.testing.assert_allclose(scores, [r['score'] for r in kept], rtol=1e-6)
  boxes, scores = detections.boxes(123456789)
  assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_bad_detections_file_names_it(tmp_path):
  path = tmp_path / 'dets.json'
  path.write_text(json.dumps([{'image_id': 1, 'bbox': [0, 0, 1], 'score': 1.0}]))
  with pytest.raises(ValueError, match=f'{path}.*detection 0'):
    detections_lib.DetectionsFile(str(path))
  path.write_text('{not json')
  with pytest.raises(ValueError, match=str(path)):
    detections_lib.DetectionsFile(str(path))
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'none.json')):
    detections_lib.DetectionsFile(str(tmp_path / 'none.json'))
