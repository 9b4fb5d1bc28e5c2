"""Tracking: OKS vs pycocotools, box IoU by hand, ids of walking PoseTrack people, One-Euro."""

import contextlib
import io
import json
import math
import pathlib

import numpy as np
import pytest
from pycocotools import coco as pycoco
from pycocotools import cocoeval
from pycocotools import mask as mask_utils

from jaxpose import skeletons
from jaxpose.tracking import smoothing
from jaxpose.tracking import tracker as tracking

DATA = pathlib.Path(__file__).parent / 'data'
POSETRACK_VIDEO = DATA / 'posetrack18' / 'annotations' / 'val' / '012834_mpii_test.json'
SIGMAS = skeletons.COCO.sigmas


def _coco_people(annotations):
  """COCO annotations -> keypoints [P, 17, 2], visibility [P, 17], boxes [P, 4]."""
  keypoints = np.array([a['keypoints'] for a in annotations], np.float64).reshape(-1, 17, 3)
  boxes = np.array([a['bbox'] for a in annotations], np.float64).reshape(-1, 4)
  return keypoints[..., :2], keypoints[..., 2], boxes


# ---------------------------------------------------------------- similarity


def _pycocotools_oks(dataset, detections, image_id):
  """pycocotools' OKS matrix [D, G] of one image (detections in decreasing score order)."""
  with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
    ground_truth = pycoco.COCO()
    ground_truth.dataset = dataset
    ground_truth.createIndex()
    results = ground_truth.loadRes(detections)
    evaluator = cocoeval.COCOeval(ground_truth, results, 'keypoints')
    evaluator.params.imgIds = [image_id]
    evaluator._prepare()
    return np.asarray(evaluator.computeOks(image_id, 1))


def test_oks_equals_pycocotools_on_the_coco_sample():
  """Noisy copies and swapped poses of the real COCO people vs pycocotools' computeOks.

  People without any labelled keypoint are left out: for them COCO measures
  the distance to an enlarged box, which `oks` (0 there) does not implement.
  """
  dataset = json.loads((DATA / 'coco' / 'test_coco.json').read_text())
  dataset['annotations'] = [a for a in dataset['annotations'] if a['num_keypoints'] > 0]
  rng = np.random.default_rng(0)
  compared = 0
  values = []
  for image in dataset['images']:
    annotations = [a for a in dataset['annotations'] if a['image_id'] == image['id']]
    gt_keypoints, gt_visible, _ = _coco_people(annotations)
    areas = np.array([a['area'] for a in annotations])
    # Detections: each person moved by noise of a few percent of its size, and
    # one person's pose put where another one is, so OKS spans (0, 1).
    noise = rng.normal(size=gt_keypoints.shape) * 0.05 * np.sqrt(areas)[:, None, None]
    detected = np.concatenate([gt_keypoints + noise, gt_keypoints[::-1] + 3.0])
    detections = [{'image_id': image['id'], 'category_id': 1, 'score': 1.0 - 0.01 * i,
                   'keypoints': np.concatenate([xy, np.ones((17, 1))], -1).ravel().tolist()}
                  for i, xy in enumerate(detected)]
    expected = _pycocotools_oks(dataset, detections, image['id'])
    got = tracking.oks(detected, np.ones(detected.shape[:2]), gt_keypoints, gt_visible,
                       areas, SIGMAS, score_threshold=0)
    assert got.shape == expected.shape == (2 * len(annotations), len(annotations))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    compared += expected.size
    values.extend(expected.ravel())
  assert compared == 2 * (1 + 2 ** 2 + 4 ** 2 + 5 ** 2)  # 4 images, 12 people
  values = np.array(values)
  assert np.sum((values > 0.05) & (values < 0.95)) >= 10 and np.max(values) > 0.95


def test_oks_uses_only_keypoints_present_in_both():
  keypoints = np.zeros((1, 17, 2))
  moved = keypoints.copy()
  moved[0, 5:] += 1000.  # far off, but only where the reference lacks them
  scores = np.ones((1, 17))
  reference_scores = np.where(np.arange(17) < 5, 1., 0.)[None]
  assert tracking.oks(moved, scores, keypoints, reference_scores, [1e4], SIGMAS)[0, 0] == 1.0
  assert tracking.oks(moved, scores, keypoints, np.zeros((1, 17)), [1e4], SIGMAS)[0, 0] == 0.0


