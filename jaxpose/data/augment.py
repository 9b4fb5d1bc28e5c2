"""Augmentation: the grain transforms that turn a record into what one train step reads.

Sources are grain random-access sources of examples in the schema of
`jaxpose.data.synthetic` (image, COCO-17 keypoints, visibility, boxes, and an
optional `ignore_mask`). The transforms turn an example into what one train
step reads, on the host, in numpy:

- `TopDownTransform`: one person (P = 1) -> an affine crop around the box
  (or, with half-body augmentation, around the upper or lower body), with the
  joints moved by the same matrix.
- `BottomUpTransform`: a whole image -> a square input, with every person's
  keypoints in the OpenPose-18 layout, padded to a fixed number of people, and
  a loss mask at the network's output resolution.

Targets (heatmaps, PAFs) are not made here: the train step makes them on the
device from the coordinates. Both transforms draw their random numbers in a
fixed order whatever the options, so an example's augmentation depends only on
the loader's seed and its position in the stream.
"""

import cv2
import grain.python as grain
import numpy as np

from jaxpose import skeletons
from jaxpose.data import geometry
from jaxpose.data import worker_process


# Joints of the upper body, by skeleton name, for half-body augmentation; the
# rest are the lower body. COCO: face, shoulders, elbows and wrists; MPII:
# thorax, neck, head and arms (the pelvis goes with the legs).
UPPER_BODY_JOINTS = {
    skeletons.COCO.name: tuple(range(11)),
    skeletons.MPII.name: (7, 8, 9, 10, 11, 12, 13, 14, 15),
}
# A half-body crop is the chosen joints' extent enlarged by this factor
# (SimpleBaseline, HRNet, mmpose).
HALF_BODY_PADDING = 1.5
# A half is eligible with at least this many labelled joints (HRNet: > 2).
HALF_BODY_MIN_HALF_JOINTS = 3


def _augmentation(rng: np.random.Generator, scale_factor: float, rotation_degrees: float,
                  rotation_probability: float, flip_probability: float
                  ) -> tuple[float, float, bool]:
  """Draws (scale in 1 +- scale_factor, rotation in +- rotation_degrees or 0, flip)."""
  scale = rng.uniform(1 - scale_factor, 1 + scale_factor)
  rotate = rng.random() < rotation_probability
  rotation = rng.uniform(-rotation_degrees, rotation_degrees)
  flip = rng.random() < flip_probability
  return scale, rotation if rotate else 0.0, flip


