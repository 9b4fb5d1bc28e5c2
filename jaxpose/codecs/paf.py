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

`decode` is upstream's post-processing (demo.py's bicubic upsampling,
`extract_keypoints`, `group_keypoints`) with the same results, bit for bit,
restructured so that it costs little on CPU: peak finding, peak suppression
and the PAF line integrals of every candidate limb of every limb type are
whole-array numpy operations; only the greedy choice of connections and their
assembly into people are Python loops, over the accepted connections only.
Upstream's peak rules lose keypoints on exactly symmetric maps (a keypoint
halfway between two cell centres, as a neck at the midpoint of integer
shoulders often is, gives a flat top with no strict maximum);
`upstream_peaks=False` fixes that for decoding rendered targets.
"""

import functools

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeletons

NUM_KEYPOINTS = skeletons.OPENPOSE.num_keypoints  # 18
NUM_LIMBS = len(skeletons.OPENPOSE.limbs)  # 19
_LIMB_A = np.array([a for a, _ in skeletons.OPENPOSE.limbs])
_LIMB_B = np.array([b for _, b in skeletons.OPENPOSE.limbs])

# Upstream's Gaussian is cut at exp(-4.6052) ~ 0.01 and drawn on a window of
# +- 4 sigma.
_MAX_EXPONENT = 4.6052
_WINDOW_SIGMAS = 4

# --- decoding constants, upstream's ---
# Peaks closer than this (upsampled-map pixels) to an earlier one are dropped.
_PEAK_MIN_DISTANCE = 6
# Samples of the PAF along each candidate limb, the field's minimum projection
# for a sample to count, and the fraction of samples that must count.
_LIMB_SAMPLES = 10
_MIN_PAF_SCORE = 0.05
_MIN_SUCCESS_RATIO = 0.8
# The order in which limbs are attached to people: a walk of the tree from the
# neck, then the two redundant ear-shoulder limbs, which only fill in missing
# keypoints. Pairs (a, b) of OPENPOSE keypoints, as upstream's grouping order.
_GROUPING_PAIRS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8),
                   (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0),
                   (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17))
_GROUPING_ORDER = tuple(skeletons.OPENPOSE.limbs.index(p) for p in _GROUPING_PAIRS)
_REDUNDANT_LIMBS = frozenset(_GROUPING_ORDER[-2:])


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
              thickness: float) -> jax.Array:
  """Keypoints [..., P, K, 2] (pixels), visible [..., P, K] bool -> [..., H, W, 2L]."""
  width, height = map_size
  points = keypoints / stride  # map units, no half-cell shift (upstream's)
  start, end = points[..., _LIMB_A, :], points[..., _LIMB_B, :]  # [..., P, L, 2]
  vector = end - start
  norm = jnp.sqrt(jnp.sum(vector**2, axis=-1))
  has_limb = visible[..., _LIMB_A] & visible[..., _LIMB_B] & (norm >= 1e-7)
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
           person_mask=None) -> tuple[jax.Array, jax.Array]:
  """People [..., P, 18, 2] -> (heatmaps [..., H, W, 19], pafs [..., H, W, 38]), float32.

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
  if keypoints.shape[-2:] != (NUM_KEYPOINTS, 2):
    raise ValueError(f'keypoints: expected [..., P, {NUM_KEYPOINTS}, 2], got {keypoints.shape}')
  visible = jnp.asarray(visible)
  if visible.shape != keypoints.shape[:-1]:
    raise ValueError(f'visible: expected {keypoints.shape[:-1]}, got {visible.shape}')
  if person_mask is None:
    person_mask = jnp.ones(keypoints.shape[:-2], bool)
  person_mask = jnp.asarray(person_mask, bool)
  if person_mask.shape != keypoints.shape[:-2]:
    raise ValueError(f'person_mask: expected {keypoints.shape[:-2]}, got {person_mask.shape}')
  return _encode(keypoints, visible, person_mask, image_size=tuple(image_size),
                 stride=stride, sigma=sigma, paf_thickness=paf_thickness)