def test_box_iou_hand_computed_and_against_pycocotools():
  boxes_a = np.array([[0., 0., 4., 4.], [10., 10., 2., 3.]])
  boxes_b = np.array([[2., 2., 4., 4.], [1., 1., 2., 2.], [20., 0., 5., 5.], [10., 10., 2., 3.]])
  # Overlap of the first pair: [2, 4] x [2, 4] = 4; union 16 + 16 - 4 = 28.
  # The second box of b lies inside the first of a: 4 / 16.
  expected = np.array([[4 / 28, 4 / 16, 0., 0.],
                       [0., 0., 0., 1.]])
  np.testing.assert_allclose(tracking.box_iou(boxes_a, boxes_b), expected, atol=1e-12)
  rng = np.random.default_rng(1)
  random_a = np.concatenate([rng.uniform(0, 50, (20, 2)), rng.uniform(1, 40, (20, 2))], -1)
  random_b = np.concatenate([rng.uniform(0, 50, (30, 2)), rng.uniform(1, 40, (30, 2))], -1)
  reference = mask_utils.iou(random_a.tolist(), random_b.tolist(), [0] * 30)
  np.testing.assert_allclose(tracking.box_iou(random_a, random_b), reference, atol=1e-12)
  assert 0.1 < reference.max() < 0.99 and reference.min() == 0


def test_similarity_is_oks_with_enough_shared_keypoints_else_the_better_of_oks_and_iou():
  keypoints, visible, boxes = _coco_people(
      json.loads(POSETRACK_VIDEO.read_text())['annotations'][:2])
  # People: 0 and 1 as labelled, and 0 with only three keypoints left.
  few = visible[0].copy()
  few[np.flatnonzero(few)[3:]] = 0
  people_scores = np.stack([visible[0], visible[1], few])
  people_keypoints = keypoints[[0, 1, 0]] + [5., -3.]
  people_boxes = boxes[[0, 1, 0]] + [5., -3., 0., 0.]
  # Tracks: 0 as labelled, and 1's pose moved into 0's box (same place,
  # another pose).
  track_keypoints = np.stack([keypoints[0], keypoints[1] - boxes[1, :2] + boxes[0, :2]])
  track_boxes = boxes[[0, 0]]
  got = tracking.similarity_matrix(people_keypoints, people_scores, people_boxes,
                                   track_keypoints, visible, track_boxes, SIGMAS)
  areas = np.maximum(people_boxes[:, None, 2] * people_boxes[:, None, 3],
                     track_boxes[None, :, 2] * track_boxes[None, :, 3])
  assert areas[1, 0] == boxes[1, 2] * boxes[1, 3] > boxes[0, 2] * boxes[0, 3]  # the larger
  pose = tracking.oks(people_keypoints, people_scores, track_keypoints, visible, areas, SIGMAS)
  iou = tracking.box_iou(people_boxes, track_boxes)
  np.testing.assert_allclose(got[:2], pose[:2], atol=1e-12)  # 11+ shared keypoints
  np.testing.assert_allclose(got[2], np.maximum(pose[2], iou[2]), atol=1e-12)  # 3 shared
  # Person 0 against the other pose on its own place: the pose decides.
  assert got[0, 1] == pose[0, 1] < 0.5 < 0.9 < iou[0, 1] and got[0, 0] > 0.8
  assert iou[2, 0] > pose[2, 0] and got[2, 0] == iou[2, 0]


def test_match_is_optimal_and_drops_dissimilar_pairs():
  similarity = np.array([[0.9, 0.8, 0.0],
                         [0.85, 0.1, 0.0],
                         [0.0, 0.0, 0.2]])
  rows, columns = tracking.match(similarity, min_similarity=0.3)
  # Greedy would take (0, 0) = 0.9 and leave row 1 with 0.1; the optimum is
  # 0.8 + 0.85; row 2's best pair is under the threshold.
  assert sorted(zip(rows.tolist(), columns.tolist())) == [(0, 1), (1, 0)]


# ---------------------------------------------------------------- a walk through PoseTrack


def _posetrack_people():
  """The 11 labelled people of one PoseTrack18 frame (1920 x 1080), with their track ids.

  PoseTrack18's 17 keypoints are COCO's with head_bottom and head_top in
  place of the eyes; the COCO sigmas are used for them by index.
  """
  annotations = json.loads(POSETRACK_VIDEO.read_text())['annotations']
  keypoints, visible, boxes = _coco_people(annotations)
  return keypoints, visible, boxes, np.array([a['track_id'] for a in annotations])


# As few keypoints as the bottom-up decoder reports a person with.
MIN_KEYPOINTS_IN_VIEW = 3


