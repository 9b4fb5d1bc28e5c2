"""The config's data: sources, the training loader, and padded eval batches.

Training batches come from a grain loader (shuffled, augmented, sharded by
host, resumable). Eval batches are the eval split once, in order, without
augmentation, the last batch padded and flagged with `example_mask` so that
every example counts exactly once whatever the batch size and device count.

`config.data.source` picks the examples:
- 'synthetic': generated people (`jaxpose.data.synthetic`), COCO-17.
- 'coco': COCO 2017 person keypoints in its download layout under
  `config.data.coco_dir`: `annotations/person_keypoints_{train,val}2017.json`
  and the image folders `train2017/`, `val2017/`.
- 'mpii': MPII under `config.data.mpii_dir`: HRNet's `annot/train.json` and
  `annot/valid.json`, images in `images/` (`jaxpose eval` also reads the head
  boxes of `annot/gt_valid.mat`, or `config.data.eval_ground_truth`).
- 'tfds': a dataset that `jaxpose.data.tfds_builders` built
  (`config.data.tfds_name`, in `config.data.tfds_data_dir`), splits
  `config.data.train_split` and `eval_split`.
Any of `config.data.train_annotations`, `train_images`, `eval_annotations`,
`eval_images` replaces that path of the layout (a .mat for MPII's official
annotations, or the bundled sample: annotations and images in tests/data/coco).
The older `config.data.root` stands in for an unset `coco_dir` / `mpii_dir`.

The hourglass (top-down) reads one example per person, Lightweight OpenPose
(bottom-up) one per image; the dataset's skeleton (COCO 17 or MPII 16 joints)
must match `config.model.num_joints`, and bottom-up needs COCO.
"""

import dataclasses
from collections.abc import Iterator
import os

import grain.python as grain
import jax
import ml_collections
import numpy as np

from jaxpose import skeletons
from jaxpose.data import coco, mpii, persons, pipeline, synthetic

# The eval split of generated data is drawn with a seed no training run uses.
_EVAL_SEED_OFFSET = 1_000_003


@dataclasses.dataclass(frozen=True)
class DatasetFiles:
  """Annotation files and image folders of a dataset's train and eval splits."""
  train_annotations: str
  train_images: str
  eval_annotations: str
  eval_images: str


def _layout(config: ml_collections.ConfigDict) -> tuple[str, dict[str, str]]:
  """The source's directory field and its download layout: (field name, {split path field: path under it})."""
  data = config.data
  if data.source == 'coco':
    return 'coco_dir', {
        'train_annotations': os.path.join('annotations', 'person_keypoints_train2017.json'),
        'train_images': 'train2017',
        'eval_annotations': os.path.join('annotations', 'person_keypoints_val2017.json'),
        'eval_images': 'val2017'}
  return 'mpii_dir', {'train_annotations': os.path.join('annot', 'train.json'),
                      'train_images': 'images',
                      'eval_annotations': os.path.join('annot', 'valid.json'),
                      'eval_images': 'images'}


def split_files(config: ml_collections.ConfigDict, split: str) -> tuple[str, str]:
  """config.data of a 'coco' or 'mpii' source, 'train' or 'eval' -> (annotation file, image folder).

  Raises naming the config field whose path is unset or does not exist.
  """
  data = config.data
  dir_field, layout = _layout(config)
  root = data[dir_field] or data.root
  paths = []
  for field in (f'{split}_annotations', f'{split}_images'):
    if data[field]:
      path, named_by = data[field], f'config.data.{field}'
    elif root:
      path, named_by = os.path.join(root, layout[field]), f'config.data.{dir_field}'
    else:
      raise ValueError(f'config.data.{dir_field} is not set: source {data.source!r} needs the '
                       f'dataset directory (--config.data.{dir_field}=/path), or '
                       f'config.data.{field} for this path')
    is_folder = field.endswith('_images')
    if not (os.path.isdir if is_folder else os.path.isfile)(path):
      raise FileNotFoundError(f'{named_by}: {"directory" if is_folder else "file"} {path} does '
                              f'not exist (expected the {field.replace("_", " ")} there)')
    paths.append(path)
  return tuple(paths)


