"""jaxpose.codecs.taf and jaxpose.tracking.taf_tracker against CMU's STAF code (tests/staf_reference.py).

Also the tracking case TAFs exist for: two people whose paths cross at a
frame rate where each one's next pose is nearer the other's last pose than
their own; OKS matching swaps their ids, the fields keep them.
"""

import numpy as np
import pytest

import staf_reference
from jaxpose import skeletons
from jaxpose.codecs import taf
from jaxpose import tracking

SIGMAS = skeletons.COCO.sigmas


def test_links_are_staf_model_0_between_coco_points():
  assert list(taf.LINK_NOW) == staf_reference.LINKS_NOW
  assert list(taf.LINK_PREV) == staf_reference.LINKS_PREV
  # 17 same-keypoint links, then BODY_25B's limbs among COCO's points; its
  # feet, neck and head top (17..24) dropped: 51 - 18 links.
  assert taf.LINKS[:17] == tuple((k, k) for k in range(17))
  assert taf.LINKS[17:] == ((0, 1), (0, 2), (1, 3), (2, 4), (0, 5), (0, 6), (5, 7), (6, 8),
                            (7, 9), (8, 10), (5, 11), (6, 12), (11, 13), (12, 14), (13, 15),
                            (14, 16))
  assert len(staf_reference.TAF_MODEL_0) // 2 == 51 and taf.NUM_CHANNELS == 66


def _random_clip_people(rng, batch, num_people, image_size):
  """People at t-1 and t, [B, P, 17, 2] and [B, P, 17], with the cases upstream treats specially."""
  width, height = image_size
  now = np.stack([rng.uniform(-16, width + 16, (batch, num_people, 17)),
                  rng.uniform(-16, height + 16, (batch, num_people, 17))], -1)
  prev = now + rng.normal(0, 12, now.shape)
  visible = (rng.random((batch, num_people, 17)) > 0.2).astype(np.float32)
  visible_prev = (rng.random((batch, num_people, 17)) > 0.2).astype(np.float32)
  visible_prev[0, 1] = 0  # person 1 enters at t: no link
  prev[0, 2, :5] = now[0, 2, :5]  # keypoints that did not move: length 0, no field
  visible[0, 2, :5] = visible_prev[0, 2, :5] = 1
  # Person 3 moves along person 0's path the other way: their fields overlap.
  now[0, 3], prev[0, 3] = prev[0, 0], now[0, 0]
  visible[0, 3] = visible_prev[0, 3] = visible[0, 0] = visible_prev[0, 0] = 1
  return prev.astype(np.float32), visible_prev, now.astype(np.float32), visible