def _walk(velocities, num_frames, seed=0, hidden=None, offsets=None):
  """The PoseTrack people walking: per frame (keypoints, scores, boxes, track ids) of those in view.

  Person i starts at its labelled pose moved by offsets[i] (default 0) and
  moves by velocities[i] pixels per frame, with 1.5 px of Gaussian jitter per
  keypoint and an arm and leg swing of a tenth of its height over a 16-frame
  stride. Keypoints outside the 1920 x 1080 image are absent (score 0);
  boxes are clipped to the image, as a detector's; a person with fewer than
  `MIN_KEYPOINTS_IN_VIEW` keypoints in view is left out, as is person p at
  the frames in hidden[p]. Each frame lists its people in a random order.
  """
  keypoints, visible, boxes, track_ids = _posetrack_people()
  offsets = np.zeros((len(keypoints), 2)) if offsets is None else np.asarray(offsets, np.float64)
  rng = np.random.default_rng(seed)
  size = np.array([1920., 1080.])
  limbs = np.isin(np.arange(17), [7, 8, 9, 10, 13, 14, 15, 16])
  opposite_side = np.where(np.arange(17) % 2 == 0, 1., -1.)  # right vs left limbs
  frames = []
  for frame in range(num_frames):
    shift = offsets + np.asarray(velocities, np.float64) * frame  # [P, 2]
    swing = 0.1 * boxes[:, 3:] * math.sin(2 * math.pi * frame / 16)  # [P, 1]
    moved = keypoints + shift[:, None] + rng.normal(0, 1.5, keypoints.shape)
    moved[..., 0] += swing * (limbs * opposite_side)
    inside = np.all((moved >= 0) & (moved < size), axis=-1)
    scores = np.where(inside, visible, 0.)
    low = np.clip(boxes[:, :2] + shift, 0, size)
    high = np.clip(boxes[:, :2] + boxes[:, 2:] + shift, 0, size)
    in_view = ((scores > 0).sum(axis=-1) >= MIN_KEYPOINTS_IN_VIEW) & np.all(high > low, axis=-1)
    for person, frames_hidden in (hidden or {}).items():
      in_view[person] &= frame not in frames_hidden
    order = rng.permutation(np.flatnonzero(in_view))
    frames.append((moved[order], scores[order], np.concatenate([low, high - low], -1)[order],
                   track_ids[order]))
  return frames


def _track(tracker, frames, with_boxes=True):
  """Runs the tracker over the frames -> list of (ground-truth ids [P], tracker ids [P])."""
  return [(truth, tracker.update(keypoints, scores, boxes if with_boxes else None))
          for keypoints, scores, boxes, truth in frames]


def _relabelling(results):
  """{ground-truth id: set of tracker ids} over all frames, and the reverse."""
  forward, backward = {}, {}
  for truth, ids in results:
    for t, i in zip(truth.tolist(), ids.tolist()):
      forward.setdefault(t, set()).add(i)
      backward.setdefault(i, set()).add(t)
  return forward, backward


# Per-person velocities (px / frame). Persons 0 and 1 cross each other, so do
# 4 and 8 (at 10 px / frame, a run at this scale); 2 walks out of the image on
# the left (last in view at frame 27); 3 starts off the image on the right and
# walks in (first in view at frame 14).
WALK_VELOCITIES = [(6, 0.5), (-6, -0.5), (-8, 0), (-10, 1), (10, 0.3), (2, 0), (-1, 0.5),
                   (1, -0.5), (-10, -0.3), (3, 1), (0, 2)]
WALK_FRAMES = 45
# Frames where the smaller (farther) person of each crossing pair is hidden
# behind the other: where their boxes overlap by IoU > 0.35 (0 behind 1) and
# > 0.4 (4 behind 8).
CROSSING_OCCLUSIONS = {0: range(12, 20), 4: range(32, 38)}


def _walk_with_entry(seed=0, hidden=None):
  """The walk above; person 3 starts 1696 px right of its labelled place (x = 264 .. 508)."""
  offsets = np.zeros((11, 2))
  offsets[3, 0] = 1920 - 264 + 10 * 4  # its box's left edge is at 1920 at frame 4
  return _walk(WALK_VELOCITIES, WALK_FRAMES, seed, hidden, offsets)


