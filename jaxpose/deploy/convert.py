"""PyTorch state_dict -> Flax variables, for published pose checkpoints.

The models in `jaxpose.models` name their submodules after the PyTorch
attribute paths of the upstream implementations, with '.' written as '_' before
an index (`hg.0.hg.3.0.0.conv1` <-> `hg_0/hg_3_0_0/conv1`). So one rule maps
every Flax leaf to its PyTorch key (a family whose keys have other underscores
before digits, as CMU OpenPose's flat `conv1_1`, gives its own rule as
`torch_module_path`), and the layouts differ only by the usual transposes
(conv kernels OIHW -> HWIO). A family whose published files name keys in
more than one way (mmpose's 0.x `keypoint_head.` and 1.x `head.`) reads
them through its `torch_key`, which may also drop keys holding no weights.

Every Flax leaf must find its key with the right shape, and every key of the
state_dict must be used (BatchNorm's `num_batches_tracked` aside): a checkpoint
of another architecture fails here, naming the key, rather than loading
silently wrong.
"""

from collections.abc import Mapping
import re
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# PyTorch writes these for BatchNorm layers; Flax keeps no such counter.
_IGNORED_SUFFIXES = ('num_batches_tracked',)
# DataParallel / DistributedDataParallel wrap the model as `module`.
_WRAPPER_PREFIX = 'module.'


class CheckpointMismatchError(ValueError):
  """A state_dict does not fit the model: missing, unknown or misshapen keys."""


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # torch.Tensor, without importing torch
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def _torch_module_path(flax_path: tuple[str, ...]) -> str:
  """('hg_0', 'hg_3_0_0', 'conv1') -> 'hg.0.hg.3.0.0.conv1'."""
  return '.'.join(re.sub(r'_(?=\d)', '.', name) for name in flax_path)


def _torch_leaf(collection: str, module_path: str, leaf: str,
                shape: tuple[int, ...]) -> tuple[str, Any, tuple[int, ...]]:
  """Flax leaf -> (PyTorch key, function turning the PyTorch array into it, the PyTorch shape)."""
  identity = lambda a: a
  if collection == 'batch_stats':
    torch_name = {'mean': 'running_mean', 'var': 'running_var'}[leaf]
    return f'{module_path}.{torch_name}', identity, shape
  if leaf == 'kernel':
    if len(shape) == 4:  # conv: OIHW -> HWIO
      return (f'{module_path}.weight', lambda a: a.transpose(2, 3, 1, 0),
              (shape[3], shape[2], shape[0], shape[1]))
    return f'{module_path}.weight', lambda a: a.T, shape[::-1]  # linear: [out, in] -> [in, out]
  if leaf == 'scale':  # BatchNorm gamma
    return f'{module_path}.weight', identity, shape
  if leaf == 'bias':
    return f'{module_path}.bias', identity, shape
  raise ValueError(f'no PyTorch counterpart known for Flax leaf {module_path}/{leaf}')


def _module_path_rule(model: nn.Module):
  """The family's Flax path -> PyTorch module path rule: its `torch_module_path`, else the '_<digit>' one."""
  return getattr(type(model), 'torch_module_path', _torch_module_path)


def _published_keys(model: nn.Module, state_dict: Mapping[str, Any]) -> tuple[dict, dict]:
  """A state_dict -> ({key the model's rule names: value}, {that key: the file's key where it differs}).

  Strips DataParallel's `module.`, applies the family's `torch_key` (if it
  has one) and drops BatchNorm's step counters.
  """
  rename = getattr(type(model), 'torch_key', lambda key: key)
  remaining, original = {}, {}
  for file_key, value in state_dict.items():
    key = file_key[len(_WRAPPER_PREFIX):] if file_key.startswith(_WRAPPER_PREFIX) else file_key
    key = rename(key)
    if key is None or key.endswith(_IGNORED_SUFFIXES):
      continue
    if key in remaining:
      raise CheckpointMismatchError(
          f'state_dict: keys {original.get(key, key)!r} and {file_key!r} both hold {key!r}')
    remaining[key] = value
    if key != file_key:
      original[key] = file_key
  return remaining, original


