"""The fields every training config has, their defaults, a check for typos, and config files.

Experiment files in `configs/` start from `default_config()` and override a
few fields; `validate` rejects a field the trainer does not know (a typo in a
config or a sweep would otherwise be silently ignored). `load_config_file`
runs such a file and `apply_overrides` changes dotted fields of what it gave;
`check_config_file` and `config_file_error` turn a missing file, a syntax
error or an exception raised while the file ran into one line naming the
file and line (the `jaxpose` command's --config reports them so).
"""

import importlib.util
import os
import traceback
from typing import Any

import ml_collections
from ml_collections import config_dict

# Sub-configs whose fields depend on a choice (the model's on its arch) and
# are checked where that choice is made (`jaxpose.models.create_model`).
_FREE_FORM = ('model',)
# config.model.num_joints: as many as the dataset's layout has keypoints.
FROM_DATA = 0
# What `config.compute_dtype` may say (see `compute_dtype`).
COMPUTE_DTYPES = ('auto', 'float32', 'bfloat16')
# Backends (`jax.default_backend()`) whose matrix units run bfloat16 faster than float32.
_BFLOAT16_BACKENDS = ('gpu', 'tpu')


def distributed_timeouts(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """config.distributed, or the defaults for a config file written without it."""
  return config.get('distributed') or default_config().distributed


def default_config() -> ml_collections.ConfigDict:
  """All trainer fields with defaults: a 2-stack hourglass on synthetic COCO-17 people."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # 'pmap' | 'shard_map' | 'none' (one device); see jaxpose/parallel.py.
  config.parallel = 'pmap'
  config.batch_size = 32  # global, over all devices and hosts
  config.num_train_steps = 1000
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  # Eval metric whose best checkpoint is kept beside the latest ('' for none).
  config.best_metric = 'pck'
  config.best_mode = 'max'  # 'max' | 'min': which end of best_metric is best
  # How many of the latest checkpoints are kept (beside the best): two, so that
  # a corrupt latest one has a previous one to fall back to (docs/training.md).
  config.keep_checkpoints = 2
  # Several processes (jax.distributed; docs/pod.md): a process silent for
  # heartbeat_timeout_seconds is lost, and the others exit naming it
  # (jaxpose.training.hosts); the processes wait initialization_timeout_seconds
  # for each other at the start and shutdown_timeout_seconds at the end.
  # JAX's own defaults are 100, 300 and 300 s.
  config.distributed = ml_collections.ConfigDict(dict(
      heartbeat_timeout_seconds=60, initialization_timeout_seconds=300,
      shutdown_timeout_seconds=60))
  # (first_step, num_steps): a jax.profiler trace of those train steps in
  # WORKDIR/profile, for TensorBoard's profile plugin or Perfetto; () for none.
  config.profile_steps = ()
  # What convolutions and activations compute in: 'float32' | 'bfloat16' |
  # 'auto' (bfloat16 on TPU and GPU, float32 on the CPU). Params, optimizer
  # state, BatchNorm statistics, targets, losses and metrics stay float32.
  config.compute_dtype = 'auto'

  config.optimizer = 'rmsprop'  # 'rmsprop' | 'adam' | 'sgd' (Nesterov 0.9), PyTorch's defaults
  config.learning_rate = 2.5e-4
  config.weight_decay = 0.0  # L2 added to the gradients, as torch's weight_decay
  # Conv biases that a BatchNorm cancels get zero updates: their true gradient
  # is zero, and Adam/RMSprop would turn rounding noise into steps that differ
  # between device layouts (see models.batchnorm_cancelled_biases).
  config.freeze_biases_before_batchnorm = True
  config.warmup_steps = 0
  config.lr_decay_steps = ()  # steps at which the rate is multiplied by lr_decay_factor
  config.lr_decay_factor = 0.1

  config.input_size = (256, 256)  # (width, height) of the network input
  # Progressive resizing: ((until_step, (width, height)), ...), the steps up
  # to each until_step trained at its smaller size, the rest and evaluation
  # at input_size (jaxpose/progressive.py); () trains at input_size only.
  config.input_size_schedule = ()
  # Gaussian sigma: in heatmap pixels for the hourglass, in input pixels for
  # Lightweight OpenPose (as each upstream defines it).
  config.sigma = 2.0
  config.paf_thickness = 1.0  # Lightweight OpenPose: PAF half-width in map cells

  config.model = ml_collections.ConfigDict(dict(
      arch='hourglass', num_stacks=2, num_blocks=1, num_joints=FROM_DATA, num_features=128,
      depthwise=False, depth=4, remat=False))
  # Fine-tuning: start from the parameters of another run whose path and shape
  # match (a workdir of `jaxpose train` or `jaxpose convert`), at init_from_step
  # (None: its latest); the others (another layout's heads) start fresh.
  config.init_from = ''
  config.init_from_step = config_dict.placeholder(int)

  config.teacher = ml_collections.ConfigDict()
  config.teacher.workdir = ''  # a workdir from `jaxpose train` or `jaxpose convert`
  config.teacher.kdloss_alpha = 0.5

  config.data = ml_collections.ConfigDict()
  config.data.source = 'synthetic'  # 'synthetic' | 'synthetic_clips' | 'coco' | 'mpii' | 'tfds'
  config.data.root = ''  # dataset directory, for real datasets
  config.data.num_train_examples = 20000  # synthetic: distinct generated images
  config.data.num_eval_examples = 256
  config.data.image_size = (256, 256)  # synthetic: (width, height) of generated images
  config.data.max_people = 1  # synthetic: people per image (top-down crops one each)
  # synthetic_clips (STAF): generated clips of walking people; an example is
  # a pair of consecutive frames (num_*_examples count clips).
  config.data.clip_length = 8  # frames per clip
  config.data.clip_frame_steps = (1,)  # video frames per clip frame, one per clip, drawn
  # STAF: MOTA of TAF and OKS tracking on this many held-out clips at each
  # evaluation, at each of these frame steps (4: a quarter of the frame rate).
  config.data.track_eval_clips = 8
  config.data.track_eval_frame_steps = (1, 4)
  # ... and MOTA of the keypoints scored at least this (0: all, as poseval
  # takes a submission; PoseTrack entries submit confident keypoints only).
  config.data.track_keypoint_threshold = 0.0
  config.data.worker_count = 0  # grain worker processes (0: in the main process)
  config.data.augment = True
  config.data.scale_factor = 0.25
  config.data.rotation_degrees = 30.0
  config.data.flip = True
  # Top-down: chance of a crop around the upper or lower body (HRNet: 0.3).
  config.data.half_body_probability = 0.0
  # grain threads reading records per process (0: in the process's own
  # thread); unset: the cores shared by the decoding processes
  # (pipeline.default_read_threads), at most grain's 16.
  config.data.read_threads = config_dict.placeholder(int)
  # Real datasets, in their download layout (see jaxpose/data/input_pipeline.py):
  config.data.coco_dir = ''  # annotations/person_keypoints_{train,val}2017.json, {train,val}2017/
  config.data.mpii_dir = ''  # annot/{train,valid}.json, annot/gt_valid.mat, images/
  # Set to replace one path of the layout (e.g. the bundled sample tests/data/coco).
  config.data.train_annotations = ''
  config.data.train_images = ''
  config.data.eval_annotations = ''
  config.data.eval_images = ''
  # MPII eval from HRNet's JSON: the ground truth with the head boxes PCKh
  # needs ('': gt_valid.mat beside eval_annotations).
  config.data.eval_ground_truth = ''
  # source 'tfds': a dataset of jaxpose/data/tfds_builders.py, built in tfds_data_dir.
  config.data.tfds_name = ''  # 'coco_keypoints_jaxpose' | 'mpii_jaxpose'
  config.data.tfds_data_dir = ''  # '' for tfds' default (~/tensorflow_datasets)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'
  # The keypoint layout comes from the data (a COCO-format file's category);
  # these replace parts of it, checked against its keypoints (() keeps the
  # data's): OKS sigmas, (left, right) flip pairs and limbs, 0-based.
  config.data.skeleton = ml_collections.ConfigDict()
  config.data.skeleton.sigmas = ()
  config.data.skeleton.flip_pairs = ()
  config.data.skeleton.limbs = ()
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming any field of `config` that the trainer does not know, or a compute dtype it cannot use."""
  _check(config, default_config(), 'config')
  compute_dtype(config, backend='cpu')


def compute_dtype(config: ml_collections.ConfigDict, backend: str) -> str:
  """config.compute_dtype on `backend` (`jax.default_backend()`) -> 'float32' | 'bfloat16'.

  'auto' is bfloat16 on TPU and GPU, whose matrix units run it at several
  times float32's rate, and float32 elsewhere: XLA:CPU converts bfloat16
  convolutions to float32 and back, which only costs time (README). A
  config without the field computes in float32.
  """
  name = config.get('compute_dtype', 'float32')
  if name not in COMPUTE_DTYPES:
    raise ValueError(f'config.compute_dtype: expected one of {list(COMPUTE_DTYPES)}, '
                     f'got {name!r}')
  if name == 'auto':
    return 'bfloat16' if backend in _BFLOAT16_BACKENDS else 'float32'
  return name


def _check(config, defaults, prefix):
  for key in config.keys():
    name = f'{prefix}.{key}'
    if key not in defaults:
      raise ValueError(f'{name}: unknown field; known fields of {prefix}: '
                       f'{sorted(defaults.keys())}')
    value, default = config[key], defaults[key]
    if isinstance(default, ml_collections.ConfigDict) and key not in _FREE_FORM:
      if not isinstance(value, ml_collections.ConfigDict):
        raise ValueError(f'{name}: expected a group of fields, got {value!r}')
      _check(value, default, name)


# Config files: running them, overriding their fields, and naming their mistakes.

def load_config_file(path: str, arg: str | None = None) -> ml_collections.ConfigDict:
  """Runs a configs/*.py file and returns its get_config(arg).

  Args:
    path: the file, or 'FILE:ARG' (the form config_flags takes) when `arg` is None.
    arg: the string passed to get_config, if any.

  Returns:
    The file's get_config() or get_config(arg).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file defines no get_config().
  """
  if arg is None and ':' in os.path.basename(path):
    path, arg = path.rsplit(':', 1)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: config file not found')
  spec = importlib.util.spec_from_file_location(
      f'jaxpose_config_{abs(hash(path))}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_config'):
    raise ValueError(f'{path}: a config file must define get_config()')
  return module.get_config() if arg is None else module.get_config(arg)


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any],
                    where: str) -> ml_collections.ConfigDict:
  """A copy of `config` with dotted-field overrides; `config` itself is unchanged.

  Args:
    config: the config to start from.
    overrides: {'a.b': value}; a value for a tuple field is converted to a tuple.
    where: what the overrides come from, starting each error's message (e.g. a sweep point).

  Returns:
    The overridden copy.

  Raises:
    ValueError: an override names a field `config` does not have, or a value
      ConfigDict refuses for its field's type.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split('.')
    node = config
    for name in parents:
      if name not in node:
        raise ValueError(f'{where}: override {dotted!r}: config has no field {name!r}')
      node = node[name]
    if leaf not in node:
      raise ValueError(f'{where}: override {dotted!r}: config has no field {leaf!r}')
    try:
      node[leaf] = type(node[leaf])(value) if isinstance(node[leaf], tuple) else value
    except TypeError as e:
      raise ValueError(f'{where}: override {dotted!r}: {e}') from e
  return config


def check_config_file(path: str) -> None:
  """Checks, without running it, that a config file exists and is Python.

  Args:
    path: the config file (without config_flags' ':ARG').

  Raises:
    FileNotFoundError: 'PATH: no such file; expected ...'.
    ValueError: 'PATH:LINE: SyntaxError: message' (or IndentationError, ...).
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path}: no such file; expected a Python config file with '
                            'get_config() (e.g. configs/quickstart.py)')
  try:
    with open(path, 'rb') as f:
      compile(f.read(), path, 'exec')
  except SyntaxError as e:
    raise ValueError(f'{path}:{e.lineno}: {type(e).__name__}: {e.msg}') from None