def _assert_one_to_one(results, num_people=11):
  """Tracker ids are a one-to-one relabelling of the true ids, with ids 0 .. num_people - 1."""
  forward, backward = _relabelling(results)
  assert sorted(forward) == list(range(num_people))
  assert all(len(ids) == 1 for ids in forward.values()), forward
  assert all(len(truth) == 1 for truth in backward.values()), backward
  assert sorted(backward) == list(range(num_people))  # none wasted, none negative


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_people_walking_through_posetrack_frames_keep_their_ids(seed):
  """The issue's acceptance test, with annotations in place of a model.

  The PoseTrack18 sample has one labelled frame per video, so its 11 real
  people are walked through 45 frames: two pairs cross, one leaves the
  image, one enters it. The tracker's ids must be a one-to-one relabelling
  of the annotation's track ids in every frame.
  """
  frames = _walk_with_entry(seed)
  in_view = [set(ids.tolist()) for *_, ids in frames]
  assert 3 not in in_view[13] and 3 in in_view[14]  # the scenario happens as described
  assert 2 in in_view[27] and 2 not in in_view[28] and len(in_view[20]) == 11
  _assert_one_to_one(_track(tracking.Tracker(SIGMAS), frames))


def test_walking_people_in_the_openpose_layout_keep_their_ids():
  """The same walk as bottom-up output: OpenPose-18 people (with a neck) and no boxes."""
  frames = []
  for keypoints, scores, _, truth in _walk_with_entry(seed=3):
    keypoints, scores = skeletons.openpose_from_coco(keypoints, scores)
    frames.append((keypoints, scores, None, truth))
  _assert_one_to_one(_track(tracking.Tracker(skeletons.OPENPOSE.sigmas), frames,
                            with_boxes=False))


def test_crossing_people_overlap():
  """The crossings are real: the pairs' boxes overlap most (IoU 0.5, 0.65) in the hidden frames."""
  frames = _walk_with_entry()
  overlap = {(0, 1): [], (4, 8): []}
  for _, _, boxes, ids in frames:
    iou = tracking.box_iou(boxes, boxes)
    for a, b in overlap:
      if a in ids and b in ids:
        overlap[(a, b)].append(iou[np.flatnonzero(ids == a)[0], np.flatnonzero(ids == b)[0]])
  assert np.argmax(overlap[(0, 1)]) in CROSSING_OCCLUSIONS[0]
  assert np.argmax(overlap[(4, 8)]) in CROSSING_OCCLUSIONS[4]
  assert max(overlap[(0, 1)]) > 0.45 and max(overlap[(4, 8)]) > 0.6


@pytest.mark.parametrize('with_boxes', [True, False])
def test_people_hidden_while_crossing_keep_their_ids_with_motion_prediction(with_boxes):
  """Persons 0 and 4 vanish behind the person they cross for 8 and 6 frames.

  They come back 54 and 70 px from where they were last seen: matched
  against their predicted poses they keep their ids, against their last
  poses they get new ones. Person 3 walks in while 0 is hidden; without the
  minimum similarity it would take 0's free track.
  """
  frames = _walk_with_entry(hidden=CROSSING_OCCLUSIONS)
  _assert_one_to_one(_track(tracking.Tracker(SIGMAS, predict_motion=True), frames, with_boxes))

  forward, backward = _relabelling(_track(tracking.Tracker(SIGMAS), frames, with_boxes))
  assert {person for person, ids in forward.items() if len(ids) > 1} == {0, 4}
  assert all(len(truth) == 1 for truth in backward.values())  # new ids, no swaps

  _, backward = _relabelling(_track(tracking.Tracker(SIGMAS, predict_motion=True,
                                                     min_similarity=0.), frames, with_boxes))
  assert [truth for truth in backward.values() if len(truth) > 1] == [{0, 3}]


@pytest.mark.parametrize('with_boxes', [True, False])
def test_occlusion_up_to_patience_keeps_the_id_longer_gets_a_new_one(with_boxes):
  patience = 4
  still = [(2, 0)] * 11
  short = _walk(still, 20, seed=1, hidden={5: range(6, 6 + patience)})
  long = _walk(still, 20, seed=1, hidden={5: range(6, 7 + patience)})
  kept = _track(tracking.Tracker(SIGMAS, patience=patience), short, with_boxes)
  lost = _track(tracking.Tracker(SIGMAS, patience=patience), long, with_boxes)

  def ids_of_five(results):
    return [ids[truth == 5].tolist() for truth, ids in results]

  first = ids_of_five(kept)[0]
  assert ids_of_five(kept) == [first] * 6 + [[]] * patience + [first] * (20 - 6 - patience)
  lost_ids = ids_of_five(lost)
  assert lost_ids[:6] == [first] * 6 and lost_ids[6:7 + patience] == [[]] * (patience + 1)
  # The new id is the next unused one: ids are never reused.
  assert lost_ids[7 + patience:] == [[11]] * (13 - patience)
  others = _relabelling([(t[t != 5], i[t != 5]) for t, i in lost])[0]
  assert all(len(ids) == 1 for ids in others.values())


