"""TFDS builders for COCO keypoints and MPII, written as ArrayRecord and read back with grain.

The builders parse with the readers (`jaxpose.data.coco`, `jaxpose.data.mpii`)
and store one example per image, JPEG bytes as they are in the download (not
re-encoded). They need `tensorflow-datasets` but not TensorFlow: with
`file_format='array_record'` both building and reading run on numpy and
OpenCV. Build once, read anywhere:

  builder = CocoKeypointsJaxpose(data_dir=DATA_DIR, file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=COCO_DIR))
  source = TfdsSource(builder.as_data_source()['train'])  # or tfds.data_source(...)

`TfdsSource` maps the decoded records to the examples that the readers give
(the schema of `jaxpose.data.synthetic`), so it plugs into
`pipeline.make_loader` like `CocoKeypoints` or `MpiiPeople`: grain reads any
object with `__len__` and `__getitem__`.

A top-down source has one element per person, so it needs each record's
number of people. Counting them means reading every record (images
included: an ArrayRecord record is read whole), ~10 GB for COCO train, on
every host at every start. `download_and_prepare` therefore also stores them,
in record order, beside the records (`PEOPLE_COUNTS_FILE`), and
`people_counts` reads them back.
"""

import io
import os

from absl import logging
import cv2
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from jaxpose import skeletons
from jaxpose.data import coco, mpii
from jaxpose.data.images import read_image_bytes

VERSION = tfds.core.Version('1.0.0')
# tfds 4.9.10 finds a builder's source file through `importlib_resources`,
# which it imports on Python 3.11 although it declares the dependency for
# Python < 3.9 only; telling it the file directly avoids that import.
_CODE_PATH = epath.Path(__file__)


# One int64 per record of the split, in record order (`people_counts`).
PEOPLE_COUNTS_FILE = 'people_counts_{split}.npy'
# Features holding encoded images, which counting people skips decoding.
_IMAGE_FEATURES = ('image', 'ignore_mask')


def count_people(builder: tfds.core.DatasetBuilder, split: str) -> np.ndarray:
  """int64 [records]: each record's number of people, read from the records (images not decoded)."""
  skip = {name: tfds.decode.SkipDecoding() for name in _IMAGE_FEATURES
          if name in builder.info.features}
  records = builder.as_data_source(split=split, decoders=skip)
  return np.array([len(records[i]['visible']) for i in range(len(records))], np.int64)


def _people_counts_path(builder: tfds.core.DatasetBuilder, split: str) -> epath.Path:
  return epath.Path(builder.data_dir) / PEOPLE_COUNTS_FILE.format(split=split)


def store_people_counts(builder: tfds.core.DatasetBuilder) -> None:
  """Writes `PEOPLE_COUNTS_FILE` for every split of a prepared dataset that lacks it."""
  for split in builder.info.splits:
    path = _people_counts_path(builder, split)
    if not path.exists():
      buffer = io.BytesIO()
      np.save(buffer, count_people(builder, split))
      path.write_bytes(buffer.getvalue())


def people_counts(builder: tfds.core.DatasetBuilder, split: str) -> np.ndarray:
  """int64 [records]: each record's number of people, stored at build time or else counted.

  A stored file that is not one count per record (the records were rebuilt)
  is ignored with a warning naming it.
  """
  path = _people_counts_path(builder, split)
  records = builder.info.splits[split].num_examples
  if path.exists():
    counts = np.load(io.BytesIO(path.read_bytes()))
    if counts.shape == (records,) and counts.dtype.kind in 'iu':
      return counts.astype(np.int64)
    logging.warning('%s: %s counts of people, but split %r has %d records; counting them again',
                    path, counts.shape, split, records)
  else:
    logging.warning('%s does not exist: counting the people of %d records '
                    '(download_and_prepare stores them)', path, records)
  return count_people(builder, split)


class _StoresPeopleCounts(tfds.core.GeneratorBasedBuilder):
  """A builder whose preparation also stores each split's people counts (abstract: not registered)."""

  def download_and_prepare(self, *args, **kwargs):
    """tfds's preparation, then `store_people_counts` (also for a dataset built before it existed)."""
    super().download_and_prepare(*args, **kwargs)
    store_people_counts(self)


def _image_bytes(path: str, image_id: int) -> bytes | None:
  """The image file's bytes, or None (with a warning) if it is missing or cut short: the build goes on."""
  try:
    return read_image_bytes(path, image_id)
  except (FileNotFoundError, ValueError) as error:
    logging.warning('skipping image: %s', error)
    return None


def _png(mask: np.ndarray) -> bytes:
  """uint8 [H, W] -> PNG bytes (tfds would encode with TensorFlow)."""
  ok, encoded = cv2.imencode('.png', mask)
  if not ok:
    raise ValueError(f'cannot PNG-encode a mask of shape {mask.shape}')
  return encoded.tobytes()


