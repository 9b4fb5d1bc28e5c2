"""input_pipeline on real datasets: COCO / MPII / tfds sources from config.data, and training on the COCO sample."""

import csv
import json
import os
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxpose import approaches, skeletons
from jaxpose import config as config_lib
from jaxpose.training import checkpoint
from jaxpose.training import trainer
from jaxpose.data import coco, loader, mpii, sources, tfds_builders
from test_train import tiny_config

DATA = pathlib.Path(__file__).parent / 'data'
COCO_DIR = DATA / 'coco'
COCO_JSON = COCO_DIR / 'test_coco.json'
MPII_DIR = DATA / 'mpii'
MPII_JSON = MPII_DIR / 'test_mpii.json'
# The bundled COCO sample: 12 people with a labelled keypoint on its 4 images.
COCO_SAMPLE_PEOPLE = 12
COCO_SAMPLE_IMAGES = 4


def coco_sample_config(**overrides):
  """A tiny hourglass that reads the bundled COCO sample for both splits."""
  config = tiny_config(**{
      'batch_size': 4, 'num_train_steps': 2, 'data.source': 'coco',
      'data.train_annotations': str(COCO_JSON), 'data.eval_annotations': str(COCO_JSON),
      'data.train_images': str(COCO_DIR), 'data.eval_images': str(COCO_DIR), **overrides})
  config_lib.validate(config)
  return config


def coco_download_layout(root: pathlib.Path) -> pathlib.Path:
  """The COCO download layout, both splits being the bundled sample (images linked)."""
  (root / 'annotations').mkdir(parents=True)
  for split in ('train2017', 'val2017'):
    shutil.copy(COCO_JSON, root / 'annotations' / f'person_keypoints_{split}.json')
    (root / split).mkdir()
    for image in COCO_DIR.glob('*.jpg'):
      os.symlink(image, root / split / image.name)
  return root


def mpii_download_layout(root: pathlib.Path) -> pathlib.Path:
  """HRNet's MPII layout (annot/train.json, annot/valid.json, images/), both the bundled sample."""
  (root / 'annot').mkdir(parents=True)
  shutil.copy(MPII_JSON, root / 'annot' / 'train.json')
  shutil.copy(MPII_JSON, root / 'annot' / 'valid.json')
  (root / 'images').mkdir()
  for image in MPII_DIR.glob('*.jpg'):
    os.symlink(image, root / 'images' / image.name)
  return root


def _assert_same_examples(source, reference):
  assert len(source) == len(reference)
  for index in range(len(source)):
    got, expected = source[index], reference[index]
    assert got['image_id'] == expected['image_id']
    np.testing.assert_array_equal(got['image'], expected['image'])
    for key in ('keypoints', 'visible', 'boxes'):
      np.testing.assert_array_equal(got[key], expected[key])


def test_coco_overrides_give_one_element_per_person_for_the_hourglass():
  train_source, eval_source = trainer.create_sources(coco_sample_config())
  reference = coco.CocoPersons(str(COCO_JSON), str(COCO_DIR))
  assert len(reference) == COCO_SAMPLE_PEOPLE
  _assert_same_examples(train_source, reference)
  _assert_same_examples(eval_source, reference)


def test_coco_download_layout_under_coco_dir(tmp_path):
  root = coco_download_layout(tmp_path / 'coco')
  config = coco_sample_config(**{'data.train_annotations': '', 'data.eval_annotations': '',
                                 'data.train_images': '', 'data.eval_images': '',
                                 'data.coco_dir': str(root)})
  files = sources.dataset_files(config)
  assert files.train_annotations == str(root / 'annotations' / 'person_keypoints_train2017.json')
  assert files.eval_images == str(root / 'val2017')
  train_source, _ = trainer.create_sources(config)
  assert len(train_source) == COCO_SAMPLE_PEOPLE
  # Lightweight OpenPose reads whole images.
  config.model = config_lib.lightweight_openpose_model()
  config.input_size = (64, 64)
  train_images, eval_images = trainer.create_sources(config)
  assert isinstance(eval_images, coco.CocoKeypoints)
  _assert_same_examples(train_images, coco.CocoKeypoints(str(COCO_JSON), str(COCO_DIR)))
  assert len(train_images) == COCO_SAMPLE_IMAGES


def test_missing_paths_name_the_config_field_and_the_path(tmp_path):
  unset = coco_sample_config(**{'data.train_annotations': ''})
  with pytest.raises(ValueError, match=r'config\.data\.coco_dir is not set.*train_annotations'):
    trainer.create_sources(unset)
  root = coco_download_layout(tmp_path / 'coco')
  shutil.rmtree(root / 'val2017')
  layout = coco_sample_config(**{'data.coco_dir': str(root), 'data.eval_images': ''})
  with pytest.raises(FileNotFoundError,
                     match=rf'config\.data\.coco_dir: directory {root / "val2017"} does not exist'):
    trainer.create_sources(layout)
  missing_file = str(tmp_path / 'nowhere.json')
  override = coco_sample_config(**{'data.eval_annotations': missing_file})
  with pytest.raises(FileNotFoundError,
                     match=rf'config\.data\.eval_annotations: file {missing_file} does not exist'):
    trainer.create_sources(override)


