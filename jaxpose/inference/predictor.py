"""A pose model behind one call: uint8 RGB images [N, H, W, 3] -> named numpy outputs.

Two backends with the same interface, so that inference code does not care
where the model lives:

- `JaxPredictor(workdir, step)`: a checkpoint of `jaxpose train` or
  `jaxpose convert`, the eval-mode forward pass jitted once per input shape.
- `OnnxPredictor(path)`: a file written by `jaxpose export`, run by
  onnxruntime on the CPU.

Both return {name: [N, h, w, C] float32} with the names of the ONNX interface
(`jaxpose.export.output_names`): `heatmaps_stack{i}` for the stacked
hourglass, `heatmaps_stage{i}` and `pafs_stage{i}` for Lightweight OpenPose.
An ONNX file exported with `--last-only` has only the last ones; inference
reads only the last (`last_output`).
"""

from collections.abc import Callable
import os
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import checkpoint, export

TOPDOWN_ARCH = 'hourglass'
BOTTOMUP_ARCH = 'lightweight_openpose'
# Output name prefixes of the ONNX interface, which tell the architecture.
_HOURGLASS_PREFIX = 'heatmaps_stack'
_HEATMAPS_STAGE_PREFIX = 'heatmaps_stage'
_PAFS_STAGE_PREFIX = 'pafs_stage'


class Predictor(Protocol):
  """What inference needs of a model, whichever backend runs it.

  Attributes:
    source: the workdir or file it was loaded from, for error messages.
    arch: 'hourglass' (top-down) or 'lightweight_openpose' (bottom-up).
    output_names: the names of the outputs, in order.
    input_size: (H, W) the model was exported for, or None where any size
      (a multiple of `input_multiple`) works.
    input_multiple: H and W must be multiples of this.
  """
  source: str
  arch: str
  output_names: list[str]
  input_size: tuple[int, int] | None
  input_multiple: int

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB images [N, H, W, 3] -> {name: float32 [N, h, w, C]}."""


def last_output(outputs: dict[str, np.ndarray], prefix: str) -> np.ndarray:
  """The output of the last stack / stage among those named `prefix{i}`."""
  indices = [int(name[len(prefix):]) for name in outputs
             if name.startswith(prefix) and name[len(prefix):].isdigit()]
  if not indices:
    raise ValueError(f'model outputs: none named {prefix}<i>, got {sorted(outputs)}')
  return outputs[f'{prefix}{max(indices)}']


def last_heatmaps(outputs: dict[str, np.ndarray]) -> np.ndarray:
  """Hourglass outputs -> the last stack's heatmaps [N, h, w, J]."""
  return last_output(outputs, _HOURGLASS_PREFIX)


def last_maps(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """Lightweight OpenPose outputs -> the last stage's (heatmaps [N, h, w, 19], pafs [N, h, w, 38])."""
  return last_output(outputs, _HEATMAPS_STAGE_PREFIX), last_output(outputs, _PAFS_STAGE_PREFIX)


def arch_from_output_names(names: list[str], source: str) -> str:
  """ONNX output names -> the architecture that has them; ValueError naming `source` otherwise."""
  if any(name.startswith(_HOURGLASS_PREFIX) for name in names):
    return TOPDOWN_ARCH
  if (any(name.startswith(_HEATMAPS_STAGE_PREFIX) for name in names) and
      any(name.startswith(_PAFS_STAGE_PREFIX) for name in names)):
    return BOTTOMUP_ARCH
  raise ValueError(f'{source}: outputs {names} are neither heatmaps_stack<i> (hourglass) nor '
                   'heatmaps_stage<i> + pafs_stage<i> (Lightweight OpenPose); was it written '
                   'by `jaxpose export`?')


def _check_arch(arch: str, expected: str | None, source: str) -> None:
  """Raises ValueError naming `source` when the model is not the `expected` architecture."""
  if expected is not None and arch != expected:
    raise ValueError(f'{source}: the model is {arch!r}, but {expected!r} is needed here '
                     f'({TOPDOWN_ARCH!r} for top-down, {BOTTOMUP_ARCH!r} for bottom-up)')


def _check_images(images: np.ndarray, source: str) -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'{source}: expected images [N, H, W, 3], got shape {images.shape}')
  return images


def padded_batch_size(count: int) -> int:
  """The smallest M >= count of the form 2**k or 3 * 2**k (1, 2, 3, 4, 6, 8, 12, 16, 24, ...).

  The jitted forward pass compiles once per shape and a frame's number of
  people varies: rounding it up bounds the compilations to two per doubling,
  and runs fewer than 1.5x the images (powers of two alone: up to 2x; 5
  people ran as 8, 1.6x the work of onnxruntime's exact batch).
  """
  size = 1 << max(count - 1, 0).bit_length()  # the next power of two
  if size >= 4 and size // 4 * 3 >= count:
    size = size // 4 * 3
  return size


def _padded_batch(images: np.ndarray) -> np.ndarray:
  """Images [N, ...] -> [padded_batch_size(N), ...], zero-padded."""
  count = len(images)
  size = padded_batch_size(count)
  if size == count:
    return images
  padding = np.zeros((size - count, *images.shape[1:]), images.dtype)
  return np.concatenate([images, padding])


