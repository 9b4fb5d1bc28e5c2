"""MPII sources on the bundled HRNet-style JSON and on a small .mat in the official layout."""

import json
import os
import pickle
import shutil

import cv2
import grain.python as grain
import numpy as np
import pytest
import scipy.io

from jaxpose.data import geometry, mpii

DATA = os.path.join(os.path.dirname(__file__), 'data', 'mpii')
ANNOTATIONS = os.path.join(DATA, 'test_mpii.json')


def _load() -> list[dict]:
  with open(ANNOTATIONS) as f:
    return json.load(f)


def _write_json(path, content) -> str:
  with open(path, 'w') as f:
    json.dump(content, f)
  return str(path)


def _struct_array(records: list[dict]) -> np.ndarray:
  """A MATLAB 1 x N struct array for savemat (fields missing from a record are empty)."""
  fields = sorted({key for record in records for key in record})
  array = np.zeros((1, len(records)), dtype=[(field, 'O') for field in fields])
  for i, record in enumerate(records):
    for field in fields:
      array[0, i][field] = record.get(field, np.zeros((0, 0)))
  return array


def _points(entry: dict, is_visible) -> np.ndarray:
  """The labelled joints of an HRNet entry as `annopoints.point` structs, one `is_visible` each."""
  return _struct_array([
      {'x': x, 'y': y, 'id': joint, 'is_visible': is_visible(joint)}
      for joint, ((x, y), labelled) in enumerate(zip(entry['joints'], entry['joints_vis']))
      if labelled])


def head_box(entry: dict) -> list[float]:
  """A made-up 1-based head rectangle (x1, y1, x2, y2) around the entry's head top."""
  x, y = entry['joints'][9]
  return [x - 20.0, y - 5.0, x + 20.0, y + 45.0]


def write_official_mat(path, entries: list[dict]) -> str:
  """A `mpii_human_pose_v1_u12_1.mat` lookalike holding `entries` (HRNet JSON people) as training images.

  Besides them: joints' `is_visible` as MPII varies it (1, the string '0',
  empty), a second person without `annopoints` on the first image, and a test
  image (img_train = 0) that must not be read.
  """
  def visibility(joint):
    return (1, '0', np.zeros((0, 0)))[joint % 3]

  annolist = []
  for number, entry in enumerate(entries):
    rects = [{'x1': head_box(entry)[0], 'y1': head_box(entry)[1], 'x2': head_box(entry)[2],
              'y2': head_box(entry)[3], 'scale': entry['scale'],
              'objpos': {'x': entry['center'][0], 'y': entry['center'][1]},
              'annopoints': {'point': _points(entry, visibility)}}]
    if number == 0:  # someone in the background with only a rough position
      rects.append({'scale': 1.0, 'objpos': {'x': 5.0, 'y': 6.0}})
    annolist.append({'image': {'name': entry['image']}, 'annorect': _struct_array(rects),
                     'frame_sec': np.zeros((0, 0)), 'vididx': np.zeros((0, 0))})
  annolist.append({'image': {'name': 'test_only.jpg'},
                   'annorect': _struct_array([{'scale': 2.0, 'objpos': {'x': 1.0, 'y': 1.0}}]),
                   'frame_sec': np.zeros((0, 0)), 'vididx': np.zeros((0, 0))})
  release = {'annolist': _struct_array(annolist),
             'img_train': np.array([[1] * len(entries) + [0]], np.float64),
             'version': '12', 'single_person': np.zeros((len(annolist), 1), object),
             'act': _struct_array([{'cat_name': '', 'act_name': '', 'act_id': -1}] *
                                  len(annolist))}
  scipy.io.savemat(str(path), {'RELEASE': release})
  return str(path)


def write_ground_truth_mat(path, entries: list[dict]) -> str:
  """An HRNet `gt_valid.mat` lookalike for `entries`: column n is entry n, 1-based pixels, `head_box` heads."""
  joints = np.array([entry['joints'] for entry in entries], np.float64)  # [N, 16, 2]
  labelled = np.array([entry['joints_vis'] for entry in entries]) > 0  # [N, 16]
  heads = np.array([head_box(entry) for entry in entries]).reshape(-1, 2, 2)  # [N, corner, xy]
  names = np.array([['rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv', 'thor', 'neck',
                     'head', 'rwri', 'relb', 'rsho', 'lsho', 'lelb', 'lwri']], dtype=object)
  scipy.io.savemat(str(path), {'dataset_joints': names,
                               'jnt_missing': (~labelled).T.astype(np.float64),
                               'pos_gt_src': joints.transpose(1, 2, 0),
                               'headboxes_src': heads.transpose(1, 2, 0)})
  return str(path)


