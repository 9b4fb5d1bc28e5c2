"""COCO-format keypoints of any layout: grain random-access sources in the schema of `jaxpose.data.synthetic`.

Reads a COCO-format keypoint file (COCO's `person_keypoints_*.json`, or the
"COCO Keypoints" export of CVAT or Label Studio) and its image folder. The
keypoint layout is the file's: `read_layout` makes a `skeletons.Skeleton` of
its first category's `keypoints` names and 1-based `skeleton` limbs (the
COCO person category gives `skeletons.COCO` itself). Examples, K keypoints:
  image: uint8 [H, W, 3] RGB, decoded as stored (EXIF orientation ignored, as
    HRNet reads COCO and as the annotations' width and height are given).
  keypoints: float32 [P, K, 2] (x, y) pixels as COCO gives them.
  visible: float32 [P, K], COCO's own flags: 0 = not labelled, 1 = labelled
    but occluded, 2 = visible.
  boxes: float32 [P, 4] COCO `bbox` (x, y, w, h).
  image_id: int, COCO's image id.
  area: float32 [P], COCO's segment area (what OKS is normalised by).
  ignore_mask: uint8 [H, W] (`CocoKeypoints` only), 1 over crowd regions and
    over people annotated with no keypoint, whose bodies would otherwise
    teach a bottom-up network that a person is background (as OpenPose
    training masks them); drawn with pycocotools' masks exactly as
    `COCO.annToMask`.

The people of an example are the non-crowd annotations with at least one
labelled keypoint. `CocoKeypoints` has one example per image that has such a
person (bottom-up); `CocoPersons` one per such person (P = 1, top-down).

Bad input: a missing or unreadable annotation file, one without `images` /
`annotations`, a category without keypoint names or with limbs outside them,
or a malformed annotation (not 3 K keypoint values) raises at construction
naming the file, the field and what was expected, as does a file left with
no labelled person. People with no
labelled keypoint, and images whose file is missing, are dropped at
construction with one warning each (how many, the first ids). An image that
turns out corrupt, cut short (a JPEG without its end marker) or of another
size than its annotations say when it is read raises ValueError naming the
file and image id (grain re-raises it from the worker).
"""

import dataclasses
import json
import os

from absl import logging
import numpy as np
from pycocotools import mask as mask_utils

from jaxpose import skeletons
from jaxpose.data import persons
from jaxpose.data.images import read_image

# How many ids a summary warning lists.
_WARN_IDS = 5

def warn_dropped(what: str, ids: list, source: str) -> None:
  """One warning for all the items dropped for the same reason, naming the first few ids."""
  if ids:
    shown = ', '.join(str(i) for i in ids[:_WARN_IDS])
    more = f' and {len(ids) - _WARN_IDS} more' if len(ids) > _WARN_IDS else ''
    logging.warning('%s: dropped %d %s: %s%s', source, len(ids), what, shown, more)


@dataclasses.dataclass(frozen=True)
class CocoImage:
  """One image's annotations: its people (P) and the segments its ignore mask covers."""
  image_id: int
  path: str
  width: int
  height: int
  keypoints: np.ndarray  # float32 [P, K, 2]
  visible: np.ndarray  # float32 [P, K]
  boxes: np.ndarray  # float32 [P, 4]
  area: np.ndarray  # float32 [P]
  ignored_segments: tuple  # COCO `segmentation` values of crowds and unlabelled people


def load_json(annotation_file: str, required: tuple[str, ...]) -> dict:
  """A JSON object file -> dict; raises naming the file if it is missing, not JSON, or lacks a key."""
  try:
    with open(annotation_file) as f:
      content = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'annotation file {annotation_file} does not exist') from None
  except json.JSONDecodeError as error:
    raise ValueError(f'annotation file {annotation_file} is not valid JSON: {error}') from None
  if not isinstance(content, dict):
    raise ValueError(f'annotation file {annotation_file}: expected a JSON object with keys '
                     f'{list(required)}, got a {type(content).__name__}')
  missing = [key for key in required if key not in content]
  if missing:
    raise ValueError(f'annotation file {annotation_file} has no {missing}: expected a COCO '
                     'person keypoints file (an image_info file lists images only)')
  return content