class JaxPredictor:
  """A checkpoint in a workdir, run by JAX (see the module docstring)."""

  def __init__(self, workdir: str, step: int | None = None, arch: str | None = None):
    """Restores the checkpoint at `step` (default: the latest) and jits its forward pass.

    Args:
      workdir: written by `jaxpose train` or `jaxpose convert`.
      step: checkpoint step, None for the latest.
      arch: the architecture the caller needs, or None for any.

    Raises:
      FileNotFoundError: no checkpoint in `workdir` (the path is named).
      ValueError: the checkpoint's variables do not fit its model description,
        or the model is not `arch`.
    """
    self.source = os.fspath(workdir)
    if not os.path.isdir(self.source):
      raise FileNotFoundError(f'{self.source}: no such workdir (expected one written by '
                              '`jaxpose train` or `jaxpose convert`)')
    variables, model_config = checkpoint.restore_variables(self.source, step)
    export.check_variables(variables, model_config, source=checkpoint.checkpoint_dir(self.source))
    self._init(variables, model_config, arch)

  @classmethod
  def from_variables(cls, variables: dict, model_config: dict[str, Any], source: str = '<memory>',
                     arch: str | None = None) -> 'JaxPredictor':
    """A predictor for variables already in memory (benchmarks, tests)."""
    predictor = cls.__new__(cls)
    predictor.source = source
    predictor._init(variables, model_config, arch)  # pylint: disable=protected-access
    return predictor

  def _init(self, variables: dict, model_config: dict[str, Any], arch: str | None) -> None:
    self.model_config = dict(model_config)
    self.arch = self.model_config['arch']
    _check_arch(self.arch, arch, self.source)
    self.output_names = export.output_names(self.model_config)
    self.input_size = None
    self.input_multiple = export._INPUT_MULTIPLE[self.arch]  # pylint: disable=protected-access
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    forward = export.inference_fn(variables, self.model_config)
    self._forward: Callable[[jax.Array], tuple[jax.Array, ...]] = jax.jit(
        lambda images: forward(images.astype(jnp.float32)))

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB images [N, H, W, 3] -> {name: float32 [N, h, w, C]}."""
    images = _check_images(images, self.source)
    count = len(images)
    outputs = self._forward(_padded_batch(images))
    return {name: np.asarray(maps)[:count] for name, maps in zip(self.output_names, outputs)}


class OnnxPredictor:
  """An ONNX file from `jaxpose export`, run by onnxruntime on the CPU."""

  def __init__(self, path: str, arch: str | None = None, num_threads: int = 0):
    """Opens `path`; the layout (NHWC or NCHW) and input size come from its input's shape.

    Args:
      path: the .onnx file.
      arch: the architecture the caller needs, or None for any.
      num_threads: onnxruntime intra-op threads, 0 for its default.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: onnxruntime cannot load it, its interface is not
        `jaxpose export`'s, or the model is not `arch`.
    """
    self.source = os.fspath(path)
    if not os.path.isfile(self.source):
      raise FileNotFoundError(f'{self.source}: no such ONNX file')
    try:
      self._session = export.onnx_session(self.source, num_threads)
    except Exception as e:  # onnxruntime raises its own exception types
      raise ValueError(f'{self.source}: onnxruntime cannot load it: {e}') from None
    inputs = self._session.get_inputs()
    if len(inputs) != 1:
      raise ValueError(f'{self.source}: expected one input (images), got '
                       f'{[i.name for i in inputs]}')
    self._input_name = inputs[0].name
    shape = inputs[0].shape
    self.nchw = len(shape) == 4 and shape[1] == 3 and shape[3] != 3
    if len(shape) != 4 or not (self.nchw or shape[3] == 3):
      raise ValueError(f'{self.source}: input {self._input_name} has shape {shape}; expected '
                       '[N, H, W, 3] or [N, 3, H, W]')
    height, width = (shape[2], shape[3]) if self.nchw else (shape[1], shape[2])
    if not (isinstance(height, int) and isinstance(width, int)):
      raise ValueError(f'{self.source}: input {self._input_name} has shape {shape}; '
                       'expected fixed H and W')
    self.input_size = (height, width)
    self.output_names = [output.name for output in self._session.get_outputs()]
    self.arch = arch_from_output_names(self.output_names, self.source)
    _check_arch(self.arch, arch, self.source)
    self.input_multiple = export._INPUT_MULTIPLE[self.arch]  # pylint: disable=protected-access

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB images [N, H, W, 3] -> {name: float32 [N, h, w, C]}."""
    images = _check_images(images, self.source)
    if tuple(images.shape[1:3]) != self.input_size:
      raise ValueError(f'{self.source}: the model takes {self.input_size[0]}x'
                       f'{self.input_size[1]} (H x W) images, got {images.shape[1:3]}')
    pixels = images.astype(np.float32)
    if self.nchw:
      pixels = pixels.transpose(0, 3, 1, 2)
    outputs = self._session.run(self.output_names, {self._input_name: pixels})
    if self.nchw:
      outputs = [maps.transpose(0, 2, 3, 1) for maps in outputs]
    return {name: np.asarray(maps, np.float32) for name, maps in zip(self.output_names, outputs)}


def load(workdir: str | None = None, onnx_path: str | None = None, step: int | None = None,
         arch: str | None = None) -> JaxPredictor | OnnxPredictor:
  """Exactly one of a workdir (JAX) or an ONNX file -> its predictor."""
  if (workdir is None) == (onnx_path is None):
    raise ValueError('give exactly one of a workdir (JAX) or an ONNX file')
  if workdir is not None:
    return JaxPredictor(workdir, step, arch)
  return OnnxPredictor(onnx_path, arch)
