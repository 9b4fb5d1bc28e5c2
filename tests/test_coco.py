"""COCO keypoint sources against pycocotools and OpenCV on the bundled val2017 sample."""

import json
import os
import pickle
import re
import shutil

import cv2
import grain.python as grain
import numpy as np
from pycocotools.coco import COCO
import pytest

from jaxpose import skeletons
from jaxpose.data import augment, coco, images

DATA = os.path.join(os.path.dirname(__file__), 'data', 'coco')
ANNOTATIONS = os.path.join(DATA, 'test_coco.json')


@pytest.fixture(scope='module')
def reference():
  return COCO(ANNOTATIONS)


def _labelled(annotation: dict) -> bool:
  return not annotation['iscrowd'] and max(annotation['keypoints'][2::3]) > 0


def _write_json(path, content: dict) -> str:
  with open(path, 'w') as f:
    json.dump(content, f)
  return str(path)


def _load() -> dict:
  with open(ANNOTATIONS) as f:
    return json.load(f)


def test_images_match_pycocotools_and_opencv(reference):
  source = coco.CocoKeypoints(ANNOTATIONS, DATA)
  with_people = [i for i in reference.getImgIds()
                 if any(_labelled(a) for a in reference.loadAnns(reference.getAnnIds(imgIds=i)))]
  assert len(source) == len(with_people) == 4
  for index in range(len(source)):
    example = source[index]
    info = reference.loadImgs(example['image_id'])[0]
    annotations = reference.loadAnns(reference.getAnnIds(imgIds=info['id']))
    people = [a for a in annotations if _labelled(a)]
    keypoints = np.array([a['keypoints'] for a in people], np.float32).reshape(-1, 17, 3)
    np.testing.assert_array_equal(example['keypoints'], keypoints[..., :2])
    np.testing.assert_array_equal(example['visible'], keypoints[..., 2])
    np.testing.assert_array_equal(example['boxes'], np.array([a['bbox'] for a in people],
                                                             np.float32))
    np.testing.assert_array_equal(example['area'], np.array([a['area'] for a in people],
                                                            np.float32))
    bgr = cv2.imread(os.path.join(DATA, info['file_name']))
    np.testing.assert_array_equal(example['image'], bgr[..., ::-1])
    assert example['image'].dtype == np.uint8 and example['keypoints'].dtype == np.float32
    # OpenPose's mask: people without keypoints (and crowds, none here).
    expected = np.zeros((info['height'], info['width']), np.uint8)
    for a in annotations:
      if not _labelled(a):
        expected |= reference.annToMask(a)
    np.testing.assert_array_equal(example['ignore_mask'], expected)
  # Two of the sample's people have no keypoint: their masks cover 498 and 285 pixels.
  sums = {source[i]['image_id']: int(source[i]['ignore_mask'].sum()) for i in range(len(source))}
  assert sums == {785: 0, 40083: 498, 196141: 285, 197388: 0}


def test_crowd_rle_and_polygons_masked_like_ann_to_mask(tmp_path):
  content = _load()
  image = next(i for i in content['images'] if i['id'] == 785)
  height, width = image['height'], image['width']
  crowd = np.zeros((height, width), np.uint8, order='F')
  crowd[50:120, 400:600] = 1
  crowd[300:310, 10:20] = 1
  # Uncompressed RLE, as COCO stores crowds: run lengths in column-major order.
  flat = crowd.ravel(order='F')
  changes = np.flatnonzero(np.diff(flat)) + 1
  counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
  content['annotations'] += [
      {'id': 1, 'image_id': 785, 'category_id': 1, 'iscrowd': 1, 'area': 14100.0,
       'bbox': [400, 50, 200, 70], 'num_keypoints': 0, 'keypoints': [0] * 51,
       'segmentation': {'size': [height, width], 'counts': counts}},
      {'id': 2, 'image_id': 785, 'category_id': 1, 'iscrowd': 0, 'area': 800.0,
       'bbox': [10, 10, 40, 20], 'num_keypoints': 0, 'keypoints': [0] * 51,
       'segmentation': [[10.0, 10.0, 50.0, 10.0, 50.0, 30.0, 10.0, 30.0]]}]
  path = _write_json(tmp_path / 'crowd.json', content)
  source = coco.CocoKeypoints(path, DATA)
  example = next(source[i] for i in range(len(source)) if source[i]['image_id'] == 785)
  reference = COCO(path)
  expected = reference.annToMask(reference.anns[1]) | reference.annToMask(reference.anns[2])
  # The crowd exactly; the 40 x 20 polygon rasterised to its area.
  assert int(expected.sum()) == 200 * 70 + 10 * 10 + 40 * 20
  np.testing.assert_array_equal(example['ignore_mask'], expected)
  assert example['keypoints'].shape == (1, 17, 2)  # neither is one of the people


