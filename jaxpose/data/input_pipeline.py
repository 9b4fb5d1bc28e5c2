"""The config's data: sources, the training loader, and padded eval batches.

Training batches come from a grain loader (shuffled, augmented, sharded by
host, resumable). Eval batches are the eval split once, in order, without
augmentation, the last batch padded and flagged with `example_mask` so that
every example counts exactly once whatever the batch size and device count.
"""

from collections.abc import Iterator

import grain.python as grain
import jax
import ml_collections
import numpy as np

from jaxpose import skeletons
from jaxpose.data import pipeline, synthetic

# The eval split of generated data is drawn with a seed no training run uses.
_EVAL_SEED_OFFSET = 1_000_003


def create_sources(config: ml_collections.ConfigDict):
  """config.data -> (train source, eval source), grain random-access sources."""
  data = config.data
  if data.source != 'synthetic':
    raise ValueError(
        f'config.data.source: {data.source!r} is not readable yet; the COCO and MPII '
        "readers arrive with jaxpose.data's dataset builders. Use 'synthetic'.")
  if data.num_train_examples <= 0 or data.num_eval_examples <= 0:
    raise ValueError(f'config.data: num_train_examples ({data.num_train_examples}) and '
                     f'num_eval_examples ({data.num_eval_examples}) must be positive: '
                     'an empty dataset cannot be trained on or evaluated')
  if config.model.arch == 'hourglass' and config.model.num_joints != skeletons.COCO.num_keypoints:
    raise ValueError(f'config.model.num_joints: {config.model.num_joints}, but generated '
                     f'people have the {skeletons.COCO.num_keypoints} COCO keypoints')

  def people(num, seed):
    return synthetic.SyntheticPeople(num, image_size=tuple(data.image_size),
                                     max_people=data.max_people, seed=seed)
  train = people(data.num_train_examples, config.seed)
  evaluation = people(data.num_eval_examples, config.seed + _EVAL_SEED_OFFSET)
  if config.model.arch == 'hourglass':  # top-down: one element per person
    return synthetic.SyntheticPersons(train), synthetic.SyntheticPersons(evaluation)
  return train, evaluation


def create_transform(config: ml_collections.ConfigDict, train: bool) -> grain.RandomMapTransform:
  """The config's top-down or bottom-up transform; augmented only for training."""
  data = config.data
  augment = dict(augment=train and data.augment, scale_factor=data.scale_factor,
                 rotation_degrees=data.rotation_degrees,
                 flip_probability=0.5 if data.flip else 0.0)
  if config.model.arch == 'hourglass':
    return pipeline.TopDownTransform(tuple(config.input_size), skeletons.COCO, **augment)
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
                              worker_count=config.data.worker_count)


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
