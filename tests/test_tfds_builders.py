"""TFDS builders, built offline from the samples laid out as the downloads: read back as the readers read."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxpose.data import coco, mpii, tfds_builders
from test_mpii import write_official_mat

DATA = os.path.join(os.path.dirname(__file__), 'data')
COCO_JSON = os.path.join(DATA, 'coco', 'test_coco.json')
MPII_JSON = os.path.join(DATA, 'mpii', 'test_mpii.json')


def _build(builder_class, data_dir, manual_dir):
  builder = builder_class(data_dir=str(data_dir), file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _coco_layout(root, copy_images: bool = False):
  """manual_dir with annotations/person_keypoints_val2017.json and val2017/."""
  os.makedirs(root / 'annotations')
  os.makedirs(root / 'val2017')
  shutil.copy(COCO_JSON, root / 'annotations' / 'person_keypoints_val2017.json')
  for name in os.listdir(os.path.join(DATA, 'coco')):
    if name.endswith('.jpg'):
      source = os.path.join(DATA, 'coco', name)
      if copy_images:
        shutil.copy(source, root / 'val2017' / name)
      else:
        os.symlink(source, root / 'val2017' / name)
  return root


def _assert_same_examples(tfds_source, reader):
  by_id = {reader[i]['image_id']: reader[i] for i in range(len(reader))}
  assert len(tfds_source) == len(by_id)
  seen = set()
  for index in range(len(tfds_source)):
    example = tfds_source[index]
    expected = by_id[example['image_id']]
    seen.add(example['image_id'])
    assert sorted(example) == sorted(expected)
    for key, value in expected.items():
      np.testing.assert_array_equal(example[key], value, err_msg=key)  # NaN equals NaN
      assert np.asarray(example[key]).dtype == np.asarray(value).dtype, key
  assert seen == set(by_id)


def test_coco_builder_reads_back_what_the_reader_gives(tmp_path):
  manual = _coco_layout(tmp_path / 'manual')
  builder = _build(tfds_builders.CocoKeypointsJaxpose, tmp_path / 'tfds', manual)
  assert set(builder.info.splits) == {'validation'}  # no train annotations laid out
  reader = coco.CocoKeypoints(str(manual / 'annotations' / 'person_keypoints_val2017.json'),
                              str(manual / 'val2017'))
  source = tfds_builders.TfdsSource(builder.as_data_source()['validation'])
  _assert_same_examples(source, reader)
  assert sum(int(source[i]['ignore_mask'].sum()) for i in range(len(source))) == 498 + 285

  # JPEG bytes are stored as downloaded, not re-encoded.
  raw = builder.as_data_source(decoders={'image': tfds.decode.SkipDecoding()})['validation']
  for index in range(len(raw)):
    record = raw[index]
    path = os.path.join(DATA, 'coco', f'{int(record["image_id"]):012d}.jpg')
    with open(path, 'rb') as f:
      assert record['image'] == f.read()

  copy = pickle.loads(pickle.dumps(source))  # as grain sends it to its workers
  np.testing.assert_array_equal(copy[2]['image'], source[2]['image'])

  # The registered name finds the same data.
  by_name = tfds.data_source('coco_keypoints_jaxpose', split='validation',
                             data_dir=str(tmp_path / 'tfds'))
  assert len(by_name) == 4


def test_people_counts_are_stored_at_build_time_in_record_order(tmp_path, caplog):
  manual = _coco_layout(tmp_path / 'manual')
  builder = _build(tfds_builders.CocoKeypointsJaxpose, tmp_path / 'tfds', manual)
  stored = tmp_path / 'tfds' / 'coco_keypoints_jaxpose' / '1.0.0' / 'people_counts_validation.npy'
  assert stored.is_file()
  records = builder.as_data_source()['validation']
  reader = coco.CocoKeypoints(COCO_JSON, os.path.join(DATA, 'coco'))
  people_by_id = {reader[i]['image_id']: len(reader[i]['visible']) for i in range(len(reader))}
  expected = [people_by_id[int(records[i]['image_id'])] for i in range(len(records))]
  assert sorted(expected) == [1, 2, 4, 5] and expected != sorted(expected)  # not in id order
  np.testing.assert_array_equal(np.load(stored), expected)

  # Stored counts are read, not recounted.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(tfds_builders, 'count_people', lambda *args: pytest.fail('recounted'))
    np.testing.assert_array_equal(tfds_builders.people_counts(builder, 'validation'), expected)
  # A file that does not fit the records is named, and the people are counted.
  np.save(stored, np.array([1, 2, 3]))
  np.testing.assert_array_equal(tfds_builders.people_counts(builder, 'validation'), expected)
  assert f'{stored}: (3,) counts of people, but split \'validation\' has 4 records' in caplog.text
  # Without one: counted; preparing the dataset again stores them.
  stored.unlink()
  np.testing.assert_array_equal(tfds_builders.people_counts(builder, 'validation'), expected)
  assert f'{stored} does not exist' in caplog.text
  _build(tfds_builders.CocoKeypointsJaxpose, tmp_path / 'tfds', manual)
  np.testing.assert_array_equal(np.load(stored), expected)


def test_coco_builder_skips_a_truncated_image(tmp_path, caplog):
  manual = _coco_layout(tmp_path / 'manual', copy_images=True)
  cut = manual / 'val2017' / '000000196141.jpg'
  data = cut.read_bytes()
  cut.write_bytes(data[:len(data) // 2])
  with caplog.at_level('WARNING'):
    builder = _build(tfds_builders.CocoKeypointsJaxpose, tmp_path / 'tfds', manual)
  source = tfds_builders.TfdsSource(builder.as_data_source()['validation'])
  assert sorted(source[i]['image_id'] for i in range(len(source))) == [785, 40083, 197388]
  assert any('000000196141.jpg (image id 196141) is truncated' in r.getMessage()
             for r in caplog.records)


def test_mpii_json_builder_has_train_and_validation(tmp_path):
  manual = tmp_path / 'manual'
  os.makedirs(manual / 'annot')
  os.symlink(os.path.join(DATA, 'mpii'), manual / 'images')
  with open(MPII_JSON) as f:
    entries = json.load(f)
  shutil.copy(MPII_JSON, manual / 'annot' / 'train.json')
  with open(manual / 'annot' / 'valid.json', 'w') as f:
    json.dump(entries[3:], f)
  builder = _build(tfds_builders.MpiiJaxpose, tmp_path / 'tfds', manual)
  data = builder.as_data_source()
  assert {split: len(data[split]) for split in data} == {'train': 5, 'validation': 2}
  for split, annotations in (('train', 'train.json'), ('validation', 'valid.json')):
    _assert_same_examples(tfds_builders.TfdsSource(data[split]),
                          mpii.MpiiPeople(str(manual / 'annot' / annotations),
                                          str(manual / 'images')))
    stored = np.load(tmp_path / 'tfds' / 'mpii_jaxpose' / '1.0.0' / f'people_counts_{split}.npy')
    np.testing.assert_array_equal(stored, [len(data[split][i]['visible'])
                                           for i in range(len(data[split]))])


def test_mpii_official_mat_builder(tmp_path):
  manual = tmp_path / 'manual'
  os.makedirs(manual)
  os.symlink(os.path.join(DATA, 'mpii'), manual / 'images')
  with open(MPII_JSON) as f:
    mat = write_official_mat(manual / 'mpii_human_pose_v1_u12_1.mat', json.load(f))
  builder = _build(tfds_builders.MpiiJaxpose, tmp_path / 'tfds', manual)
  assert set(builder.info.splits) == {'train'}
  source = tfds_builders.TfdsSource(builder.as_data_source()['train'])
  _assert_same_examples(source, mpii.MpiiPeople(mat, str(manual / 'images')))
  assert sum(int((source[i]['visible'] == 1).sum()) for i in range(5)) > 0  # occlusion kept
  assert np.isfinite(np.stack([source[i]['head_boxes'] for i in range(5)])).all()


def test_missing_manual_files_raise_with_instructions(tmp_path):
  # (tfds itself stops on an empty manual_dir, with the same instructions.)
  wrong = tmp_path / 'wrong_layout'
  os.makedirs(wrong / 'val2017')
  with pytest.raises(FileNotFoundError, match=r'no annotations/person_keypoints_\{train,val\}2017'):
    _build(tfds_builders.CocoKeypointsJaxpose, tmp_path / 'tfds', wrong)
  with pytest.raises(FileNotFoundError, match='mpii_human_pose_v1_u12_1.mat does not exist'):
    _build(tfds_builders.MpiiJaxpose, tmp_path / 'tfds', wrong)
