"""PoseTrack18 annotations: videos of frames of tracked people, read as poseval reads them.

The PoseTrack18 format is COCO-style JSON, one file per video (PoseTrack's
`annotations/val/<video>.json`) or several videos in one file:
  images: [{id, file_name ('images/val/<video>/<frame>.jpg'), is_labeled,
    ignore_regions_x, ignore_regions_y (optional: polygons, one list of x and
    one of y per polygon)}], in frame order.
  annotations: [{image_id, track_id, keypoints [17 x (x, y, v)], bbox_head
    (x, y, w, h; ground truth), bbox, scores ([] or one per keypoint;
    predictions)}].
  categories (optional here): the person category, whose `keypoints` must
    name `KEYPOINT_NAMES` in that order.
The 17 keypoints are in COCO's order with head_bottom and head_top in the
eyes' slots; PoseTrack labels neither ear (they are always (0, 0, 0)).
A keypoint is absent when it is (0, 0, 0), poseval's rule (its `to_old`
conversion drops exactly those); any other keypoint is present, whatever its
visibility flag.

`load_posetrack` reads a file or a folder of them into `PoseTrackVideo`s, the
layout `jaxpose.metrics.posetrack` scores: ground truth and predictions alike
(predictions need no head boxes; ground truth needs no scores). A video is
named after its frames' folder (`012834_mpii_test`), which is also the
per-video file's name. Bad input raises naming the file and the image or
annotation id.
"""

import dataclasses
import os
import pathlib

import numpy as np

from jaxpose.data.coco import load_json

KEYPOINT_NAMES = (
    'nose', 'head_bottom', 'head_top', 'left_ear', 'right_ear', 'left_shoulder',
    'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip',
    'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle')
NUM_KEYPOINTS = len(KEYPOINT_NAMES)


@dataclasses.dataclass(frozen=True)
class PoseTrackFrame:
  """One frame's people (P), in the file's order.

  Attributes:
    file_name: the image's path as the file gives it.
    image_path: `file_name` under the reader's `image_root`.
    image_id: the `images` entry's id.
    is_labeled: the file's `is_labeled` (default: whether it has people).
    keypoints: float64 [P, 17, 3] (x, y, visibility); (0, 0, 0) = absent.
    track_ids: int64 [P], unique within the frame.
    keypoint_scores: float64 [P, 17]; a row of NaN where `scores` is empty.
    head_boxes: float64 [P, 4] (x, y, w, h); NaN where there is no `bbox_head`.
    boxes: float64 [P, 4] (x, y, w, h); NaN where there is no `bbox`.
    ignore_regions: polygons, float64 [N, 2] (x, y) each, whose insides are
      not scored.
  """
  file_name: str
  image_path: str
  image_id: int
  is_labeled: bool
  keypoints: np.ndarray
  track_ids: np.ndarray
  keypoint_scores: np.ndarray
  head_boxes: np.ndarray
  boxes: np.ndarray
  ignore_regions: tuple[np.ndarray, ...] = ()

  def __post_init__(self):
    """Converts the arrays; raises ValueError naming `file_name` unless their shapes agree and ids are unique."""
    fields = {'track_ids': ((), np.int64), 'keypoints': ((NUM_KEYPOINTS, 3), np.float64),
              'keypoint_scores': ((NUM_KEYPOINTS,), np.float64),
              'head_boxes': ((4,), np.float64), 'boxes': ((4,), np.float64)}
    num_people = np.shape(self.track_ids)[0] if np.ndim(self.track_ids) == 1 else -1
    for name, (shape, dtype) in fields.items():
      value = np.asarray(getattr(self, name), dtype)
      if value.shape != (num_people, *shape):
        raise ValueError(f'frame {self.file_name}: `{name}` has shape {value.shape}; expected '
                         f'{("P", *shape)} with P = len(track_ids) people')
      object.__setattr__(self, name, value)
    if len(np.unique(self.track_ids)) != num_people:
      raise ValueError(f'frame {self.file_name}: track ids {sorted(self.track_ids.tolist())} '
                       'repeat; a frame holds each track once')

  @property
  def present(self) -> np.ndarray:
    """bool [P, 17]: the keypoints that are not (0, 0, 0)."""
    return np.any(self.keypoints != 0, axis=-1)


@dataclasses.dataclass(frozen=True)
class PoseTrackVideo:
  """A video's frames in order; `name` pairs ground truth with predictions."""
  name: str
  frames: tuple[PoseTrackFrame, ...]


def _numbers(value, size: int | None, where: str, field: str) -> np.ndarray:
  """A JSON list of `size` numbers (any size if None) -> float64 array; raises naming `where` and `field`."""
  try:
    array = np.asarray(value, np.float64)
  except (TypeError, ValueError):
    array = None
  if array is None or array.ndim != 1 or (size is not None and array.size != size):
    expected = f'a list of {size} numbers' if size is not None else 'a list of numbers'
    raise ValueError(f'{where}: `{field}` is {value!r:.80}; expected {expected}')
  return array


def _track_id(annotation: dict, where: str) -> int:
  track_id = annotation.get('track_id')
  integral = isinstance(track_id, int) or isinstance(track_id, float) and track_id.is_integer()
  if isinstance(track_id, bool) or not integral:
    raise ValueError(f'{where}: `track_id` is {track_id!r}; expected an integer')
  return int(track_id)