def config_file_error(error: BaseException, path: str) -> str | None:
  """Where in a config file an exception was raised, as one line.

  Config files run inside other code (config_flags parsing a flag,
  `load_config_file`), which may wrap their exception in its own: the
  exception and those it was raised from or during are searched, in that order.

  Args:
    error: the exception caught around the config file's run.
    path: the config file (without config_flags' ':ARG').

  Returns:
    'PATH:LINE: Type: message' for the first of those exceptions raised in a
    frame of `path` (its innermost such frame), or None when none was.
  """
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if os.path.abspath(frame.filename) == os.path.abspath(path)]
    if frames:
      message = ' '.join(str(error).split()) or type(error).__name__
      return f'{path}:{frames[-1].lineno}: {type(error).__name__}: {message}'
    error = error.__cause__ or error.__context__
  return None


# Small shared getters the experiment files in configs/ are composed from.

# Training-set sizes, for schedules given in epochs.
MPII_TRAIN_PEOPLE = 22246  # people in the standard MPII train split
COCO_TRAIN_PEOPLE = 149813  # person instances with keypoints in COCO train2017


def hourglass_model(num_stacks: int, num_blocks: int = 1, num_joints: int = 16,
                    num_features: int = 128, depthwise: bool = False,
                    depth: int = 4, layer2_features: int = 128,
                    remat: bool = False) -> ml_collections.ConfigDict:
  """A StackedHourglass description (defaults: bearpaw's 256-channel, depth-4 hourglass).

  `remat`: recompute each residual block's activations in the backward pass
  (how it trains; checkpoints do not store it).
  """
  return ml_collections.ConfigDict(dict(
      arch='hourglass', num_stacks=num_stacks, num_blocks=num_blocks, num_joints=num_joints,
      num_features=num_features, depthwise=depthwise, depth=depth,
      layer2_features=layer2_features, remat=remat))


