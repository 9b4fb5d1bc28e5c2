"""COCO-format keypoint files of other layouts, written from the bundled real samples, and broken ones.

`fourteen_keypoints` rewrites the COCO sample (tests/data/coco) as a
14-keypoint layout named the way CVAT and Label Studio users name points
("Right Shoulder"), with a neck made from the shoulders: the people and
images are real, the layout is not COCO's. `broken` copies a file with one
field spoiled.
"""

import copy
import json
import pathlib

import numpy as np

DATA = pathlib.Path(__file__).resolve().parent / 'data'
COCO_FILE = DATA / 'coco' / 'test_coco.json'
HAND_FILE = DATA / 'onehand10k' / 'test_onehand10k.json'
# (name, COCO keypoint index); the neck is the shoulders' midpoint.
FOURTEEN = (('Head', 0), ('Neck', None), ('Right Shoulder', 6), ('Right Elbow', 8),
            ('Right Wrist', 10), ('Left Shoulder', 5), ('Left Elbow', 7), ('Left Wrist', 9),
            ('Right Hip', 12), ('Right Knee', 14), ('Right Ankle', 16), ('Left Hip', 11),
            ('Left Knee', 13), ('Left Ankle', 15))
# 1-based, as COCO files write them: a tree from the neck.
FOURTEEN_SKELETON = [[1, 2], [2, 3], [3, 4], [4, 5], [2, 6], [6, 7], [7, 8], [2, 9], [9, 10],
                     [10, 11], [2, 12], [12, 13], [13, 14]]


def fourteen_keypoints(path: pathlib.Path) -> pathlib.Path:
  """Writes the COCO sample's people in the 14-keypoint layout to `path` (images stay in tests/data/coco)."""
  content = json.loads(COCO_FILE.read_text())
  for annotation in content['annotations']:
    coco = np.asarray(annotation['keypoints'], np.float64).reshape(17, 3)
    points = []
    for _, index in FOURTEEN:
      if index is None:
        both = coco[5, 2] > 0 and coco[6, 2] > 0
        points.append([*(coco[5, :2] + coco[6, :2]) / 2, min(coco[5, 2], coco[6, 2])] if both
                      else [0.0, 0.0, 0.0])
      else:
        points.append(list(coco[index]))
    annotation['keypoints'] = [float(v) for point in points for v in point]
    annotation['num_keypoints'] = int(sum(point[2] > 0 for point in points))
  content['categories'] = [{'id': 1, 'name': 'shopper', 'supercategory': 'person',
                            'keypoints': [name for name, _ in FOURTEEN],
                            'skeleton': FOURTEEN_SKELETON}]
  path.write_text(json.dumps(content))
  return path


def broken(source: pathlib.Path, path: pathlib.Path, spoil) -> pathlib.Path:
  """Writes `source`'s content to `path` after `spoil(content)` changed it in place."""
  content = copy.deepcopy(json.loads(source.read_text()))
  spoil(content)
  path.write_text(json.dumps(content))
  return path
