"""jaxpose.inference.detect: person boxes from a detections file and around bottom-up people."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from jaxpose.inference import detect, tracking

DETECTIONS = pathlib.Path(__file__).parent / 'data' / 'coco' / 'test_coco_det_AP_H_56.json'


def test_detections_file_by_image_and_threshold():
  records = json.loads(DETECTIONS.read_text())
  detections = detect.DetectionsFile(str(DETECTIONS), score_threshold=0.5)
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
    detect.DetectionsFile(str(path))
  path.write_text('{not json')
  with pytest.raises(ValueError, match=str(path)):
    detect.DetectionsFile(str(path))
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'none.json')):
    detect.DetectionsFile(str(tmp_path / 'none.json'))


def test_boxes_around_people():
  keypoints = np.array([[[10, 20], [30, 60], [0, 0]],
                        [[5, 5], [0, 0], [0, 0]]], np.float32)
  scores = np.array([[0.9, 0.8, 0.0], [0.9, 0.0, 0.0]])
  boxes, keep = detect.people_with_boxes(keypoints, scores, padding=1.5)
  # Person 0: keypoints (10, 20) and (30, 60): box 20 x 40 centred at (20, 40),
  # times 1.5 -> 30 x 60; person 1 has one keypoint and is dropped.
  np.testing.assert_allclose(boxes, [[5, 10, 30, 60]])
  np.testing.assert_array_equal(keep, [True, False])


def test_hog_detector_finds_a_labelled_person():
  # HOG is a weak detector: on this COCO image it finds the standing person
  # (annotation box 287, 62, 75 x 166) and nobody else; the box must overlap
  # that person's, not merely exist.
  data = pathlib.Path(__file__).parent / 'data' / 'coco'
  image = cv2.imread(str(data / '000000197388.jpg'))
  boxes, scores = detect.HogPeopleDetector()(image[..., ::-1])
  assert boxes.shape == (len(scores), 4) and len(boxes) >= 1
  people = np.array([a['bbox'] for a in json.loads((data / 'test_coco.json').read_text())
                     ['annotations'] if a['image_id'] == 197388])
  assert tracking.box_iou(boxes, people).max() > 0.5


def test_hog_detector_without_hog_says_what_to_do(monkeypatch):
  # OpenCV 5 moved HOG out of cv2 (pyproject pins < 5 for this reason).
  monkeypatch.delattr(cv2, 'HOGDescriptor')
  with pytest.raises(ValueError, match='--detections'):
    detect.HogPeopleDetector()