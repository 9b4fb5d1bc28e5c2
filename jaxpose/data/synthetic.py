"""Procedurally generated people: COCO-17 stick figures on cluttered backgrounds.

The quick start trains on these, so that it needs no download and runs in
minutes on a CPU. Every example is a pure function of (seed, index): a random
textured background (gradient, smooth and fine noise, distractor lines and
blobs), 1..max_people articulated stick figures, and sometimes occluding blobs
on top.

A figure is a kinematic chain in a body frame (x toward the person's left, y
up, units of the person's height): pelvis, a bent torso, shoulders and hips,
arms and legs with random joint angles and limb lengths, and a tilted head with
nose, eyes and ears. The frame is then rotated, scaled and moved into the
image. Figures face the camera, so the person's left is on the image's right
when upright, and each COCO limb is drawn as a thick line in its own fixed
colour (`LIMB_COLORS`): left and right, and the face keypoints, can be told
apart by colour as well as by geometry.

Examples follow the schema that the COCO and MPII readers use:
  image: uint8 [H, W, 3] RGB.
  keypoints: float32 [P, 17, 2] (x, y) pixels, pixel centres at integers.
  visible: float32 [P, 17], COCO's 0 = not labelled (outside the image),
    1 = labelled but occluded (covered by a later person or an occluder),
    2 = visible.
  boxes: float32 [P, 4] (x, y, w, h), each person's drawn extent clipped to
    the image.
  image_id: int, the index.
`SyntheticPeople` yields one example per image; `SyntheticPersons` one per
person (P = 1), for top-down training.
The figure (`random_figure`, `figure_points`), its drawing (`draw_figure`)
and the visibility rule (`visibility`) are also used by
`jaxpose.data.synthetic_clips`, which moves the figures.
"""

import colorsys
import math
from typing import NamedTuple

import cv2
import numpy as np

from jaxpose import skeletons
from jaxpose.data import persons

# Fractions of the person's height (standing, legs straight).
TORSO = 0.30  # pelvis to neck
SHOULDER_HALF_WIDTH = 0.11
HIP_HALF_WIDTH = 0.075
UPPER_ARM = 0.17
FOREARM = 0.15
THIGH = 0.245
SHIN = 0.235
NECK_TO_HEAD = 0.12  # neck to the head's centre
HEAD_RADIUS = 0.065
# Each length above is multiplied by its own factor in this range per person.
LENGTH_JITTER = 0.15
# Person height as a fraction of the image's shorter side.
HEIGHT_RANGE = (0.3, 0.9)

# Sub-pixel drawing: cv2 takes points in fixed point with this many fraction bits.
_SHIFT = 4
_ONE = 1 << _SHIFT

# One fixed RGB colour per COCO limb, in `skeletons.COCO.limbs` order: hues
# spread around the circle, alternating saturation so neighbours differ more.
LIMB_COLORS = tuple(
    tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(
        i / len(skeletons.COCO.limbs), 1.0 if i % 2 == 0 else 0.55, 1.0 if i % 2 == 0 else 0.8))
    for i in range(len(skeletons.COCO.limbs)))
HEAD_COLOR = (224, 190, 160)

_LIMB_INDEX = {limb: i for i, limb in enumerate(skeletons.COCO.limbs)}
# Torso and neck first, then the head disc, then legs, arms and face on top.
_TORSO_LIMBS = ((11, 12), (5, 11), (6, 12), (5, 6))
_NECK_LIMBS = ((3, 5), (4, 6))
_FRONT_LIMBS = ((15, 13), (13, 11), (16, 14), (14, 12), (5, 7), (7, 9), (6, 8), (8, 10))
_FACE_LIMBS = ((1, 2), (0, 1), (0, 2), (1, 3), (2, 4))

OCCLUDER_PROBABILITY = 0.3
# The `owner` value of occluder pixels (people are 1..max_people).
OCCLUDER = 255
# Distractors take a limb's colour this often, so colour alone is not enough.
LIMB_COLORED_DISTRACTOR_PROBABILITY = 0.25