def _flax_leaves(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
  """Flax variable path -> ShapeDtypeStruct, traced without computing."""
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(input_shape), train=False))
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract))


def expected_state_dict_shapes(model: nn.Module, input_shape: tuple[int, ...] = (1, 256, 256, 3)
                               ) -> dict[str, tuple[int, ...]]:
  """The PyTorch state_dict keys and shapes `variables_from_torch` reads for `model` (no `num_batches_tracked`)."""
  shapes = {}
  module_path_of = _module_path_rule(model)
  for (collection, *module_path, leaf), leaf_shape in _flax_leaves(model, input_shape).items():
    key, _, shape = _torch_leaf(collection, module_path_of(tuple(module_path)), leaf,
                                leaf_shape.shape)
    shapes[key] = tuple(shape)
  return shapes


def variables_from_torch(model: nn.Module, state_dict: Mapping[str, Any],
                         input_shape: tuple[int, ...] = (1, 256, 256, 3)) -> dict:
  """PyTorch state_dict of the upstream model -> {'params', 'batch_stats'} for `model`.

  Args:
    model: a jaxpose model (e.g. `StackedHourglass(num_stacks=2, ...)`) whose
      options match the checkpoint's architecture.
    state_dict: PyTorch parameter names -> tensors or arrays, as
      `torch.save(model.state_dict())` writes them, with or without the
      `module.` prefix of DataParallel, and in any of the key layouts the
      family's `torch_key` reads.
    input_shape: any input shape the model accepts; only used to trace the
      model's variable shapes.

  Raises:
    CheckpointMismatchError: naming the first missing, misshapen or unknown key.
  """
  remaining, original = _published_keys(model, state_dict)
  # Errors name a key as the file has it.
  named = lambda key: repr(key) + (f' (the file\'s {original[key]!r})' if key in original else '')
  converted = {}
  module_path_of = _module_path_rule(model)
  for path, leaf_shape in _flax_leaves(model, input_shape).items():
    collection, *module_path, leaf = path
    key, transform, _ = _torch_leaf(collection, module_path_of(tuple(module_path)),
                                    leaf, leaf_shape.shape)
    if key not in remaining:
      raise CheckpointMismatchError(
          f'state_dict: missing key {key!r} (needed for Flax variable '
          f'{"/".join(path)} of shape {leaf_shape.shape}); is the checkpoint of '
          f'the same architecture and options as {type(model).__name__}?')
    array = transform(_to_numpy(remaining.pop(key)))
    if array.shape != leaf_shape.shape:
      raise CheckpointMismatchError(
          f'state_dict: key {named(key)} has shape {array.shape} after conversion, '
          f'expected {leaf_shape.shape} for Flax variable {"/".join(path)}')
    converted[path] = jnp.asarray(array, dtype=leaf_shape.dtype)
  if remaining:
    unknown = sorted(remaining)
    raise CheckpointMismatchError(
        f'state_dict: {len(unknown)} unknown key(s) that {type(model).__name__} '
        f'has no variable for, first {named(unknown[0])}; all: {unknown[:10]}')
  return flax.traverse_util.unflatten_dict(converted)


def load_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """A .pth / .pth.tar file -> its state_dict as numpy arrays.

  Accepts a bare state_dict or the dicts training scripts save around it
  (`{'state_dict': ...}` as bearpaw/pytorch-pose and Lightweight OpenPose write).
  """
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        'reading PyTorch checkpoints needs torch: pip install "jaxpose[torch]"') from e
  try:
    checkpoint = torch.load(path, map_location='cpu', weights_only=True)
  except FileNotFoundError:
    raise
  except Exception as e:
    raise ValueError(f'{path}: not a readable PyTorch checkpoint ({e})') from e
  if isinstance(checkpoint, Mapping) and 'state_dict' in checkpoint:
    checkpoint = checkpoint['state_dict']
  if not isinstance(checkpoint, Mapping):
    raise ValueError(f'{path}: expected a state_dict (a mapping of names to '
                     f'tensors), got {type(checkpoint).__name__}')
  return {k: _to_numpy(v) for k, v in checkpoint.items()}
