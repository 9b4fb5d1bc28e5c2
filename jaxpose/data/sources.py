"""The config's data: its train and eval splits as grain random-access sources.

`config.data.source` picks the examples:
- 'synthetic': generated people (`jaxpose.data.synthetic`), COCO-17.
- 'synthetic_clips': generated clips of walking people with track ids
  (`jaxpose.data.synthetic_clips`), COCO-17; an example is a pair of
  consecutive frames, for the STAF model (`clip_sources`).
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

A top-down approach reads one example per person, a bottom-up one one per
image (`per_person`); the approach checks that the model can learn the
dataset's skeleton (`data_skeleton`: COCO 17 or MPII 16 joints).
"""

import dataclasses
import functools
import os

import ml_collections

from jaxpose import skeletons
from jaxpose.data import coco, mpii, persons, synthetic, synthetic_clips

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


def eval_files(config: ml_collections.ConfigDict) -> DatasetFiles:
  """The eval annotations and images that config.data names (a 'coco' or 'mpii' source); no train paths needed."""
  if config.data.source not in ('coco', 'mpii'):
    raise ValueError(f"config.data.source is {config.data.source!r}: jaxpose eval reads the "
                     "'coco' or 'mpii' annotation files (set --config.data.source and its "
                     'directory)')
  annotations, images = split_files(config, 'eval')
  return DatasetFiles('', '', annotations, images)


@functools.lru_cache(maxsize=8)
def _file_layout(annotation_file: str, modified: float, size: int) -> skeletons.Skeleton:
  """The layout of a COCO-format file, read once per version of the file (a COCO train file is 250 MB)."""
  del modified, size  # the cache key: a file changed in place is read again
  return coco.read_layout(annotation_file)


def file_layout(annotation_file: str) -> skeletons.Skeleton:
  """A COCO-format keypoint file -> its layout (`coco.read_layout`), cached."""
  status = os.stat(annotation_file)
  return _file_layout(os.path.abspath(annotation_file), status.st_mtime, status.st_size)


def _coco_layout(config: ml_collections.ConfigDict) -> skeletons.Skeleton:
  """The layout of config.data's COCO-format files: the train file's (the eval file's without one); both must agree."""
  layouts, error = {}, None
  for split in ('train', 'eval'):
    try:
      annotations, _ = split_files(config, split)
    except (ValueError, FileNotFoundError) as missing:
      error = error or missing
      continue
    layouts[annotations] = file_layout(annotations)
  if not layouts:
    raise error
  (first, layout), *others = layouts.items()
  for other, other_layout in others:
    if other_layout.keypoint_names != layout.keypoint_names:
      raise ValueError(f'{other}: its keypoints {list(other_layout.keypoint_names)} are not '
                       f'those of {first}: {list(layout.keypoint_names)}')
  return layout


def data_skeleton(config: ml_collections.ConfigDict) -> skeletons.Skeleton:
  """The keypoint layout of the config's dataset, with config.data.skeleton's overrides.

  Generated data: COCO-17; 'coco': the annotation file's own layout (COCO-17
  for COCO's person file, any other for a COCO-format file of other
  keypoints); 'mpii': MPII-16; 'tfds': COCO or MPII by its joints.
  """
  skeleton = _dataset_skeleton(config)
  overrides = config.data.get('skeleton')
  if not overrides:
    return skeleton
  return skeletons.with_overrides(skeleton, sigmas=overrides.get('sigmas', ()),
                                  flip_pairs=overrides.get('flip_pairs', ()),
                                  limbs=overrides.get('limbs', ()))


def _dataset_skeleton(config: ml_collections.ConfigDict) -> skeletons.Skeleton:
  """The keypoint layout of the config's dataset, as it stands (`data_skeleton`)."""
  source = config.data.source
  if source in ('synthetic', 'synthetic_clips'):
    return skeletons.COCO
  if source == 'coco':
    return _coco_layout(config)
  if source == 'mpii':
    return skeletons.MPII
  if source == 'tfds':
    num_joints = _tfds_builder(config).info.features['keypoints'].shape[1]
    by_size = {s.num_keypoints: s for s in (skeletons.COCO, skeletons.MPII)}
    if num_joints not in by_size:
      raise ValueError(f'config.data.tfds_name {config.data.tfds_name!r}: keypoints of '
                       f'{num_joints} joints; expected COCO (17) or MPII (16)')
    return by_size[num_joints]
  raise ValueError(f"config.data.source: expected 'synthetic', 'synthetic_clips', 'coco', "
                   f"'mpii' or 'tfds', "
                   f'got {source!r}')


def named_data(config: ml_collections.ConfigDict) -> str:
  """How error messages name the config's dataset: its source, or its tfds name."""
  if config.data.source == 'tfds':
    return f'config.data.tfds_name {config.data.tfds_name!r}'
  return f'config.data.source {config.data.source!r}'


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


def _synthetic_sources(config: ml_collections.ConfigDict, per_person: bool):
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
  if per_person:
    return synthetic.SyntheticPersons(train), synthetic.SyntheticPersons(evaluation)
  return train, evaluation


def generated_clips(config: ml_collections.ConfigDict, num_clips: int, *, held_out: bool,
                    frame_steps=None) -> synthetic_clips.SyntheticClips:
  """config.data's generated clips: the training ones, or held-out ones (another seed).

  `frame_steps` replaces config.data.clip_frame_steps. Crossing pairs where
  clips hold two people or more (config.data.max_people >= 2).
  """
  data = config.data
  crossing = data.max_people >= 2
  return synthetic_clips.SyntheticClips(
      num_clips, clip_length=data.clip_length, image_size=tuple(data.image_size),
      min_people=2 if crossing else 1, max_people=data.max_people,
      seed=config.seed + (_EVAL_SEED_OFFSET if held_out else 0),
      frame_step=tuple(frame_steps or data.clip_frame_steps), crossing=crossing)


def clip_sources(config: ml_collections.ConfigDict, per_person: bool):
  """'synthetic_clips' -> train and eval sources of (frame t-1, frame t) pairs of generated clips."""
  data = config.data
  if per_person:
    raise ValueError("config.data.source 'synthetic_clips' gives pairs of whole frames, for a "
                     'bottom-up tracking model (STAF), not per-person crops')
  if data.num_train_examples <= 0 or data.num_eval_examples <= 0 or data.clip_length < 2:
    raise ValueError(f'config.data: synthetic_clips needs positive num_train_examples and '
                     f'num_eval_examples (clips) and clip_length >= 2, got '
                     f'{data.num_train_examples}, {data.num_eval_examples}, {data.clip_length}')
  return tuple(synthetic_clips.SyntheticClipWindows(
      generated_clips(config, num, held_out=held_out), length=2)
               for num, held_out in ((data.num_train_examples, False),
                                     (data.num_eval_examples, True)))


def create_sources(config: ml_collections.ConfigDict, per_person: bool):
  """config.data -> (train source, eval source), grain random-access sources.

  With `per_person` (top-down) they have one element per person, else one
  per image (bottom-up).
  """
  data_skeleton(config)  # an unknown source fails here, before any file is read
  source = config.data.source
  if source == 'synthetic':
    return _synthetic_sources(config, per_person)
  if source == 'synthetic_clips':
    return clip_sources(config, per_person)
  if source == 'tfds':
    return _tfds_sources(config, per_person)
  files = dataset_files(config)
  if source == 'coco':
    reader = coco.CocoPersons if per_person else coco.CocoKeypoints
  else:
    reader = mpii.MpiiPersons
  return (reader(files.train_annotations, files.train_images),
          reader(files.eval_annotations, files.eval_images))
