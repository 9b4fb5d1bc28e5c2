"""Keypoint sets as plain data: names, flip pairs, limbs and OKS sigmas.

A `Skeleton` is a frozen description of one keypoint layout. Codecs, losses,
augmentation and drawing take the fields they need from it; nothing here
computes anything.

Sources of the numbers:
- COCO-17: the person category of the COCO 2017 keypoint annotations (names and
  1-based `skeleton` of the JSON, here 0-based) and the per-keypoint sigmas of
  the COCO keypoint evaluation (pycocotools `COCOeval`).
- MPII-16: the joint ids of the MPII Human Pose annotations.
- OpenPose-18: the layout of Lightweight OpenPose / the original COCO OpenPose
  model (COCO's 17 keypoints reordered, plus a neck at the shoulders' midpoint),
  with its 19 limbs in the order of the 38 PAF channels.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import re

from absl import logging
import numpy as np


@dataclasses.dataclass(frozen=True)
class Skeleton:
  """One keypoint layout.

  Attributes:
    name: short identifier, e.g. 'coco'.
    keypoint_names: one name per keypoint, in channel order.
    flip_pairs: (left, right) index pairs swapped by a horizontal flip.
    limbs: (a, b) index pairs drawn as bones; for bottom-up layouts also the
      part affinity fields, in PAF channel order (limb i -> channels 2i, 2i+1).
    sigmas: per-keypoint OKS sigmas, or None where the layout has none.
  """
  name: str
  keypoint_names: tuple[str, ...]
  flip_pairs: tuple[tuple[int, int], ...]
  limbs: tuple[tuple[int, int], ...]
  sigmas: tuple[float, ...] | None = None

  @property
  def num_keypoints(self) -> int:
    return len(self.keypoint_names)

  def flip_permutation(self) -> np.ndarray:
    """[J] int array: index of each keypoint's mirror image (itself if none)."""
    perm = np.arange(self.num_keypoints)
    for left, right in self.flip_pairs:
      perm[left], perm[right] = right, left
    return perm


COCO = Skeleton(
    name='coco',
    keypoint_names=(
        'nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear',
        'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
        'left_wrist', 'right_wrist', 'left_hip', 'right_hip',
        'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14),
                (15, 16)),
    limbs=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12),
           (5, 6), (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2),
           (1, 3), (2, 4), (3, 5), (4, 6)),
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072,
            0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
)

MPII = Skeleton(
    name='mpii',
    keypoint_names=(
        'right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee',
        'left_ankle', 'pelvis', 'thorax', 'upper_neck', 'head_top',
        'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder',
        'left_elbow', 'left_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    limbs=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8),
           (8, 9), (7, 12), (12, 11), (11, 10), (7, 13), (13, 14), (14, 15)),
)

# Indices of MPII's joints that PCKh leaves out of its mean.
MPII_PELVIS, MPII_THORAX, MPII_HEAD_TOP = 6, 7, 9

OPENPOSE = Skeleton(
    name='openpose',
    keypoint_names=(
        'nose', 'neck', 'right_shoulder', 'right_elbow', 'right_wrist',
        'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip', 'right_knee',
        'right_ankle', 'left_hip', 'left_knee', 'left_ankle', 'right_eye',
        'left_eye', 'right_ear', 'left_ear'),
    flip_pairs=((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15),
                (16, 17)),
    # The order of the 19 PAFs of the published Lightweight OpenPose model.
    limbs=((1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2),
           (2, 3), (3, 4), (2, 16), (1, 5), (5, 6), (6, 7), (5, 17), (1, 0),
           (0, 14), (0, 15), (14, 16), (15, 17)),
    # COCO's sigmas moved to this order; the neck takes the shoulders' 0.079.
    sigmas=(0.026, 0.079, 0.079, 0.072, 0.062, 0.079, 0.072, 0.062, 0.107,
            0.087, 0.089, 0.107, 0.087, 0.089, 0.025, 0.025, 0.035, 0.035),
)

# OPENPOSE keypoint i is COCO keypoint OPENPOSE_FROM_COCO[i]; -1 is the neck,
# which COCO lacks and which is made from both shoulders.
OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1,
                      4, 3)
COCO_LEFT_SHOULDER, COCO_RIGHT_SHOULDER = 5, 6
OPENPOSE_NECK = 1
# COCO's category id of people, in annotations, detections and keypoint results.
COCO_PERSON_CATEGORY_ID = 1