def test_persons_are_the_labelled_annotations_in_file_order():
  persons = coco.CocoPersons(ANNOTATIONS, DATA)
  content = _load()
  order = [i['id'] for i in content['images']]
  expected = sorted((a for a in content['annotations'] if _labelled(a)),
                    key=lambda a: order.index(a['image_id']))
  assert len(persons) == len(expected) == 12
  for index, annotation in enumerate(expected):
    example = persons[index]
    keypoints = np.array(annotation['keypoints'], np.float32).reshape(1, 17, 3)
    assert example['image_id'] == annotation['image_id']
    np.testing.assert_array_equal(example['keypoints'], keypoints[..., :2])
    np.testing.assert_array_equal(example['visible'], keypoints[..., 2])
    np.testing.assert_array_equal(example['boxes'][0], np.float32(annotation['bbox']))
    assert 'ignore_mask' not in example
  with pytest.raises(IndexError):
    persons[12]


def test_sources_feed_the_transforms():
  persons = coco.CocoPersons(ANNOTATIONS, DATA)
  crop = augment.TopDownTransform((192, 256), skeletons.COCO, augment=False).random_map(
      grain.MapDataset.source(persons)[0], np.random.default_rng(0))
  assert crop['image'].shape == (256, 192, 3)
  assert crop['visible'].sum() == 17  # the one person of image 785 is fully labelled in view
  images = coco.CocoKeypoints(ANNOTATIONS, DATA)
  index = next(i for i in range(len(images)) if images[i]['image_id'] == 40083)
  batch = augment.BottomUpTransform(368, augment=False).random_map(
      images[index], np.random.default_rng(0))
  # The unlabelled person's 498 pixels lower the loss weight of some cells.
  assert batch['person_mask'].sum() == 2
  assert batch['mask'].min() < 1.0


def test_missing_image_dropped_with_one_warning(tmp_path, caplog):
  for name in os.listdir(DATA):
    if name.endswith('.jpg') and name != '000000196141.jpg':
      os.symlink(os.path.join(DATA, name), tmp_path / name)
  with caplog.at_level('WARNING'):
    source = coco.CocoKeypoints(ANNOTATIONS, str(tmp_path))
  assert len(source) == 3
  assert sorted(source[i]['image_id'] for i in range(3)) == [785, 40083, 197388]
  missing = [r for r in caplog.records if 'missing' in r.getMessage()]
  assert len(missing) == 1
  assert '1 images' in missing[0].getMessage() and '196141' in missing[0].getMessage()
  assert ANNOTATIONS in missing[0].getMessage()


def test_read_image_gives_rgb_for_grey_and_alpha_files_as_opencv_bgr_reversed(tmp_path):
  # read_image decodes straight to RGB; other files than colour JPEGs must
  # come out as OpenCV's 3-channel BGR decoding, reversed.
  bgr = cv2.imread(os.path.join(DATA, '000000000785.jpg'))
  grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
  with_alpha = np.concatenate([bgr, np.full(bgr.shape[:2] + (1,), 128, np.uint8)], axis=-1)
  files = {'grey.jpg': grey, 'grey.png': grey, 'alpha.png': with_alpha, 'colour.png': bgr}
  for name, pixels in files.items():
    assert cv2.imwrite(str(tmp_path / name), pixels)
    expected = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR)[..., ::-1]
    image = images.read_image(str(tmp_path / name), image_id=1)
    assert image.shape == bgr.shape, name
    np.testing.assert_array_equal(image, expected, err_msg=name)
  # 785 is in colour (40083 is grey in its JPEG's three channels), so a missed swap shows.
  assert np.abs(bgr[..., 0].astype(int) - bgr[..., 2]).max() > 50


