"""PoseTrack18: the reader on the bundled sample, and MOTA / AP against poseval's rules (tests/posetrack_reference.py).

The sample has one labelled frame per video; the tracking cases make clips
of it: its labelled frame repeated, the people standing still.
"""

import copy
import json
import pathlib

import numpy as np
import pytest
from shapely import geometry

from jaxpose.data import posetrack as posetrack_data
from jaxpose.metrics import posetrack
from posetrack_reference import reference_ap, reference_mot

DATA = pathlib.Path(__file__).parent / 'data' / 'posetrack18'
VAL = DATA / 'annotations' / 'val'
SAMPLE_VIDEOS = ('003418_mpii_test', '009473_mpii_test', '012834_mpii_test')
JOINT = {name: index for index, name in enumerate(posetrack.JOINT_NAMES)}
KEYPOINT = {name: index for index, name in enumerate(posetrack_data.KEYPOINT_NAMES)}


def _video(name: str) -> dict:
  return json.loads((VAL / f'{name}.json').read_text())


def _clip(name: str, num_frames: int, move_track_1: float = 0.0,
          ignore_regions: bool = True) -> dict:
  """A sample video's labelled frame as `num_frames` frames; track 1 moved `move_track_1` px right."""
  video = _video(name)
  image = video['images'][0]
  images, annotations = [], []
  for index in range(num_frames):
    frame = dict(image, id=image['id'] + index, frame_id=image['frame_id'] + index,
                 file_name=image['file_name'].replace('000000.jpg', f'{index:06d}.jpg'))
    if not ignore_regions:
      del frame['ignore_regions_x'], frame['ignore_regions_y']
    images.append(frame)
    for person in video['annotations']:
      keypoints = np.array(person['keypoints'], np.float64).reshape(-1, 3)
      head_box = list(person['bbox_head'])
      if person['track_id'] == 1:
        keypoints[np.any(keypoints != 0, axis=1), 0] += move_track_1
        head_box[0] += move_track_1
      annotations.append(dict(person, id=person['id'] * 100 + index, image_id=frame['id'],
                              keypoints=keypoints.ravel().tolist(), bbox_head=head_box))
  return {'categories': video['categories'], 'images': images, 'annotations': annotations}


def _as_predictions(ground_truth: dict, score: float = 0.5) -> dict:
  """The ground truth as a tracker's output: every keypoint scored `score`."""
  predictions = copy.deepcopy(ground_truth)
  for person in predictions['annotations']:
    person['scores'] = [score] * posetrack_data.NUM_KEYPOINTS
    del person['bbox_head']
  return predictions


def _person(video: dict, frame: int, track_id: int) -> dict:
  image_id = video['images'][frame]['id']
  return next(p for p in video['annotations']
              if p['image_id'] == image_id and p['track_id'] == track_id)


def _move(person: dict, keypoint: str, dx: float, dy: float) -> None:
  person['keypoints'][3 * KEYPOINT[keypoint]] += dx
  person['keypoints'][3 * KEYPOINT[keypoint] + 1] += dy


def _remove(person: dict, keypoint: str) -> None:
  person['keypoints'][3 * KEYPOINT[keypoint]:3 * KEYPOINT[keypoint] + 3] = [0, 0, 0]


def _head_size(person: dict) -> float:
  return 0.6 * np.hypot(person['bbox_head'][2], person['bbox_head'][3])


def _write(folder: pathlib.Path, videos: list[dict]) -> list[posetrack_data.PoseTrackVideo]:
  folder.mkdir(parents=True)
  for index, video in enumerate(videos):
    (folder / f'{index}.json').write_text(json.dumps(video))
  return posetrack_data.load_posetrack(folder)


