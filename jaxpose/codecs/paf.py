"""Part affinity fields (OpenPose) for bottom-up models: people -> targets, maps -> people.

The layout is `jaxpose.skeletons.OPENPOSE`: 18 keypoints, 19 limbs in PAF
channel order, as in Lightweight OpenPose (Daniil-Osokin/lightweight-human-
pose-estimation.pytorch, "upstream" below).

`encode` renders the training targets of upstream's COCO dataset
(`_generate_keypoint_maps`, `_generate_paf_maps`) for every person and limb at
once, channels last, jittable over a padded people axis:

- keypoint maps: exp(-d^2 / 2 sigma^2) at the stride cells' centres, a cell
  (cx, cy) standing for the input pixel (cx * stride + shift, cy * stride +
  shift) with shift = stride / 2 - 0.5; as upstream, only cells of the window
  [int(x - 4 sigma), int(x + 4 sigma)) // stride (int truncating toward zero,
  clipped to the map) whose exponent is at most 4.6052 (ln 100) get a value;
  people are summed and the sum clipped at 1. The 19th channel is the
  background, 1 - max of the 18.
- PAFs: in map units (x / stride, no shift, as upstream), the cells of the box
  [int(min - thickness), int(max + thickness)) around the limb whose distance
  to the limb's line is at most `thickness` get the unit vector a -> b.
  Upstream writes the people one after another, so where limbs of two people
  overlap the last one wins; here, as in the original OpenPose (CMU) data
  layer, the vectors of all people covering a cell are averaged. Outside
  overlaps the two agree.

Differences of float32 here against upstream's float64 are at the float32
rounding level: values agree to ~1e-6, and a cell whose exponent or distance
lies within rounding of the threshold can fall on the other side of it.

`decode` is upstream's post-processing: demo.py's bicubic upsampling here,
then its `extract_keypoints` and `group_keypoints`, vectorised in
`jaxpose.codecs.paf_grouping` (peak finding, limb scoring, assembly into
people), with the same results, bit for bit.
"""

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeletons
from jaxpose.codecs import paf_grouping

# The layout's constants are paf_grouping's, which needs them too and cannot
# import this module (it is imported here).
NUM_KEYPOINTS = paf_grouping.NUM_KEYPOINTS  # 18
NUM_LIMBS = len(skeletons.OPENPOSE.limbs)  # 19
_LIMB_A, _LIMB_B = paf_grouping.LIMB_A, paf_grouping.LIMB_B

# Upstream's Gaussian is cut at exp(-4.6052) ~ 0.01 and drawn on a window of
# +- 4 sigma.
_MAX_EXPONENT = 4.6052
_WINDOW_SIGMAS = 4


def _keypoint_maps(keypoints: jax.Array, visible: jax.Array,
                   map_size: tuple[int, int], stride: int,
                   sigma: float) -> jax.Array:
  """Keypoints [..., P, K, 2] (pixels), visible [..., P, K] bool -> [..., H, W, K]."""
  width, height = map_size
  shift = stride / 2 - 0.5

  def axis_terms(coord, size):
    # -> squared distances of each cell centre to `coord` and whether the cell
    # is inside upstream's window, both [..., P, size, K].
    coord = coord[..., None, :]
    low = jnp.maximum(jnp.trunc(coord - _WINDOW_SIGMAS * sigma), 0)
    high = jnp.minimum(jnp.trunc(coord + _WINDOW_SIGMAS * sigma), size * stride)
    cell = jnp.arange(size, dtype=jnp.float32)[:, None]
    inside = (cell >= jnp.floor(low / stride)) & (cell < jnp.floor(high / stride))
    return (cell * stride + shift - coord)**2, inside

  dx2, inside_x = axis_terms(keypoints[..., 0], width)
  dy2, inside_y = axis_terms(keypoints[..., 1], height)
  # [..., P, H, W, K]; XLA fuses this into the sum over people, so the
  # per-person maps are never stored.
  exponent = (dy2[..., :, None, :] + dx2[..., None, :, :]) / 2 / sigma / sigma
  drawn = (inside_y[..., :, None, :] & inside_x[..., None, :, :] &
           (exponent <= _MAX_EXPONENT) & visible[..., None, None, :])
  gaussians = jnp.where(drawn, jnp.exp(-jnp.where(drawn, exponent, 0)), 0)
  return jnp.minimum(gaussians.sum(axis=-4), 1)