def lightweight_openpose_model(num_refinement_stages: int = 1,
                               remat: bool = False) -> ml_collections.ConfigDict:
  """A LightweightOpenPose description (upstream's published model has 1 refinement stage).

  `remat`: recompute each backbone block's and stage's activations in the
  backward pass (how it trains; checkpoints do not store it).
  """
  return ml_collections.ConfigDict(dict(
      arch='lightweight_openpose', num_refinement_stages=num_refinement_stages,
      num_channels=128, num_heatmaps=19, num_pafs=38, remat=remat))


def newell_hourglass_recipe(config: ml_collections.ConfigDict, steps_per_epoch: int,
                            num_epochs: int = 90) -> ml_collections.ConfigDict:
  """The published stacked-hourglass schedule (Newell et al.; bearpaw/pytorch-pose).

  RMSprop at 2.5e-4, batch 6, 256x256 input, 64x64 heatmaps, sigma 1, the
  rate divided by 10 at epochs 60 and 90.
  """
  config.optimizer = 'rmsprop'
  config.learning_rate = 2.5e-4
  config.batch_size = 6
  config.input_size = (256, 256)
  config.sigma = 1.0
  config.num_train_steps = num_epochs * steps_per_epoch
  config.lr_decay_steps = (60 * steps_per_epoch, 90 * steps_per_epoch)
  config.lr_decay_factor = 0.1
  config.log_every_steps = 100
  config.eval_every_steps = steps_per_epoch
  config.checkpoint_every_steps = steps_per_epoch
  return config