def _scored(tmp_path, ground_truth: list[dict], predictions: list[dict]):
  """-> (TrackingMetrics, PoseMetrics), checked equal to the poseval reference on the same files."""
  truth, guess = _write(tmp_path / 'gt', ground_truth), _write(tmp_path / 'pr', predictions)
  tracking, pose = posetrack.mota(truth, guess), posetrack.average_precision(truth, guess)
  expected_mot = reference_mot(ground_truth, predictions)
  expected_ap = reference_ap(ground_truth, predictions)
  for name, key in (('mota', 'mota'), ('motp', 'motp'), ('precision', 'pre'), ('recall', 'rec')):
    np.testing.assert_allclose(getattr(tracking, name), expected_mot[key][:15], atol=1e-9,
                               equal_nan=True, err_msg=name)
    np.testing.assert_allclose(tracking.totals()[name], expected_mot[key][15], atol=1e-9,
                               equal_nan=True, err_msg=name)
  for name in ('num_objects', 'num_misses', 'num_switches', 'num_false_positives',
               'num_detections'):
    np.testing.assert_array_equal(getattr(tracking, name), expected_mot[name], err_msg=name)
  for name, key in (('ap', 'ap'), ('precision', 'pre'), ('recall', 'rec')):
    np.testing.assert_allclose(getattr(pose, name), expected_ap[key][:15], atol=1e-9,
                               equal_nan=True, err_msg=f'AP {name}')
    np.testing.assert_allclose(pose.totals()[name], expected_ap[key][15], atol=1e-9,
                               equal_nan=True, err_msg=f'AP {name}')
  return tracking, pose


# ---------------------------------------------------------------- reader


def test_reader_reads_the_sample_per_video_and_merged():
  per_video = posetrack_data.load_posetrack(VAL, image_root=str(DATA))
  merged = posetrack_data.load_posetrack(DATA / 'annotations' / 'test_posetrack18_val.json')
  assert [v.name for v in per_video] == list(SAMPLE_VIDEOS)
  assert sorted(v.name for v in merged) == list(SAMPLE_VIDEOS)
  merged = {video.name: video for video in merged}
  for video in per_video:
    (frame,), (merged_frame,) = video.frames, merged[video.name].frames
    np.testing.assert_array_equal(frame.keypoints, merged_frame.keypoints)
    np.testing.assert_array_equal(frame.track_ids, merged_frame.track_ids)
    assert frame.is_labeled and pathlib.Path(frame.image_path).is_file()
  counts = [(len(v.frames[0].track_ids), len(v.frames[0].ignore_regions)) for v in per_video]
  assert counts == [(1, 9), (2, 2), (11, 4)]
  frame = per_video[1].frames[0]
  assert frame.file_name == 'images/val/009473_mpii_test/000000.jpg'
  np.testing.assert_array_equal(frame.track_ids, [0, 1])
  np.testing.assert_array_equal(frame.head_boxes[1], [878, 201, 90, 125])
  np.testing.assert_array_equal(frame.keypoints[1, KEYPOINT['head_top']],
                                [936.0065308, 219.1595001, 1])
  np.testing.assert_array_equal(frame.keypoints[0, KEYPOINT['left_elbow']], [0, 0, 0])
  assert frame.present[0].sum() == 14 and frame.present[1].sum() == 15
  assert np.isnan(frame.keypoint_scores).all()  # ground truth has `scores: []`
  assert frame.ignore_regions[0].shape == (25, 2)
  np.testing.assert_array_equal(frame.ignore_regions[0][0], [1907, 228])


@pytest.mark.parametrize('break_it, message', [
    (lambda v: v['annotations'][0].pop('track_id'), '`track_id` is None'),
    (lambda v: v['annotations'][0].update(keypoints=[1, 2, 3]), 'a list of 51 numbers'),
    (lambda v: v['annotations'][0].update(scores=[0.5] * 3), '`scores`'),
    (lambda v: v['annotations'][0].update(image_id=7), 'image_id 7, which is not in `images`'),
    (lambda v: v['annotations'][1].update(track_id=0), 'track ids [0, 0] repeat'),
    (lambda v: v['images'][0]['ignore_regions_y'].pop(), '2 ignore_regions_x polygons but 1'),
    (lambda v: v['categories'][0]['keypoints'].reverse(), "expected PoseTrack18's"),
    (lambda v: v['images'][0].pop('file_name'), 'no `id` or no `file_name`'),
])
def test_reader_names_the_file_and_field_of_bad_input(tmp_path, break_it, message):
  video = _video('009473_mpii_test')
  break_it(video)
  path = tmp_path / 'broken.json'
  path.write_text(json.dumps(video))
  with pytest.raises(ValueError, match='broken.json') as error:
    posetrack_data.load_posetrack(path)
  assert message in str(error.value)