# Jitted even when `encode` is called eagerly: op by op, the first call of
# each shape spends seconds compiling the ops one at a time.
@functools.partial(jax.jit, static_argnames=('image_size', 'stride', 'sigma', 'paf_thickness'))
def _encode(keypoints, visible, person_mask, *, image_size, stride, sigma, paf_thickness):
  """`encode` after its checks."""
  visible = (visible > 0) & person_mask[..., None]
  width, height = image_size
  map_size = (width // stride, height // stride)
  keypoint_maps = _keypoint_maps(keypoints, visible, map_size, stride, sigma)
  background = 1 - keypoint_maps.max(axis=-1, keepdims=True)
  heatmaps = jnp.concatenate([keypoint_maps, background], axis=-1)
  pafs = _paf_maps(keypoints, visible, map_size, stride, paf_thickness)
  return heatmaps, pafs


def _upsample(maps: np.ndarray, factor: int) -> np.ndarray:
  """[H, W, C] -> [factor H, factor W, C], bicubic, as upstream's demo."""
  maps = np.ascontiguousarray(maps, np.float32)
  if factor == 1:  # maps already at the image's size (evaluation): cv2 would only copy
    return maps
  return cv2.resize(maps, (0, 0), fx=factor, fy=factor,
                    interpolation=cv2.INTER_CUBIC).reshape(
                        maps.shape[0] * factor, maps.shape[1] * factor, -1)


def find_peaks(heatmaps: np.ndarray, threshold: float = 0.1,
               min_distance: float = _PEAK_MIN_DISTANCE, upstream: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Heatmaps [H, W, K] -> peaks (x [M], y [M], type [M], score [M]), by type, x, y.

  With `upstream`, its `extract_keypoints` for all K channels at once: a peak
  is a value >= `threshold` strictly above its 4 neighbours (anything is above
  the outside of the map); then, in the order of x (ties: y) within a type,
  each kept peak drops the later ones closer than `min_distance`.

  Without, two changes that only matter where upstream's rules fail on maps
  with exact symmetries, such as the targets of `encode`: a value equal to its
  right or lower neighbour still counts (so a flat top of 2 pixels, which a
  keypoint halfway between two cell centres gives, has one peak instead of
  none), and suppression goes by decreasing value instead of x (so a ripple
  of the upsampling next to a peak, e.g. on the map's border, does not
  replace the peak).

  The result is in upstream's keypoint id order: by type, then x, then y.
  """
  if threshold <= 0:
    raise ValueError(f'find_peaks: threshold must be positive, got {threshold}')
  height, width, kinds = heatmaps.shape
  flat = heatmaps.reshape(-1)
  index = np.flatnonzero(flat >= threshold)
  value = flat[index]
  pixel, kind = np.divmod(index, kinds)
  y, x = np.divmod(pixel, width)
  # Upstream zeroes values under the threshold before comparing; with a
  # positive threshold, comparing with the raw neighbours decides the same.
  # Neighbour indices are clamped into the array; the border tests make the
  # clamped (wrong) neighbours irrelevant.
  last = flat.size - 1
  row = width * kinds
  above_next = np.greater if upstream else np.greater_equal
  is_peak = (((x == 0) | (value > flat[index - kinds])) &
             ((x == width - 1) | above_next(value, flat[np.minimum(index + kinds, last)])) &
             ((y == 0) | (value > flat[index - row])) &
             ((y == height - 1) | above_next(value, flat[np.minimum(index + row, last)])))
  x, y, kind, value = x[is_peak], y[is_peak], kind[is_peak], value[is_peak]
  order = np.lexsort((y, x, kind))
  x, y, kind, value = x[order], y[order], kind[order], value[order]
  # Suppression: a peak survives unless a surviving peak of its type that
  # comes before it (in x order, or by value) lies closer than
  # `min_distance`. Close pairs come from looking up each peak's neighbours
  # in a disc by binary search in the sorted keys (no M x M matrix). Then the
  # peaks are settled in rounds: a peak with no predecessor left open is
  # final and, if kept, suppresses its successors; pairs done with are
  # dropped. There are as many rounds as links in the longest chain of close
  # peaks, on real maps almost always none or one.
  rank = np.arange(len(x)) if upstream else np.argsort(np.lexsort((y, x, -value, kind)))
  reach = int(np.ceil(min_distance))
  dx, dy = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1))
  disc = (dx**2 + dy**2 < min_distance**2) & ((dx != 0) | (dy != 0))
  dx, dy = dx[disc], dy[disc]
  key = (kind * height + y) * width + x  # unique per peak, in (type, y, x) order
  by_key = np.argsort(key)
  sorted_key = key[by_key]
  peer_x, peer_y = x[:, None] + dx, y[:, None] + dy  # [M, D]
  peer_key = key[:, None] + dy * width + dx
  position = np.minimum(np.searchsorted(sorted_key, peer_key), max(len(key) - 1, 0))
  found = ((peer_x >= 0) & (peer_x < width) & (peer_y >= 0) & (peer_y < height))
  if len(key):
    found &= sorted_key[position] == peer_key
  first, offset = np.nonzero(found)
  second = by_key[position[first, offset]]
  before = rank[first] < rank[second]
  first, second = first[before], second[before]
  keep = np.ones(len(x), bool)
  while len(first):
    open_ = np.zeros(len(x), bool)
    open_[second] = True  # has a predecessor not yet settled
    settled_first = ~open_[first]  # its keep is final
    keep[second[settled_first & keep[first]]] = False
    pending = ~settled_first & keep[second]
    first, second = first[pending], second[pending]
  return x[keep], y[keep], kind[keep], value[keep]


def score_limbs(peaks_x: np.ndarray, peaks_y: np.ndarray, peaks_kind: np.ndarray,
                pafs: np.ndarray, samples: int = _LIMB_SAMPLES,
                min_paf_score: float = _MIN_PAF_SCORE,
                min_success_ratio: float = _MIN_SUCCESS_RATIO
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Peaks [M] (sorted by type) and PAFs [H, W, 38] -> accepted candidate limbs.

  Every pair (a peak of type a, a peak of type b) of every limb (a, b) is a
  candidate, all limbs in one batch: the field is read at `samples` points
  from a to b (rounded to pixels) and projected on the unit vector a -> b;
  samples above `min_paf_score` count, the candidate's score is their mean,
  and it is kept if positive with more than `min_success_ratio` of the
  samples counting. Arithmetic and candidate order are upstream's, so the
  scores are equal to its bit for bit.

  Returns:
    (limb [C], peak a [C], peak b [C], score [C]), indices into the peaks
    and into `_GROUPING_ORDER`, sorted by limb, then best score first.
  """
  counts = np.bincount(peaks_kind, minlength=NUM_KEYPOINTS)
  first = np.concatenate([[0], np.cumsum(counts)[:-1]])
  limbs = np.array(_GROUPING_ORDER)
  kind_a, kind_b = _LIMB_A[limbs], _LIMB_B[limbs]
  n, m = counts[kind_a], counts[kind_b]
  sizes = n * m
  limb = np.repeat(np.arange(len(limbs)), sizes)
  within = np.arange(len(limb)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
  # Upstream's candidate order: b major, a minor.
  local_b, local_a = np.divmod(within, np.maximum(n[limb], 1))
  a = first[kind_a[limb]] + local_a
  b = first[kind_b[limb]] + local_b
  xy = np.stack([peaks_x, peaks_y], axis=-1).astype(np.float32)
  start = xy[a][:, None, :]  # [C, 1, 2]
  vector = xy[b][:, None, :] - start
  steps = np.arange(samples, dtype=np.float32).reshape(1, -1, 1)
  points = ((vector * (1 / (samples - 1))) * steps + start).round().astype(np.int32)
  channel_x = 2 * limbs[limb][:, None]  # [C, 1]
  field = np.stack([pafs[points[..., 1], points[..., 0], channel_x],
                    pafs[points[..., 1], points[..., 0], channel_x + 1]], axis=-1)
  unit = vector / (np.linalg.norm(vector, axis=-1, keepdims=True) + 1e-6)
  projection = (field * unit).sum(-1)  # [C, samples]
  counted = projection > min_paf_score
  num_counted = counted.sum(1)
  score = (projection * counted).sum(1) / (num_counted + 1e-6)
  accepted = np.flatnonzero((score > 0) & (num_counted / samples > min_success_ratio))
  limb, a, b, score = limb[accepted], a[accepted], b[accepted], score[accepted]
  # Best first within a limb; equal scores: the later candidate first, as
  # upstream's reversed ascending sort (stable for its usual few candidates).
  order = np.lexsort((-np.arange(len(limb)), -score, limb))
  return limb[order], a[order], b[order], score[order]


def _assemble(limb: np.ndarray, peak_a: np.ndarray, peak_b: np.ndarray,
              limb_score: np.ndarray, peak_score: np.ndarray
              ) -> list[tuple[list[int], float, int]]:
  """Scored candidate limbs -> people as (18 peak ids or -1, score, count).

  Upstream's `connections_nms` and the body of `group_keypoints`: per limb,
  candidates are taken best first unless one of their peaks is already taken
  for that limb; each connection then extends the people holding its first
  peak (setting the second, adding its peak and limb scores and one to the
  count) or starts a person of two; the two redundant ear-shoulder limbs only
  fill in a missing end. A per-slot index of who holds which peak replaces
  upstream's scans of all people.
  """
  people_ids: list[list[int]] = []
  people_score: list[float] = []
  people_count: list[int] = []
  holders = [dict() for _ in range(NUM_KEYPOINTS)]  # slot -> peak -> people

  def assign(person, slot, peak):
    old = people_ids[person][slot]
    if old != -1:
      holders[slot][old].remove(person)
    people_ids[person][slot] = peak
    holders[slot].setdefault(peak, []).append(person)

  peak_score = peak_score.astype(np.float64).tolist()
  limb_score = limb_score.tolist()
  used_a: set[int] = set()
  used_b: set[int] = set()
  current = -1
  for g, ia, ib, s in zip(limb.tolist(), peak_a.tolist(), peak_b.tolist(), limb_score):
    if g != current:
      current, used_a, used_b = g, set(), set()
      limb_index = _GROUPING_ORDER[g]
      slot_a, slot_b = int(_LIMB_A[limb_index]), int(_LIMB_B[limb_index])
      redundant = limb_index in _REDUNDANT_LIMBS
    if ia in used_a or ib in used_b:
      continue
    used_a.add(ia)
    used_b.add(ib)
    if redundant:
      candidates = set(holders[slot_a].get(ia, ())) | set(holders[slot_b].get(ib, ()))
      for person in candidates:
        ids = people_ids[person]
        if ids[slot_a] == ia and ids[slot_b] == -1:
          assign(person, slot_b, ib)
        elif ids[slot_b] == ib and ids[slot_a] == -1:
          assign(person, slot_a, ia)
      continue
    extended = list(holders[slot_a].get(ia, ()))
    for person in extended:
      assign(person, slot_b, ib)
      people_count[person] += 1
      people_score[person] += peak_score[ib] + s
    if not extended:
      people_ids.append([-1] * NUM_KEYPOINTS)
      people_score.append(peak_score[ia] + peak_score[ib] + s)
      people_count.append(2)
      person = len(people_ids) - 1
      assign(person, slot_a, ia)
      assign(person, slot_b, ib)
  return list(zip(people_ids, people_score, people_count))


def decode(heatmaps, pafs, *, stride: int = 8, upsample: int = 4,
           peak_threshold: float = 0.1, min_keypoints: int = 3,
           min_score: float = 0.2,
           upstream_peaks: bool = False) -> tuple[np.ndarray, np.ndarray]:
  """Maps of one image -> (people [N, 18, 3] (x, y, score), person scores [N]), float32.

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
      value (see `find_peaks`), which decodes the targets of `encode` where
      upstream's rules lose keypoints (a neck half-way between two cells). On network outputs the two
      differ only where neighbouring pixels are exactly equal or two peaks
      of a type are within 6 upsampled pixels.

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
  if (heatmaps.ndim != 3 or heatmaps.shape[-1] < NUM_KEYPOINTS or pafs.ndim != 3 or
      pafs.shape[-1] != 2 * NUM_LIMBS or pafs.shape[:2] != heatmaps.shape[:2]):
    raise ValueError(f'decode: expected heatmaps [H, W, 19] and pafs [H, W, 38] '
                     f'of one image, got {heatmaps.shape} and {pafs.shape}')
  heatmaps = _upsample(heatmaps[..., :NUM_KEYPOINTS], upsample)
  x, y, kind, value = find_peaks(heatmaps, peak_threshold, upstream=upstream_peaks)
  pafs = _upsample(pafs, upsample)
  limb, a, b, score = score_limbs(x, y, kind, pafs)
  found = [(ids, s) for ids, s, count in _assemble(limb, a, b, score, value)
           if count >= min_keypoints and s / count >= min_score]
  people = np.zeros((len(found), NUM_KEYPOINTS, 3), np.float32)
  people[..., :2] = -1
  if found:
    ids = np.array([ids for ids, _ in found])
    present = ids >= 0
    peak = ids[present]
    people[present] = np.stack([x[peak] * stride / upsample,
                                y[peak] * stride / upsample, value[peak]], -1)
  scores = np.array([s for _, s in found], np.float32)
  return people, scores
