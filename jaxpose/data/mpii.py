"""MPII Human Pose: grain random-access sources in the schema of `jaxpose.data.synthetic`.

Reads either annotation format, chosen by the file's extension:
- `.mat`: the official `mpii_human_pose_v1_u12_1.mat` (struct `RELEASE`):
  images with `img_train` = 1, `annolist(i).image.name`, and per person
  `annorect(j)`: head box `x1, y1, x2, y2`, `annopoints.point(k)` with `x, y,
  id` (joint 0..15) and `is_visible`, `objpos.x, objpos.y` and `scale`.
  `single_person`, `act` and the test images (no joints) are not read.
- `.json`: the HRNet / SimpleBaseline conversion (`annot/train.json`,
  `valid.json`): a list of people {image, joints [16, 2], joints_vis [16],
  center [2], scale}. It has no head boxes; HRNet and mmpose take them from
  the ground-truth file beside it (`annot/gt_valid.mat`, mmpose's
  `mpii_gt_val.mat`: `headboxes_src` [2, 2, N], `pos_gt_src` [16, 2, N],
  `jnt_missing` [16, N], column n for the JSON's person n), which
  `load_mpii(..., ground_truth_file=...)` reads.

Coordinates: both formats store MATLAB's 1-based pixels (the JSON conversion
kept the .mat's values: HRNet subtracts 1 from joints and centre when it loads
the JSON and adds 1 back to its predictions before comparing them with
`gt_valid.mat`). Here 1 is subtracted from every coordinate (joints, head
boxes, centres), so pixel centres are at integers as in COCO.

Examples:
  image: uint8 [H, W, 3] RGB.
  keypoints: float32 [P, 16, 2] (x, y), MPII joint order (`skeletons.MPII`).
  visible: float32 [P, 16]: 0 = not labelled, 1 = labelled but occluded
    (.mat `is_visible` 0), 2 = visible (.mat `is_visible` 1, or empty, which
    the .mat has for some joints). The JSON keeps only whether a joint is
    labelled (`joints_vis`), so its labelled joints are all 2.
  boxes: float32 [P, 4] (x, y, w, h), the square top-down box of HRNet's
    recipe before its 1.25 enlargement: side 200 * scale, centred 15 * scale
    pixels below `center` (HRNet moves the centre down so that feet are not
    cut off). `pipeline.TopDownTransform` enlarges boxes by
    `transforms.BOX_PADDING` = 1.25, which gives HRNet's crop exactly.
  image_id: int, the image file's name as a number (MPII's are all digits).
  head_boxes: float32 [P, 4] (x1, y1, x2, y2), the head rectangle PCKh is
    normalised by; NaN from the JSON, which does not have it.
  center: float32 [P, 2] (x, y), MPII's rough person position (`objpos`).
  scale: float32 [P], MPII's person scale: person height = 200 * scale px (float64
    in `MpiiImage`, as the file gives it).

`MpiiPeople` has one example per image (people grouped by image, in the
order the file first names each image), `MpiiPersons` one per person (P = 1).
People with no labelled joint, or without centre and scale, are dropped with
one warning per reason; images whose file is missing likewise. Unreadable
images at read time raise as in `jaxpose.data.images.read_image`.
"""

import dataclasses
import json
import os

from absl import logging
import numpy as np
import scipy.io

from jaxpose import skeletons
from jaxpose.data import persons
from jaxpose.data.coco import warn_dropped
from jaxpose.data.images import read_image

NUM_JOINTS = skeletons.MPII.num_keypoints
# MPII's person scale is the person's height in units of 200 pixels.
SCALE_UNIT = 200.0
# HRNet moves the box centre this many scale units below `objpos`.
CENTER_SHIFT = 15.0


@dataclasses.dataclass(frozen=True)
class MpiiImage:
  """One image's people (P), 0-based pixel coordinates."""
  image_id: int
  path: str
  keypoints: np.ndarray  # float32 [P, 16, 2]
  visible: np.ndarray  # float32 [P, 16]
  boxes: np.ndarray  # float32 [P, 4]
  head_boxes: np.ndarray  # float32 [P, 4]
  center: np.ndarray  # float32 [P, 2]
  scale: np.ndarray  # float64 [P], as the file gives it (bearpaw's protocol computes with it)