def _running_person(num_frames, hidden=()):
  """PoseTrack person 0 running right at 12 px / frame; absent at the frames in `hidden`."""
  keypoints, visible, _, _ = _posetrack_people()
  frames = []
  for frame in range(num_frames):
    if frame in hidden:
      frames.append((np.zeros((0, 17, 2)), np.zeros((0, 17))))
    else:
      frames.append((keypoints[:1] + [12. * frame, 0.], visible[:1]))
  return frames


def test_motion_prediction_follows_a_running_person_through_a_gap():
  keypoints, visible, _, _ = _posetrack_people()
  area = np.prod(tracking.boxes_from_keypoints(keypoints[:1], visible[:1])[0, 2:])

  def similarity(step):
    return tracking.oks(keypoints[:1] + [step, 0.], visible[:1], keypoints[:1], visible[:1],
                        [area], SIGMAS)[0, 0]

  # One frame's step matches the last pose; the three steps across a gap of
  # two frames do not.
  assert similarity(12.) > 0.6 and similarity(36.) < 0.2
  frames = _running_person(12, hidden=(5, 6))
  plain = tracking.Tracker(SIGMAS)
  predicting = tracking.Tracker(SIGMAS, predict_motion=True)
  plain_ids = [plain.update(*frame).tolist() for frame in frames]
  predicted_ids = [predicting.update(*frame).tolist() for frame in frames]
  assert plain_ids == [[0]] * 5 + [[], []] + [[1]] * 5
  assert predicted_ids == [[0]] * 5 + [[], []] + [[0]] * 5


def test_new_tracks_get_ids_after_min_hits_consecutive_frames():
  keypoints, visible, _, _ = _posetrack_people()
  tracker = tracking.Tracker(SIGMAS, min_hits=3)
  ids = []
  for frame in range(6):
    people = [0] + ([8] if frame == 1 else []) + ([4] if frame >= 3 else [])
    ids.append(tracker.update(keypoints[people] + frame, visible[people]).tolist())
  # Person 8 appears for one frame: it never gets an id, nor uses one up.
  assert ids == [[-1], [-1, -1], [0], [0, -1], [0, -1], [0, 1]]


def test_tracker_rejects_bad_input():
  tracker = tracking.Tracker(SIGMAS)
  with pytest.raises(ValueError, match='expected 17 keypoints'):
    tracker.update(np.zeros((2, 18, 2)), np.zeros((2, 18)))
  with pytest.raises(ValueError, match=r'boxes: expected \[2, 4\]'):
    tracker.update(np.zeros((2, 17, 2)), np.zeros((2, 17)), boxes=np.zeros((3, 4)))
  tracker.update(np.zeros((0, 17, 2)), np.zeros((0, 17)), timestamp=1.0)
  with pytest.raises(ValueError, match='timestamps must increase'):
    tracker.update(np.zeros((0, 17, 2)), np.zeros((0, 17)), timestamp=1.0)


def test_tracker_smooths_each_track_with_its_own_filter():
  keypoints, visible, _, _ = _posetrack_people()
  settings = smoothing.OneEuroSettings(min_cutoff=1.0, beta=0.01, d_cutoff=1.0)
  tracker = tracking.Tracker(SIGMAS, smoothing=settings)
  reference = [smoothing.OneEuroFilter(1.0, 0.01, 1.0) for _ in range(2)]
  rng = np.random.default_rng(2)
  raw_error, smooth_error = [], []
  for frame in range(30):
    people = keypoints[[4, 8]] + rng.normal(0, 3., (2, 17, 2))
    order = [1, 0] if frame % 2 else [0, 1]  # the people swap places in the input
    ids = tracker.update(people[order], visible[[4, 8]][order], timestamp=frame / 25)
    assert ids.tolist() == order
    for p in range(2):
      expected = reference[p](people[p], frame / 25, (visible[[4, 8]][p] > 0.2)[:, None])
      np.testing.assert_allclose(tracker.smoothed_keypoints[order.index(p)], expected,
                                 atol=1e-9)
      present = visible[[4, 8]][p] > 0
      if frame >= 10:
        raw_error.append(np.abs(people[p] - keypoints[[4, 8]][p])[present].mean())
        smooth_error.append(np.abs(expected - keypoints[[4, 8]][p])[present].mean())
  assert np.mean(smooth_error) < 0.5 * np.mean(raw_error)