def test_reader_refuses_an_empty_folder_and_a_video_in_two_files(tmp_path):
  with pytest.raises(FileNotFoundError, match='no .json'):
    posetrack_data.load_posetrack(tmp_path)
  for name in ('a', 'b'):
    (tmp_path / f'{name}.json').write_text((VAL / '009473_mpii_test.json').read_text())
  with pytest.raises(ValueError, match=r"videos \['009473_mpii_test'\] appear more than once"):
    posetrack_data.load_posetrack(tmp_path)


# ---------------------------------------------------------------- metrics on the sample


def test_ignore_regions_contain_what_shapely_contains():
  """The sample's 15 ignore polygons vs poseval's shapely `contains`: random points, vertices, edge midpoints."""
  rng = np.random.default_rng(0)
  polygons = [polygon for video in posetrack_data.load_posetrack(VAL)
              for polygon in video.frames[0].ignore_regions]
  for polygon in polygons:
    low, high = polygon.min(axis=0) - 5, polygon.max(axis=0) + 5
    points = np.concatenate([rng.uniform(low, high, (200, 2)), polygon,
                             (polygon + np.roll(polygon, -1, axis=0)) / 2])
    shape = geometry.Polygon(polygon)
    expected = [shape.contains(geometry.Point(x, y)) for x, y in points]
    np.testing.assert_array_equal(posetrack._strictly_inside(points, polygon), expected)
    assert 0 < sum(expected) < 200  # some points fall inside, some outside


def test_ground_truth_as_predictions_scores_100_on_the_sample(tmp_path):
  """AP 100; MOTA has nothing to count: poseval leaves each video's only (last) frame out."""
  truth = [_video(name) for name in SAMPLE_VIDEOS]
  tracking, pose = _scored(tmp_path, truth, truth)
  assert pose.totals() == {'ap': 100.0, 'precision': 100.0, 'recall': 100.0}
  np.testing.assert_array_equal(pose.ap, 100.0)
  assert tracking.num_objects.sum() == 0 and np.isnan(tracking.totals()['mota'])


def test_keypoints_in_ignore_regions_are_not_scored(tmp_path):
  """003418's right knee lies in an ignore region: predicting it nowhere costs nothing.

  The sample has 10 other right knees (009473: 2, 012834: 8). Predicted 500 px
  off, outside every region, and scored 0.9 (the others 0.5), the knee is a
  false positive ranked first: precision 0/1, 1/2, ..., 10/11, recall up to
  10/10, so right knee AP = 100 * 10/11 = 90.91.
  """
  truth = [_video(name) for name in SAMPLE_VIDEOS]
  guess = [_as_predictions(video) for video in truth]
  _remove(guess[0]['annotations'][0], 'right_knee')
  _, pose = _scored(tmp_path / 'missing', truth, guess)
  np.testing.assert_allclose(pose.ap, 100.0, rtol=1e-12)
  guess = [_as_predictions(video) for video in truth]
  _move(guess[0]['annotations'][0], 'right_knee', -400, 300)
  guess[0]['annotations'][0]['scores'][KEYPOINT['right_knee']] = 0.9
  _, pose = _scored(tmp_path / 'moved', truth, guess)
  assert pose.ap[JOINT['right_knee']] == pytest.approx(100 * 10 / 11, rel=1e-12)


def test_ground_truth_as_predictions_scores_100_on_a_crowded_clip(tmp_path):
  """012834's 11 people (4 ignore regions) over 3 frames: 2 are counted, the last left out."""
  truth = _clip('012834_mpii_test', 3)
  tracking, pose = _scored(tmp_path, [truth], [_as_predictions(truth)])
  for values in (tracking.mota, tracking.motp, tracking.precision, tracking.recall, pose.ap):
    np.testing.assert_allclose(values, 100.0, rtol=1e-12)  # AP sums recall steps of 1/16
  # 11 people, 2 without ankles (tracks 0 and 9), one more without a right ankle: 8 per frame.
  assert tracking.num_objects[JOINT['right_ankle']] == 2 * 8
  assert tracking.num_switches.sum() == tracking.num_misses.sum() == 0


