"""jaxpose.codecs.paf against transcriptions of Lightweight OpenPose (upstream).

The target generation of upstream's COCO dataset is transcribed below, one
person and one keypoint at a time as upstream does it; its post-processing is
transcribed in scripts/upstream_grouping.py (also the benchmark's baseline).
Peak finding alone is tested in test_paf_grouping.py.
"""

import json
import math
import os
import sys

import jax
import numpy as np
import pytest
from scipy import optimize

from jaxpose import skeletons
from jaxpose.codecs import paf, paf_grouping
import layouts

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
import upstream_grouping  # pylint: disable=g-import-not-at-top

COCO_DIR = os.path.join(os.path.dirname(__file__), 'data', 'coco')
LIMBS = skeletons.OPENPOSE.limbs


# --- upstream's targets, transcribed per person (float64 arithmetic, float32 maps) ---

def upstream_keypoint_maps(keypoints, visible, map_h, map_w, stride, sigma):
  """[P, 18, 2], [P, 18] -> [map_h, map_w, 19] as upstream's _generate_keypoint_maps."""
  maps = np.zeros((19, map_h, map_w), np.float32)
  shift = stride / 2 - 0.5
  for k in range(18):
    for (x, y), v in zip(keypoints[:, k].tolist(), visible[:, k].tolist()):
      if v <= 0:
        continue
      left, top = max(int(x - 4 * sigma), 0), max(int(y - 4 * sigma), 0)
      right = min(int(x + 4 * sigma), map_w * stride)
      bottom = min(int(y + 4 * sigma), map_h * stride)
      for cy in range(top // stride, bottom // stride):
        for cx in range(left // stride, right // stride):
          exponent = ((cx * stride + shift - x)**2 +
                      (cy * stride + shift - y)**2) / 2 / sigma / sigma
          if exponent > 4.6052:
            continue
          maps[k, cy, cx] = min(maps[k, cy, cx] + math.exp(-exponent), 1)
  maps[18] = 1 - maps[:18].max(axis=0)
  return maps.transpose(1, 2, 0)


def upstream_paf(paf_map, a, b, stride, thickness):
  """Writes one limb a -> b (pixels) into paf_map [2, H, W] as upstream's _set_paf."""
  xa, ya, xb, yb = a[0] / stride, a[1] / stride, b[0] / stride, b[1] / stride
  _, map_h, map_w = paf_map.shape
  dx, dy = xb - xa, yb - ya
  norm = math.hypot(dx, dy)
  if norm < 1e-7:
    return
  dx, dy = dx / norm, dy / norm
  for y in range(int(max(min(ya, yb) - thickness, 0)), int(min(max(ya, yb) + thickness, map_h))):
    for x in range(int(max(min(xa, xb) - thickness, 0)), int(min(max(xa, xb) + thickness, map_w))):
      if abs((x - xa) * dy - (y - ya) * dx) <= thickness:
        paf_map[0, y, x], paf_map[1, y, x] = dx, dy


def upstream_paf_maps(keypoints, visible, map_h, map_w, stride, thickness):
  """[P, 18, 2], [P, 18] -> [map_h, map_w, 38], people written in turn (the last wins)."""
  maps = np.zeros((38, map_h, map_w), np.float32)
  for i, (a, b) in enumerate(LIMBS):
    for person, v in zip(keypoints.astype(np.float64), visible):
      if v[a] > 0 and v[b] > 0:
        upstream_paf(maps[2 * i:2 * i + 2], person[a], person[b], stride, thickness)
  return maps.transpose(1, 2, 0)


def per_person_pafs(keypoints, visible, map_h, map_w, stride, thickness):
  """[P, H, W, 38]: upstream's PAFs of each person alone."""
  return np.stack([upstream_paf_maps(keypoints[p:p + 1], visible[p:p + 1], map_h, map_w,
                                     stride, thickness) for p in range(len(keypoints))])


def random_people(rng, num_people, image_size, margin=40.0):
  """People with keypoints over the image and beyond its borders, most annotated."""
  width, height = image_size
  x = rng.uniform(-margin, width + margin, (num_people, 18))
  y = rng.uniform(-margin, height + margin, (num_people, 18))
  keypoints = np.stack([x, y], -1).astype(np.float32)
  visible = (rng.random((num_people, 18)) > 0.15).astype(np.float32) * 2
  return keypoints, visible


ENCODE = jax.jit(paf.encode, static_argnames=('image_size', 'stride', 'sigma', 'paf_thickness'))


@pytest.mark.parametrize('image_size,stride,sigma', [
    ((368, 368), 8, 7.0),  # upstream's training setting
    ((200, 152), 8, 7.0),
    ((96, 80), 4, 1.5),  # small sigma: upstream's window cuts the Gaussian
    ((120, 88), 8, 2.0),
])
def test_keypoint_maps_equal_upstream(image_size, stride, sigma):
  rng = np.random.default_rng(stride * 100 + int(sigma * 10))
  keypoints, visible = random_people(rng, 12, image_size)
  keypoints[1], visible[1] = keypoints[0] + 0.5, visible[0]  # sums over 1
  heatmaps, _ = ENCODE(keypoints, visible, image_size=image_size, stride=stride, sigma=sigma)
  heatmaps = np.asarray(heatmaps)
  map_h, map_w = image_size[1] // stride, image_size[0] // stride
  assert heatmaps.shape == (map_h, map_w, 19) and heatmaps.dtype == np.float32
  expected = upstream_keypoint_maps(keypoints.astype(np.float64), visible, map_h, map_w,
                                    stride, sigma)
  np.testing.assert_allclose(heatmaps, expected, rtol=0, atol=1e-5)
  # The same cells are drawn, and the sums saturate somewhere.
  np.testing.assert_array_equal(heatmaps[..., :18] > 0, expected[..., :18] > 0)
  assert (expected[..., :18] == 1).any() and (expected[..., 18] == 1).any()
  assert 0.3 < (heatmaps[..., 18] < 1).mean() < 1


def test_keypoint_window_cut_matches_upstream():
  # sigma 1.5, stride 4: the window of a keypoint at x = 9.9 ends at cell
  # int(9.9 + 6) // 4 = 3 (excluded), so cell 3 (centre 13.5, d = 3.6,
  # exponent 2.88) gets nothing, while cell 1 (centre 5.5, d = 4.4, exponent
  # 4.30) is drawn.
  keypoints = np.zeros((1, 18, 2), np.float32)
  keypoints[0, 0] = (9.9, 9.5)
  visible = np.zeros((1, 18))
  visible[0, 0] = 1
  heatmaps, _ = paf.encode(keypoints, visible, image_size=(32, 32), stride=4, sigma=1.5)
  expected = upstream_keypoint_maps(keypoints.astype(np.float64), visible, 8, 8, 4, 1.5)
  np.testing.assert_allclose(heatmaps, expected, atol=1e-6)
  assert heatmaps[2, 3, 0] == 0
  np.testing.assert_allclose(heatmaps[2, 1, 0], np.exp(-4.4**2 / 4.5), rtol=1e-5)


def test_pafs_equal_upstream_for_separate_people():
  rng = np.random.default_rng(3)
  image_size, stride, thickness = (368, 240), 8, 1.0
  # Each person in a vertical band of its own, bands 16 px (2 cells) apart.
  keypoints = np.stack([
      np.stack([rng.uniform(16 + 120 * p, 120 * p + 104, 18),
                rng.uniform(-20, 260, 18)], -1) for p in range(3)]).astype(np.float32)
  visible = (rng.random((3, 18)) > 0.1).astype(np.float32)
  _, pafs = ENCODE(keypoints, visible, image_size=image_size, stride=stride,
                   paf_thickness=thickness)
  pafs = np.asarray(pafs)
  expected = upstream_paf_maps(keypoints, visible, 30, 46, stride, thickness)
  assert pafs.shape == expected.shape == (30, 46, 38)
  np.testing.assert_array_equal(pafs != 0, expected != 0)
  np.testing.assert_allclose(pafs, expected, rtol=0, atol=1e-6)
  # Unit vectors wherever a limb is drawn.
  norms = np.hypot(pafs[..., 0::2], pafs[..., 1::2])
  np.testing.assert_allclose(norms[norms > 0], 1, atol=1e-6)
  assert (norms > 0).sum() > 300


@pytest.mark.parametrize('thickness', [1.0, 2.0])
def test_pafs_average_where_people_overlap(thickness):
  rng = np.random.default_rng(4)
  image_size, stride = (160, 160), 8
  keypoints, visible = random_people(rng, 6, image_size, margin=10)
  # Two people crossing exactly: the same neck, necks -> right hips at right
  # angles, so their limb 0 fields overlap around the neck.
  keypoints[0, 1], keypoints[0, 8] = (80, 80), (80, 150)
  keypoints[1, 1], keypoints[1, 8] = (80, 80), (150, 80)
  visible[:2, [1, 8]] = 1
  visible[2:, 1] = 0  # the others have no neck -> right hip limb
  _, pafs = ENCODE(keypoints, visible, image_size=image_size, stride=stride,
                   paf_thickness=thickness)
  pafs = np.asarray(pafs)
  alone = per_person_pafs(keypoints, visible, 20, 20, stride, thickness)  # [P, H, W, 38]
  covered = np.hypot(alone[..., 0::2], alone[..., 1::2]) > 0  # [P, H, W, 19]
  count = covered.sum(0)
  average = alone.sum(0) / np.maximum(np.repeat(count, 2, axis=-1), 1)
  np.testing.assert_allclose(pafs, average, rtol=0, atol=1e-6)
  # Where one person covers a cell, that is upstream's value; where several
  # do, upstream keeps the last one and differs from the average.
  upstream = upstream_paf_maps(keypoints, visible, 20, 20, stride, thickness)
  single = np.repeat(count <= 1, 2, axis=-1)
  np.testing.assert_allclose(pafs[single], upstream[single], rtol=0, atol=1e-6)
  overlap = np.repeat(count >= 2, 2, axis=-1)
  assert np.abs(pafs[overlap] - upstream[overlap]).max() > 0.3
  # The crossing: at the shared neck's cell (10, 10) both limb 0 vectors,
  # (0, 1) and (1, 0), average to (0.5, 0.5).
  assert count[10, 10, 0] == 2 and count[9, 9, 0] == 2
  np.testing.assert_allclose(pafs[10, 10, 0:2], [0.5, 0.5], atol=1e-6)


def test_encode_without_people_or_outside_the_image():
  image_size = (64, 48)
  keypoints = np.zeros((4, 18, 2), np.float32)
  visible = np.ones((4, 18))
  # 0: masked out, and full of NaN; 1: all joints far outside the image;
  # 2: joints at one point (every limb of length 0); 3: masked out.
  keypoints[0] = np.nan
  keypoints[1] = np.stack([-500.0 - 10 * np.arange(18), 900.0 + 5 * np.arange(18)], -1)
  keypoints[2] = (30.0, 20.0)
  mask = np.array([False, True, False, False])
  heatmaps, pafs = ENCODE(keypoints, visible, image_size=image_size, person_mask=mask)
  heatmaps, pafs = np.asarray(heatmaps), np.asarray(pafs)
  assert heatmaps.shape == (6, 8, 19) and pafs.shape == (6, 8, 38)
  assert np.isfinite(heatmaps).all() and np.isfinite(pafs).all()
  np.testing.assert_array_equal(heatmaps[..., :18], 0)
  np.testing.assert_array_equal(heatmaps[..., 18], 1)
  np.testing.assert_array_equal(pafs, 0)

  # Now person 2 counts: its keypoints draw, its zero-length limbs do not.
  mask[2] = True
  heatmaps, pafs = ENCODE(keypoints, visible, image_size=image_size, person_mask=mask)
  heatmaps, pafs = np.asarray(heatmaps), np.asarray(pafs)
  assert np.isfinite(pafs).all()
  np.testing.assert_array_equal(pafs, 0)
  # 30 px is between cell centres 27.5 and 35.5 (cells 3 and 4), y 20 between
  # 19.5 and 27.5: cell (2, 3) is nearest, at d^2 = 6.5.
  np.testing.assert_allclose(heatmaps[2, 3, :18], np.exp(-6.5 / 98), atol=1e-6)
  np.testing.assert_allclose(heatmaps[..., 18], 1 - heatmaps[..., :18].max(-1), atol=1e-7)
  assert heatmaps[..., 18].min() < 0.1 and heatmaps[0, 7, 18] == 1

  # A keypoint just off the image still leaves its tail on the border, as
  # upstream after cropping; one 30 px off leaves nothing.
  keypoints[2, 0] = (-6.0, 20.0)
  keypoints[2, 1] = (-30.0, 20.0)
  heatmaps, _ = ENCODE(keypoints, visible, image_size=image_size, person_mask=mask)
  expected = upstream_keypoint_maps(keypoints[2:3].astype(np.float64), visible[2:3], 6, 8, 8, 7.0)
  np.testing.assert_allclose(heatmaps, expected, atol=1e-6)
  assert heatmaps[2, 0, 0] > 0.35 and np.all(np.asarray(heatmaps)[..., 1] == 0)


def test_encode_jit_equals_eager_with_batch_dims():
  rng = np.random.default_rng(5)
  keypoints, visible = random_people(rng, 2 * 5, (120, 96))
  keypoints, visible = keypoints.reshape(2, 5, 18, 2), visible.reshape(2, 5, 18)
  mask = np.array([[True, True, False, True, True], [True, False, False, False, True]])
  kwargs = dict(image_size=(120, 96), stride=8, sigma=7.0, paf_thickness=1.0)
  jitted = ENCODE(keypoints, visible, person_mask=mask, **kwargs)
  with jax.disable_jit():  # op by op, `encode`'s own jit included
    eager = paf.encode(keypoints, visible, person_mask=mask, **kwargs)
  for e, j in zip(eager, jitted):
    assert e.shape == j.shape and e.shape[:3] == (2, 12, 15)
    np.testing.assert_allclose(np.asarray(j), np.asarray(e), rtol=0, atol=1e-6)
  # Batch element b is the encoding of its unmasked people alone.
  for b in range(2):
    alone = ENCODE(keypoints[b][mask[b]], visible[b][mask[b]], image_size=(120, 96))
    np.testing.assert_allclose(np.asarray(jitted[0][b]), np.asarray(alone[0]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(jitted[1][b]), np.asarray(alone[1]), atol=1e-6)
  assert np.asarray(jitted[0][..., :18]).max() > 0.9 and np.abs(np.asarray(jitted[1])).max() > 0.9


def test_encode_rejects_bad_shapes():
  with pytest.raises(ValueError, match='keypoints'):
    paf.encode(np.zeros((2, 17, 2)), np.zeros((2, 17)), image_size=(64, 64))
  with pytest.raises(ValueError, match='person_mask'):
    paf.encode(np.zeros((2, 18, 2)), np.zeros((2, 18)), image_size=(64, 64),
               person_mask=np.ones(3, bool))


# --- decoding ---

def coco_images():
  with open(os.path.join(COCO_DIR, 'test_coco.json')) as f:
    data = json.load(f)
  for image in data['images']:
    annotations = [a for a in data['annotations'] if a['image_id'] == image['id']]
    yield image, annotations


def encode_coco(image, annotations, max_people=8):
  """Targets of an image's annotated people, at its size rounded up to the stride."""
  width, height = image['width'], image['height']
  keypoints, visible, mask = upstream_grouping.coco_people(
      annotations, image_size=(width, height), max_people=max_people)
  padded_size = (-(-width // 8) * 8, -(-height // 8) * 8)
  heatmaps, pafs = ENCODE(keypoints, visible, image_size=padded_size, person_mask=mask)
  return keypoints[mask], visible[mask], np.asarray(heatmaps), np.asarray(pafs)


def connected_keypoints(visible, limbs=LIMBS):
  """Largest set of annotated keypoints joined by `limbs` with both ends annotated, [K] bool."""
  group = list(range(len(visible)))

  def root(k):
    while group[k] != k:
      k = group[k]
    return k

  for a, b in limbs:
    if visible[a] > 0 and visible[b] > 0:
      group[root(a)] = root(b)
  roots = [root(k) if visible[k] > 0 else -1 for k in range(len(visible))]
  biggest = max(set(roots) - {-1}, key=roots.count)
  return np.array(roots) == biggest


@pytest.mark.parametrize('image,annotations', list(coco_images()),
                         ids=lambda v: str(v['id']) if isinstance(v, dict) else '')
def test_decode_recovers_coco_people(image, annotations):
  keypoints, visible, heatmaps, pafs = encode_coco(image, annotations)
  # Upstream's own peak rules split one person of image 197388 (see the next
  # test): rendered targets have exact ties that network outputs do not.
  people, scores = paf.decode(heatmaps, pafs)
  expected = [p for p in range(len(keypoints)) if (visible[p] > 0).sum() >= 3]
  assert people.shape == (len(expected), 18, 3) and scores.shape == (len(expected),)
  found = people[..., 2] > 0
  # Match on the mean distance over the keypoints both have.
  cost = np.full((len(expected), len(people)), 1e6)
  for i, p in enumerate(expected):
    for j in range(len(people)):
      both = found[j] & (visible[p] > 0)
      if both.any():
        cost[i, j] = np.hypot(*(people[j, both, :2] - keypoints[p, both]).T).mean()
  rows, cols = optimize.linear_sum_assignment(cost)
  tolerance = 2 * 8 / 4  # 2 upsampled-map pixels
  errors = []
  for i, j in zip(rows, cols):
    p = expected[i]
    # Every decoded keypoint is one of this person's, within tolerance...
    assert not (found[j] & (visible[p] <= 0)).any()
    error = people[j, found[j], :2] - keypoints[p, found[j]]
    assert np.hypot(*error.T).max() <= tolerance, (p, np.hypot(*error.T))
    errors.append(error)
    # ...and all the keypoints the PAFs can reach are decoded: those joined
    # to the person's body by annotated limbs (a wrist whose elbow is not
    # annotated, as in image 40083, cannot be).
    np.testing.assert_array_equal(found[j], connected_keypoints(visible[p]))
    assert np.all(people[j, ~found[j]] == [-1, -1, 0])
    assert 0.6 < people[j, found[j], 2].min() and people[j, found[j], 2].max() <= 1.1
    assert scores[j] > 0.9 * found[j].sum()
  # The peak is the upsampled pixel j nearest the keypoint, reported at
  # j * stride / upsample, half an upsampled pixel before the centre: a bias
  # of -0.5 px (see the report of the decoding's conventions).
  mean_error = np.concatenate(errors).mean(0)
  assert np.all(np.abs(mean_error + 0.5) < 0.35), mean_error


def test_decode_equals_upstream_on_coco_targets():
  for image, annotations in coco_images():
    _, visible, heatmaps, pafs = encode_coco(image, annotations)
    people, scores = paf.decode(heatmaps, pafs, upstream_peaks=True)
    ref_people, ref_scores = upstream_grouping.decode_like_upstream(heatmaps, pafs)
    np.testing.assert_array_equal(people, ref_people)
    np.testing.assert_array_equal(scores, ref_scores)
    if image['id'] == 197388:
      # Upstream's rules lose person 4 here: its neck (23.5, 83) is exactly
      # halfway between the centres of cells 2 and 3, the two cells are equal
      # and so are the upsampled pixels of the top: no strict maximum, no
      # neck, and the body falls apart into pieces (3 of them kept).
      assert heatmaps[10, 2, 1] == heatmaps[10, 3, 1] > 0.8
      assert len(people) == 7 and len(paf.decode(heatmaps, pafs)[0]) == 5
    else:
      assert len(people) == (visible.sum(1) > 0).sum()


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_decode_equals_upstream_on_noisy_maps(seed):
  # Targets plus noise and ghost copies shifted by a few pixels: many peaks,
  # close peaks to suppress, competing candidate limbs, broken limbs.
  rng = np.random.default_rng(seed)
  image, annotations = list(coco_images())[seed + 1]
  _, _, heatmaps, pafs = encode_coco(image, annotations)
  ghost = np.roll(heatmaps, (1 + seed, 2), axis=(0, 1))
  heatmaps = np.maximum(heatmaps, 0.7 * ghost) + rng.normal(0, 0.03, heatmaps.shape)
  pafs = pafs + 0.5 * np.roll(pafs, (0, 2), axis=(0, 1)) + rng.normal(0, 0.1, pafs.shape)
  heatmaps, pafs = heatmaps.astype(np.float32), pafs.astype(np.float32)
  people, scores = paf.decode(heatmaps, pafs, upstream_peaks=True)
  ref_people, ref_scores = upstream_grouping.decode_like_upstream(heatmaps, pafs)
  np.testing.assert_array_equal(people, ref_people)
  np.testing.assert_array_equal(scores, ref_scores)
  assert len(people) >= 2


def test_decode_empty_and_input_checks():
  people, scores = paf.decode(np.zeros((10, 12, 19)), np.zeros((10, 12, 38)))
  assert people.shape == (0, 18, 3) and scores.shape == (0,)
  assert people.dtype == np.float32 and scores.dtype == np.float32
  with pytest.raises(ValueError, match='pafs'):
    paf.decode(np.zeros((10, 12, 19)), np.zeros((10, 12, 19)))


def test_coco_people_orders_pads_and_drops_outside_keypoints():
  coco = np.zeros((17, 3))
  coco[0] = (10, 20, 2)  # nose
  coco[5] = (30, 40, 1)  # left shoulder
  coco[6] = (50, 40, 2)  # right shoulder
  coco[9] = (70, 99, 2)  # left wrist, below a 100 x 90 image
  keypoints, visible, mask = upstream_grouping.coco_people(
      [{'keypoints': coco.ravel().tolist()}], image_size=(100, 90), max_people=3)
  assert keypoints.shape == (3, 18, 2) and visible.shape == (3, 18)
  np.testing.assert_array_equal(mask, [True, False, False])
  np.testing.assert_array_equal(keypoints[0, [0, 1, 2, 5]], [[10, 20], [40, 40], [50, 40], [30, 40]])
  np.testing.assert_array_equal(visible[0, [0, 1, 2, 5, 7]], [2, 1, 2, 1, 0])
  assert visible[0].sum() == 6 and visible[1:].sum() == 0
  with pytest.raises(ValueError, match='max_people'):
    upstream_grouping.coco_people([{'keypoints': coco.ravel().tolist()}] * 2, max_people=1)


def test_any_layouts_people_come_back_from_their_own_fields(tmp_path):
  # The 14-keypoint layout of tests/layouts.py (a tree from the neck), one limb
  # written child -> parent (its field is read reversed) and one that closes
  # a cycle (the shoulders: it only fills in): the real COCO sample's people
  # in that layout, encoded and decoded.
  limbs = [(a - 1, b - 1) for a, b in layouts.FOURTEEN_SKELETON]
  limbs[3] = limbs[3][::-1]  # elbow -> wrist written wrist -> elbow
  limbs.append((2, 5))
  layout = paf_grouping.layout_for(limbs, 14)
  # Walked from the neck (most limbs): head <- neck and the reversed limb run b -> a.
  assert layout.redundant == {13} and list(np.flatnonzero(~layout.from_a)) == [0, 3]
  content = json.loads(layouts.fourteen_keypoints(tmp_path / 'f.json').read_text())
  checked = 0
  for image in content['images']:
    people = [a for a in content['annotations']
              if a['image_id'] == image['id'] and a['num_keypoints'] >= 3]
    if not people:
      continue
    points = np.array([p['keypoints'] for p in people], np.float32).reshape(-1, 14, 3)
    size = (-(-image['width'] // 8) * 8, -(-image['height'] // 8) * 8)
    heatmaps, pafs = paf.encode(points[..., :2], points[..., 2] > 0, image_size=size,
                                limbs=limbs)
    assert heatmaps.shape[-1] == 15 and pafs.shape[-1] == 2 * len(limbs)
    found, scores = paf.decode(heatmaps, pafs, layout=layout)
    assert found.shape[1:] == (14, 3) and len(scores) == len(found)
    for person in points:
      tree = connected_keypoints(person[:, 2], limbs)  # what the fields can reach
      if tree.sum() < 3:
        continue
      distances = [np.hypot(*(f[tree, :2] - person[tree, :2]).T).max() if (
          f[tree, 2] > 0).all() else np.inf for f in found]
      assert min(distances) <= 2 * 8 / 4, (image['id'], distances)
      checked += 1
  assert checked >= 8