def test_truncated_jpeg_raises_naming_file_and_id(tmp_path):
  for name in os.listdir(DATA):
    if name.endswith('.jpg'):
      shutil.copy(os.path.join(DATA, name), tmp_path / name)
  cut = tmp_path / '000000040083.jpg'
  data = cut.read_bytes()
  cut.write_bytes(data[:len(data) // 2])
  # OpenCV alone decodes half a JPEG into a whole image (with a printed warning).
  assert cv2.imread(str(cut)).shape == cv2.imread(os.path.join(DATA, cut.name)).shape
  source = grain.MapDataset.source(coco.CocoKeypoints(ANNOTATIONS, str(tmp_path)))
  index = next(i for i, r in enumerate(source._source.records) if r.image_id == 40083)
  with pytest.raises(ValueError, match=r'000000040083\.jpg \(image id 40083\) is truncated'):
    source[index]
  assert source[(index + 1) % 4]['image'].ndim == 3  # the others still read


def test_json_without_annotations_raises_naming_file(tmp_path):
  content = _load()
  del content['annotations']
  path = _write_json(tmp_path / 'image_info.json', content)
  with pytest.raises(ValueError, match=r"image_info\.json has no \['annotations'\]"):
    coco.CocoKeypoints(path, DATA)
  with pytest.raises(FileNotFoundError, match='nowhere.json'):
    coco.CocoKeypoints(str(tmp_path / 'nowhere.json'), DATA)


def test_malformed_annotation_raises_naming_its_id(tmp_path):
  content = _load()
  content['annotations'][3]['keypoints'] = content['annotations'][3]['keypoints'][:-3]
  path = _write_json(tmp_path / 'short.json', content)
  with pytest.raises(ValueError, match=f'annotation id {content["annotations"][3]["id"]}: '
                                       'expected 51 keypoint values'):
    coco.CocoKeypoints(path, DATA)


def test_all_unlabelled_people_dropped_then_empty_raises(tmp_path, caplog):
  content = _load()
  first = content['annotations'][0]
  first['keypoints'] = [0] * 51  # image 785's only person
  path = _write_json(tmp_path / 'one_unlabelled.json', content)
  with caplog.at_level('WARNING'):
    source = coco.CocoKeypoints(path, DATA)
  assert len(source) == 3 and len(coco.CocoPersons(path, DATA)) == 11
  assert any(str(first['id']) in r.getMessage() and 'no labelled keypoint' in r.getMessage()
             for r in caplog.records)
  for annotation in content['annotations']:
    annotation['keypoints'] = [0] * 51
  path = _write_json(tmp_path / 'unlabelled.json', content)
  with pytest.raises(ValueError, match=r'unlabelled\.json: no image with a labelled person'):
    coco.CocoKeypoints(path, DATA)


def test_image_size_disagreeing_with_annotations_raises(tmp_path):
  content = _load()
  content['images'][0]['width'] = 500  # 000000000785.jpg is 640 wide
  source = coco.CocoKeypoints(_write_json(tmp_path / 'wrong_size.json', content), DATA)
  with pytest.raises(ValueError, match=r'000000000785\.jpg \(image id 785\) is 640x425, but '
                                       r'its annotations say 500x425'):
    source[0]
  del content['images'][0]['file_name']
  with pytest.raises(ValueError, match=r'no_name\.json, image id 785: no \'file_name\''):
    coco.CocoKeypoints(_write_json(tmp_path / 'no_name.json', content), DATA)


def test_sources_pickle_for_grain_workers():
  for source in (coco.CocoKeypoints(ANNOTATIONS, DATA), coco.CocoPersons(ANNOTATIONS, DATA)):
    copy = pickle.loads(pickle.dumps(source))
    assert len(copy) == len(source)
    for key, value in source[1].items():
      np.testing.assert_array_equal(copy[1][key], value)


def test_a_coco_format_file_of_another_layout_loads_with_its_keypoints():
  hands = os.path.join(os.path.dirname(__file__), 'data', 'onehand10k')
  annotations = os.path.join(hands, 'test_onehand10k.json')
  raw = {a['image_id']: a for a in _load_file(annotations)['annotations']}
  source = coco.CocoPersons(annotations, hands)
  assert len(source) == 4 and coco.read_layout(annotations).num_keypoints == 21
  for index in range(len(source)):
    example = source[index]
    expected = np.asarray(raw[example['image_id']]['keypoints'], np.float32).reshape(21, 3)
    np.testing.assert_array_equal(example['keypoints'][0], expected[:, :2])
    np.testing.assert_array_equal(example['visible'][0], expected[:, 2])


def _load_file(path) -> dict:
  with open(path) as f:
    return json.load(f)


@pytest.mark.parametrize('spoil, message', [
    (lambda c: c.pop('categories'), r'categories: expected a category with the "keypoints" names'),
    (lambda c: c['categories'][0].update(keypoints=[]), r'categories\[0\].keypoints: expected a '
     r'list of keypoint names, got \[\]'),
    (lambda c: c['categories'][0]['skeleton'].append([16, 18]), r'categories\[0\].skeleton\[19\] '
     r'is \[16, 18\]: expected two 1-based keypoint indices in 1..17'),
    (lambda c: c['annotations'][3].update(keypoints=[0.0] * 48), r'annotation id \d+: expected '
     r'51 keypoint values \(x, y, v for each of the 17 keypoints of the category\) and a bbox of '
     r'4, got 48 and 4'),
])
def test_a_dirty_file_fails_naming_the_file_and_field(tmp_path, spoil, message):
  content = _load()
  spoil(content)
  path = _write_json(tmp_path / 'dirty.json', content)
  with pytest.raises(ValueError, match=f'annotation file {re.escape(path)}.*{message}'):
    coco.CocoPersons(path, DATA)