# ---------------------------------------------------------------- metrics of perturbed ground truth

# 009473's two people over 4 frames, track 1 moved 400 px right so that no
# joint of one is within half a head size of the same joint of the other
# (and without ignore regions, which the move would enter). Person 0 has no
# left elbow: each frame has n = 2 people per joint, n = 1 for the left elbow.
# MOTA counts frames 0-2 (the last left out): objects = 3n = 6 (left elbow 3).
# AP counts all 4 frames: 4n = 8 ground-truth joints (left elbow 4).
# Predictions are the ground truth scored 0.5 unless a case says otherwise.


def _swap_identities(video):
  """Tracks 0 and 1 exchange ids from frame 1 on: one switch per joint and person.

  MOTA = 100 (1 - n / 3n) = 66.67 for every joint; MOTP, precision, recall, AP 100.
  """
  for frame in (1, 2, 3):
    first, second = _person(video, frame, 0), _person(video, frame, 1)
    first['track_id'], second['track_id'] = 1, 0
  return {'mota': dict.fromkeys(JOINT, 100 * (1 - 1 / 3))}


def _miss_a_joint(video):
  """Track 1's left wrist is not predicted in frame 0: 1 miss of 6 objects, 7 of 8 joints found.

  MOTA = recall = 100 (1 - 1/6) = 83.33; AP = recall = 100 * 7/8 = 87.5.
  """
  _remove(_person(video, 0, 1), 'left_wrist')
  return {'mota': {'left_wrist': 100 * 5 / 6}, 'recall': {'left_wrist': 100 * 5 / 6},
          'ap': {'left_wrist': 87.5}, 'ap_recall': {'left_wrist': 87.5}}


def _miss_a_joint_in_the_last_frame(video):
  """As `_miss_a_joint` in frame 3, which MOTA leaves out: MOTA 100, AP = 100 * 7/8."""
  _remove(_person(video, 3, 1), 'left_wrist')
  return {'ap': {'left_wrist': 87.5}, 'ap_recall': {'left_wrist': 87.5}}


def _add_a_false_positive(video):
  """A third person in frame 0: track 0's pose 800 px right, track 7, keypoints scored 0.9.

  Its 14 joints (no left elbow) are 1 false positive each: MOTA = 100 (1 - 1/6)
  = 83.33, precision = 100 * 6/7 = 85.71. In AP it ranks first and is wrong:
  precision 0/1, 1/2, ..., 8/9, whose envelope is 8/9 up to recall 1:
  AP = 100 * 8/9 = 88.89 = the final precision.
  """
  person = copy.deepcopy(_person(video, 0, 0))
  for keypoint in posetrack_data.KEYPOINT_NAMES:
    if any(person['keypoints'][3 * KEYPOINT[keypoint]:3 * KEYPOINT[keypoint] + 3]):
      _move(person, keypoint, 800, 0)
  video['annotations'].append(dict(person, id=1, track_id=7, scores=[0.9] * 17))
  joints = [name for name in JOINT if name != 'left_elbow']
  return {'mota': dict.fromkeys(joints, 100 * 5 / 6),
          'precision': dict.fromkeys(joints, 100 * 6 / 7),
          'ap': dict.fromkeys(joints, 100 * 8 / 9),
          'ap_precision': dict.fromkeys(joints, 100 * 8 / 9)}