@dataclasses.dataclass
class _Person:
  """One person as the annotation file gives it (1-based coordinates; NaN when absent)."""
  image: str
  label: str  # names the person in warnings
  keypoints: np.ndarray  # [16, 2]
  visible: np.ndarray  # [16]
  head_box: np.ndarray  # [4]
  center: np.ndarray  # [2]
  scale: float


def _entries(value) -> list:
  """A loadmat value that may be one struct, an array of them, or empty -> list of structs."""
  if value is None:
    return []
  if isinstance(value, np.ndarray):
    return list(value.ravel())
  return [value]


def _number(value) -> float:
  """A loadmat scalar (number, numeric string, or empty array) -> float, NaN when empty."""
  if isinstance(value, str):
    return float(value) if value.strip() else np.nan
  value = np.asarray(value, np.float64).ravel()
  return float(value[0]) if value.size else np.nan


def _mat_visibility(point) -> float:
  """A .mat point's `is_visible` (0, 1, '0', '1' or empty) -> 1 (occluded) or 2 (visible or unknown)."""
  flag = _number(getattr(point, 'is_visible', np.nan))
  return 1.0 if flag == 0 else 2.0


def _mat_person(rect, image: str, label: str, annotation_file: str) -> _Person:
  """An `annorect` struct -> _Person."""
  keypoints = np.full((NUM_JOINTS, 2), np.nan)
  visible = np.zeros(NUM_JOINTS)
  for point in _entries(getattr(getattr(rect, 'annopoints', None), 'point', None)):
    joint = int(_number(point.id))
    if not 0 <= joint < NUM_JOINTS:
      raise ValueError(f'annotation file {annotation_file}, {label}: joint id {joint}, '
                       f'expected 0..{NUM_JOINTS - 1}')
    keypoints[joint] = _number(point.x), _number(point.y)
    visible[joint] = _mat_visibility(point)
  head_box = np.array([_number(getattr(rect, key, np.nan)) for key in ('x1', 'y1', 'x2', 'y2')])
  objpos = getattr(rect, 'objpos', None)
  center = np.array([_number(getattr(objpos, 'x', np.nan)), _number(getattr(objpos, 'y', np.nan))])
  return _Person(image, label, keypoints, visible, head_box, center,
                 _number(getattr(rect, 'scale', np.nan)))


def _people_from_mat(annotation_file: str) -> list[_Person]:
  """The official .mat -> the people of its training images."""
  try:
    release = scipy.io.loadmat(annotation_file, squeeze_me=True,
                               struct_as_record=False)['RELEASE']
  except KeyError:
    raise ValueError(f'annotation file {annotation_file} has no RELEASE struct: expected '
                     'mpii_human_pose_v1_u12_1.mat') from None
  fields = getattr(release, '_fieldnames', ())
  if 'annolist' not in fields or 'img_train' not in fields:
    raise ValueError(f'annotation file {annotation_file}: RELEASE has fields {fields}, '
                     'expected annolist and img_train')
  annolist = _entries(release.annolist)
  img_train = np.atleast_1d(release.img_train)
  if len(img_train) != len(annolist):
    raise ValueError(f'annotation file {annotation_file}: {len(annolist)} annolist entries '
                     f'but {len(img_train)} img_train flags')
  people = []
  for i, (entry, train) in enumerate(zip(annolist, img_train)):
    if not train:
      continue  # test images have no joints
    name = str(entry.image.name)
    for j, rect in enumerate(_entries(getattr(entry, 'annorect', None))):
      label = f'{name} annolist({i + 1}).annorect({j + 1})'
      people.append(_mat_person(rect, name, label, annotation_file))
  return people


