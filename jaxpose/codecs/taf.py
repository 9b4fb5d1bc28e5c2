"""Temporal affinity fields (STAF) for tracking bottom-up people: two frames' people -> targets, maps -> link scores.

STAF (Raaj et al., CVPR 2019, "Efficient Online Multi-Person 2D Pose Tracking
with Recurrent Spatio-Temporal Affinity Fields") adds to OpenPose's PAFs,
which link two keypoints of one person in one frame, temporal affinity fields
(TAFs) linking a keypoint of a person in frame t-1 to a keypoint of the same
person in frame t. "Upstream" below is CMU's code: the data layer that makes
the training targets (soulslicer/openpose_caffe_train, branch
new_commits_fix, commit 72a828b56d4b38feaa564957f14c4e7ed3dd4cf1,
src/caffe/openpose/oPDataTransformer.cpp, `generateLabelMap` and
`putVectorMaps`) and the tracker that reads them (soulslicer/STAF, branch
staf, commit 6c674c9e7c4bce03944f893344035e732904c39c,
src/openpose/pose/poseParameters.cpp `TAF_PART_PAIRS`,
src/openpose/net/bodyPartConnectorBase.cu `tafScoreGPU`).

Links. Upstream's TAF model 0 (the data layer's taf_topology 2, the same
pairs) on BODY_25B: the 25 same-keypoint links (k at t, k at t-1), then 26
cross links (a at t, b at t-1), a -> b being BODY_25B's limbs. BODY_25B's
points 0..16 are COCO's, so keeping the links between them gives `LINKS`, 33
links in channel order:
- links 0..16: keypoint k at t with keypoint k at t-1 (COCO order);
- links 17..32: (a at t, b at t-1) for (a, b) in (0, 1), (0, 2), (1, 3),
  (2, 4), (0, 5), (0, 6), (5, 7), (6, 8), (7, 9), (8, 10), (5, 11), (6, 12),
  (11, 13), (12, 14), (13, 15), (14, 16): nose-eyes, eyes-ears, nose-
  shoulders, arms, shoulders-hips, legs. Only this direction: the nose at t
  is linked to the left eye at t-1, not the left eye at t to the nose at t-1.
Dropped: BODY_25B's neck and head top (17, 18) and feet (19..24), with their
8 same-keypoint and 10 cross links. Link i is in channels (2i, 2i+1), x then
y: 66 channels.

`encode` renders upstream's data layer: in map units (pixels / stride, no
half-cell shift), the cells of the box [round(min - thickness), round(max +
thickness)) (std::round, clipped to the map) around the segment whose
distance to its line is at most `thickness` (upstream: 1 cell) get the unit
vector along the segment; a cell covered by several people's links gets the
mean of their vectors. A link is drawn when both its keypoints are annotated
(upstream: labelled, occluded or not) and the person is in both frames; a
segment of length 0 (a keypoint that did not move) draws nothing, as upstream
whose unit vector is then NaN. The one difference: upstream's data layer
points the vector from the keypoint at t to the keypoint at t-1, while its
tracker (`tafScoreGPU`) integrates the field from the keypoint at t-1 to the
keypoint at t (on a field as the data layer draws it, its dot products are
negative). Both cannot hold for one network; here the fields point from t-1
to t, as the tracker reads them (and as the issue describes them), so
`encode` and `score` agree; they are the data layer's fields negated, cell
for cell.

`score` is upstream's `tafScoreGPU` on host numpy: for each link and each
pair (person at t-1, person at t), the line integral of the link's field
along the segment from the keypoint at t-1 to the keypoint at t.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeletons
from jaxpose.codecs import paf

NUM_KEYPOINTS = skeletons.COCO.num_keypoints  # 17
# (keypoint at t, keypoint at t-1), in channel order (module docstring).
LINKS = tuple((k, k) for k in range(NUM_KEYPOINTS)) + (
    (0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (6, 8), (7, 9), (8, 10),
    (5, 11), (6, 12), (11, 13), (12, 14), (13, 15), (14, 16))
NUM_LINKS = len(LINKS)  # 33
NUM_CHANNELS = 2 * NUM_LINKS  # 66
LINK_NOW = np.array([now for now, _ in LINKS])
LINK_PREV = np.array([prev for _, prev in LINKS])

# tafScoreGPU's constants: a keypoint scored lower is absent; a sample
# counts when its dot product is above it; a link scores when more than
# this fraction of its samples count.
KEYPOINT_THRESHOLD = 0.05
_SAMPLE_THRESHOLD = 0.05
_MIN_FRACTION_ABOVE = 0.95
# Samples along a segment: round(sqrt(5 * its longer side)), within these.
_MIN_SAMPLES, _MAX_SAMPLES = 5, 25
# A short segment whose samples fail scores just above the sample threshold
# when shorter than sqrt(W H) / this; segments under the minimum length
# score -1.
_NEAR_DIVISOR = 150
_MIN_LENGTH = 1e-6
NO_LINK = -1.0


def _link_fields(start: jax.Array, end: jax.Array, drawn: jax.Array,
                 map_size: tuple[int, int], thickness: float) -> jax.Array:
  """Segments start -> end [..., P, L, 2] (map units), drawn [..., P, L] -> fields [..., H, W, 2L]."""
  width, height = map_size
  direction = end - start
  length = jnp.sqrt(jnp.sum(direction**2, axis=-1))
  # Upstream's unit vector is NaN for a segment of length 0, which it skips;
  # masked people may hold NaN: both stay out of the sums.
  drawn = drawn & (length > 0)
  unit = jnp.where(drawn[..., None], direction / jnp.where(drawn, length, 1)[..., None], 0)
  # std::round(v) clipped to [0, size] equals floor(v + 0.5) clipped: they
  # differ only at negative halves, which both clip to 0 or to an empty range.
  size = np.array([width, height], np.float32)
  first = jnp.maximum(jnp.floor(jnp.minimum(start, end) - thickness + 0.5), 0)
  last = jnp.minimum(jnp.floor(jnp.maximum(start, end) + thickness + 0.5), size)
  columns = jnp.arange(width, dtype=jnp.float32)[:, None]  # [W, 1]
  rows = jnp.arange(height, dtype=jnp.float32)[:, None]  # [H, 1]
  in_columns = (columns >= first[..., None, :, 0]) & (columns < last[..., None, :, 0])
  in_rows = (rows >= first[..., None, :, 1]) & (rows < last[..., None, :, 1])
  # |(cell - end) x unit|, measured from the keypoint at t as upstream.
  cross_x = (columns - end[..., None, :, 0]) * unit[..., None, :, 1]  # [..., P, W, L]
  cross_y = (rows - end[..., None, :, 1]) * unit[..., None, :, 0]  # [..., P, H, L]
  near_line = jnp.abs(cross_x[..., None, :, :] - cross_y[..., :, None, :]) <= thickness
  covered = (in_rows[..., :, None, :] & in_columns[..., None, :, :] & near_line &
             drawn[..., None, None, :]).astype(jnp.float32)  # [..., P, H, W, L]
  people = covered.sum(axis=-4)  # [..., H, W, L]
  summed = jnp.einsum('...phwl,...plc->...hwlc', covered, unit)
  fields = summed / jnp.maximum(people, 1)[..., None]
  return fields.reshape(*fields.shape[:-2], 2 * fields.shape[-2])


def encode(keypoints_prev, visible_prev, keypoints, visible, person_mask=None, *,
           image_size: tuple[int, int], stride: int = 8, thickness: float = 1.0) -> jax.Array:
  """People in frames t-1 and t [..., P, 17, 2] -> TAFs [..., H, W, 66], float32.

  Args:
    keypoints_prev: [..., P, 17, 2] (x, y) input-image pixels at t-1, COCO
      order; P is a padded people axis, person p the same track in both
      frames.
    visible_prev: [..., P, 17]; > 0 for keypoints annotated at t-1. A person
      absent from one frame has nothing annotated there.
    keypoints: [..., P, 17, 2] at t.
    visible: [..., P, 17] at t.
    person_mask: [..., P] bool, the real people; None means all.
    image_size: (width, height) of the input; the maps are
      (height // stride, width // stride).
    stride: input pixels per map cell.
    thickness: half-width of the fields, map cells (upstream: 1).

  Returns:
    link i of `LINKS` in channels (2i, 2i+1): the unit vector from its
    keypoint at t-1 to its keypoint at t, averaged over the people whose link
    covers the cell; 0 elsewhere.

  Jitted (and jittable inside a caller's jit) with image_size, stride and
  thickness static.
  """
  shape = np.shape(keypoints)
  if len(shape) < 3 or shape[-2:] != (NUM_KEYPOINTS, 2):
    raise ValueError(f'taf.encode: keypoints: expected [..., P, {NUM_KEYPOINTS}, 2], got {shape}')
  arrays = {'keypoints_prev': (keypoints_prev, shape), 'visible_prev': (visible_prev, shape[:-1]),
            'visible': (visible, shape[:-1])}
  if person_mask is not None:
    arrays['person_mask'] = (person_mask, shape[:-2])
  for name, (array, expected) in arrays.items():
    if np.shape(array) != expected:
      raise ValueError(f'taf.encode: {name}: expected {expected}, got {np.shape(array)}')
  if person_mask is None:
    person_mask = jnp.ones(shape[:-2], bool)
  return _encode(jnp.asarray(keypoints_prev, jnp.float32), jnp.asarray(visible_prev),
                 jnp.asarray(keypoints, jnp.float32), jnp.asarray(visible),
                 jnp.asarray(person_mask, bool), image_size=tuple(image_size), stride=stride,
                 thickness=thickness)


# Jitted even when `encode` is called eagerly (compiling op by op is slow).
@functools.partial(jax.jit, static_argnames=('image_size', 'stride', 'thickness'))
def _encode(keypoints_prev, visible_prev, keypoints, visible, person_mask, *, image_size,
            stride, thickness):
  """`encode` after its checks."""
  drawn = ((visible_prev[..., LINK_PREV] > 0) & (visible[..., LINK_NOW] > 0) &
           person_mask[..., None])
  width, height = image_size
  return _link_fields(keypoints_prev[..., LINK_PREV, :] / stride,
                      keypoints[..., LINK_NOW, :] / stride, drawn,
                      (width // stride, height // stride), thickness)


def _people(people, name: str) -> np.ndarray:
  """Checks and converts people [N, 17, 3] (x, y, score) to float64."""
  people = np.asarray(people, np.float64)
  if people.ndim != 3 or people.shape[1:] != (NUM_KEYPOINTS, 3):
    raise ValueError(f'taf.score: {name}: expected [N, {NUM_KEYPOINTS}, 3] (x, y, score), '
                     f'got {people.shape}')
  return people


def score(tafs, people_prev, people, *, stride: int = 8, upsample: int = 1,
          keypoint_threshold: float = KEYPOINT_THRESHOLD) -> np.ndarray:
  """TAFs of frame t [H, W, 66], people at t-1 [Q, 17, 3] and at t [P, 17, 3] -> link scores [Q, P, 33].

  Upstream's tafScoreGPU, for link i = (a, b) between person q at t-1 and
  person p at t: the segment from q's keypoint b to p's keypoint a, in map
  pixels (image pixels x upsample / stride), of length n > 1e-6, is sampled at
  round(sqrt(5 max(|dx|, |dy|))) points clipped to [5, 25], the first at b,
  evenly spaced, the last one step short of a, each read at its rounded
  pixel (int(v + 0.5)); a sample counts when the dot product of the field
  there with the segment's unit vector is above 0.05. More than 95 % of the
  samples counting, the score is their mean; else 0.05 + 1e-6 where n <
  sqrt(W H) / 150, else -1. A keypoint scored below `keypoint_threshold`, or
  a segment of length <= 1e-6, gives -1. Upstream reads samples left of or
  above the map out of bounds; here they are clipped to its first column or
  row, as it clips the others to the last.

  Args:
    tafs: [H, W, 66] the fields of frame t (`encode`'s layout), numpy or jax.
    people_prev: [Q, 17, 3] (x, y, score), input-image pixels, at t-1.
    people: [P, 17, 3] at t.
    stride: input pixels per map cell.
    upsample: factor of a bicubic upsampling of the fields first (as
      `paf.decode`; upstream scores on fields resized to the input image).
    keypoint_threshold: keypoints scored lower are absent (upstream: 0.05).

  Returns:
    float64 scores, at most 1 on fields of unit vectors (upsampled or
    predicted fields can exceed it a little); -1 (`NO_LINK`) where the field
    gives none.
  """
  tafs = np.asarray(tafs, np.float32)
  if tafs.ndim != 3 or tafs.shape[-1] != NUM_CHANNELS:
    raise ValueError(f'taf.score: tafs: expected [H, W, {NUM_CHANNELS}] of one frame, '
                     f'got {tafs.shape}')
  people_prev, people = _people(people_prev, 'people_prev'), _people(people, 'people')
  tafs = paf._upsample(tafs, upsample)  # pylint: disable=protected-access
  height, width = tafs.shape[:2]
  scale = upsample / stride
  # [Q, P, L, 2]: from the keypoint at t-1 to the keypoint at t.
  start = people_prev[:, None, LINK_PREV, :2]
  direction = (people[None, :, LINK_NOW, :2] - start) * scale
  start = start * scale
  longer_side = np.abs(direction).max(axis=-1)
  samples = np.clip(np.trunc(np.sqrt(5 * longer_side) + 0.5), _MIN_SAMPLES, _MAX_SAMPLES)
  length = np.sqrt(np.sum(direction**2, axis=-1))
  unit = direction / np.where(length > _MIN_LENGTH, length, 1)[..., None]
  index = np.arange(_MAX_SAMPLES)  # [S]
  points = start[..., None, :] + index[:, None] * (direction / samples[..., None])[..., None, :]
  pixels = np.clip(np.trunc(points + 0.5), 0, [width - 1, height - 1]).astype(np.int64)
  channel = 2 * np.arange(NUM_LINKS)[:, None]  # [L, 1]
  field_x = tafs[pixels[..., 1], pixels[..., 0], channel]  # [Q, P, L, S]
  field_y = tafs[pixels[..., 1], pixels[..., 0], channel + 1]
  dot = unit[..., 0, None] * field_x + unit[..., 1, None] * field_y
  counts = (dot > _SAMPLE_THRESHOLD) & (index < samples[..., None])
  count = counts.sum(axis=-1)
  mean = np.where(counts, dot, 0).sum(axis=-1) / np.maximum(count, 1)
  near = length < np.sqrt(width * height) / _NEAR_DIVISOR
  result = np.where(count / samples > _MIN_FRACTION_ABOVE, mean,
                    np.where(near, _SAMPLE_THRESHOLD + 1e-6, NO_LINK))
  present = ((people_prev[:, None, LINK_PREV, 2] >= keypoint_threshold) &
             (people[None, :, LINK_NOW, 2] >= keypoint_threshold))
  return np.where(present & (length > _MIN_LENGTH), result, NO_LINK)