def test_json_people_take_their_head_boxes_from_hrnets_ground_truth_file(tmp_path):
  entries = _load()
  truth = write_ground_truth_mat(tmp_path / 'gt_valid.mat', entries)
  records = mpii.load_mpii(ANNOTATIONS, DATA, ground_truth_file=truth)
  head_boxes = np.concatenate([r.head_boxes for r in records])
  np.testing.assert_allclose(head_boxes, np.array([head_box(e) for e in entries]) - 1, atol=1e-4)
  without = mpii.load_mpii(ANNOTATIONS, DATA)
  assert np.isnan(np.concatenate([r.head_boxes for r in without])).all()
  for record, plain in zip(records, without):
    np.testing.assert_array_equal(record.keypoints, plain.keypoints)


def test_a_ground_truth_file_of_other_people_is_refused(tmp_path):
  entries = _load()
  reordered = write_ground_truth_mat(tmp_path / 'reordered.mat', entries[::-1])
  with pytest.raises(ValueError, match=r'reordered\.mat, person 0: its joints are not those of '
                     r'.*test_mpii\.json entry 0'):
    mpii.load_mpii(ANNOTATIONS, DATA, ground_truth_file=reordered)
  shorter = write_ground_truth_mat(tmp_path / 'shorter.mat', entries[:4])
  with pytest.raises(ValueError, match=r'shorter\.mat: headboxes_src has shape \[2, 2, 4\], '
                     r'expected \[2, 2, 5\]'):
    mpii.load_mpii(ANNOTATIONS, DATA, ground_truth_file=shorter)
  with pytest.raises(FileNotFoundError, match='ground-truth file .*absent.mat does not exist'):
    mpii.load_mpii(ANNOTATIONS, DATA, ground_truth_file=str(tmp_path / 'absent.mat'))
  official = write_official_mat(tmp_path / 'official.mat', entries)
  with pytest.raises(ValueError, match='only HRNet.s JSON annotations need one'):
    mpii.load_mpii(official, DATA, ground_truth_file=str(tmp_path / 'shorter.mat'))


