"""Generated clips of people walking: `jaxpose.data.synthetic`'s figures, with persistent track ids.

For learning and testing tracking without a video download. Every clip is a
pure function of (seed, index): a static scene (the still generator's
background, distractors and, sometimes, occluders in front of everyone: its
blobs and a standing box that people walk behind) and min_people..max_people
walkers.

A walker keeps its body (shape, size, colours) for the whole clip. Its pelvis
moves at a constant mean velocity, mostly sideways (vertical slope up to
`MAX_SLOPE`), with a slow speed wobble and a slow vertical sway; its arms,
elbows, legs and knees swing with a gait phase that advances with the distance
walked. Paths are placed in one of three ways:
  crossing: with `crossing=True`, walkers 0 and 1 walk in opposite directions
    and are at the same x at one time in the middle 40% of the clip, their
    pelvises at most `CROSSING_DEPTH` heights apart vertically: their order
    along x swaps, and the nearer one covers the other.
  entering / leaving (probability `enter_leave_probability`, half each): the
    pelvis crosses the image's side border in the clip's first half (coming
    in) or second half (going out); a walker fast enough for the clip's length
    is wholly outside before (after) that.
  staying: anywhere in the image's middle 70% at a random time of the clip.
People are drawn farthest first (the lower pelvis is nearer), so a walker in
front hides the joints it covers (visible 1, as in COCO); so do the occluders.

The motion is in continuous time, in frames of the underlying video; clip
frame j shows time j * frame_step (frame_step 4 is a quarter of the frame rate,
and a clip's frames are every 4th frame of the frame_step-1 clip with the same
span (clip_length - 1) * frame_step). Walking speeds are per underlying frame,
so a larger step moves people farther between frames.

Examples (T frames, P walkers):
  images: uint8 [T, H, W, 3] RGB.
  keypoints: float32 [T, P, 17, 2] (x, y) pixels, where the joint is, also
    outside the image (then visible is 0).
  visible: float32 [T, P, 17], COCO's 0 = outside the image, 1 = covered by a
    nearer person or an occluder, 2 = visible.
  present: bool [T, P], the person has a joint in the image.
  boxes: float32 [T, P, 4] (x, y, w, h), each person's drawn extent clipped to
    the image; zeros where not present.
  track_ids: int64 [P], one id per person for the whole clip (0..P-1).
  clip_id: int, the clip's index; frame_ids: int64 [T], the clip frames shown;
  frame_step: int, underlying frames per clip frame.
`SyntheticClips` yields whole clips; `SyntheticClipWindows` the windows of
`length` consecutive frames of them (frame pairs by default), for training.
"""

import math
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from jaxpose import skeletons
from jaxpose.data import synthetic

# Person height as a fraction of the image's shorter side.
HEIGHT_RANGE = (0.3, 0.6)
# Mean walking speed in person heights per underlying frame (a person walks
# about 0.8 heights a second: 0.03 at 25 frames a second).
SPEED_RANGE = (0.01, 0.04)
MAX_SLOPE = 0.15  # vertical over horizontal velocity
MAX_WOBBLE = 0.3  # the speed varies by up to this fraction of the mean
SWAY = 0.02  # vertical sway amplitude, in heights
PERIOD_RANGE = (15.0, 60.0)  # of the wobble and the sway, in underlying frames
LEAN = math.radians(5)
STRIDE = 0.8  # heights walked per gait cycle
# Gait swing amplitudes (radians) of the shoulder, elbow, hip and knee angles.
ARM_SWING, ELBOW_SWING, LEG_SWING, KNEE_SWING = 0.35, 0.25, 0.3, 0.25
CROSSING_DEPTH = 0.1  # a crossing pair's largest vertical pelvis gap, in heights
ENTER_LEAVE_PROBABILITY = 0.5
# Width range of the standing box among the occluders, a fraction of the image width.
PILLAR_WIDTH = (0.06, 0.15)