def _displace_a_joint(video, truth):
  """Track 0's right knee in frame 0 is 0.6 head sizes off (beyond 0.5), scored 0.1.

  MOT: a miss and a false positive of 6: MOTA = 100 (1 - 2/6) = 66.67,
  precision = recall = 100 * 5/6. AP: the pose still keeps track 0, the knee
  is wrong and ranks last: AP = recall = precision = 100 * 7/8 = 87.5.
  """
  person = _person(video, 0, 0)
  _move(person, 'right_knee', 0, 0.6 * _head_size(_person(truth, 0, 0)))
  person['scores'][KEYPOINT['right_knee']] = 0.1
  knee = 'right_knee'
  return {'mota': {knee: 100 * 4 / 6}, 'precision': {knee: 100 * 5 / 6},
          'recall': {knee: 100 * 5 / 6}, 'ap': {knee: 87.5}, 'ap_precision': {knee: 87.5},
          'ap_recall': {knee: 87.5}}


def _nudge_a_joint(video, truth):
  """Track 0's nose in frame 0 is 0.25 head sizes off: found, MOTP = 100 (1 - 0.25 / 6) = 95.83."""
  _move(_person(video, 0, 0), 'nose', 0.25 * _head_size(_person(truth, 0, 0)), 0)
  return {'motp': {'nose': 100 * (1 - 0.25 / 6)}}


def _drop_a_frame(video):
  """No one is predicted in frame 1: poseval counts it as 1 object missed and 1 false positive per joint.

  Objects = 2 frames x n + 1 = 5 (left elbow 3), misses 1, false positives 1:
  MOTA = 100 (1 - 2/5) = 60 (left elbow 100 (1 - 2/3) = 33.33); precision =
  recall = 100 * 4/5 = 80 (left elbow 100 * 2/3). AP: 6 of 8 found, AP = 75.
  """
  frame_id = video['images'][1]['id']
  video['annotations'] = [p for p in video['annotations'] if p['image_id'] != frame_id]
  expected = {'mota': 60.0, 'precision': 80.0, 'recall': 80.0, 'ap': 75.0, 'ap_recall': 75.0}
  expected = {name: dict.fromkeys(JOINT, value) for name, value in expected.items()}
  for name, value in (('mota', 100 / 3), ('precision', 200 / 3), ('recall', 200 / 3)):
    expected[name]['left_elbow'] = value
  return expected


@pytest.mark.parametrize('perturb', [
    _swap_identities, _miss_a_joint, _miss_a_joint_in_the_last_frame, _add_a_false_positive,
    _displace_a_joint, _nudge_a_joint, _drop_a_frame], ids=lambda f: f.__name__[1:])
def test_perturbed_ground_truth_scores_as_computed_by_hand(tmp_path, perturb):
  truth = _clip('009473_mpii_test', 4, move_track_1=400, ignore_regions=False)
  guess = _as_predictions(truth)
  takes_truth = perturb in (_displace_a_joint, _nudge_a_joint)
  changes = perturb(guess, truth) if takes_truth else perturb(guess)
  tracking, pose = _scored(tmp_path, [truth], [guess])
  results = {'mota': tracking.mota, 'motp': tracking.motp, 'precision': tracking.precision,
             'recall': tracking.recall, 'ap': pose.ap, 'ap_precision': pose.precision,
             'ap_recall': pose.recall}
  for name, values in results.items():
    expected = np.full(posetrack.NUM_JOINTS, 100.0)
    for joint, value in changes.get(name, {}).items():
      expected[JOINT[joint]] = value
    np.testing.assert_allclose(values, expected, rtol=1e-12, err_msg=name)


