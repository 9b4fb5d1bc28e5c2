"""A pose model behind one call: uint8 RGB images [N, H, W, 3] -> named numpy outputs.

Two backends with the same interface, so that inference code does not care
where the model lives:

- `JaxPredictor(workdir, step)`: a checkpoint of `jaxpose train` or
  `jaxpose convert`, the eval-mode forward pass jitted once per input shape.
- `OnnxPredictor(path)`: a file written by `jaxpose export`, run by
  onnxruntime on the CPU.

Both return {name: [N, h, w, C] float32} with the names of the ONNX interface
(`Approach.output_names`): `heatmaps_stack{i}` for the stacked hourglass,
`heatmaps_stage{i}` and `pafs_stage{i}` for Lightweight OpenPose. An ONNX file
exported with `--last-only` has only the last ones; inference reads only the
last (`approach.last_maps`). Both carry the `approach` of their model.
"""

from collections.abc import Callable
import json
import os
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import approaches, models
from jaxpose.training import checkpoint

# The metadata entry (ONNX `metadata_props`) of an exported file holding its
# model description as JSON; `deploy.export` writes it.
DESCRIPTION_KEY = 'jaxpose.model_description'


class Predictor(Protocol):
  """What inference needs of a model, whichever backend runs it.

  Attributes:
    source: the workdir or file it was loaded from, for error messages.
    approach: the model's `approaches.TopDown` or `approaches.BottomUp`.
    output_names: the names of the outputs, in order.
    input_size: (width, height) the model was exported for, or None where
      any size (a multiple of `input_multiple`) works.
    input_multiple: H and W must be multiples of this.
  """
  source: str
  approach: approaches.Approach
  output_names: list[str]
  input_size: tuple[int, int] | None
  input_multiple: int

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB images [N, H, W, 3] -> {name: float32 [N, h, w, C]}."""


def _check_approach(approach: approaches.Approach, whole_images: bool, source: str) -> None:
  """Raises ValueError naming `source` when `whole_images` asks for a model that finds people in whole images and this one needs boxes."""
  if whole_images and approach.per_person:
    raise ValueError(f'{source}: the model is {approach.name}, but a model that finds people '
                     'in whole images (bottom-up) is needed here')


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

  def __init__(self, workdir: str, step: int | None = None, whole_images: bool = False):
    """Restores the checkpoint at `step` (default: the latest) and jits its forward pass.

    Args:
      workdir: written by `jaxpose train` or `jaxpose convert`.
      step: checkpoint step, None for the latest.
      whole_images: the caller needs a model that finds people in whole
        images (bottom-up), not one that needs person boxes.

    Raises:
      FileNotFoundError: no checkpoint in `workdir` (the path is named).
      ValueError: the checkpoint's variables do not fit its model description,
        or the model needs boxes where `whole_images` asks otherwise.
    """
    self.source = os.fspath(workdir)
    if not os.path.isdir(self.source):
      raise FileNotFoundError(f'{self.source}: no such workdir (expected one written by '
                              '`jaxpose train` or `jaxpose convert`)')
    variables, model_config = checkpoint.restore_variables(self.source, step)
    models.check_variables(variables, model_config, source=checkpoint.checkpoint_dir(self.source))
    self._init(variables, model_config, whole_images)

  @classmethod
  def from_variables(cls, variables: dict, model_config: dict[str, Any], source: str = '<memory>',
                     whole_images: bool = False) -> 'JaxPredictor':
    """A predictor for variables already in memory (benchmarks, tests)."""
    predictor = cls.__new__(cls)
    predictor.source = source
    predictor._init(variables, model_config, whole_images)  # pylint: disable=protected-access
    return predictor

  def _init(self, variables: dict, model_config: dict[str, Any], whole_images: bool) -> None:
    self.model_config = dict(model_config)
    self.approach = approaches.for_description(self.model_config)
    _check_approach(self.approach, whole_images, self.source)
    self.output_names = self.approach.output_names()
    self.input_size = None
    self.input_multiple = self.approach.input_multiple
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    # Kept for approaches that run the model with state between frames (STAF).
    self.variables = variables
    forward = self.approach.network_fn(variables)
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

  def __init__(self, path: str, whole_images: bool = False, num_threads: int = 0):
    """Opens `path`; the layout (NHWC or NCHW) and input size come from its input's shape.

    Args:
      path: the .onnx file.
      whole_images: the caller needs a model that finds people in whole
        images (bottom-up).
      num_threads: onnxruntime intra-op threads, 0 for its default.

    Raises:
      FileNotFoundError: `path` does not exist.
      ValueError: onnxruntime cannot load it, its interface is not
        `jaxpose export`'s, or the model needs boxes where `whole_images` asks otherwise.
    """
    self.source = os.fspath(path)
    if not os.path.isfile(self.source):
      raise FileNotFoundError(f'{self.source}: no such ONNX file')
    try:
      self._session = onnx_session(self.source, num_threads)
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
    self.input_size = (width, height)
    self.output_names = [output.name for output in self._session.get_outputs()]
    arch = models.arch_of_output_names(self.output_names, self.source)
    # The description `jaxpose export` writes into the file's metadata (the
    # keypoint layout with it); a file without one gets its family's
    # defaults: the graph holds its own options and normalisation.
    metadata = self._session.get_modelmeta().custom_metadata_map
    description = json.loads(metadata.get(DESCRIPTION_KEY, 'null')) or {'arch': arch}
    if models.model_class(description) is not models.model_class({'arch': arch}):
      raise ValueError(f'{self.source}: its metadata describes a {description.get("arch")!r} '
                       f'model, but its outputs are those of {arch!r}')
    self.model_config = description
    self.approach = approaches.for_description(description)
    _check_approach(self.approach, whole_images, self.source)
    self.input_multiple = self.approach.input_multiple

  def feed(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB images [N, H, W, 3] -> onnxruntime's feed: {'images': float32 [N, H, W, 3] (NCHW: [N, 3, H, W])}.

    What `__call__` runs the session on; int8 calibration
    (`deploy.quantize`) feeds the same.
    """
    images = _check_images(images, self.source)
    if tuple(images.shape[2:0:-1]) != self.input_size:
      raise ValueError(f'{self.source}: the model takes {self.input_size[0]}x'
                       f'{self.input_size[1]} (W x H) images, got {images.shape[2]}x'
                       f'{images.shape[1]}')
    pixels = images.astype(np.float32)
    if self.nchw:
      pixels = pixels.transpose(0, 3, 1, 2)
    return {self._input_name: pixels}

  def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB images [N, H, W, 3] -> {name: float32 [N, h, w, C]}."""
    outputs = self._session.run(self.output_names, self.feed(images))
    if self.nchw:
      outputs = [maps.transpose(0, 2, 3, 1) for maps in outputs]
    return {name: np.asarray(maps, np.float32) for name, maps in zip(self.output_names, outputs)}


def onnx_session(path: str, num_threads: int = 0):
  """An onnxruntime CPU session for `path`, all graph optimisations on; 0 threads = ORT's default."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = num_threads
  options.log_severity_level = 3  # errors only
  return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def load_path(path: str, what: str = 'model', whole_images: bool = False
              ) -> 'JaxPredictor | OnnxPredictor':
  """A workdir (a folder) or an exported .onnx file -> its predictor; `what` names it in errors."""
  if os.path.isdir(path):
    return JaxPredictor(path, whole_images=whole_images)
  if path.endswith('.onnx'):
    return OnnxPredictor(path, whole_images)
  raise FileNotFoundError(f'{what} {path}: expected a workdir (a folder) or an .onnx file')


def load(workdir: str | None = None, onnx_path: str | None = None, step: int | None = None,
         whole_images: bool = False) -> JaxPredictor | OnnxPredictor:
  """Exactly one of a workdir (JAX) or an ONNX file -> its predictor."""
  if (workdir is None) == (onnx_path is None):
    raise ValueError('give exactly one of a workdir (JAX) or an ONNX file')
  if workdir is not None:
    return JaxPredictor(workdir, step, whole_images)
  return OnnxPredictor(onnx_path, whole_images)