def image_paths(annotation_file: str, image_dir: str) -> list[tuple[int, str]]:
  """A COCO annotation file's images -> [(image id, path)], in file order (labelled or not)."""
  content = load_json(annotation_file, ('images', 'annotations'))
  return [(int(info['id']), os.path.join(image_dir, info['file_name']))
          for info in content['images']]


def read_layout(annotation_file: str, content: dict | None = None) -> skeletons.Skeleton:
  """A COCO-format keypoint file -> the layout of its first category (`skeletons.from_coco_category`).

  ValueError in one line naming the file and field for a file without a
  category, a category without keypoint names, repeated names, or limbs
  outside 1..K.
  """
  if content is None:
    content = load_json(annotation_file, ('images', 'annotations'))
  categories = content.get('categories')
  if not isinstance(categories, list) or not categories:
    raise ValueError(f'annotation file {annotation_file}: categories: expected a category with '
                     'the "keypoints" names and "skeleton" limbs of the layout (COCO keypoint '
                     f'format), got {categories!r}')
  return skeletons.from_coco_category(categories[0], f'annotation file {annotation_file}')


def _person_arrays(annotation: dict, annotation_file: str, num_keypoints: int
                   ) -> tuple[np.ndarray, ...]:
  """A COCO annotation -> (keypoints [K, 2], visible [K], box [4]); raises naming the id if malformed."""
  try:
    keypoints = np.asarray(annotation.get('keypoints', ()), np.float32)
    box = np.asarray(annotation.get('bbox', ()), np.float32)
  except (TypeError, ValueError):
    keypoints = box = np.zeros(0)
  if keypoints.shape != (3 * num_keypoints,) or box.shape != (4,):
    raise ValueError(f'annotation file {annotation_file}, annotation id {annotation.get("id")}: '
                     f'expected {3 * num_keypoints} keypoint values (x, y, v for each of the '
                     f'{num_keypoints} keypoints of the category) and a bbox of 4, got '
                     f'{keypoints.size} and {box.size}')
  keypoints = keypoints.reshape(num_keypoints, 3)
  return keypoints[:, :2], keypoints[:, 2], box


def _split_people(annotations: list[dict], annotation_file: str, num_keypoints: int
                  ) -> tuple[list[dict], list, list[int]]:
  """An image's annotations -> (labelled people, segments to ignore, ids of unlabelled people)."""
  people, ignored, unlabelled = [], [], []
  for annotation in annotations:
    if annotation.get('iscrowd', 0):
      ignored.append(annotation['segmentation'])
      continue
    keypoints, visible, box = _person_arrays(annotation, annotation_file, num_keypoints)
    if visible.any():
      people.append({'keypoints': keypoints, 'visible': visible, 'boxes': box,
                     'area': annotation.get('area', 0.0)})
    else:
      unlabelled.append(annotation.get('id'))
      if annotation.get('segmentation'):
        ignored.append(annotation['segmentation'])
  return people, ignored, unlabelled


def _image_record(info: dict, people: list[dict], ignored: list, image_dir: str,
                  annotation_file: str) -> CocoImage:
  """An `images` entry and its people -> CocoImage; raises naming the image id if a field is missing."""
  try:
    return CocoImage(
        image_id=int(info['id']), path=os.path.join(image_dir, info['file_name']),
        width=int(info['width']), height=int(info['height']),
        keypoints=np.stack([p['keypoints'] for p in people]),
        visible=np.stack([p['visible'] for p in people]),
        boxes=np.stack([p['boxes'] for p in people]),
        area=np.array([p['area'] for p in people], np.float32),
        ignored_segments=tuple(ignored))
  except KeyError as error:
    raise ValueError(f'annotation file {annotation_file}, image id {info.get("id")}: no '
                     f'{error} field') from None