def _random_video(rng, name: str, num_frames: int) -> tuple[dict, dict]:
  """A crowded random video and a noisy tracker's output for it: (ground truth, predictions).

  Four people within a few head sizes of each other, each keypoint labelled
  with probability 0.8; predictions jitter by about half a head size (so
  pairs fall on both sides of the threshold), lose people, swap and renew
  track ids, add strangers, and leave one frame empty; one ground-truth frame
  is unlabelled and one has an ignore region.
  """
  centers = rng.uniform(200, 400, (4, 2))
  categories = _video('009473_mpii_test')['categories']
  truth = {'categories': categories, 'images': [], 'annotations': []}
  guess = {'categories': categories, 'images': [], 'annotations': []}
  for index in range(num_frames):
    image = {'id': index, 'file_name': f'images/{name}/{index:06d}.jpg'}
    if index == 2:
      image.update(ignore_regions_x=[[150, 450, 450]], ignore_regions_y=[[150, 150, 450]])
    truth['images'].append(image)
    guess['images'].append(image)
    centers += rng.normal(0, 10, centers.shape)
    labelled = index != 3
    ids = rng.permutation(10)[:6] if rng.random() < 0.3 else np.arange(6) + 10 * (index // 4)
    for person, center in enumerate(centers):
      keypoints = np.concatenate([center + rng.normal(0, 40, (17, 2)), np.ones((17, 1))], axis=1)
      keypoints[rng.random(17) > 0.8] = 0
      if labelled:
        truth['annotations'].append({'image_id': index, 'track_id': person, 'scores': [],
                                     'keypoints': keypoints.ravel().tolist(),
                                     'bbox_head': [*center, 30, 40]})
      if index != 4 and rng.random() < 0.85:
        noisy = keypoints.copy()
        noisy[:, :2] += rng.normal(0, 12, (17, 2))
        guess['annotations'].append({'image_id': index, 'track_id': int(ids[person]),
                                     'keypoints': noisy.ravel().tolist(),
                                     'scores': rng.random(17).tolist()})
    if index != 4 and rng.random() < 0.5:
      stranger = np.concatenate([rng.uniform(150, 450, (17, 2)), np.ones((17, 1))], axis=1)
      guess['annotations'].append({'image_id': index, 'track_id': int(ids[4]),
                                   'keypoints': stranger.ravel().tolist(),
                                   'scores': rng.random(17).tolist()})
  return truth, guess


def test_random_crowded_videos_score_as_the_reference(tmp_path):
  """Switches, continued pairs, ties at the threshold's edge, empty and unlabelled frames: all as poseval."""
  rng = np.random.default_rng(3)
  truth, guess = zip(*[_random_video(rng, f'video{index}', 8) for index in range(2)])
  tracking, pose = _scored(tmp_path, list(truth), list(guess))
  # The case exercises what it should: switches, misses, false positives, partial AP.
  assert tracking.num_switches.sum() > 0 and tracking.num_misses.sum() > 0
  assert tracking.num_false_positives.sum() > 0 and 0 < pose.totals()['ap'] < 100


def test_totals_and_parts_are_poseval_means():
  """A false positive in every joint but the left elbow (as `_add_a_false_positive`): AP 88.89 x 14, 100."""
  ap = np.full(posetrack.NUM_JOINTS, 100 * 8 / 9)
  ap[JOINT['left_elbow']] = 100.0
  table = posetrack.by_part(ap)
  assert table['head'] == pytest.approx(100 * 8 / 9)
  assert table['elbow'] == pytest.approx((100 * 8 / 9 + 100) / 2)
  assert table['total'] == pytest.approx((14 * 100 * 8 / 9 + 100) / 15)  # = 89.63
  ap[JOINT['nose']] = np.nan  # a joint without ground truth is left out of the total only
  assert np.isnan(posetrack.by_part(ap)['head'])
  assert posetrack.total(ap) == pytest.approx((13 * 100 * 8 / 9 + 100) / 14)


def test_metrics_refuse_unpaired_or_unmeasurable_input():
  truth = posetrack_data.load_posetrack(VAL / '009473_mpii_test.json')
  with pytest.raises(ValueError, match="predictions have no video '009473_mpii_test'"):
    posetrack.mota(truth, [])
  shorter = [posetrack_data.PoseTrackVideo(truth[0].name, ())]
  with pytest.raises(ValueError, match='0 predicted frames for 1 ground-truth frames'):
    posetrack.average_precision(truth, shorter)
  frame = truth[0].frames[0]
  headless = [posetrack_data.PoseTrackVideo(truth[0].name, (
      posetrack_data.PoseTrackFrame(**{**frame.__dict__, 'head_boxes': np.full((2, 4), np.nan)}),))]
  with pytest.raises(ValueError, match=r'tracks \[0, 1\] have no `bbox_head`'):
    posetrack.average_precision(headless, truth)
