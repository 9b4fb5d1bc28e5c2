"""Person boxes for top-down inference: OpenCV's HOG detector, or around bottom-up people.

Boxes are [P, 4] (x, y, w, h) image pixels, as COCO's `bbox`, with scores [P].

- `DetectionsFile` (`jaxpose.data.detections`): a COCO results-format
  detections file.
- `HogPeopleDetector`: OpenCV's built-in HOG + linear SVM pedestrian model
  (`cv2.HOGDescriptor_getDefaultPeopleDetector`, Dalal and Triggs), which
  needs no download. It finds upright, whole people at least 64x128 pixels;
  its boxes are looser than a modern detector's and it misses sitting or
  partial people, so it is a default for demos, not for evaluation.
  OpenCV 5 moved HOG out of the main `cv2` module (to opencv_contrib); with
  such a build the detector refuses to start, with a message saying what to
  do instead.
- `boxes_around_people`: the box around each bottom-up person's keypoints,
  enlarged, to re-estimate the pose top-down.
"""

import cv2
import numpy as np

from jaxpose.data.detections import empty_boxes
from jaxpose.tracking import tracker

# HOG's detection window is 64x128; frames are shrunk to at most this width
# first, which keeps the detector near real time on HD video (people smaller
# than 128 / scale pixels are missed either way).
HOG_MAX_WIDTH = 640
HOG_WIN_STRIDE = (8, 8)
HOG_PADDING = (8, 8)
HOG_SCALE = 1.05


class HogPeopleDetector:
  """OpenCV's default HOG people detector: RGB image -> (boxes [P, 4], scores [P])."""

  def __init__(self, max_width: int = HOG_MAX_WIDTH, score_threshold: float = 0.0):
    if not hasattr(cv2, 'HOGDescriptor'):
      raise ValueError(f'OpenCV {cv2.__version__} has no HOGDescriptor (OpenCV 5 moved it to '
                       'opencv_contrib): pass person boxes with --detections FILE, or install '
                       'opencv-python-headless<5 for the HOG people detector')
    self.max_width = max_width
    self.score_threshold = score_threshold
    self._hog = cv2.HOGDescriptor()
    self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

  def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RGB image [H, W, 3] uint8 -> (boxes [P, 4] (x, y, w, h) image pixels, SVM scores [P])."""
    image = np.asarray(image)
    factor = min(1.0, self.max_width / image.shape[1])
    small = image if factor == 1.0 else cv2.resize(
        image, (round(image.shape[1] * factor), round(image.shape[0] * factor)),
        interpolation=cv2.INTER_AREA)
    # HOG keeps, at each pixel, the gradient of the channel where it is
    # largest, so RGB gives the same descriptors as the BGR cv2 reads.
    rects, weights = self._hog.detectMultiScale(small, winStride=HOG_WIN_STRIDE,
                                                padding=HOG_PADDING, scale=HOG_SCALE)
    if not len(rects):
      return empty_boxes()
    boxes = np.asarray(rects, np.float32).reshape(-1, 4) / factor
    scores = np.asarray(weights, np.float32).reshape(-1)
    keep = scores >= self.score_threshold
    return boxes[keep], scores[keep]


def boxes_around_people(keypoints: np.ndarray, scores: np.ndarray, padding: float = 1.0,
                        score_threshold: float = tracker.DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
  """Keypoints [P, J, 2], scores [P, J] -> boxes [P, 4] (x, y, w, h) around the scored keypoints.

  Each box is the tight box of the keypoints scored above `score_threshold`,
  scaled by `padding` about its centre (`crop_people` adds its own margin on
  top). People with fewer than two such keypoints are dropped, so the
  result can have fewer rows; see `keep` of `people_with_boxes`.
  """
  return people_with_boxes(keypoints, scores, padding, score_threshold)[0]


def people_with_boxes(keypoints: np.ndarray, scores: np.ndarray, padding: float = 1.0,
                      score_threshold: float = tracker.DEFAULT_SCORE_THRESHOLD
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Keypoints [P, J, 2], scores [P, J] -> (boxes [Q, 4], keep [P] bool) for people with >= 2 keypoints."""
  keypoints = np.asarray(keypoints, np.float64)
  scores = np.asarray(scores, np.float64)
  boxes = tracker.boxes_from_keypoints(keypoints, scores, score_threshold)
  keep = (scores > score_threshold).sum(-1) >= 2
  boxes = boxes[keep]
  centre = boxes[:, :2] + boxes[:, 2:] / 2
  size = boxes[:, 2:] * padding
  return np.concatenate([centre - size / 2, size], -1).astype(np.float32), keep