def dataset_files(config: ml_collections.ConfigDict) -> DatasetFiles:
  """config.data of a 'coco' or 'mpii' source -> its files (see `split_files`)."""
  train_annotations, train_images = split_files(config, 'train')
  eval_annotations, eval_images = split_files(config, 'eval')
  return DatasetFiles(train_annotations, train_images, eval_annotations, eval_images)


def data_skeleton(config: ml_collections.ConfigDict) -> skeletons.Skeleton:
  """The keypoint layout of the config's dataset: COCO (17) or MPII (16)."""
  source = config.data.source
  if source in ('synthetic', 'coco'):
    return skeletons.COCO
  if source == 'mpii':
    return skeletons.MPII
  if source == 'tfds':
    num_joints = _tfds_builder(config).info.features['keypoints'].shape[1]
    by_size = {s.num_keypoints: s for s in (skeletons.COCO, skeletons.MPII)}
    if num_joints not in by_size:
      raise ValueError(f'config.data.tfds_name {config.data.tfds_name!r}: keypoints of '
                       f'{num_joints} joints; expected COCO (17) or MPII (16)')
    return by_size[num_joints]
  raise ValueError(f"config.data.source: expected 'synthetic', 'coco', 'mpii' or 'tfds', "
                   f'got {source!r}')


def _check_skeleton(config: ml_collections.ConfigDict, skeleton: skeletons.Skeleton) -> None:
  """Raises ValueError if the model cannot learn the dataset's keypoints."""
  named = (f'config.data.tfds_name {config.data.tfds_name!r}' if config.data.source == 'tfds'
           else f'config.data.source {config.data.source!r}')
  if config.model.arch == 'hourglass':
    if config.model.num_joints != skeleton.num_keypoints:
      raise ValueError(f'config.model.num_joints is {config.model.num_joints}, but {named} '
                       f'has the {skeleton.num_keypoints} {skeleton.name} keypoints')
  elif skeleton is not skeletons.COCO:
    raise ValueError(f'config.model.arch {config.model.arch!r} is bottom-up and learns COCO '
                     f'keypoints, but {named} has the {skeleton.num_keypoints} {skeleton.name} '
                     'keypoints')