def _paf_maps(keypoints: jax.Array, visible: jax.Array,
              map_size: tuple[int, int], stride: int,
              thickness: float, limbs: tuple[tuple[int, int], ...] | None = None) -> jax.Array:
  """Keypoints [..., P, K, 2] (pixels), visible [..., P, K] bool -> [..., H, W, 2L] (`limbs`, or OpenPose-18's)."""
  limb_a = _LIMB_A if limbs is None else np.array([a for a, _ in limbs])
  limb_b = _LIMB_B if limbs is None else np.array([b for _, b in limbs])
  width, height = map_size
  points = keypoints / stride  # map units, no half-cell shift (upstream's)
  start, end = points[..., limb_a, :], points[..., limb_b, :]  # [..., P, L, 2]
  vector = end - start
  norm = jnp.sqrt(jnp.sum(vector**2, axis=-1))
  has_limb = visible[..., limb_a] & visible[..., limb_b] & (norm >= 1e-7)
  # Masked people may hold anything, NaN included: keep it out of the sums.
  unit = jnp.where(has_limb[..., None],
                   vector / jnp.where(has_limb, norm, 1)[..., None], 0)
  low = jnp.maximum(jnp.minimum(start, end) - thickness, 0)
  high = jnp.minimum(jnp.maximum(start, end) + thickness,
                     np.array([width, height], np.float32))
  low, high = jnp.trunc(low), jnp.trunc(high)

  def axis_cells(size, axis):
    # -> cell coordinates [size, 1] and whether each lies in the box,
    # [..., P, size, L].
    cell = jnp.arange(size, dtype=jnp.float32)[:, None]
    inside = ((cell >= low[..., None, :, axis]) &
              (cell < high[..., None, :, axis]))
    return cell, inside

  cell_x, inside_x = axis_cells(width, 0)
  cell_y, inside_y = axis_cells(height, 1)
  # Distance of the cell to the limb's line: |(c - a) x u|, [..., P, H, W, L].
  along_x = (cell_x - start[..., None, :, 0]) * unit[..., None, :, 1]  # [..., P, W, L]
  along_y = (cell_y - start[..., None, :, 1]) * unit[..., None, :, 0]  # [..., P, H, L]
  distance = jnp.abs(along_x[..., None, :, :] - along_y[..., :, None, :])
  covered = (inside_y[..., :, None, :] & inside_x[..., None, :, :] &
             (distance <= thickness) & has_limb[..., None, None, :])
  covered = covered.astype(jnp.float32)
  count = covered.sum(axis=-4)  # [..., H, W, L]
  total = jnp.stack([
      (covered * unit[..., None, None, :, 0]).sum(axis=-4),
      (covered * unit[..., None, None, :, 1]).sum(axis=-4)], axis=-1)
  average = total / jnp.maximum(count, 1)[..., None]
  return average.reshape(*average.shape[:-2], 2 * average.shape[-2])