class Walk(NamedTuple):
  """One person's motion; times are in underlying frames, lengths in pixels.

  figure: body shape and rest pose. height: the person's height. lean: a fixed
  tilt (radians). anchor: [2] the pelvis at `anchor_time`, before the sway.
  velocity: [2] the mean pelvis velocity per frame. wobble: [3] relative speed
  amplitude, rate (radians per frame), phase. sway: [3] vertical amplitude,
  rate, phase. gait_phase: the swing's phase at distance 0.
  """
  figure: synthetic.Figure
  height: float
  lean: float
  anchor: np.ndarray
  anchor_time: float
  velocity: np.ndarray
  wobble: np.ndarray
  sway: np.ndarray
  gait_phase: float

  def progress(self, times: np.ndarray) -> np.ndarray:
    """[N] times -> [N] the distance walked since time 0, in frames at the mean speed.

    The speed is the mean times 1 + a sin(rate t + phase); this is its integral.
    """
    amplitude, rate, phase = self.wobble
    return times - amplitude / rate * (np.cos(rate * times + phase) - math.cos(phase))

  def pelvis(self, times: np.ndarray) -> np.ndarray:
    """[N] times -> [N, 2] pelvis positions."""
    amplitude, rate, phase = self.sway
    walked = self.progress(times) - self.progress(np.array(self.anchor_time))
    sway = np.stack([np.zeros_like(times), amplitude * np.sin(rate * times + phase)], -1)
    return self.anchor + walked[:, None] * self.velocity + sway

  def pose(self, time: float) -> synthetic.Figure:
    """The figure at `time`: rest pose plus the gait swing (legs scissor, arms against them)."""
    walked = float(np.linalg.norm(self.velocity)) * self.progress(np.array(time))
    phase = self.gait_phase + 2 * math.pi * walked / (STRIDE * self.height)
    swing, bend = math.sin(phase), math.cos(phase)
    figure = self.figure
    return figure._replace(arm=figure.arm - ARM_SWING * swing,
                           elbow=figure.elbow + ELBOW_SWING * swing,
                           leg=figure.leg + LEG_SWING * swing,
                           knee=figure.knee + KNEE_SWING * bend)

  @property
  def head_radius(self) -> float:
    return float(self.figure.lengths[8] * self.height)

  def keypoints(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[N] times -> (keypoints [N, 17, 2], head centres [N, 2]) in pixels."""
    to_image = synthetic.body_to_image(self.height, self.lean)
    posed = [synthetic.figure_points(self.pose(t)) for t in times]
    pelvis = self.pelvis(times)
    points = np.stack([points for points, _, _ in posed]) @ to_image.T + pelvis[:, None]
    heads = np.stack([head for _, head, _ in posed]) @ to_image.T + pelvis
    return points, heads

  def max_joint_speed(self) -> float:
    """An upper bound on any joint's speed, pixels per underlying frame.

    Pelvis: the mean speed times (1 + wobble) plus the sway's. Relative to the
    pelvis a joint moves only by the swinging angles, each turning what lies
    beyond its pivot: |d angle / dt| <= amplitude * |d phase / dt| times the
    pivot-to-joint distance, largest at the ankle or the wrist.
    """
    speed = float(np.linalg.norm(self.velocity)) * (1 + self.wobble[0])
    sway_speed = self.sway[0] * self.sway[1]
    phase_rate = 2 * math.pi * speed / (STRIDE * self.height)
    _, _, _, upper_arm, forearm, thigh, shin, _, _ = self.figure.lengths * self.height
    lever = max(LEG_SWING * (thigh + shin) + KNEE_SWING * shin,
                ARM_SWING * (upper_arm + forearm) + ELBOW_SWING * forearm)
    return float(speed + sway_speed + phase_rate * lever)


class SyntheticClips:
  """Grain random-access source of clips of walking stick figures, one example per clip."""

  def __init__(self, num_clips: int, *, clip_length: int = 8,
               image_size: tuple[int, int] = (128, 128), min_people: int = 2,
               max_people: int = 4, seed: int = 0, frame_step: int | Sequence[int] = 1,
               crossing: bool = True,
               enter_leave_probability: float = ENTER_LEAVE_PROBABILITY,
               occluder_probability: float = synthetic.OCCLUDER_PROBABILITY,
               speed_range: tuple[float, float] = SPEED_RANGE,
               height_range: tuple[float, float] = HEIGHT_RANGE):
    """Describes the source; nothing is drawn until an example is read.

    Args:
      num_clips: the source's length.
      clip_length: T, frames per clip.
      image_size: (width, height) in pixels.
      min_people, max_people: each clip has min_people..max_people walkers, uniformly.
      seed: clips are a function of (seed, index).
      frame_step: underlying frames per clip frame; a sequence: each clip takes
        one of them, uniformly.
      crossing: walkers 0 and 1 cross (needs min_people >= 2).
      enter_leave_probability: the chance that a walker other than a crossing
        pair's enters or leaves through a side border.
      occluder_probability: the chance of occluders (blobs and a standing box) in a
        clip's scene.
      speed_range: mean walking speeds, person heights per underlying frame.
      height_range: person heights, fractions of the image's shorter side.
    """
    steps = (frame_step,) if np.ndim(frame_step) == 0 else tuple(frame_step)
    checks = (
        (clip_length >= 1, f'clip_length must be >= 1, got {clip_length}'),
        (1 <= min_people <= max_people < synthetic.OCCLUDER,
         f'need 1 <= min_people <= max_people <= {synthetic.OCCLUDER - 1}, '
         f'got {min_people} and {max_people}'),
        (not crossing or min_people >= 2, f'crossing needs min_people >= 2, got {min_people}'),
        (len(steps) > 0 and all(int(s) == s >= 1 for s in steps),
         f'frame_step must be integers >= 1, got {frame_step}'),
        (0 <= enter_leave_probability <= 1 and 0 <= occluder_probability <= 1,
         f'probabilities must be in [0, 1], got {enter_leave_probability} and '
         f'{occluder_probability}'),
        (0 < speed_range[0] <= speed_range[1], f'speed_range must be 0 < low <= high, '
         f'got {speed_range}'),
        (0 < height_range[0] <= height_range[1], f'height_range must be 0 < low <= high, '
         f'got {height_range}'))
    for ok, message in checks:
      if not ok:
        raise ValueError(f'SyntheticClips: {message}')
    self.num_clips = int(num_clips)
    self.clip_length = int(clip_length)
    self.image_size = tuple(int(s) for s in image_size)
    self.min_people, self.max_people = int(min_people), int(max_people)
    self.seed = int(seed)
    self.frame_steps = tuple(int(s) for s in steps)
    self.crossing = bool(crossing)
    self.enter_leave_probability = float(enter_leave_probability)
    self.occluder_probability = float(occluder_probability)
    self.speed_range = tuple(float(s) for s in speed_range)
    self.height_range = tuple(float(h) for h in height_range)
    # Draws the scenes (background, distractors, occluders).
    self._scenes = synthetic.SyntheticPeople(self.num_clips, image_size=self.image_size,
                                             seed=self.seed)

  def __len__(self) -> int:
    return self.num_clips

  def __repr__(self) -> str:
    return (f'SyntheticClips(num_clips={self.num_clips}, clip_length={self.clip_length}, '
            f'image_size={self.image_size}, people={self.min_people}..{self.max_people}, '
            f'seed={self.seed}, frame_steps={self.frame_steps}, crossing={self.crossing})')

  def frame_step(self, index: int) -> int:
    """Clip `index`'s underlying frames per clip frame."""
    choice = np.random.default_rng([self.seed, index, 2]).integers(len(self.frame_steps))
    return self.frame_steps[int(choice)]

  def walks(self, index: int) -> list[Walk]:
    """Clip `index`'s walkers, in track id order."""
    rng = np.random.default_rng([self.seed, index, 0])
    width, height = self.image_size
    span = (self.clip_length - 1) * self.frame_step(index)
    walks = []
    for person in range(int(rng.integers(self.min_people, self.max_people + 1))):
      figure = synthetic.random_figure(rng)
      person_height = rng.uniform(*self.height_range) * min(width, height)
      lean = rng.uniform(-LEAN, LEAN)
      speed = rng.uniform(*self.speed_range) * person_height
      direction = 1.0 if rng.random() < 0.5 else -1.0
      slope = rng.uniform(-MAX_SLOPE, MAX_SLOPE)
      wobble, sway = (np.array([rng.uniform(0, amplitude), 2 * math.pi / rng.uniform(*PERIOD_RANGE),
                                rng.uniform(0, 2 * math.pi)]) for amplitude in (MAX_WOBBLE, SWAY))
      sway[0] *= person_height
      gait_phase = rng.uniform(0, 2 * math.pi)
      mode, x_fraction, y_fraction, time_fraction = rng.random(4)
      anchor_y = person_height / 2 + y_fraction * (height - person_height)
      if self.crossing and person == 1:
        direction = -math.copysign(1.0, walks[0].velocity[0])
        anchor = walks[0].anchor + (0, (2 * y_fraction - 1) * CROSSING_DEPTH * walks[0].height)
        anchor_time = walks[0].anchor_time
      elif self.crossing and person == 0:
        anchor = np.array([(0.3 + 0.4 * x_fraction) * width, anchor_y])
        anchor_time = (0.3 + 0.4 * time_fraction) * span
      elif mode < self.enter_leave_probability:
        entering = mode < self.enter_leave_probability / 2
        # The border crossed: behind the walker when entering, ahead when leaving.
        right_border = (direction > 0) != entering
        anchor = np.array([width if right_border else 0.0, anchor_y])
        anchor_time = (0.5 * time_fraction + (0.0 if entering else 0.5)) * span
      else:
        anchor = np.array([(0.15 + 0.7 * x_fraction) * width, anchor_y])
        anchor_time = time_fraction * span
      velocity = speed * direction * np.array([1.0, slope]) / math.hypot(1.0, slope)
      walks.append(Walk(figure, person_height, lean, anchor, anchor_time, velocity, wobble,
                        sway, gait_phase))
    return walks

  def __getitem__(self, index) -> dict:
    """Index -> the whole clip's example dict (see the module docstring)."""
    return self.frames(index, range(self.clip_length))

  def frames(self, index, frame_ids: Sequence[int]) -> dict:
    """Clip `index` at the clip frames `frame_ids` only -> example dict with T = len(frame_ids)."""
    index = int(index)
    if not 0 <= index < self.num_clips:
      raise IndexError(f'index {index} out of range for {self!r}')
    frame_ids = np.asarray(frame_ids, np.int64)
    if np.any((frame_ids < 0) | (frame_ids >= self.clip_length)):
      raise IndexError(f'frame ids {frame_ids.tolist()} out of range for {self!r}')
    frame_step = self.frame_step(index)
    times = (frame_ids * frame_step).astype(np.float64)
    walks = self.walks(index)
    scene_rng = np.random.default_rng([self.seed, index, 1])
    background = self._scenes.background(scene_rng)
    self._scenes.distractors(scene_rng, background)
    # Occluders are drawn once, on their own layer, and pasted over every frame.
    occluder_layer = np.zeros_like(background)
    occluder_owner = np.zeros(background.shape[:2], np.uint8)
    if scene_rng.random() < self.occluder_probability:
      self._scenes.occluders(scene_rng, occluder_layer, occluder_owner)
      self._pillar(scene_rng, occluder_layer, occluder_owner)
    covered = occluder_owner == synthetic.OCCLUDER

    num_frames, num_people = len(times), len(walks)
    keypoints = np.zeros((num_frames, num_people, skeletons.COCO.num_keypoints, 2))
    heads = np.zeros((num_frames, num_people, 2))
    for person, walk in enumerate(walks):
      keypoints[:, person], heads[:, person] = walk.keypoints(times)
    images = np.repeat(background[None], num_frames, axis=0)
    visible = np.zeros(keypoints.shape[:-1], np.float32)
    boxes = np.zeros((num_frames, num_people, 4), np.float32)
    size = np.array(self.image_size, np.float64)
    for frame in range(num_frames):
      owner = np.zeros(background.shape[:2], np.uint8)
      # Farthest (highest pelvis) first; the hips' midpoint is the pelvis.
      depth = keypoints[frame, :, 11:13, 1].mean(-1)
      for person in np.argsort(depth, kind='stable'):
        walk, points, head = walks[person], keypoints[frame, person], heads[frame, person]
        synthetic.draw_figure(images[frame], owner, points, head, walk.head_radius,
                              walk.height, int(person) + 1)
        low, high = (np.clip(corner, 0, size) for corner in synthetic.figure_extent(
            points, head, walk.head_radius, walk.height))
        boxes[frame, person] = np.concatenate([low, high - low])
      images[frame][covered] = occluder_layer[covered]
      owner[covered] = synthetic.OCCLUDER
      visible[frame] = synthetic.visibility(keypoints[frame], owner)
    present = np.any(visible > 0, axis=-1)
    boxes[~present] = 0
    return {'images': images, 'keypoints': keypoints.astype(np.float32), 'visible': visible,
            'present': present, 'boxes': boxes, 'track_ids': np.arange(num_people),
            'clip_id': index, 'frame_ids': frame_ids, 'frame_step': frame_step}


  def _pillar(self, rng: np.random.Generator, image: np.ndarray, owner: np.ndarray) -> None:
    """A standing box (a pillar, a sign) that people walk behind, on `image` and `owner`."""
    width, height = self.image_size
    box_width = rng.uniform(*PILLAR_WIDTH) * width
    left, top = rng.uniform(0, width - box_width), rng.uniform(0, 0.5) * height
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    corners = (round(left), round(top)), (round(left + box_width), height)
    cv2.rectangle(image, *corners, color, -1)
    cv2.rectangle(owner, *corners, synthetic.OCCLUDER, -1)


class SyntheticClipWindows:
  """Grain random-access source of `length` consecutive frames of each clip of a `SyntheticClips`.

  Element k is window w of clip i, in clip order, windows by first frame
  (w = 0 .. clip_length - length): clip i's example restricted to frames
  w .. w + length - 1 (`frame_ids` says which). length 2 gives the
  (frame t - 1, frame t) pairs that a tracking model trains on.
  """

  def __init__(self, clips: SyntheticClips, length: int = 2):
    if not 1 <= length <= clips.clip_length:
      raise ValueError(f'SyntheticClipWindows: length must be in [1, {clips.clip_length}] '
                       f'(the clip length of {clips!r}), got {length}')
    self.clips = clips
    self.length = int(length)
    self._per_clip = clips.clip_length - self.length + 1

  def __len__(self) -> int:
    return len(self.clips) * self._per_clip

  def __repr__(self) -> str:
    return f'SyntheticClipWindows({self.clips!r}, length={self.length})'

  def __getitem__(self, index) -> dict:
    """Index -> example dict with T = length."""
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f'index {index} out of range for {self!r}')
    clip, start = divmod(index, self._per_clip)
    return self.clips.frames(clip, range(start, start + self.length))
