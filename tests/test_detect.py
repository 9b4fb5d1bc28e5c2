"""jaxpose.inference.detect: person boxes from OpenCV's HOG detector and around bottom-up people."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from jaxpose.inference import detect
from jaxpose import tracking

DETECTIONS = pathlib.Path(__file__).parent / 'data' / 'coco' / 'test_coco_det_AP_H_56.json'


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