def encode(keypoints, visible, *, image_size: tuple[int, int], stride: int = 8,
           sigma: float = 7.0, paf_thickness: float = 1.0,
           person_mask=None, limbs=None) -> tuple[jax.Array, jax.Array]:
  """People [..., P, 18, 2] -> (heatmaps [..., H, W, 19], pafs [..., H, W, 38]), float32.

  With `limbs` (0-based (a, b) pairs of another layout of K keypoints):
  people [..., P, K, 2] -> (heatmaps [..., H, W, K + 1], pafs [..., H, W, 2L]).

  Args:
    keypoints: [..., P, 18, 2] (x, y) input-image pixels, OPENPOSE order; P is
      a padded people axis.
    visible: [..., P, 18]; > 0 for annotated keypoints (drawn whether inside
      the image or not: a keypoint just off the image leaves its Gaussian's
      tail on the border cells).
    image_size: (width, height) of the input; the maps are
      (height // stride, width // stride).
    stride: input pixels per map cell.
    sigma: Gaussian sigma, input pixels.
    paf_thickness: half-width of the PAFs, map cells.
    person_mask: [..., P] bool, the real people; None means all.
    limbs: the layout's limbs in PAF channel order; None: OpenPose-18's.

  Returns:
    heatmaps: 18 keypoint channels (clipped sums of Gaussians) and the
      background, 1 - their max (1 where there is nobody).
    pafs: limb i in channels (2i, 2i+1), the (x, y) of the unit vector from
      its first to its second keypoint, averaged over the people whose limb
      covers the cell; 0 elsewhere and for limbs with an end not annotated or
      of zero length.

  Jitted (and jittable inside a caller's jit) with image_size, stride, sigma
  and paf_thickness static.
  """
  keypoints = jnp.asarray(keypoints, jnp.float32)
  if limbs is not None:
    limbs = tuple((int(a), int(b)) for a, b in limbs)
  num_keypoints = NUM_KEYPOINTS if limbs is None else keypoints.shape[-2]
  if keypoints.shape[-2:] != (num_keypoints, 2) or (
      limbs is not None and not all(0 <= k < num_keypoints for limb in limbs for k in limb)):
    raise ValueError(f'keypoints: expected [..., P, {num_keypoints}, 2] with limbs of '
                     f'0..{num_keypoints - 1}, got {keypoints.shape} and {limbs}')
  visible = jnp.asarray(visible)
  if visible.shape != keypoints.shape[:-1]:
    raise ValueError(f'visible: expected {keypoints.shape[:-1]}, got {visible.shape}')
  if person_mask is None:
    person_mask = jnp.ones(keypoints.shape[:-2], bool)
  person_mask = jnp.asarray(person_mask, bool)
  if person_mask.shape != keypoints.shape[:-2]:
    raise ValueError(f'person_mask: expected {keypoints.shape[:-2]}, got {person_mask.shape}')
  return _encode(keypoints, visible, person_mask, image_size=tuple(image_size),
                 stride=stride, sigma=sigma, paf_thickness=paf_thickness, limbs=limbs)


# Jitted even when `encode` is called eagerly: op by op, the first call of
# each shape spends seconds compiling the ops one at a time.
@functools.partial(jax.jit, static_argnames=('image_size', 'stride', 'sigma', 'paf_thickness',
                                             'limbs'))