def _require(path: str, builder: tfds.core.DatasetBuilder) -> str:
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} does not exist. {builder.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  return path


def _people_features(joints: int) -> dict:
  """The features every dataset here shares: the JPEG image and its people's keypoints."""
  return {
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'image_id': np.int64,
      'keypoints': tfds.features.Tensor(shape=(None, joints, 2), dtype=np.float32),
      'visible': tfds.features.Tensor(shape=(None, joints), dtype=np.float32),
      'boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
  }


class CocoKeypointsJaxpose(_StoresPeopleCounts):
  """COCO 2017 person keypoints, one example per image with a labelled person (`coco.CocoKeypoints`)."""

  VERSION = VERSION
  code_path = _CODE_PATH
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download from https://cocodataset.org/#download and unzip into manual_dir:
    annotations/person_keypoints_train2017.json   (annotations_trainval2017.zip)
    annotations/person_keypoints_val2017.json
    train2017/*.jpg                               (train2017.zip)
    val2017/*.jpg                                 (val2017.zip)
  Splits whose annotation file is absent are not built; at least one must be there.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    joints = skeletons.COCO.num_keypoints
    return tfds.core.DatasetInfo(
        builder=self,
        description='COCO person keypoints in the jaxpose example schema.',
        homepage='https://cocodataset.org',
        features=tfds.features.FeaturesDict({
            **_people_features(joints),
            'area': tfds.features.Tensor(shape=(None,), dtype=np.float32),
            'ignore_mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
        }))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.fspath(dl_manager.manual_dir)
    splits = {}
    for split, name in (('train', 'train2017'), ('validation', 'val2017')):
      annotations = os.path.join(root, 'annotations', f'person_keypoints_{name}.json')
      if os.path.exists(annotations):
        splits[split] = self._generate_examples(annotations, os.path.join(root, name))
    if not splits:
      raise FileNotFoundError(f'no annotations/person_keypoints_{{train,val}}2017.json in '
                              f'{root}. {self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    return splits

  def _generate_examples(self, annotation_file: str, image_dir: str):
    for record in coco.load_coco(annotation_file, image_dir):
      image = _image_bytes(record.path, record.image_id)
      if image is None:
        continue
      mask = coco.ignore_mask(record.ignored_segments, record.height, record.width)
      yield record.image_id, {
          'image': image, 'image_id': record.image_id, 'keypoints': record.keypoints,
          'visible': record.visible, 'boxes': record.boxes, 'area': record.area,
          'ignore_mask': _png(mask)}


class MpiiJaxpose(_StoresPeopleCounts):
  """MPII Human Pose, one example per image with a labelled person (`mpii.MpiiPeople`)."""

  VERSION = VERSION
  code_path = _CODE_PATH
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download from http://human-pose.mpi-inf.mpg.de/ into manual_dir:
    images/*.jpg                          (mpii_human_pose_v1.tar.gz)
  and either HRNet's train/validation split (its `annot` folder):
    annot/train.json, annot/valid.json    -> splits train, validation
  or the official annotations (mpii_human_pose_v1_u12_2.zip):
    mpii_human_pose_v1_u12_1.mat          -> split train (img_train = 1; no validation split)
  The JSON files are used when annot/train.json exists.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    joints = skeletons.MPII.num_keypoints
    return tfds.core.DatasetInfo(
        builder=self,
        description='MPII Human Pose in the jaxpose example schema; coordinates 0-based.',
        homepage='http://human-pose.mpi-inf.mpg.de/',
        features=tfds.features.FeaturesDict({
            **_people_features(joints),
            'head_boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
            'center': tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
            'scale': tfds.features.Tensor(shape=(None,), dtype=np.float32),
        }))

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.fspath(dl_manager.manual_dir)
    images = os.path.join(root, 'images')
    train_json = os.path.join(root, 'annot', 'train.json')
    if os.path.exists(train_json):
      splits = {'train': self._generate_examples(train_json, images)}
      valid_json = os.path.join(root, 'annot', 'valid.json')
      if os.path.exists(valid_json):
        splits['validation'] = self._generate_examples(valid_json, images)
      return splits
    official = _require(os.path.join(root, 'mpii_human_pose_v1_u12_1.mat'), self)
    return {'train': self._generate_examples(official, images)}

  def _generate_examples(self, annotation_file: str, image_dir: str):
    for record in mpii.load_mpii(annotation_file, image_dir):
      image = _image_bytes(record.path, record.image_id)
      if image is None:
        continue
      yield record.image_id, {
          'image': image, 'image_id': record.image_id, 'keypoints': record.keypoints,
          'visible': record.visible, 'boxes': record.boxes, 'head_boxes': record.head_boxes,
          'center': record.center, 'scale': record.scale.astype(np.float32)}


class TfdsSource:
  """Grain random-access source over these builders' tfds data sources: records -> reader examples."""

  def __init__(self, data_source):
    """Wraps `builder.as_data_source()[split]` or `tfds.data_source(name, split=...)`."""
    self.data_source = data_source

  def __len__(self) -> int:
    return len(self.data_source)

  def __repr__(self) -> str:
    return f'TfdsSource({self.data_source!r})'

  def __getitem__(self, index) -> dict:
    """Index -> example dict as `CocoKeypoints` / `MpiiPeople` give it."""
    record = self.data_source[int(index)]
    example = dict(record)
    example['image_id'] = int(record['image_id'])
    if 'ignore_mask' in example:  # stored as a one-channel PNG
      example['ignore_mask'] = np.asarray(example['ignore_mask'])[..., 0]
    return example