def _people_from_json(annotation_file: str) -> list[_Person]:
  """HRNet's JSON list of people -> _Person list."""
  try:
    with open(annotation_file) as f:
      entries = json.load(f)
  except json.JSONDecodeError as error:
    raise ValueError(f'annotation file {annotation_file} is not valid JSON: {error}') from None
  if not isinstance(entries, list):
    raise ValueError(f'annotation file {annotation_file}: expected a list of people '
                     f'{{image, joints, joints_vis, center, scale}}, got a '
                     f'{type(entries).__name__}')
  people = []
  for index, entry in enumerate(entries):
    missing = [key for key in ('image', 'joints', 'joints_vis', 'center', 'scale')
               if key not in entry]
    if missing:
      raise ValueError(f'annotation file {annotation_file}, entry {index} '
                       f'({entry.get("image")}): no {missing} (the test split has no joints)')
    keypoints = np.asarray(entry['joints'], np.float64)
    labelled = np.asarray(entry['joints_vis'], np.float64)
    if keypoints.shape != (NUM_JOINTS, 2) or labelled.shape != (NUM_JOINTS,):
      raise ValueError(f'annotation file {annotation_file}, entry {index} ({entry["image"]}): '
                       f'expected joints [{NUM_JOINTS}, 2] and joints_vis [{NUM_JOINTS}], got '
                       f'{list(keypoints.shape)} and {list(labelled.shape)}')
    center = np.asarray(entry['center'], np.float64)
    if center[0] == -1:  # HRNet's mark of an unknown centre
      center = np.full(2, np.nan)
    people.append(_Person(entry['image'], f'{entry["image"]} entry {index}', keypoints,
                          np.where(labelled > 0, 2.0, 0.0), np.full(4, np.nan), center,
                          float(entry['scale'])))
  return people


def _attach_ground_truth(people: list[_Person], ground_truth_file: str,
                         annotation_file: str) -> None:
  """Sets each JSON person's head box from HRNet's gt_valid.mat, whose column n is person n.

  The file's joints must be the JSON's (both are MATLAB's 1-based pixels), so
  that a ground truth of another split or order is refused, not scored.
  """
  if not os.path.isfile(ground_truth_file):
    raise FileNotFoundError(f'ground-truth file {ground_truth_file} does not exist')
  try:
    truth = scipy.io.loadmat(ground_truth_file)
  except (ValueError, TypeError, OSError) as error:
    raise ValueError(f'ground-truth file {ground_truth_file} is not a MATLAB file: {error}') from None
  expected = {'headboxes_src': (2, 2, len(people)), 'pos_gt_src': (NUM_JOINTS, 2, len(people)),
              'jnt_missing': (NUM_JOINTS, len(people))}
  for key, shape in expected.items():
    if key not in truth:
      raise ValueError(f'ground-truth file {ground_truth_file}: no {key!r} (expected HRNet\'s '
                       f'gt_valid.mat with {sorted(expected)})')
    if truth[key].shape != shape:
      raise ValueError(f'ground-truth file {ground_truth_file}: {key} has shape '
                       f'{list(truth[key].shape)}, expected {list(shape)} for the '
                       f'{len(people)} people of {annotation_file}')
  labelled = truth['jnt_missing'] == 0
  for index, person in enumerate(people):
    same_joints = np.array_equal(labelled[:, index], person.visible > 0)
    offset = np.abs(truth['pos_gt_src'][:, :, index] - person.keypoints)[labelled[:, index]]
    if not same_joints or (offset.size and offset.max() > 0.5):
      raise ValueError(f'ground-truth file {ground_truth_file}, person {index}: its joints are '
                       f'not those of {annotation_file} entry {index} ({person.image}); is it '
                       'the ground truth of this split, in this order?')
    (x1, y1), (x2, y2) = truth['headboxes_src'][:, :, index]
    person.head_box = np.array([x1, y1, x2, y2], np.float64)