def test_json_people_are_hrnet_values_minus_one():
  source = mpii.MpiiPeople(ANNOTATIONS, DATA)
  entries = _load()
  assert len(source) == len(entries) == 5
  for example, entry in zip((source[i] for i in range(5)), entries):
    labelled = np.array(entry['joints_vis']) > 0
    # HRNet's loader: joints - 1 (MATLAB's 1-based pixels); unlabelled joints are -1 there, 0 here.
    expected = np.where(labelled[:, None], np.array(entry['joints']) - 1, 0)
    np.testing.assert_allclose(example['keypoints'][0], expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(example['visible'][0], 2.0 * labelled)
    np.testing.assert_allclose(example['center'][0], np.array(entry['center']) - 1)
    np.testing.assert_allclose(example['scale'][0], entry['scale'], rtol=1e-7)
    assert np.isnan(example['head_boxes']).all()
    assert example['image_id'] == int(entry['image'][:-4])
    bgr = cv2.imread(os.path.join(DATA, entry['image']))
    np.testing.assert_array_equal(example['image'], bgr[..., ::-1])
    # HRNet's crop: centre c + (0, 15 s) - 1, side 200 * 1.25 s. The transforms' padding
    # of the box must give exactly that.
    center, size = geometry.box_to_center_scale(example['boxes'][0], 1.0)
    s = entry['scale']
    np.testing.assert_allclose(center, [entry['center'][0] - 1, entry['center'][1] + 15 * s - 1],
                               rtol=1e-6)
    np.testing.assert_allclose(size, [250 * s, 250 * s], rtol=1e-6)
  # Two samples have both ankles unlabelled.
  assert [int((source[i]['visible'] == 0).sum()) for i in range(5)] == [0, 0, 2, 2, 0]


def test_official_mat_matches_json_and_keeps_occlusion(tmp_path, caplog):
  entries = _load()
  path = write_official_mat(tmp_path / 'mpii_human_pose_v1_u12_1.mat', entries)
  with caplog.at_level('WARNING'):
    from_mat = mpii.MpiiPeople(path, DATA)
  from_json = mpii.MpiiPeople(ANNOTATIONS, DATA)
  assert len(from_mat) == 5  # the test image is not read
  for index, entry in enumerate(entries):
    mat, js = from_mat[index], from_json[index]
    assert mat['image_id'] == js['image_id']
    for key in ('keypoints', 'boxes', 'center', 'scale'):
      np.testing.assert_allclose(mat[key], js[key], rtol=0, atol=1e-4, err_msg=key)
    labelled = np.array(entry['joints_vis']) > 0
    # is_visible 1 -> 2, '0' -> 1 (occluded), empty -> 2, absent -> 0.
    expected = np.where(labelled, np.array([2.0, 1.0, 2.0] * 6)[:16], 0.0)
    np.testing.assert_array_equal(mat['visible'][0], expected)
    np.testing.assert_allclose(mat['head_boxes'][0], np.array(head_box(entry)) - 1, rtol=1e-6)
  # The first image's background person has no joints: dropped, named.
  dropped = [r.getMessage() for r in caplog.records if 'no labelled joint' in r.getMessage()]
  assert len(dropped) == 1
  assert '1 people' in dropped[0] and 'annolist(1).annorect(2)' in dropped[0]


def test_people_of_one_image_grouped_and_persons_split(tmp_path):
  entries = _load()
  second = dict(entries[0], joints=(np.array(entries[0]['joints']) + 7.0).tolist(),
                center=[500.0, 300.0], scale=2.0)
  path = _write_json(tmp_path / 'two.json', entries[:2] + [second])
  people = mpii.MpiiPeople(path, DATA)
  assert len(people) == 2
  example = people[0]
  assert example['keypoints'].shape == (2, 16, 2)
  np.testing.assert_allclose(example['keypoints'][1] - example['keypoints'][0], 7.0)
  np.testing.assert_allclose(example['boxes'][1], [499 - 200, 299 + 30 - 200, 400, 400])
  persons = mpii.MpiiPersons(path, DATA)
  assert len(persons) == 3
  image_ids = [persons[i]['image_id'] for i in range(3)]
  assert image_ids == [5808361, 5808361, 52475643]
  np.testing.assert_array_equal(persons[1]['keypoints'], example['keypoints'][1:])
  np.testing.assert_array_equal(persons[1]['scale'], [2.0])
  with pytest.raises(IndexError):
    persons[3]


def test_missing_image_dropped_with_one_warning(tmp_path, caplog):
  for name in os.listdir(DATA):
    if name.endswith('.jpg') and name not in ('051423444.jpg', '060754485.jpg'):
      os.symlink(os.path.join(DATA, name), tmp_path / name)
  with caplog.at_level('WARNING'):
    source = mpii.MpiiPersons(ANNOTATIONS, str(tmp_path))
  assert len(source) == 3
  missing = [r.getMessage() for r in caplog.records if 'missing' in r.getMessage()]
  assert len(missing) == 1
  assert '2 images' in missing[0]
  assert '051423444.jpg (id 51423444)' in missing[0] and '060754485.jpg' in missing[0]


def test_truncated_jpeg_raises_naming_file_and_id(tmp_path):
  for name in os.listdir(DATA):
    if name.endswith('.jpg'):
      shutil.copy(os.path.join(DATA, name), tmp_path / name)
  cut = tmp_path / '052475643.jpg'
  data = cut.read_bytes()
  cut.write_bytes(data[:len(data) // 2])
  source = grain.MapDataset.source(mpii.MpiiPeople(ANNOTATIONS, str(tmp_path)))
  with pytest.raises(ValueError, match=r'052475643\.jpg \(image id 52475643\) is truncated'):
    source[1]
  # The others still read.
  assert source[0]['image'].shape == cv2.imread(os.path.join(DATA, '005808361.jpg')).shape


def test_bad_files_raise_naming_file_and_entry(tmp_path, caplog):
  entries = _load()
  test_split = [{'image': e['image'], 'center': e['center'], 'scale': e['scale']}
                for e in entries]
  path = _write_json(tmp_path / 'test.json', test_split)
  with pytest.raises(ValueError, match=r"test\.json, entry 0 \(005808361\.jpg\): no "
                                       r"\['joints', 'joints_vis'\]"):
    mpii.MpiiPeople(path, DATA)
  path = _write_json(tmp_path / 'dict.json', {'annotations': entries})
  with pytest.raises(ValueError, match=r'dict\.json: expected a list of people'):
    mpii.MpiiPeople(path, DATA)
  scipy.io.savemat(str(tmp_path / 'other.mat'), {'something': np.zeros(3)})
  with pytest.raises(ValueError, match=r'other\.mat has no RELEASE'):
    mpii.MpiiPeople(str(tmp_path / 'other.mat'), DATA)

  unlabelled = [dict(e, joints_vis=[0] * 16) if i == 2 else e for i, e in enumerate(entries)]
  path = _write_json(tmp_path / 'one_unlabelled.json', unlabelled)
  with caplog.at_level('WARNING'):
    assert len(mpii.MpiiPersons(path, DATA)) == 4
  assert any('051423444.jpg entry 2' in r.getMessage() for r in caplog.records)
  path = _write_json(tmp_path / 'none.json', [dict(e, joints_vis=[0] * 16) for e in entries])
  with pytest.raises(ValueError, match=r'none\.json: no image with a labelled person'):
    mpii.MpiiPeople(path, DATA)


def test_sources_pickle_for_grain_workers(tmp_path):
  mat = write_official_mat(tmp_path / 'mpii_human_pose_v1_u12_1.mat', _load())
  for source in (mpii.MpiiPeople(ANNOTATIONS, DATA), mpii.MpiiPersons(mat, DATA)):
    copy = pickle.loads(pickle.dumps(source))
    assert len(copy) == len(source) == 5
    for key, value in source[2].items():
      np.testing.assert_array_equal(copy[2][key], value)