def test_mpii_layout_needs_a_16_joint_hourglass(tmp_path):
  root = mpii_download_layout(tmp_path / 'mpii')
  config = coco_sample_config(**{'data.source': 'mpii', 'data.mpii_dir': str(root),
                                 'data.train_annotations': '', 'data.eval_annotations': '',
                                 'data.train_images': '', 'data.eval_images': ''})
  config.model.num_joints = 17  # explicit, and not the data's: named with the data's
  with pytest.raises(ValueError, match=r"config\.model\.num_joints is 17, but "
                     r"config\.data\.source 'mpii' has the 16 mpii keypoints"):
    trainer.create_sources(config)
  config.model.num_joints = 16
  train_source, eval_source = trainer.create_sources(config)
  reference = mpii.MpiiPersons(str(MPII_JSON), str(MPII_DIR))
  assert len(reference) == 5
  _assert_same_examples(eval_source, reference)
  transform = trainer.create_transform(config, train=False)
  example = transform.random_map(train_source[0], np.random.default_rng(0))
  assert example['joints'].shape == (16, 2)
  # Bottom-up learns MPII's layout as it is: 16 heatmaps and the background,
  # a field per limb, its people whole images; a COCO-built model is refused.
  config.model = config_lib.lightweight_openpose_model()
  approach = approaches.for_config(config)
  assert (approach.description['num_heatmaps'], approach.description['num_pafs']) == (17, 30)
  train_source, _ = trainer.create_sources(config)
  assert train_source[0]['keypoints'].shape[1:] == (16, 2)
  with pytest.raises(ValueError, match=r"'lightweight_openpose' learns COCO keypoints .* but "
                     r"config\.data\.source 'mpii' has the 16"):
    approaches.for_description(config.model.to_dict()).check_data(config, skeletons.MPII)


def test_half_body_and_read_threads_reach_the_transform_and_the_loader(monkeypatch):
  config = coco_sample_config(**{'data.half_body_probability': 0.3, 'data.read_threads': 2})
  transform = trainer.create_transform(config, train=True)
  assert transform.half_body_probability == 0.3 and transform.skeleton.num_keypoints == 17
  seen = {}
  real_make_loader = loader.make_loader

  def spy(*args, **kwargs):
    seen.update(kwargs)
    return real_make_loader(*args, **kwargs)
  monkeypatch.setattr(loader, 'make_loader', spy)
  source, _ = trainer.create_sources(config)
  batch = next(iter(trainer.train_loader(source, config)))
  assert seen['read_threads'] == 2
  assert batch['image'].shape == (4, 32, 32, 3) and batch['joints'].shape == (4, 17, 2)
  # The default lets make_loader share the cores among the decoding processes.
  trainer.train_loader(source, coco_sample_config())
  assert seen['read_threads'] is None and config_lib.default_config().data.read_threads is None
  # 0 is a choice of its own: read in the worker's own thread.
  trainer.train_loader(source, coco_sample_config(**{'data.read_threads': 0}))
  assert seen['read_threads'] == 0


def test_tfds_source_gives_the_readers_people(tmp_path):
  manual = tmp_path / 'manual'
  (manual / 'annotations').mkdir(parents=True)
  shutil.copy(COCO_JSON, manual / 'annotations' / 'person_keypoints_val2017.json')
  (manual / 'val2017').mkdir()
  for image in COCO_DIR.glob('*.jpg'):
    os.symlink(image, manual / 'val2017' / image.name)
  builder = tfds_builders.CocoKeypointsJaxpose(data_dir=str(tmp_path / 'tfds'),
                                               file_format='array_record')
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
  config = coco_sample_config(**{'data.source': 'tfds', 'data.tfds_name': 'coco_keypoints_jaxpose',
                                 'data.tfds_data_dir': str(tmp_path / 'tfds'),
                                 'data.train_split': 'validation'})
  train_source, eval_source = trainer.create_sources(config)
  # tfds stores images in id order; compare person by person, keyed by image and box.
  def people(source):
    return sorted((int(source[i]['image_id']), tuple(np.asarray(source[i]['boxes'][0])),
                   np.asarray(source[i]['keypoints']).tobytes()) for i in range(len(source)))
  reference = people(coco.CocoPersons(str(COCO_JSON), str(COCO_DIR)))
  assert len(train_source) == COCO_SAMPLE_PEOPLE
  assert people(train_source) == reference == people(eval_source)
  assert 'ignore_mask' not in train_source[0] and train_source[0]['keypoints'].shape == (1, 17, 2)
  wrong_split = coco_sample_config(**{'data.source': 'tfds',
                                      'data.tfds_name': 'coco_keypoints_jaxpose',
                                      'data.tfds_data_dir': str(tmp_path / 'tfds')})
  with pytest.raises(ValueError, match=r"config\.data\.train_split: 'coco_keypoints_jaxpose' "
                     r"has no split 'train'"):
    trainer.create_sources(wrong_split)


def test_hourglass_trains_and_evaluates_on_the_coco_sample(tmp_path):
  config = coco_sample_config()
  metrics = trainer.train_and_evaluate(config, str(tmp_path / 'hg'))
  assert metrics['step'] == 2 and np.isfinite(metrics['loss'])
  assert 0.0 <= metrics['pck'] <= 1.0
  # The loop logs the share of each log window it spent waiting for batches.
  with open(tmp_path / 'hg' / 'metrics.csv') as f:
    waits = [float(row['value']) for row in csv.DictReader(f)
             if row['name'] == 'train/input_wait_fraction']
  assert len(waits) == 2 and all(0 <= wait < 1 for wait in waits), waits
  # The model description records the size it was trained at.
  _, description = checkpoint.restore_variables(str(tmp_path / 'hg'))
  assert description['input_size'] == list(config.input_size) and description['stride'] == 4
  # Rerunning the finished run trains nothing and keeps its summary.
  assert trainer.train_and_evaluate(config, str(tmp_path / 'hg')) == metrics
  with open(tmp_path / 'hg' / 'summary.json') as f:
    assert json.load(f) == pytest.approx(metrics)
  with open(tmp_path / 'hg' / 'config.json') as f:
    assert json.load(f)['data']['eval_annotations'] == str(COCO_JSON)