def _mix(seed: int, index: np.ndarray) -> np.ndarray:
  """[N] uint64 hashes of (seed, index) (splitmix64): counts without a Generator per image."""
  with np.errstate(over='ignore'):
    z = (np.asarray(index, np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
    z ^= np.uint64(seed) * np.uint64(0xD1B54A32D192ED03)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _directions(angles: np.ndarray) -> np.ndarray:
  """[...] angles (radians from straight down, toward +x) -> [..., 2] body-frame unit vectors."""
  return np.stack([np.sin(angles), -np.cos(angles)], axis=-1)


class Figure(NamedTuple):
  """A figure's shape and pose in the body frame: lengths in person heights, angles in radians.

  lengths: [9] torso, shoulder and hip half widths, upper arm, forearm, thigh,
    shin, neck to head centre, head radius.
  bend, tilt, yaw: the torso's bend, the head's tilt, the face's turn.
  arm, elbow, leg, knee: [2] left then right, shoulder abduction, elbow, hip
    abduction, knee; positive angles turn away from the body.
  """
  lengths: np.ndarray
  bend: float
  tilt: float
  yaw: float
  arm: np.ndarray
  elbow: np.ndarray
  leg: np.ndarray
  knee: np.ndarray


def random_figure(rng: np.random.Generator) -> Figure:
  """A random body shape and pose."""
  lengths = rng.uniform(1 - LENGTH_JITTER, 1 + LENGTH_JITTER, 9) * (
      TORSO, SHOULDER_HALF_WIDTH, HIP_HALF_WIDTH, UPPER_ARM, FOREARM, THIGH, SHIN,
      NECK_TO_HEAD, HEAD_RADIUS)
  bend, tilt, yaw = rng.uniform(-1, 1, 3) * (math.radians(15), math.radians(20), 0.4)
  arm, elbow, leg, knee = np.radians(rng.uniform((-20, -130, -20, -90), (170, 130, 60, 60),
                                                 (2, 4)).T)
  return Figure(lengths, bend, tilt, yaw, arm, elbow, leg, knee)


def figure_points(figure: Figure) -> tuple[np.ndarray, np.ndarray, float]:
  """A figure -> (keypoints [17, 2], head centre [2], head radius) in body-frame units.

  The pelvis (the hips' midpoint) is at the origin.
  """
  torso, shoulder, hip, upper_arm, forearm, thigh, shin, neck_to_head, radius = figure.lengths
  bend, tilt, yaw = figure.bend, figure.tilt, figure.yaw
  sign = np.array([1.0, -1.0])

  up = np.array([math.sin(bend), math.cos(bend)])
  side = np.array([math.cos(bend), -math.sin(bend)])  # the person's left
  neck = torso * up
  shoulders = neck + (sign * shoulder)[:, None] * side
  hips = np.stack([sign * hip, np.zeros(2)], axis=-1)
  upper_arms, forearms, thighs, shins = _directions(
      sign * np.stack([figure.arm, figure.arm + figure.elbow,
                       figure.leg, figure.leg + figure.knee]))
  elbows = shoulders + upper_arm * upper_arms
  knees = hips + thigh * thighs
  head_up = np.array([math.sin(bend + tilt), math.cos(bend + tilt)])
  head_side = np.array([math.cos(bend + tilt), -math.sin(bend + tilt)])
  head = neck + neck_to_head * head_up
  # A face turned by `yaw` moves its features sideways on the disc.
  nose = head + radius * (0.6 * yaw * head_side - 0.2 * head_up)
  eyes = head + radius * ((0.45 * sign + 0.5 * yaw)[:, None] * head_side + 0.25 * head_up)
  ears = head + radius * ((sign + 0.2 * yaw)[:, None] * head_side + 0.05 * head_up)
  points = np.concatenate([nose[None], eyes, ears, shoulders, elbows,
                           elbows + forearm * forearms, hips, knees, knees + shin * shins])
  return points, head, radius


def _fixed(points: np.ndarray) -> list:
  """Points [..., 2] -> nested lists of ints in cv2's fixed point (`_SHIFT` fraction bits)."""
  return np.round(np.asarray(points) * _ONE).astype(np.int64).tolist()


def _draw_lines(image: np.ndarray, lines: np.ndarray, colors, thickness) -> None:
  for (a, b), color, width in zip(_fixed(lines), colors, thickness):
    cv2.line(image, a, b, color, int(width), cv2.LINE_8, _SHIFT)


def body_to_image(person_height: float, angle: float) -> np.ndarray:
  """[2, 2] linear map from the body frame to image pixels (before the move into place).

  x (the person's left) goes to the image's right and y (up) to the image's
  up, scaled by `person_height` and turned by `angle` (radians) clockwise on screen.
  """
  return person_height * np.array([[math.cos(angle), math.sin(angle)],
                                   [math.sin(angle), -math.cos(angle)]])


def _thickness(person_height: float) -> int:
  """Width in pixels of a figure's torso and limb strokes."""
  return max(2, round(0.04 * person_height))


def figure_extent(points: np.ndarray, head: np.ndarray, radius: float,
                  person_height: float) -> tuple[np.ndarray, np.ndarray]:
  """A figure's drawn extent, strokes included -> (low [2], high [2]) pixel corners."""
  half = _thickness(person_height) / 2
  return (np.minimum(points.min(0), head - radius) - half,
          np.maximum(points.max(0), head + radius) + half)


def draw_figure(image: np.ndarray, owner: np.ndarray, points: np.ndarray, head: np.ndarray,
                radius: float, person_height: float, person_id: int) -> None:
  """Draws a figure on `image` [H, W, 3] in its colours and on `owner` [H, W] as `person_id`.

  Args:
    image, owner: drawn on in place.
    points: [17, 2] keypoints, head: [2] head centre, radius: head radius, all in pixels.
    person_height: pixels; sets the strokes' widths.
    person_id: the `owner` value of this figure's pixels, 1..254.
  """
  thickness = _thickness(person_height)
  neck_thickness = max(1, thickness // 2)
  face_thickness = max(1, round(0.015 * person_height))
  fixed = _fixed(points)
  strokes = [(fixed[a], fixed[b], LIMB_COLORS[_LIMB_INDEX[(a, b)]], width_px)
             for limbs, width_px in ((_TORSO_LIMBS, thickness), (_NECK_LIMBS, neck_thickness))
             for a, b in limbs]
  top_strokes = [(fixed[a], fixed[b], LIMB_COLORS[_LIMB_INDEX[(a, b)]], width_px)
                 for limbs, width_px in ((_FRONT_LIMBS, thickness), (_FACE_LIMBS, face_thickness))
                 for a, b in limbs]
  head_centre, head_radius = _fixed(head), round(radius * _ONE)
  for canvas, single in ((image, None), (owner, person_id)):
    for a, b, color, width_px in strokes:
      cv2.line(canvas, a, b, single or color, width_px, cv2.LINE_8, _SHIFT)
    cv2.circle(canvas, head_centre, head_radius, single or HEAD_COLOR, -1, cv2.LINE_8, _SHIFT)
    for a, b, color, width_px in top_strokes:
      cv2.line(canvas, a, b, single or color, width_px, cv2.LINE_8, _SHIFT)


def visibility(keypoints: np.ndarray, owner: np.ndarray) -> np.ndarray:
  """COCO visibility of people drawn with `owner` ids 1..P -> float32 [P, 17] in {0, 1, 2}.

  Args:
    keypoints: [P, 17, 2] pixels; row p is the person drawn as p + 1 on `owner`.
    owner: [H, W] uint8, which person (or `OCCLUDER`) drew each pixel last, 0 for none.
  """
  height, width = owner.shape
  # A joint is in the image when its nearest pixel is.
  pixel = np.floor(keypoints + 0.5).astype(np.int64)
  inside = ((pixel[..., 0] >= 0) & (pixel[..., 0] < width) &
            (pixel[..., 1] >= 0) & (pixel[..., 1] < height))
  drawn_by = owner[np.clip(pixel[..., 1], 0, height - 1), np.clip(pixel[..., 0], 0, width - 1)]
  own = np.arange(1, keypoints.shape[0] + 1)[:, None]
  # 0: no one drew there (a thin face line missed the joint's pixel), still its own.
  uncovered = (drawn_by == own) | (drawn_by == 0)
  return np.where(inside, np.where(uncovered, 2, 1), 0).astype(np.float32)


class SyntheticPeople:
  """Grain random-access source of images of stick figures, one example per image."""

  def __init__(self, num_images: int, *, image_size: tuple[int, int] = (128, 128),
               max_people: int = 3, seed: int = 0):
    """Describes the source; nothing is drawn until an example is read.

    Args:
      num_images: the source's length.
      image_size: (width, height) in pixels.
      max_people: each image has 1..max_people figures, uniformly.
      seed: examples are a function of (seed, index).
    """
    if not 1 <= max_people < OCCLUDER:
      raise ValueError(f'max_people must be in [1, {OCCLUDER - 1}], got {max_people}')
    self.num_images = int(num_images)
    self.image_size = tuple(int(s) for s in image_size)
    self.max_people = int(max_people)
    self.seed = int(seed)
    width, height = self.image_size
    # Fine noise shared by all examples, each reading it at its own offset
    # (seeded with an index beyond any image's).
    self._noise = np.random.default_rng([self.seed, 1 << 40]).normal(
        0, 1, (2 * height, 2 * width, 3)).astype(np.float32)

  def __len__(self) -> int:
    return self.num_images

  def __repr__(self) -> str:
    return (f'SyntheticPeople(num_images={self.num_images}, image_size={self.image_size}, '
            f'max_people={self.max_people}, seed={self.seed})')

  def num_people(self, indices: np.ndarray) -> np.ndarray:
    """[N] image indices -> [N] int, how many people each of those images has."""
    return (1 + _mix(self.seed, indices) % np.uint64(self.max_people)).astype(np.int64)

  def __getitem__(self, index) -> dict:
    """Index -> example dict (see the module docstring)."""
    index = int(index)
    if not 0 <= index < self.num_images:
      raise IndexError(f'index {index} out of range for {self!r}')
    rng = np.random.default_rng([self.seed, index])
    width, height = self.image_size
    image = self.background(rng)
    self.distractors(rng, image)

    num_people = int(self.num_people(np.array([index]))[0])
    # Which person, or an occluder (255), drew each pixel last: it decides
    # whether a joint is visible (2) or covered (1).
    owner = np.zeros((height, width), np.uint8)
    keypoints = np.zeros((num_people, skeletons.COCO.num_keypoints, 2), np.float32)
    boxes = np.zeros((num_people, 4), np.float32)
    for person in range(num_people):
      keypoints[person], boxes[person] = self._draw_person(rng, image, owner, person + 1)
    if rng.random() < OCCLUDER_PROBABILITY:
      self.occluders(rng, image, owner)

    visible = visibility(keypoints, owner)
    return {'image': image, 'keypoints': keypoints, 'visible': visible, 'boxes': boxes,
            'image_id': index}

  def background(self, rng: np.random.Generator) -> np.ndarray:
    """A gradient plus smooth and fine noise: uint8 [H, W, 3]."""
    width, height = self.image_size
    # Gradient and smooth noise on a coarse grid, upsampled in one cubic resize
    # (which keeps a linear ramp linear); uint8, where cv2 resizes fastest.
    grid_w, grid_h = (int(n) for n in rng.integers(2, 9, 2))
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (np.linspace(-0.5, 0.5, grid_w)[None, :, None] * math.cos(angle) +
            np.linspace(-0.5, 0.5, grid_h)[:, None, None] * math.sin(angle) + 0.5)
    start, end = rng.uniform(0, 255, (2, 3))
    coarse = (start + ramp * (end - start) +
              rng.uniform(-1, 1, (grid_h, grid_w, 3)) * rng.uniform(0, 70))
    coarse = np.clip(coarse, 0, 255).astype(np.uint8)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
    fine = self._noise[y0:y0 + height, x0:x0 + width]
    return cv2.addWeighted(image, 1.0, fine, rng.uniform(0, 25), 0.0, dtype=cv2.CV_8U)

  def _random_colors(self, rng: np.random.Generator, n: int) -> list[tuple[int, ...]]:
    colors = rng.integers(0, 256, (n, 3)).tolist()
    limb_colored = rng.random(n) < LIMB_COLORED_DISTRACTOR_PROBABILITY
    limb = rng.integers(0, len(LIMB_COLORS), n)
    return [LIMB_COLORS[l] if use else tuple(c) for c, use, l in zip(colors, limb_colored, limb)]

  def distractors(self, rng: np.random.Generator, image: np.ndarray) -> None:
    """Lines and blobs under the people."""
    width, height = self.image_size
    size = np.array([width, height])
    num_lines = int(rng.integers(1, 7))
    lines = rng.uniform(-0.1, 1.1, (num_lines, 2, 2)) * size
    _draw_lines(image, lines, self._random_colors(rng, num_lines),
                rng.integers(1, max(2, min(width, height) // 24), num_lines))
    num_blobs = int(rng.integers(0, 5))
    centres = _fixed(rng.uniform(0, 1, (num_blobs, 2)) * size)
    axes = _fixed(rng.uniform(0.02, 0.15, (num_blobs, 2)) * min(width, height))
    angles = rng.uniform(0, 180, num_blobs).tolist()
    for centre, axis, angle, color in zip(centres, axes, angles,
                                          self._random_colors(rng, num_blobs)):
      cv2.ellipse(image, centre, axis, angle, 0, 360, color, -1, cv2.LINE_8, _SHIFT)

  def occluders(self, rng: np.random.Generator, image: np.ndarray, owner: np.ndarray) -> None:
    """One or two blobs over the people, also marked in `owner`."""
    width, height = self.image_size
    count = int(rng.integers(1, 3))
    centres = _fixed(rng.uniform(0, 1, (count, 2)) * (width, height))
    axes = _fixed(rng.uniform(0.04, 0.12, (count, 2)) * min(width, height))
    for centre, axis, color in zip(centres, axes, self._random_colors(rng, count)):
      for canvas, value in ((image, color), (owner, OCCLUDER)):
        cv2.ellipse(canvas, centre, axis, 0.0, 0, 360, value, -1, cv2.LINE_8, _SHIFT)

  def _draw_person(self, rng: np.random.Generator, image: np.ndarray, owner: np.ndarray,
                   person_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws one figure on `image` and `owner` -> (keypoints [17, 2], box [4])."""
    width, height = self.image_size
    body, head, radius = figure_points(random_figure(rng))
    person_height = rng.uniform(*HEIGHT_RANGE) * min(width, height)
    to_image = body_to_image(person_height, rng.uniform(math.radians(-30), math.radians(30)))
    points = body @ to_image.T
    head = head @ to_image.T
    radius *= person_height
    low, high = figure_extent(points, head, radius, person_height)
    # Centre the figure's extent somewhere in the middle 70% of the image.
    offset = rng.uniform(0.15, 0.85, 2) * (width, height) - (low + high) / 2
    points += offset
    head += offset
    draw_figure(image, owner, points, head, radius, person_height, person_id)
    low = np.clip(low + offset, 0, (width, height))
    high = np.clip(high + offset, 0, (width, height))
    return points, np.concatenate([low, high - low])


class SyntheticPersons(persons.PersonsOfImages):
  """Grain random-access source with one element per person of a `SyntheticPeople` (P = 1).

  Element k is person j of image i, in image order; the image is drawn in
  full, other people included, and only person j's keypoints, visibility and
  box are kept.
  """

  def __init__(self, images: SyntheticPeople):
    super().__init__(images, images.num_people(np.arange(len(images))))
