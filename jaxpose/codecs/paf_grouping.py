"""PAF decoding's core: peaks of keypoint maps, scored limbs, people.

Upstream's `extract_keypoints` and `group_keypoints` (Daniil-Osokin/
lightweight-human-pose-estimation.pytorch, "upstream" below) with the same
results, bit for bit, restructured so that they cost little on CPU: peak
finding, peak suppression and the PAF line integrals of every candidate limb
of every limb type are whole-array numpy operations; only the greedy choice
of connections and their assembly into people are Python loops, over the
accepted connections only. Upstream's peak rules lose keypoints on exactly
symmetric maps (a keypoint halfway between two cell centres, as a neck at the
midpoint of integer shoulders often is, gives a flat top with no strict
maximum); `find_peaks(upstream=False)` fixes that for decoding rendered
targets.

The layout is `jaxpose.skeletons.OPENPOSE`: 18 keypoints, 19 limbs in PAF
channel order. `jaxpose.codecs.paf` renders the maps (`encode`) and chains
these steps into people (`decode`); the layout constants live here, so that
it can import them without a cycle.
"""

import dataclasses

import numpy as np

from jaxpose import skeletons

NUM_KEYPOINTS = skeletons.OPENPOSE.num_keypoints  # 18
# Each limb's first and second keypoint, [19], in PAF channel order.
LIMB_A = np.array([a for a, _ in skeletons.OPENPOSE.limbs])
LIMB_B = np.array([b for _, b in skeletons.OPENPOSE.limbs])

# --- upstream's decoding constants ---
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