def load_coco(annotation_file: str, image_dir: str) -> list[CocoImage]:
  """COCO-format keypoints JSON + image folder -> the images that have a labelled person, in file order."""
  content = load_json(annotation_file, ('images', 'annotations'))
  num_keypoints = read_layout(annotation_file, content).num_keypoints
  by_image = {}
  for annotation in content['annotations']:
    by_image.setdefault(annotation.get('image_id'), []).append(annotation)
  known_ids = {info.get('id') for info in content['images']}
  warn_dropped('annotations of images not in `images` (annotation ids)',
               [a.get('id') for i, anns in by_image.items() if i not in known_ids for a in anns],
               annotation_file)

  images, missing_files, unlabelled = [], [], []
  for info in content['images']:
    people, ignored, unlabelled_here = _split_people(by_image.get(info.get('id'), []),
                                                     annotation_file, num_keypoints)
    unlabelled += unlabelled_here
    if not people:
      continue  # no one to learn from: most COCO images have no labelled person
    record = _image_record(info, people, ignored, image_dir, annotation_file)
    if os.path.isfile(record.path):
      images.append(record)
    else:
      missing_files.append(record.image_id)
  warn_dropped('people with no labelled keypoint (annotation ids; masked in ignore_mask)',
               unlabelled, annotation_file)
  warn_dropped(f'images whose file is missing from {image_dir} (image ids)', missing_files,
               annotation_file)
  if not images:
    raise ValueError(f'annotation file {annotation_file}: no image with a labelled person and '
                     f'an image file in {image_dir}')
  return images


def ignore_mask(segments, height: int, width: int) -> np.ndarray:
  """COCO segmentations (polygons or RLE) -> uint8 [H, W], 1 where any of them lies (`COCO.annToMask`)."""
  mask = np.zeros((height, width), np.uint8)
  for segment in segments:
    if isinstance(segment, list):  # polygons: one RLE per polygon, merged
      rle = mask_utils.merge(mask_utils.frPyObjects(segment, height, width))
    elif isinstance(segment.get('counts'), list):  # uncompressed RLE (crowds)
      rle = mask_utils.frPyObjects(segment, height, width)
    else:
      rle = segment
    mask |= mask_utils.decode(rle)
  return mask


def image_example(record: CocoImage, with_ignore_mask: bool = True) -> dict:
  """An image's record -> example dict (module docstring)."""
  image = read_image(record.path, record.image_id)
  if image.shape[:2] != (record.height, record.width):
    raise ValueError(f'image file {record.path} (image id {record.image_id}) is '
                     f'{image.shape[1]}x{image.shape[0]}, but its annotations say '
                     f'{record.width}x{record.height}')
  example = {'image': image, 'keypoints': record.keypoints, 'visible': record.visible,
             'boxes': record.boxes, 'image_id': record.image_id, 'area': record.area}
  if with_ignore_mask:
    example['ignore_mask'] = ignore_mask(record.ignored_segments, record.height, record.width)
  return example


class CocoKeypoints:
  """Grain random-access source of COCO images with their labelled people, one example per image."""

  def __init__(self, annotation_file: str, image_dir: str, with_ignore_mask: bool = True):
    """Reads the annotations and checks that the image files exist; images are read on access.

    Args:
      annotation_file: a COCO `person_keypoints_*.json`.
      image_dir: the folder its `file_name`s are in.
      with_ignore_mask: rasterise `ignore_mask` (bottom-up needs it, top-down
        crops do not, and it costs a pycocotools decode per image).
    """
    self.annotation_file = annotation_file
    self.image_dir = image_dir
    self.with_ignore_mask = with_ignore_mask
    self.records = load_coco(annotation_file, image_dir)

  def __len__(self) -> int:
    return len(self.records)

  def __repr__(self) -> str:
    return (f'CocoKeypoints(annotation_file={self.annotation_file!r}, '
            f'image_dir={self.image_dir!r}, num_images={len(self)})')

  def __getitem__(self, index) -> dict:
    """Index -> example dict (with `ignore_mask` unless disabled)."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f'index {index} out of range for {self!r}')
    return image_example(self.records[index], with_ignore_mask=self.with_ignore_mask)


class CocoPersons(persons.PersonsOfImages):
  """Grain random-access source with one element per labelled COCO person (P = 1), in file order.

  Element k is the whole image with one person's keypoints, visibility, box
  and area; other people are not listed and there is no `ignore_mask` (a
  top-down crop needs neither).
  """

  def __init__(self, annotation_file: str, image_dir: str):
    """Reads the annotations as `CocoKeypoints` does."""
    images = CocoKeypoints(annotation_file, image_dir, with_ignore_mask=False)
    super().__init__(images, [len(record.visible) for record in images.records])