def _encode(keypoints, visible, person_mask, *, image_size, stride, sigma, paf_thickness,
            limbs=None):
  """`encode` after its checks."""
  visible = (visible > 0) & person_mask[..., None]
  width, height = image_size
  map_size = (width // stride, height // stride)
  keypoint_maps = _keypoint_maps(keypoints, visible, map_size, stride, sigma)
  background = 1 - keypoint_maps.max(axis=-1, keepdims=True)
  heatmaps = jnp.concatenate([keypoint_maps, background], axis=-1)
  pafs = _paf_maps(keypoints, visible, map_size, stride, paf_thickness, limbs)
  return heatmaps, pafs


def _upsample(maps: np.ndarray, factor: int) -> np.ndarray:
  """[H, W, C] -> [factor H, factor W, C], bicubic, as upstream's demo."""
  maps = np.ascontiguousarray(maps, np.float32)
  if factor == 1:  # maps already at the image's size (evaluation): cv2 would only copy
    return maps
  return cv2.resize(maps, (0, 0), fx=factor, fy=factor,
                    interpolation=cv2.INTER_CUBIC).reshape(
                        maps.shape[0] * factor, maps.shape[1] * factor, -1)



def decode(heatmaps, pafs, *, stride: int = 8, upsample: int = 4,
           peak_threshold: float = 0.1, min_keypoints: int = 3,
           min_score: float = 0.2, upstream_peaks: bool = False,
           layout: paf_grouping.PafLayout = paf_grouping.OPENPOSE_LAYOUT
           ) -> tuple[np.ndarray, np.ndarray]:
  """Maps of one image -> (people [N, 18, 3] (x, y, score), person scores [N]), float32.

  Another layout (`paf_grouping.layout_for(limbs, K)`): heatmaps [H, W, K (+ 1)],
  pafs [H, W, 2L] -> people [N, K, 3].

  Args:
    heatmaps: [H, W, 18 or 19] keypoint maps (a background channel is
      ignored), numpy or jax.
    pafs: [H, W, 38].
    stride: input pixels per map cell.
    upsample: factor of the bicubic upsampling (cv2.resize, as upstream)
      before peak finding and limb scoring.
    peak_threshold: minimum heatmap value of a peak.
    min_keypoints: people whose count is lower are dropped. The count is
      upstream's: 2 for a person's first limb, plus one per further tree limb
      attached (the redundant ear-shoulder limbs add keypoints, not counts).
    min_score: people whose score / count is lower are dropped.
    upstream_peaks: True finds peaks exactly as upstream (bit-identical
      output). The default breaks exact ties and suppresses close peaks by
      value (see `paf_grouping.find_peaks`), which decodes the targets of
      `encode` where upstream's rules lose keypoints (a neck half-way between
      two cells). On network outputs the two differ only where neighbouring
      pixels are exactly equal or two peaks of a type are within 6 upsampled
      pixels.

  Returns:
    people: x, y in input-image pixels and the keypoint's heatmap value; a
      keypoint not found is (-1, -1, 0). The position of upsampled pixel j
      is j * stride / upsample, as in upstream's demo. This is not quite the
      inverse of `encode`, whose cell c stands for the pixel c * stride +
      stride / 2 - 0.5, i.e. pixel j for (j + 0.5) * stride / upsample - 0.5:
      the positions reported are 0.5 px (for stride 8, upsample 4) up and
      left of it, as the round trip on the COCO sample measures; upstream's
      val.py adds 0.5 before COCO evaluation.
    person scores: upstream's person score, the sum of its keypoints' heatmap
      values and of its limbs' PAF scores (upstream's val.py ranks COCO
      results by this times (count - 1)).
    People are in upstream's order (that of their first limb).
  """
  heatmaps = np.asarray(heatmaps, np.float32)
  pafs = np.asarray(pafs, np.float32)
  num_keypoints, num_limbs = layout.num_keypoints, len(layout.limb_a)
  if (heatmaps.ndim != 3 or heatmaps.shape[-1] < num_keypoints or pafs.ndim != 3 or
      pafs.shape[-1] != 2 * num_limbs or pafs.shape[:2] != heatmaps.shape[:2]):
    raise ValueError(f'decode: expected heatmaps [H, W, {num_keypoints + 1}] and pafs '
                     f'[H, W, {2 * num_limbs}] of one image, got {heatmaps.shape} and '
                     f'{pafs.shape}')
  heatmaps = _upsample(heatmaps[..., :num_keypoints], upsample)
  x, y, kind, value = paf_grouping.find_peaks(heatmaps, peak_threshold,
                                              upstream=upstream_peaks)
  pafs = _upsample(pafs, upsample)
  limb, a, b, score = paf_grouping.score_limbs(x, y, kind, pafs, layout=layout)
  found = [(ids, s) for ids, s, count in paf_grouping.assemble(limb, a, b, score, value, layout)
           if count >= min_keypoints and s / count >= min_score]
  people = np.zeros((len(found), num_keypoints, 3), np.float32)
  people[..., :2] = -1
  if found:
    ids = np.array([ids for ids, _ in found])
    present = ids >= 0
    peak = ids[present]
    people[present] = np.stack([x[peak] * stride / upsample,
                                y[peak] * stride / upsample, value[peak]], -1)
  scores = np.array([s for _, s in found], np.float32)
  return people, scores