def openpose_from_coco(keypoints: np.ndarray,
                       visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """COCO-17 keypoints -> OpenPose-18 keypoints.

  Args:
    keypoints: [..., 17, 2] (x, y) in COCO order.
    visible: [..., 17] visibility (0 absent, > 0 annotated).

  Returns:
    ([..., 18, 2], [..., 18]): reordered keypoints with the neck at the
    shoulders' midpoint, visible only where both shoulders are.
  """
  keypoints = np.asarray(keypoints)
  visible = np.asarray(visible)
  if keypoints.shape[-2:] != (COCO.num_keypoints, 2):
    raise ValueError(f'keypoints: expected shape [..., 17, 2], got {keypoints.shape}')
  if visible.shape != keypoints.shape[:-1]:
    raise ValueError(f'visible: expected shape {keypoints.shape[:-1]}, got {visible.shape}')
  index = np.array([max(i, 0) for i in OPENPOSE_FROM_COCO])
  out_xy = keypoints[..., index, :].copy()
  out_vis = visible[..., index].copy()
  left = keypoints[..., COCO_LEFT_SHOULDER, :]
  right = keypoints[..., COCO_RIGHT_SHOULDER, :]
  out_xy[..., OPENPOSE_NECK, :] = (left + right) / 2
  out_vis[..., OPENPOSE_NECK] = np.minimum(visible[..., COCO_LEFT_SHOULDER],
                                           visible[..., COCO_RIGHT_SHOULDER])
  return out_xy, out_vis


def coco_from_openpose(keypoints: np.ndarray) -> np.ndarray:
  """[..., 18, C] OpenPose-order values -> [..., 17, C] in COCO order (neck dropped)."""
  keypoints = np.asarray(keypoints)
  out = np.empty(keypoints.shape[:-2] + (COCO.num_keypoints,) + keypoints.shape[-1:],
                 keypoints.dtype)
  for openpose_index, coco_index in enumerate(OPENPOSE_FROM_COCO):
    if coco_index >= 0:
      out[..., coco_index, :] = keypoints[..., openpose_index, :]
  return out


# --- layouts as data: from a COCO-format file, to and from a model description -----

# The OKS sigma of a keypoint that is not one of COCO's (pycocotools has none
# for it): COCO's smallest (the eyes', 0.025), as mmpose's hand and face
# layouts use for fingertips and facial points, so that OKS is strict rather
# than lenient where nothing else is known.
DEFAULT_SIGMA = 0.025
_SIDES = {'left': 'left', 'l': 'left', 'right': 'right', 'r': 'right'}
# The files whose default sigmas have been warned about.
_WARNED = set()


def _name_parts(name: str) -> tuple[str | None, str]:
  """A keypoint name -> (side 'left' / 'right' / None, the rest as snake_case).

  'left_wrist', 'Left Wrist', 'wrist_l', 'LWrist' and 'leftWrist' all give
  ('left', 'wrist'): words are split at separators and at lower-to-upper
  case changes, and the side is a first or last word left / l / right / r.
  """
  spaced = re.sub(r'([a-z0-9])([A-Z])', r'\1 \2', name.strip())
  spaced = re.sub(r'([A-Z])([A-Z][a-z])', r'\1 \2', spaced)
  words = [word.lower() for word in re.split(r'[\s_\-.]+', spaced) if word]
  if len(words) > 1 and words[0] in _SIDES:
    return _SIDES[words[0]], '_'.join(words[1:])
  if len(words) > 1 and words[-1] in _SIDES:
    return _SIDES[words[-1]], '_'.join(words[:-1])
  return None, '_'.join(words)


def flip_pairs_from_names(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
  """Keypoint names -> (left, right) index pairs of the names that differ only by their side.

  Sides are found in any case, separator or position (`_name_parts`); a
  name with no counterpart on the other side has no pair.
  """
  sides = {}
  for index, name in enumerate(names):
    side, rest = _name_parts(name)
    if side is not None:
      sides.setdefault(rest, {})[side] = index
  return tuple(sorted((pair['left'], pair['right']) for pair in sides.values()
                      if {'left', 'right'} <= set(pair)))


def sigmas_for_names(names: Sequence[str]) -> tuple[tuple[float, ...], list[str]]:
  """Keypoint names -> (OKS sigmas: COCO's where a name is a COCO keypoint, else DEFAULT_SIGMA; the names defaulted)."""
  coco = dict(zip(COCO.keypoint_names, COCO.sigmas))
  sigmas, defaulted = [], []
  for name in names:
    side, rest = _name_parts(name)
    canonical = f'{side}_{rest}' if side else rest
    if canonical in coco:
      sigmas.append(coco[canonical])
    else:
      sigmas.append(DEFAULT_SIGMA)
      defaulted.append(name)
  return tuple(sigmas), defaulted


def from_coco_category(category, source: str, field: str = 'categories[0]') -> Skeleton:
  """A COCO-format category {name, keypoints, skeleton (1-based)} -> its Skeleton; ValueError naming `source` and the field.

  The COCO person category gives `COCO` itself. Other layouts get flip pairs
  from their names (`flip_pairs_from_names`) and OKS sigmas from COCO's
  where a name is a COCO keypoint, else DEFAULT_SIGMA (with one warning
  naming those keypoints).
  """
  if not isinstance(category, Mapping):
    raise ValueError(f'{source}: {field}: expected a category object with "keypoints" and '
                     f'"skeleton", got {type(category).__name__}')
  names = category.get('keypoints')
  if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
    raise ValueError(f'{source}: {field}.keypoints: expected a list of keypoint names, got '
                     f'{names!r}')
  duplicates = sorted({name for name in names if names.count(name) > 1})
  if duplicates:
    raise ValueError(f'{source}: {field}.keypoints: names must be unique, these repeat: '
                     f'{duplicates}')
  links = category.get('skeleton', [])
  if not isinstance(links, list):
    raise ValueError(f'{source}: {field}.skeleton: expected a list of 1-based [a, b] pairs, '
                     f'got {links!r}')
  limbs = []
  for index, link in enumerate(links):
    if (not isinstance(link, list) or len(link) != 2
        or not all(isinstance(k, int) and 1 <= k <= len(names) for k in link)):
      raise ValueError(f'{source}: {field}.skeleton[{index}] is {link!r}: expected two 1-based '
                       f'keypoint indices in 1..{len(names)}')
    limbs.append((link[0] - 1, link[1] - 1))
  if tuple(names) == COCO.keypoint_names and set(limbs) == set(COCO.limbs):
    return COCO
  sigmas, defaulted = sigmas_for_names(names)
  if defaulted and source not in _WARNED:  # once per file, however often it is read
    _WARNED.add(source)
    logging.warning('%s: %d keypoints are not COCO keypoints and get the OKS sigma %g (set '
                    'config.data.skeleton.sigmas to choose them): %s', source, len(defaulted),
                    DEFAULT_SIGMA, ', '.join(defaulted))
  return Skeleton(name=str(category.get('name', 'custom')), keypoint_names=tuple(names),
                  flip_pairs=flip_pairs_from_names(names), limbs=tuple(limbs), sigmas=sigmas)


def _pairs(value, num_keypoints: int, field: str) -> tuple[tuple[int, int], ...]:
  """[[a, b], ...] 0-based -> pairs; ValueError naming `field` unless each is two indices in 0..K-1."""
  try:
    pairs = tuple((int(a), int(b)) for a, b in value)
  except (TypeError, ValueError):
    raise ValueError(f'{field}: expected 0-based (a, b) pairs, got {value!r}') from None
  bad = [pair for pair in pairs if not all(0 <= k < num_keypoints for k in pair)]
  if bad:
    raise ValueError(f'{field}: {bad} are not pairs of keypoint indices in 0..{num_keypoints - 1}')
  return pairs


def with_overrides(skeleton: Skeleton, *, sigmas=(), flip_pairs=(), limbs=(),
                   field: str = 'config.data.skeleton') -> Skeleton:
  """The layout with any of its sigmas, flip pairs or limbs replaced (empty: kept), each checked against its keypoints."""
  count = skeleton.num_keypoints
  changes = {}
  if sigmas:
    sigmas = tuple(float(s) for s in sigmas)
    if len(sigmas) != count or min(sigmas) <= 0:
      raise ValueError(f'{field}.sigmas: expected {count} positive numbers (one per keypoint of '
                       f'{skeleton.name}), got {len(sigmas)}: {sigmas}')
    changes['sigmas'] = sigmas
  if flip_pairs:
    pairs = _pairs(flip_pairs, count, f'{field}.flip_pairs')
    used = [k for pair in pairs for k in pair]
    if len(set(used)) != len(used):
      raise ValueError(f'{field}.flip_pairs: a keypoint is in more than one pair: {pairs}')
    changes['flip_pairs'] = pairs
  if limbs:
    changes['limbs'] = _pairs(limbs, count, f'{field}.limbs')
  return dataclasses.replace(skeleton, **changes) if changes else skeleton


def to_dict(skeleton: Skeleton) -> dict:
  """A layout -> JSON-able {name, keypoint_names, flip_pairs, limbs, sigmas} (a model description's 'skeleton')."""
  return {'name': skeleton.name, 'keypoint_names': list(skeleton.keypoint_names),
          'flip_pairs': [list(p) for p in skeleton.flip_pairs],
          'limbs': [list(p) for p in skeleton.limbs],
          'sigmas': None if skeleton.sigmas is None else list(skeleton.sigmas)}


def from_dict(fields: Mapping) -> Skeleton:
  """`to_dict`'s dict -> the layout; COCO and MPII come back as themselves."""
  skeleton = Skeleton(name=fields['name'], keypoint_names=tuple(fields['keypoint_names']),
                      flip_pairs=tuple(tuple(p) for p in fields['flip_pairs']),
                      limbs=tuple(tuple(p) for p in fields['limbs']),
                      sigmas=None if fields.get('sigmas') is None else tuple(fields['sigmas']))
  for known in (COCO, MPII):
    if skeleton == known:
      return known
  return skeleton