def _person(annotation: dict, where: str) -> tuple:
  """An annotation -> (keypoints [17, 3], track id, scores [17], head box [4], box [4])."""
  keypoints = _numbers(annotation.get('keypoints'), 3 * NUM_KEYPOINTS, where, 'keypoints')
  scores = annotation.get('scores') or None  # poseval reads an empty list as "no scores"
  scores = (np.full(NUM_KEYPOINTS, np.nan) if scores is None
            else _numbers(scores, NUM_KEYPOINTS, where, 'scores'))
  boxes = [np.full(4, np.nan) if annotation.get(field) is None
           else _numbers(annotation[field], 4, where, field) for field in ('bbox_head', 'bbox')]
  return (keypoints.reshape(NUM_KEYPOINTS, 3), _track_id(annotation, where), scores, *boxes)


def _ignore_regions(image: dict, where: str) -> tuple[np.ndarray, ...]:
  """An image's `ignore_regions_x` / `_y` -> polygons [N, 2]; raises unless they pair up."""
  xs, ys = image.get('ignore_regions_x') or [], image.get('ignore_regions_y') or []
  if len(xs) != len(ys):
    raise ValueError(f'{where}: {len(xs)} ignore_regions_x polygons but {len(ys)} '
                     'ignore_regions_y; expected one list of x and one of y per polygon')
  polygons = []
  for index, (x, y) in enumerate(zip(xs, ys)):
    x = _numbers(x, None, where, f'ignore_regions_x[{index}]')
    y = _numbers(y, None, where, f'ignore_regions_y[{index}]')
    if x.size != y.size:
      raise ValueError(f'{where}: ignore region {index} has {x.size} x and {y.size} y values')
    polygons.append(np.stack([x, y], axis=-1))
  return tuple(polygons)


def _frame(image: dict, annotations: list[dict], where: str, image_root: str) -> PoseTrackFrame:
  people = [_person(a, f'{where}, annotation id {a.get("id")}') for a in annotations]
  columns = [np.array(column) for column in zip(*people)] or [np.zeros(0)] * 5
  try:
    return PoseTrackFrame(
        file_name=image['file_name'], image_path=os.path.join(image_root, image['file_name']),
        image_id=image['id'], is_labeled=bool(image.get('is_labeled', bool(people))),
        keypoints=columns[0].reshape(-1, NUM_KEYPOINTS, 3), track_ids=columns[1],
        keypoint_scores=columns[2].reshape(-1, NUM_KEYPOINTS),
        head_boxes=columns[3].reshape(-1, 4), boxes=columns[4].reshape(-1, 4),
        ignore_regions=_ignore_regions(image, where))
  except ValueError as error:
    raise ValueError(f'{where}: {error}') from None


def _check_categories(content: dict, source: str) -> None:
  for category in content.get('categories') or []:
    names = tuple(category.get('keypoints', KEYPOINT_NAMES))
    if names != KEYPOINT_NAMES:
      raise ValueError(f'{source}: category {category.get("name")!r} names keypoints '
                       f'{list(names)}; expected PoseTrack18\'s {list(KEYPOINT_NAMES)}')


def _read_file(path: pathlib.Path, image_root: str) -> list[PoseTrackVideo]:
  content = load_json(str(path), ('images', 'annotations'))
  _check_categories(content, str(path))
  images = content['images']
  for index, image in enumerate(images):
    if not (isinstance(image, dict) and 'id' in image and isinstance(image.get('file_name'), str)):
      raise ValueError(f'{path}: images[{index}] has no `id` or no `file_name`; PoseTrack18 '
                       'images need both')
  by_image = {image['id']: [] for image in images}
  for annotation in content['annotations']:
    if annotation.get('image_id') not in by_image:
      raise ValueError(f'{path}: annotation id {annotation.get("id")} has image_id '
                       f'{annotation.get("image_id")!r}, which is not in `images`')
    by_image[annotation['image_id']].append(annotation)
  videos = {}
  for image in images:
    name = pathlib.PurePosixPath(image['file_name']).parent.name or path.stem
    where = f'{path}, image id {image["id"]}'
    videos.setdefault(name, []).append(_frame(image, by_image[image['id']], where, image_root))
  return [PoseTrackVideo(name, tuple(frames)) for name, frames in videos.items()]


def load_posetrack(path: str | os.PathLike, image_root: str = '') -> list[PoseTrackVideo]:
  """A PoseTrack18 annotation file, or a folder of them (read in name order) -> its videos.

  Args:
    path: a `.json` file, or a folder whose `.json` files are read (PoseTrack's
      `annotations/val`).
    image_root: the folder `file_name`s are relative to (PoseTrack's root,
      which holds `images/`); `PoseTrackFrame.image_path` joins the two.

  Returns:
    The videos in the order their first frame appears; raises ValueError if
    two have the same name.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    files = sorted(path.glob('*.json'))
    if not files:
      raise FileNotFoundError(f'{path}: no .json PoseTrack18 annotation files in this folder')
  else:
    files = [path]
  videos = [video for file in files for video in _read_file(file, image_root)]
  names = [video.name for video in videos]
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise ValueError(f'{path}: videos {repeated} appear more than once (their frames are in '
                     'several files or under several names)')
  return videos