def test_encode_equals_upstream_data_layer_negated():
  image_size, stride = (176, 136), 8
  rng = np.random.default_rng(0)
  prev, visible_prev, now, visible = _random_clip_people(rng, 2, 6, image_size)
  mask = np.ones((2, 6), bool)
  mask[1, 5] = False
  now[1, 5] = np.nan  # a padding slot: masked, whatever it holds
  fields = np.asarray(taf.encode(prev, visible_prev, now, visible, mask, image_size=image_size,
                                 stride=stride))
  assert fields.shape == (2, 17, 22, 66) and fields.dtype == np.float32
  for b in range(2):
    real = mask[b]
    upstream = staf_reference.upstream_taf_targets(
        prev[b][real], visible_prev[b][real], now[b][real], visible[b][real],
        grid_x=22, grid_y=17, stride=stride)
    # Upstream's data layer points from t to t-1; these fields from t-1 to t.
    np.testing.assert_allclose(fields[b], -upstream, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(fields[b] != 0, upstream != 0)
  # The special cases happened: fields averaged where people overlap (norm
  # < 1), unit vectors elsewhere, nothing for keypoints that did not move.
  norms = np.hypot(fields[..., 0::2], fields[..., 1::2])
  assert (norms[norms > 0] < 0.99).sum() > 10 and (np.abs(norms - 1) < 1e-6).sum() > 1000
  alone = np.asarray(taf.encode(prev[:1, 2:3], visible_prev[:1, 2:3], now[:1, 2:3],
                                visible[:1, 2:3], image_size=image_size, stride=stride))
  assert not alone[..., :10].any() and alone[..., 10:].any()


def test_encode_rejects_mismatched_shapes():
  keypoints = np.zeros((2, 17, 2))
  visible = np.ones((2, 17))
  with pytest.raises(ValueError, match=r'keypoints: expected \[..., P, 17, 2\]'):
    taf.encode(keypoints, visible, keypoints[:, :16], visible, image_size=(64, 64))
  with pytest.raises(ValueError, match=r'visible_prev: expected \(2, 17\)'):
    taf.encode(keypoints, visible[:1], keypoints, visible, image_size=(64, 64))
  with pytest.raises(ValueError, match=r'person_mask: expected \(2,\)'):
    taf.encode(keypoints, visible, keypoints, visible, np.ones(3, bool), image_size=(64, 64))


def test_score_equals_upstream_taf_score_gpu():
  image_size, stride = (176, 136), 8
  rng = np.random.default_rng(1)
  prev, visible_prev, now, visible = _random_clip_people(rng, 1, 6, image_size)
  fields = np.asarray(taf.encode(prev, visible_prev, now, visible, image_size=image_size,
                                 stride=stride))[0]
  fields = fields + rng.normal(0, 0.03, fields.shape).astype(np.float32)
  fields[:, :, 0:2] = 0  # the nose's own link: no field, so short moves score by length
  people_prev = np.concatenate([prev[0], rng.uniform(0, 1, (6, 17, 1))], -1).astype(np.float64)
  people = np.concatenate([now[0], rng.uniform(0, 1, (6, 17, 1))], -1).astype(np.float64)
  people_prev[:, :, 2] = np.where(visible_prev[0] > 0, people_prev[:, :, 2], 0.01)
  people[:, :, 2] = np.where(visible[0] > 0, people[:, :, 2], 0.01)
  # Noses moved by 0.5 px (under sqrt(22 * 17) / 150 cells) and 20 px.
  people_prev[:, 0, 2] = people[:, 0, 2] = 1
  people[:2, 0, :2] = people_prev[:2, 0, :2] + [0.3, 0.4]
  people[2:4, 0, :2] = people_prev[2:4, 0, :2] + [12, 16]
  got = taf.score(fields, people_prev, people, stride=stride)
  assert got.shape == (6, 6, 33)
  upstream = staf_reference.upstream_taf_scores(fields.transpose(2, 0, 1).astype(np.float64),
                                                people, people_prev, 1 / stride)
  np.testing.assert_allclose(got, upstream.transpose(2, 1, 0), rtol=0, atol=1e-9)
  # Every branch of upstream's rule is taken: a mean score, the short-move
  # score, -1 for absent keypoints and for fields that disagree.
  assert (got > 0.9).sum() > 30 and (got == -1).sum() > 1000
  np.testing.assert_allclose(got[[0, 1], [0, 1], 0], 0.05 + 1e-6)
  assert (got[[2, 3], [2, 3], 0] == -1).all()


def test_score_rejects_bad_input():
  with pytest.raises(ValueError, match=r'tafs: expected \[H, W, 66\]'):
    taf.score(np.zeros((8, 8, 38)), np.zeros((1, 17, 3)), np.zeros((1, 17, 3)))
  with pytest.raises(ValueError, match=r'people_prev: expected \[N, 17, 3\]'):
    taf.score(np.zeros((8, 8, 66)), np.zeros((1, 17, 2)), np.zeros((1, 17, 3)))


# ------------------------------------------------------------- tracking

# A standing person, COCO keypoints as (x, y) fractions of the height.
_FIGURE = np.array([(0, .06), (.025, .045), (-.025, .045), (.05, .06), (-.05, .06), (.11, .18),
                    (-.11, .18), (.14, .34), (-.14, .34), (.15, .48), (-.15, .48), (.07, .52),
                    (-.07, .52), (.08, .74), (-.08, .74), (.08, .96), (-.08, .96)])
_IMAGE_SIZE = (512, 384)


def _walker(x, y, height, phase):
  """A stick figure at (x, y) (its head's top), legs and arms swinging with `phase`."""
  keypoints = _FIGURE * height + [x, y]
  swing = np.sin(phase) * 0.06 * height
  keypoints[[13, 15], 0] += swing
  keypoints[[14, 16], 0] -= swing
  keypoints[[7, 9], 0] -= swing / 2
  keypoints[[8, 10], 0] += swing / 2
  return keypoints


def _crossing(num_frames=8, height=320, step=24, depth=16, shift=0.4):
  """Two people walking towards each other and passing -> keypoints [F, 2, 17, 2].

  Person 0 walks right, person 1 left, `step` pixels a frame, person 1
  `depth` pixels lower (nearer the camera). Between frames k - 1 and k
  (k = F / 2) person 0 goes from c - shift step to c + (1 - shift) step, past
  person 1's last place c + shift step.
  """
  centre, crossing = _IMAGE_SIZE[0] / 2, num_frames // 2
  steps = (np.arange(num_frames) - (crossing - 1)) * step
  top = (_IMAGE_SIZE[1] - height) / 2
  return np.stack([
      np.stack([_walker(centre - shift * step + s, top, height, 1.3 * i),
                _walker(centre + shift * step - s, top + depth, height, 1.3 * i + 1)])
      for i, s in enumerate(steps)]).astype(np.float32)


def test_fields_keep_crossing_people_apart_where_oks_swaps_them():
  people = _crossing()
  visible = np.ones(people.shape[:-1], np.float32)
  crossing = len(people) // 2
  # The premise: at the crossing each person's pose is nearer the other's
  # last pose than their own.
  distance = np.linalg.norm(people[crossing][:, None] - people[crossing - 1][None],
                            axis=-1).mean(-1)  # [now, previous]
  assert distance[0, 1] < 0.8 * distance[0, 0] and distance[1, 0] < 0.8 * distance[1, 1]
  # Each frame's fields, from ground truth (person p is the same track).
  fields = np.asarray(taf.encode(people[:-1], visible[:-1], people[1:], visible[1:],
                                 image_size=_IMAGE_SIZE))  # [F - 1, H, W, 66]
  by_pose = tracking.Tracker(SIGMAS)
  by_fields = tracking.TafTracker(SIGMAS)
  pose_ids, field_ids = [], []
  for frame, (keypoints, scores) in enumerate(zip(people, visible)):
    pose_ids.append(by_pose.update(keypoints, scores).tolist())
    tafs = fields[frame - 1] if frame else None
    field_ids.append(by_fields.update(keypoints, scores, tafs=tafs).tolist())
  # OKS follows both up to the crossing, then swaps them for good.
  assert pose_ids == [[0, 1]] * crossing + [[1, 0]] * (len(people) - crossing)
  assert field_ids == [[0, 1]] * len(people)
  # The fields' similarity at the crossing: the own track about 1, the
  # other's low.
  previous = np.concatenate([people[crossing - 1], visible[crossing - 1, ..., None]], -1)
  now = np.concatenate([people[crossing], visible[crossing, ..., None]], -1)
  similarity = tracking.taf_similarity(
      taf.score(fields[crossing - 1], previous, now), visible[crossing - 1], visible[crossing])
  assert similarity[0, 0] > 0.95 and similarity[1, 1] > 0.95
  assert similarity[0, 1] < 0.3 and similarity[1, 0] < 0.3
  # The same on fields upsampled 4x (bicubic overshoots 1 a little).
  upsampled = tracking.taf_similarity(
      taf.score(fields[crossing - 1], previous, now, upsample=4), visible[crossing - 1],
      visible[crossing])
  assert 0.95 < upsampled[0, 0] < 1.1 and 0.95 < upsampled[1, 1] < 1.1
  assert upsampled[0, 1] < 0.3 and upsampled[1, 0] < 0.3


def test_without_fields_the_taf_tracker_matches_as_the_oks_tracker():
  people = _crossing()
  visible = np.ones(people.shape[:-1], np.float32)
  by_pose = tracking.Tracker(SIGMAS, patience=3)
  silent = tracking.TafTracker(SIGMAS, patience=3)
  no_fields = np.zeros((48, 64, 66), np.float32)
  history = []
  for frame, (keypoints, scores) in enumerate(zip(people, visible)):
    # Frame 5 has one person only: the other's track misses it.
    keypoints, scores = (keypoints[:1], scores[:1]) if frame == 5 else (keypoints, scores)
    expected = by_pose.update(keypoints, scores)
    np.testing.assert_array_equal(silent.update(keypoints, scores, tafs=no_fields), expected)
    history.append(expected.tolist())
  # OKS's swap at the crossing, then a new id for the person missed in frame
  # 5, now two steps from their track.
  assert history == [[0, 1]] * 4 + [[1, 0], [1], [1, 2], [1, 2]]


def test_taf_tracker_rejects_bad_input():
  with pytest.raises(ValueError, match='expected 17 sigmas'):
    tracking.TafTracker(skeletons.OPENPOSE.sigmas)
  tracker = tracking.TafTracker(SIGMAS)
  with pytest.raises(ValueError, match='expected 17 keypoints per person'):
    tracker.update(np.zeros((1, 18, 2)), np.ones((1, 18)))
  tracker.update(np.zeros((1, 17, 2)), np.ones((1, 17)))
  with pytest.raises(ValueError, match=r'tafs: expected \[H, W, 66\]'):
    tracker.update(np.zeros((1, 17, 2)), np.ones((1, 17)), tafs=np.zeros((8, 8, 38)))