def scale_to_global_batch(config: ml_collections.ConfigDict, global_batch: int,
                          rule: str = 'linear', examples_per_epoch: int | None = None,
                          warmup_epochs: float = 5.0) -> ml_collections.ConfigDict:
  """A recipe tuned at `config.batch_size` -> the same recipe at `global_batch` (in place, returned).

  With k = global_batch / config.batch_size:
  - the learning rate is multiplied by k ('linear': Goyal et al. 2017,
    "Accurate, Large Minibatch SGD", stated for SGD) or by sqrt(k) ('sqrt',
    often preferred for Adam and RMSprop, whose steps are normalised by the
    gradient's scale);
  - every count of steps (training, the rate's decay points, evaluation,
    checkpoints, logging, warm-up) is divided by k (rounded, at least 1), so
    that the run sees the same examples and decays at the same epochs;
  - a recipe without warm-up that is scaled up gets Goyal et al.'s gradual
    warm-up over `warmup_epochs` epochs of `examples_per_epoch` (when given).
  """
  if global_batch <= 0 or rule not in ('linear', 'sqrt'):
    raise ValueError(f'scale_to_global_batch: expected a positive global batch and rule '
                     f"'linear' or 'sqrt', got {global_batch} and {rule!r}")
  k = global_batch / config.batch_size
  steps = lambda n: max(1, round(n / k))
  config.learning_rate = config.learning_rate * (k if rule == 'linear' else k ** 0.5)
  config.num_train_steps = steps(config.num_train_steps)
  config.lr_decay_steps = tuple(steps(s) for s in config.lr_decay_steps)
  for field in ('eval_every_steps', 'checkpoint_every_steps', 'log_every_steps'):
    config[field] = steps(config[field])
  if config.warmup_steps:
    config.warmup_steps = steps(config.warmup_steps)
  elif k > 1 and examples_per_epoch:
    config.warmup_steps = max(1, round(warmup_epochs * examples_per_epoch / global_batch))
  config.batch_size = global_batch
  return config