@dataclasses.dataclass(frozen=True)
class PafLayout:
  """A keypoint layout as the grouping walks it.

  Attributes:
    num_keypoints: K.
    limb_a, limb_b: [L] each limb's first and second keypoint, in PAF
      channel order (limb i in channels 2i, 2i + 1, pointing a -> b).
    order: limb indices in the order they are attached to people.
    redundant: limbs that only fill in a missing end (they close a cycle of
      the limb graph, as OpenPose's two ear-shoulder limbs).
    from_a: [L] bool, whether the grouping reaches the limb from its first
      keypoint (people hold a, and b is attached); else from b, the field
      read reversed.
  """
  num_keypoints: int
  limb_a: np.ndarray
  limb_b: np.ndarray
  order: tuple[int, ...]
  redundant: frozenset
  from_a: np.ndarray

  def walk(self, limb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Limb indices -> (the keypoint people hold, the one attached, the sign of the field along that way)."""
    held = np.where(self.from_a[limb], self.limb_a[limb], self.limb_b[limb])
    attached = np.where(self.from_a[limb], self.limb_b[limb], self.limb_a[limb])
    return held, attached, np.where(self.from_a[limb], 1.0, -1.0).astype(np.float32)


# Lightweight OpenPose's: upstream's own limb and grouping order.
OPENPOSE_LAYOUT = PafLayout(NUM_KEYPOINTS, LIMB_A, LIMB_B, _GROUPING_ORDER, _REDUNDANT_LIMBS,
                            np.ones(len(LIMB_A), bool))


def layout_for(limbs, num_keypoints: int) -> PafLayout:
  """0-based limbs (a, b) of any layout -> its PafLayout; OpenPose-18's limbs give OPENPOSE_LAYOUT.

  The PAF of each limb points from its first keypoint to its second, in the
  order given (that of the model's channels). The grouping walks the limb
  graph breadth first, from the keypoint of most limbs (the lowest index on
  ties), each component after the last: a limb reaching a keypoint not yet
  reached is a tree limb, attached in that order; a limb between two
  reached keypoints closes a cycle and only fills in, after every tree limb.
  A limb whose walk runs b -> a is attached from its second keypoint: the
  grouping reads its field reversed (`score_limbs`).
  """
  limbs = tuple((int(a), int(b)) for a, b in limbs)
  if (num_keypoints == NUM_KEYPOINTS and limbs == tuple(skeletons.OPENPOSE.limbs)):
    return OPENPOSE_LAYOUT
  if not limbs:
    raise ValueError('bottom-up: the layout has no limbs, which the part affinity fields need')
  degree = np.bincount(np.asarray(limbs).reshape(-1), minlength=num_keypoints)
  reached, tree, cycles = set(), [], []
  from_a = np.ones(len(limbs), bool)
  for root in sorted(range(num_keypoints), key=lambda k: (-degree[k], k)):
    if root in reached or not degree[root]:
      continue
    reached.add(root)
    frontier = [root]
    while frontier:
      next_frontier = []
      for keypoint in frontier:
        for index, (a, b) in enumerate(limbs):
          if keypoint not in (a, b) or index in tree or index in cycles:
            continue
          other = b if keypoint == a else a
          from_a[index] = keypoint == a
          if other in reached:
            cycles.append(index)
          else:
            reached.add(other)
            tree.append(index)
            next_frontier.append(other)
      frontier = next_frontier
  return PafLayout(num_keypoints, np.array([a for a, _ in limbs]),
                   np.array([b for _, b in limbs]), tuple(tree + cycles), frozenset(cycles),
                   from_a)


def find_peaks(heatmaps: np.ndarray, threshold: float = 0.1,
               min_distance: float = _PEAK_MIN_DISTANCE, upstream: bool = True
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Heatmaps [H, W, K] -> peaks (x [M], y [M], type [M], score [M]), by type, x, y.

  With `upstream`, its `extract_keypoints` for all K channels at once: a peak
  is a value >= `threshold` strictly above its 4 neighbours (anything is above
  the outside of the map); then, in the order of x (ties: y) within a type,
  each kept peak drops the later ones closer than `min_distance`.

  Without, two changes that only matter where upstream's rules fail on maps
  with exact symmetries, such as the targets of `paf.encode`: a value equal
  to its right or lower neighbour still counts (so a flat top of 2 pixels,
  which a keypoint halfway between two cell centres gives, has one peak
  instead of none), and suppression goes by decreasing value instead of x
  (so a ripple of the upsampling next to a peak, e.g. on the map's border,
  does not replace the peak).

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
                min_success_ratio: float = _MIN_SUCCESS_RATIO,
                layout: PafLayout = OPENPOSE_LAYOUT
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Peaks [M] (sorted by type) and PAFs [H, W, 2L] -> accepted candidate limbs (of `layout`, OpenPose-18's by default).

  Every pair (a peak of type a, a peak of type b) of every limb (a, b) is a
  candidate, all limbs in one batch: the field is read at `samples` points
  from a to b (rounded to pixels) and projected on the unit vector a -> b;
  samples above `min_paf_score` count, the candidate's score is their mean,
  and it is kept if positive with more than `min_success_ratio` of the
  samples counting. Arithmetic and candidate order are upstream's, so the
  scores are equal to its bit for bit.

  Returns:
    (limb [C], peak a [C], peak b [C], score [C]), indices into the peaks
    and into `layout.order`, sorted by limb, then best score first; a is the
    peak people hold, b the one attached (`PafLayout.walk`).
  """
  counts = np.bincount(peaks_kind, minlength=layout.num_keypoints)
  first = np.concatenate([[0], np.cumsum(counts)[:-1]])
  limbs = np.array(layout.order)
  kind_a, kind_b, sign = layout.walk(limbs)
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
  if not layout.from_a.all():  # limbs walked b -> a read their field reversed
    field = field * sign[limb][:, None, None]
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


def assemble(limb: np.ndarray, peak_a: np.ndarray, peak_b: np.ndarray,
             limb_score: np.ndarray, peak_score: np.ndarray,
             layout: PafLayout = OPENPOSE_LAYOUT) -> list[tuple[list[int], float, int]]:
  """Candidate limbs [C] (`score_limbs`'s) and peak scores [M] -> people.

  Each person is (K peak ids or -1, score, count).

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
  num_keypoints = layout.num_keypoints
  holders = [dict() for _ in range(num_keypoints)]  # slot -> peak -> people

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
      limb_index = layout.order[g]
      held, attached, _ = layout.walk(np.array([limb_index]))
      slot_a, slot_b = int(held[0]), int(attached[0])
      redundant = limb_index in layout.redundant
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
      people_ids.append([-1] * num_keypoints)
      people_score.append(peak_score[ia] + peak_score[ib] + s)
      people_count.append(2)
      person = len(people_ids) - 1
      assign(person, slot_a, ia)
      assign(person, slot_b, ib)
  return list(zip(people_ids, people_score, people_count))