def _tfds_builder(config: ml_collections.ConfigDict):
  """The tfds builder of config.data.tfds_name; raises naming the fields if it is not built."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from jaxpose.data import tfds_builders  # pylint: disable=g-import-not-at-top,unused-import
  data = config.data
  if not data.tfds_name:
    raise ValueError("config.data.tfds_name is not set: source 'tfds' needs a dataset of "
                     "jaxpose/data/tfds_builders.py ('coco_keypoints_jaxpose', 'mpii_jaxpose')")
  try:
    builder = tfds.builder(data.tfds_name, data_dir=data.tfds_data_dir or None,
                           file_format='array_record')
  except tfds.core.registered.DatasetNotFoundError as error:
    raise ValueError(f'config.data.tfds_name {data.tfds_name!r}: no such tfds dataset '
                     f'({error})') from None
  if not builder.is_prepared():
    raise FileNotFoundError(f'config.data.tfds_name {data.tfds_name!r}: not built in '
                            f'config.data.tfds_data_dir {builder.data_dir}; build it first '
                            '(jaxpose/data/tfds_builders.py)')
  return builder


def _tfds_sources(config: ml_collections.ConfigDict, per_person: bool):
  """config.data of a 'tfds' source -> (train, eval) sources, per person for top-down."""
  from jaxpose.data import tfds_builders  # pylint: disable=g-import-not-at-top
  builder = _tfds_builder(config)
  sources = []
  for field in ('train_split', 'eval_split'):
    split = config.data[field]
    if split not in builder.info.splits:
      raise ValueError(f'config.data.{field}: {config.data.tfds_name!r} has no split {split!r}; '
                       f'it has {sorted(builder.info.splits)}')
    images = tfds_builders.TfdsSource(builder.as_data_source(split=split))
    if per_person:
      images = persons.PersonsOfImages(images, tfds_builders.people_counts(builder, split))
    sources.append(images)
  return tuple(sources)


def _synthetic_sources(config: ml_collections.ConfigDict):
  """Generated train and eval sources, per person for top-down."""
  data = config.data
  if data.num_train_examples <= 0 or data.num_eval_examples <= 0:
    raise ValueError(f'config.data: num_train_examples ({data.num_train_examples}) and '
                     f'num_eval_examples ({data.num_eval_examples}) must be positive: '
                     'an empty dataset cannot be trained on or evaluated')

  def people(num, seed):
    return synthetic.SyntheticPeople(num, image_size=tuple(data.image_size),
                                     max_people=data.max_people, seed=seed)
  train = people(data.num_train_examples, config.seed)
  evaluation = people(data.num_eval_examples, config.seed + _EVAL_SEED_OFFSET)
  if config.model.arch == 'hourglass':  # top-down: one element per person
    return synthetic.SyntheticPersons(train), synthetic.SyntheticPersons(evaluation)
  return train, evaluation


def create_sources(config: ml_collections.ConfigDict):
  """config.data -> (train source, eval source), grain random-access sources.

  Top-down (hourglass) sources have one element per person, bottom-up ones one
  per image (module docstring).
  """
  skeleton = data_skeleton(config)
  _check_skeleton(config, skeleton)
  per_person = config.model.arch == 'hourglass'
  source = config.data.source
  if source == 'synthetic':
    return _synthetic_sources(config)
  if source == 'tfds':
    return _tfds_sources(config, per_person)
  files = dataset_files(config)
  if source == 'coco':
    reader = coco.CocoPersons if per_person else coco.CocoKeypoints
  else:
    reader = mpii.MpiiPersons
  return (reader(files.train_annotations, files.train_images),
          reader(files.eval_annotations, files.eval_images))


def create_transform(config: ml_collections.ConfigDict, train: bool) -> grain.RandomMapTransform:
  """The config's top-down or bottom-up transform; augmented only for training."""
  data = config.data
  augment = dict(augment=train and data.augment, scale_factor=data.scale_factor,
                 rotation_degrees=data.rotation_degrees,
                 flip_probability=0.5 if data.flip else 0.0)
  if config.model.arch == 'hourglass':
    return pipeline.TopDownTransform(tuple(config.input_size), data_skeleton(config),
                                     half_body_probability=data.half_body_probability,
                                     **augment)
  width, height = config.input_size
  if width != height:
    raise ValueError(f'config.input_size: bottom-up inputs are square, got {width}x{height}')
  return pipeline.BottomUpTransform(width, stride=8, max_people=max(data.max_people, 1),
                                    **augment)


def train_loader(source, config: ml_collections.ConfigDict, host_batch_size: int):
  """Infinite, shuffled, augmented training batches of this host (a grain DataLoader)."""
  del host_batch_size  # make_loader splits the global batch over hosts itself
  return pipeline.make_loader(source, create_transform(config, train=True),
                              global_batch_size=config.batch_size, seed=config.seed,
                              worker_count=config.data.worker_count,
                              read_threads=config.data.read_threads)


def eval_batches(source, config: ml_collections.ConfigDict, data) -> Iterator[dict]:
  """This host's share of the eval split, in batches padded to a whole number of devices."""
  transform = create_transform(config, train=False)
  host_batch = data.host_batch_size(config.batch_size)
  indices = np.arange(jax.process_index(), len(source), jax.process_count())
  # Hosts must run the same number of eval steps: pad every host to the longest.
  num_batches = -(-(-(-len(source) // jax.process_count())) // host_batch)
  rng = np.random.default_rng(0)  # unused without augmentation
  for b in range(num_batches):
    chunk = indices[b * host_batch:(b + 1) * host_batch]
    examples = [transform.random_map(source[int(i)], rng) for i in chunk]
    if not examples:
      examples = [transform.random_map(source[0], rng)]
      real = 0
    else:
      real = len(examples)
    examples += [examples[-1]] * (host_batch - len(examples))
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch['example_mask'] = np.arange(host_batch) < real
    yield batch
