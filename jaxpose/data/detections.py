"""Person boxes from a COCO results-format detections file (a JSON list of {image_id, category_id, bbox, score}).

Boxes are [P, 4] (x, y, w, h) image pixels, as COCO's `bbox`, with scores [P];
`test_coco_det_AP_H_56.json` is such a file.
"""

import collections
import json
import os

import numpy as np

from jaxpose import skeletons


def empty_boxes() -> tuple[np.ndarray, np.ndarray]:
  return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


class DetectionsFile:
  """Person boxes by image id from a COCO results-format detections file."""

  def __init__(self, path: str, score_threshold: float = 0.0):
    """Reads `path`; FileNotFoundError / ValueError name it and the bad record."""
    self.path = os.fspath(path)
    if not os.path.isfile(self.path):
      raise FileNotFoundError(f'{self.path}: no such detections file')
    try:
      with open(self.path) as f:
        records = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise ValueError(f'{self.path}: not a JSON file ({e})') from None
    if not isinstance(records, list):
      raise ValueError(f'{self.path}: expected a JSON list of detections '
                       '({image_id, bbox, score}), got a ' + type(records).__name__)
    by_image = collections.defaultdict(list)
    for i, record in enumerate(records):
      if not isinstance(record, dict) or not {'image_id', 'bbox', 'score'} <= set(record):
        raise ValueError(f'{self.path}: detection {i} lacks image_id, bbox or score: {record!r}')
      person = skeletons.COCO_PERSON_CATEGORY_ID
      if record.get('category_id', person) != person:
        continue
      if len(record['bbox']) != 4:
        raise ValueError(f'{self.path}: detection {i} (image {record["image_id"]}): bbox '
                         f'{record["bbox"]} is not [x, y, w, h]')
      if record['score'] >= score_threshold:
        by_image[record['image_id']].append((*record['bbox'], record['score']))
    self._by_image = {image_id: np.array(rows, np.float64) for image_id, rows in by_image.items()}

  @property
  def image_ids(self) -> list:
    """Ids of the images with at least one box above the threshold."""
    return sorted(self._by_image)

  def boxes(self, image_id) -> tuple[np.ndarray, np.ndarray]:
    """Image id -> (boxes [P, 4] (x, y, w, h), scores [P]); none for an unknown image."""
    rows = self._by_image.get(image_id)
    if rows is None:
      return empty_boxes()
    return rows[:, :4], rows[:, 4]