def top_down_box(center: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """0-based centres [..., 2], scales [...] -> HRNet's square boxes, not enlarged, [..., 4] (x, y, w, h)."""
  side = SCALE_UNIT * np.asarray(scale)
  x = center[..., 0] - side / 2
  y = center[..., 1] + CENTER_SHIFT * scale - side / 2
  return np.stack([x, y, side, side], axis=-1)


def load_mpii(annotation_file: str, image_dir: str,
              ground_truth_file: str | None = None) -> list[MpiiImage]:
  """MPII annotations (.mat or HRNet .json) + image folder -> images with labelled people.

  `ground_truth_file`, with a .json: HRNet's gt_valid.mat for it, which gives
  the people their head boxes (see the module docstring).
  """
  if not os.path.isfile(annotation_file):
    raise FileNotFoundError(f'annotation file {annotation_file} does not exist')
  if annotation_file.endswith('.mat'):
    if ground_truth_file:
      raise ValueError(f'ground-truth file {ground_truth_file}: only HRNet\'s JSON annotations '
                       f'need one; {annotation_file} has its own head boxes')
    people = _people_from_mat(annotation_file)
  elif annotation_file.endswith('.json'):
    people = _people_from_json(annotation_file)
    if ground_truth_file:
      _attach_ground_truth(people, ground_truth_file, annotation_file)
  else:
    raise ValueError(f'annotation file {annotation_file}: expected MPII\'s .mat or an '
                     'HRNet-style .json')

  unlabelled = [p.label for p in people if not p.visible.any()]
  unplaced = [p.label for p in people
              if p.visible.any() and not (np.isfinite(p.center).all() and p.scale > 0)]
  warn_dropped('people with no labelled joint', unlabelled, annotation_file)
  warn_dropped('people without centre and scale (no top-down box)', unplaced, annotation_file)
  by_image = {}
  for person in people:
    if person.visible.any() and np.isfinite(person.center).all() and person.scale > 0:
      by_image.setdefault(person.image, []).append(person)

  images, missing_files = [], []
  for position, (name, group) in enumerate(by_image.items()):
    path = os.path.join(image_dir, name)
    stem = os.path.splitext(os.path.basename(name))[0]
    image_id = int(stem) if stem.isdigit() else position
    if not os.path.isfile(path):
      missing_files.append(f'{name} (id {image_id})')
      continue
    visible = np.stack([p.visible for p in group])
    # Unlabelled joints are (0, 0) as in COCO, whatever the file had (-1 or nothing).
    keypoints = np.where(visible[..., None] > 0, np.stack([p.keypoints for p in group]) - 1, 0)
    center = np.stack([p.center for p in group]) - 1
    scale = np.array([p.scale for p in group])
    images.append(MpiiImage(
        image_id=image_id, path=path, keypoints=keypoints.astype(np.float32),
        visible=visible.astype(np.float32),
        boxes=top_down_box(center, scale).astype(np.float32),
        head_boxes=(np.stack([p.head_box for p in group]) - 1).astype(np.float32),
        center=center.astype(np.float32), scale=scale.astype(np.float64)))
  warn_dropped(f'images whose file is missing from {image_dir}', missing_files, annotation_file)
  if not images:
    raise ValueError(f'annotation file {annotation_file}: no image with a labelled person and '
                     f'an image file in {image_dir}')
  logging.info('%s: %d images, %d people', annotation_file, len(images),
               sum(len(r.visible) for r in images))
  return images


def image_example(record: MpiiImage) -> dict:
  """An image's record -> example dict (module docstring)."""
  return {'image': read_image(record.path, record.image_id),
          'keypoints': record.keypoints, 'visible': record.visible,
          'boxes': record.boxes, 'image_id': record.image_id,
          'head_boxes': record.head_boxes, 'center': record.center,
          'scale': record.scale.astype(np.float32)}


class MpiiPeople:
  """Grain random-access source of MPII images with their labelled people, one example per image."""

  def __init__(self, annotation_file: str, image_dir: str):
    """Reads the annotations and checks that the image files exist; images are read on access.

    Args:
      annotation_file: `mpii_human_pose_v1_u12_1.mat` or an HRNet-style
        `annot/{train,valid}.json`.
      image_dir: the folder of MPII's `images/`.
    """
    self.annotation_file = annotation_file
    self.image_dir = image_dir
    self.records = load_mpii(annotation_file, image_dir)

  def __len__(self) -> int:
    return len(self.records)

  def __repr__(self) -> str:
    return (f'MpiiPeople(annotation_file={self.annotation_file!r}, '
            f'image_dir={self.image_dir!r}, num_images={len(self)})')

  def __getitem__(self, index) -> dict:
    """Index -> example dict."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f'index {index} out of range for {self!r}')
    return image_example(self.records[index])


class MpiiPersons(persons.PersonsOfImages):
  """Grain random-access source with one element per labelled MPII person (P = 1).

  Element k is the whole image with one person's annotations, people in the
  order of `MpiiPeople`'s images.
  """

  def __init__(self, annotation_file: str, image_dir: str):
    """Reads the annotations as `MpiiPeople` does."""
    images = MpiiPeople(annotation_file, image_dir)
    super().__init__(images, [len(record.visible) for record in images.records])