def _inside(points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Points [..., 2] -> [...] bool, whether each one's nearest pixel is in an image of `size`."""
  pixel = np.floor(points + 0.5)
  return ((pixel[..., 0] >= 0) & (pixel[..., 0] < size[0]) &
          (pixel[..., 1] >= 0) & (pixel[..., 1] < size[1]))


class _HostTransform(grain.RandomMapTransform):
  """A transform that prepares the grain worker it is unpickled in (`worker_process`)."""

  def __setstate__(self, state: dict):
    self.__dict__.update(state)
    worker_process.prepare_if_worker()


class TopDownTransform(_HostTransform):
  """One-person example -> {'image': uint8 [h, w, 3], 'joints': f32 [J, 2], 'visible': f32 [J]}.

  The crop is the person's box enlarged by `geometry.BOX_PADDING` to the
  input's aspect ratio, then (when `augment`) scaled, rotated about its centre
  and mirrored. A mirrored crop swaps left and right joints with the
  skeleton's flip permutation. `visible` is 1 for a joint that is labelled and
  lands inside the crop, else 0; joints outside keep their coordinates.

  Half-body augmentation (SimpleBaseline / HRNet), when `augment` and with
  `half_body_probability`, replaces the box of a person with at least
  `half_body_min_joints` labelled joints by a box around the labelled joints of
  the upper or the lower body (a fair coin; the other half when the drawn one
  has fewer than 3 labelled joints): their extent, centred on its midpoint,
  widened to the input's aspect ratio and enlarged by `HALF_BODY_PADDING`.
  Scale, rotation and flip then apply as usual. The other half's joints keep
  the rule above: visible where labelled and inside the crop (a hip just below
  the shoulders can be), 0 elsewhere.

  Each example draws six numbers in a fixed order, whatever the options:
  scale, whether to rotate, rotation, whether to flip, whether to crop a half
  body, whether that half is the upper one.
  """

  def __init__(self, input_size: tuple[int, int] = (256, 256),
               skeleton: skeletons.Skeleton = skeletons.COCO, *, augment: bool = True,
               scale_factor: float = 0.25, rotation_degrees: float = 30.0,
               rotation_probability: float = 0.6, flip_probability: float = 0.5,
               half_body_probability: float = 0.0, half_body_min_joints: int = 9):
    """Configures the crop.

    Args:
      input_size: (width, height) of the crops.
      skeleton: the examples' keypoint layout (for the flip permutation and,
        with half-body augmentation, its `UPPER_BODY_JOINTS` entry).
      augment: False gives the plain box crop (evaluation).
      scale_factor: the crop's size is multiplied by a factor in 1 +- this.
      rotation_degrees: rotations are uniform in +- this many degrees...
      rotation_probability: ...and happen with this probability.
      flip_probability: chance of a horizontal flip.
      half_body_probability: chance of a half-body crop (HRNet: 0.3); 0 turns
        it off.
      half_body_min_joints: only people with at least this many labelled
        joints get one (HRNet's `num_joints_half_body = 8`, which it compares
        with a strict >).
    """
    if half_body_probability > 0 and skeleton.name not in UPPER_BODY_JOINTS:
      raise ValueError(f'TopDownTransform: half-body augmentation needs the upper-body joints '
                       f'of skeleton {skeleton.name!r}; UPPER_BODY_JOINTS has '
                       f'{sorted(UPPER_BODY_JOINTS)}')
    self.input_size = tuple(int(s) for s in input_size)
    self.skeleton = skeleton
    self.augment = augment
    self.scale_factor = scale_factor
    self.rotation_degrees = rotation_degrees
    self.rotation_probability = rotation_probability
    self.flip_probability = flip_probability
    self.half_body_probability = half_body_probability
    self.half_body_min_joints = half_body_min_joints
    self._flip_permutation = skeleton.flip_permutation()
    self._upper_body = np.zeros(skeleton.num_keypoints, bool)
    self._upper_body[list(UPPER_BODY_JOINTS.get(skeleton.name, ()))] = True

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    """Example (P = 1) -> crop, joints and 0/1 visibility."""
    keypoints = np.asarray(element['keypoints'], np.float64)
    if keypoints.shape[:1] != (1,) or keypoints.shape[1:] != (self.skeleton.num_keypoints, 2):
      raise ValueError(f'TopDownTransform: expected keypoints of one person, [1, '
                       f'{self.skeleton.num_keypoints}, 2], got {keypoints.shape} '
                       f'(image_id {element.get("image_id")})')
    width, height = self.input_size
    scale, rotation, flip = _augmentation(rng, self.scale_factor, self.rotation_degrees,
                                          self.rotation_probability, self.flip_probability)
    half_body = rng.random() < self.half_body_probability
    take_upper = rng.random() < 0.5
    if not self.augment:
      scale, rotation, flip, half_body = 1.0, 0.0, False, False
    labelled = np.asarray(element['visible'][0]) > 0
    half_box = self._half_body_box(keypoints[0], labelled, take_upper) if half_body else None
    if half_box is None:
      center, size = geometry.box_to_center_scale(element['boxes'][0], width / height)
    else:
      center, size = geometry.box_to_center_scale(half_box, width / height, HALF_BODY_PADDING)
    # A box of zero extent (a person reduced to a point) would divide by zero.
    size = np.maximum(size * scale, 1.0)
    matrix = geometry.crop_matrix(center, size, self.input_size, rotation)
    if flip:
      matrix = geometry.compose(geometry.horizontal_flip_matrix(width), matrix)

    joints = geometry.apply_affine(keypoints[0], matrix)
    visible = labelled & _inside(joints, self.input_size)
    if flip:
      joints = joints[self._flip_permutation]
      visible = visible[self._flip_permutation]
    return {'image': geometry.warp(element['image'], matrix, self.input_size),
            'joints': joints.astype(np.float32),
            'visible': visible.astype(np.float32)}

  def _half_body_box(self, keypoints: np.ndarray, labelled: np.ndarray,
                     take_upper: bool) -> np.ndarray | None:
    """Keypoints [J, 2], labelled [J] -> box [4] (x, y, w, h) around one half's labelled joints, or None."""
    if labelled.sum() < self.half_body_min_joints:
      return None
    upper = labelled & self._upper_body
    lower = labelled & ~self._upper_body
    drawn, other = (upper, lower) if take_upper else (lower, upper)
    if drawn.sum() >= HALF_BODY_MIN_HALF_JOINTS:
      chosen = keypoints[drawn]
    elif other.sum() >= HALF_BODY_MIN_HALF_JOINTS:
      chosen = keypoints[other]
    else:
      return None
    # The extent's midpoint, not the joints' mean (as HRNet and mmpose take):
    # centred on it, the 1.5x box holds every chosen joint before rotation.
    low, high = chosen.min(0), chosen.max(0)
    return np.concatenate([low, high - low])


class BottomUpTransform(_HostTransform):
  """Whole-image example -> square input with OpenPose-18 keypoints of up to `max_people` people.

  Output: {'image': uint8 [S, S, 3], 'keypoints': float32 [max_people, 18, 2],
  'visible': float32 [max_people, 18] (0/1), 'person_mask': bool
  [max_people], 'mask': float32 [S / stride, S / stride]}.

  The image is resized to fit S x S, keeping its aspect, and centred on black
  padding; then (when `augment`) zoomed, rotated about the centre and
  mirrored. People with no labelled joint left in the input are dropped, the
  rest fill the slots in order and `person_mask` marks the filled ones.
  `mask` weights the loss: the area average over each output cell of 1 where
  the image is annotated, 0 where the example's optional `ignore_mask` ([H, W],
  nonzero = unannotated people or crowds) is set, and 0 over the boxes of
  people beyond `max_people`, whose targets would otherwise be missing;
  padding counts as annotated (it holds no one).
  """

  def __init__(self, input_size: int = 368, *, stride: int = 8, max_people: int = 16,
               augment: bool = True, scale_factor: float = 0.25,
               rotation_degrees: float = 30.0, rotation_probability: float = 0.6,
               flip_probability: float = 0.5, skeleton: skeletons.Skeleton | None = None):
    """Configures the input.

    Args:
      skeleton: the examples' layout when it is not COCO-17: their K
        keypoints are kept as they are (no neck added) and mirrored with its
        flip pairs; None or COCO: OpenPose-18, made from COCO-17.
      input_size: side S of the square input, a multiple of `stride`.
      stride: the network's output stride (8 for Lightweight OpenPose).
      max_people: people slots per example.
      augment: False gives the plain resize and pad (evaluation).
      scale_factor: zoom by a factor in 1 +- this.
      rotation_degrees: rotations are uniform in +- this many degrees...
      rotation_probability: ...and happen with this probability.
      flip_probability: chance of a horizontal flip.
    """
    if input_size % stride:
      raise ValueError(f'input_size {input_size} is not a multiple of stride {stride}')
    self.input_size = int(input_size)
    self.stride = int(stride)
    self.max_people = int(max_people)
    self.augment = augment
    self.scale_factor = scale_factor
    self.rotation_degrees = rotation_degrees
    self.rotation_probability = rotation_probability
    self.flip_probability = flip_probability
    self._custom = skeleton is not None and skeleton is not skeletons.COCO
    self._layout = skeleton if self._custom else skeletons.OPENPOSE
    self._flip_permutation = self._layout.flip_permutation()

  def random_map(self, element: dict, rng: np.random.Generator) -> dict:
    """Example (any P) -> image, padded keypoints, person mask and loss mask."""
    side = self.input_size
    output_size = (side, side)
    scale, rotation, flip = _augmentation(rng, self.scale_factor, self.rotation_degrees,
                                          self.rotation_probability, self.flip_probability)
    if not self.augment:
      scale, rotation, flip = 1.0, 0.0, False
    image = element['image']
    height, width = image.shape[:2]
    # The whole image as a square box around its centre: fit and pad in one warp.
    center = np.array([(width - 1) / 2, (height - 1) / 2])
    size = np.full(2, max(width, height) * scale)
    matrix = geometry.crop_matrix(center, size, output_size, rotation)
    if flip:
      matrix = geometry.compose(geometry.horizontal_flip_matrix(side), matrix)

    if self._custom:
      count = self._layout.num_keypoints
      keypoints = np.asarray(element['keypoints'], np.float64).reshape(-1, count, 2)
      visible = np.asarray(element['visible']).reshape(-1, count)
    else:
      keypoints, visible = skeletons.openpose_from_coco(
          np.asarray(element['keypoints'], np.float64).reshape(-1, skeletons.COCO.num_keypoints,
                                                             2),
          np.asarray(element['visible']).reshape(-1, skeletons.COCO.num_keypoints))
    keypoints = geometry.apply_affine(keypoints, matrix)
    visible = (visible > 0) & _inside(keypoints, output_size)
    if flip:
      keypoints = keypoints[:, self._flip_permutation]
      visible = visible[:, self._flip_permutation]
    people = np.flatnonzero(visible.any(axis=-1))
    kept, overflow = people[:self.max_people], people[self.max_people:]

    out_keypoints = np.zeros((self.max_people, self._layout.num_keypoints, 2), np.float32)
    out_visible = np.zeros((self.max_people, self._layout.num_keypoints), np.float32)
    person_mask = np.zeros(self.max_people, bool)
    out_keypoints[:len(kept)] = keypoints[kept]
    out_visible[:len(kept)] = visible[kept]
    person_mask[:len(kept)] = True
    return {'image': geometry.warp(image, matrix, output_size),
            'keypoints': out_keypoints,
            'visible': out_visible,
            'person_mask': person_mask,
            'mask': self._mask(element, matrix, np.asarray(element['boxes'])[overflow])}

  def _mask(self, element: dict, matrix: np.ndarray, dropped_boxes: np.ndarray) -> np.ndarray:
    """[S / stride, S / stride] float32 loss weights (see the class docstring)."""
    cells = self.input_size // self.stride
    mask = np.ones((cells, cells), np.float32)
    if element.get('ignore_mask') is not None:
      ignored = (np.asarray(element['ignore_mask']) > 0).astype(np.uint8) * 255
      ignored = geometry.warp(ignored, matrix, (self.input_size, self.input_size))
      ignored = cv2.resize(ignored, (cells, cells), interpolation=cv2.INTER_AREA)
      mask -= ignored.astype(np.float32) / 255
    for x, y, w, h in dropped_boxes:
      corners = geometry.apply_affine(
          np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]), matrix) / self.stride
      x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, cells)
      x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int), 0, cells)
      mask[y0:y1, x0:x1] = 0
    return mask
