"""Orbax checkpoint -> ONNX model, checked against JAX with onnxruntime.

The exported graph is the model in inference mode (BatchNorm with its running
statistics), its parameters stored as initializers, traced by jax2onnx with a
symbolic batch dimension. Its interface:

- one input `images`: float32 [N, H, W, 3] RGB pixel values in 0..255
  (channels last), N dynamic; with `nchw=True`, [N, 3, H, W]. The model's own
  normalisation (from its description: ImageNet mean and std for hourglasses
  trained here, BGR (x - 128) / 256 for Lightweight OpenPose) is inside the
  graph, so a consumer feeds plain RGB pixels. H and W are fixed at export
  (`input_size`, (width, height); by default the size the model was trained
  at, recorded in its description; a converted published checkpoint records
  its upstream's, and a workdir older than the record its family's
  `DEFAULT_INPUT_SIZE`).
- outputs, channels last [N, h, w, C] (with `nchw=True`, [N, C, h, w]):
  `heatmaps_stack{i}` for each hourglass stack (h, w = H/4, W/4), or
  `heatmaps_stage{i}` and `pafs_stage{i}` for each Lightweight OpenPose stage,
  in that order (h, w = H/8, W/8); with `last_only=True` only the last stack or
  stage, still named by its index.

After writing, `export_onnx` runs the file with onnxruntime on a random batch
and fails if any output differs from the JAX model's by more than
`CHECK_TOLERANCE` times that output's largest magnitude.

The recurrent STAF model (`jaxpose.models.staf`) is written by
`export_recurrent_onnx`, with the previous frame's heatmaps, PAFs and TAFs as
the extra inputs `previous_heatmaps`, `previous_pafs`, `previous_tafs` (zeros
on a clip's first frame), so that a runtime loops it frame by frame, feeding
each frame's last-stage maps to the next (`recurrent_feedback`); its check runs
a clip that way.
"""

from collections.abc import Callable, Iterator, Sequence
import contextlib
import logging
import os
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import onnx

from jaxpose import approaches, files, models
from jaxpose.training import checkpoint
from jaxpose.deploy import predictor
from jaxpose.models import layers, staf
from jaxpose.models.normalization import Normalization

# Opset 17 has every operator these models need (Conv, BatchNormalization,
# MaxPool, Elu, ...) and is read by onnxruntime >= 1.13 and TensorRT >= 8.6.
DEFAULT_OPSET = 17
# Largest |ONNX - JAX| accepted, relative to the output's largest |JAX| value.
CHECK_TOLERANCE = 1e-4
CHECK_BATCH = 2
INPUT_NAME = 'images'
# The symbolic batch dimension of the input and outputs.
BATCH_DIM = 'N'
class OnnxMismatchError(ValueError):
  """The exported model's outputs differ from the JAX model's."""


def _input_shape(approach, input_size: Sequence[int] | None, nchw: bool
                 ) -> tuple[int, int, int, int]:
  """[N, H, W, 3] (or [N, 3, H, W]) with N = 1 for `input_size` (width, height), checked against the model."""
  width, height = approach.check_input_size(
      input_size if input_size is not None else approach.default_input_size)
  return (1, 3, height, width) if nchw else (1, height, width, 3)


@contextlib.contextmanager
def _quiet_onnx_ir() -> Iterator[None]:
  """Silences onnx_ir's per-value warnings about symbolic shape helpers it does not serialise."""
  logger = logging.getLogger('onnx_ir.serde')
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def export_onnx(variables: dict, model_config: dict[str, Any], out_path: str, *,
                input_size: Sequence[int] | None = None, nchw: bool = False,
                last_only: bool = False, check: bool = True,
                opset: int = DEFAULT_OPSET, resize_upsampling: bool = True) -> str:
  """Writes the model described by `model_config` with `variables` as ONNX; returns `out_path`.

  Args:
    variables: {'params', 'batch_stats'} of the model.
    model_config: the model description (`jaxpose.models.model_config`).
    out_path: the .onnx file to write (one file, initializers included).
    input_size: (width, height) of the input; default the size the model
      was trained at (`models.trained_input_size` of `model_config`).
    nchw: input [N, 3, H, W] and outputs [N, C, h, w] instead of channels last.
    last_only: export only the last stack's (stage's) outputs.
    check: run the file with onnxruntime and compare with JAX (`check_onnx`).
    opset: ONNX opset to target.
    resize_upsampling: rewrite nearest upsampling as Resize
      (`upsampling_as_resize`); False keeps the graph as jax2onnx traced it.

  Raises:
    ValueError: on a bad model description or input size.
    OnnxMismatchError: if `check` finds an output off by more than `CHECK_TOLERANCE`.
  """
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  approach = approaches.for_description(model_config)
  forward = approach.network_fn(variables, nchw=nchw, last_only=last_only)
  shape = _input_shape(approach, input_size, nchw)
  names = approach.output_names(last_only)
  # ONNX runtimes have fast depthwise and 1x1 convs: trace them as Conv nodes,
  # not as the multiply-adds and matrix products XLA's CPU backend is given.
  with _quiet_onnx_ir(), layers.portable_convs():
    proto = to_onnx(forward, inputs=[(BATCH_DIM, *shape[1:])], opset=opset,
                    model_name=f'jaxpose_{model_config["arch"]}',
                    input_names=[INPUT_NAME], output_names=names)
  if resize_upsampling:
    upsampling_as_resize(proto.graph)
  # Checked before it takes the name: a failed check leaves any earlier file.
  with files.replacing(out_path) as temporary:
    _save_model(proto, temporary)
    if check:
      _raise_on_mismatch(out_path, check_onnx(str(temporary), forward,
                                              (CHECK_BATCH, *shape[1:])))
  return out_path


def _save_model(proto: onnx.ModelProto, out_path: str | os.PathLike) -> None:
  """Writes `proto` to `out_path`, creating its folder."""
  # jax2onnx leaves value_info of the layout it traced before it removed
  # transposes (NHWC shapes on NCHW values); onnxruntime infers shapes itself
  # and would warn about every mismatch.
  del proto.graph.value_info[:]
  out_dir = os.path.dirname(os.path.abspath(out_path))
  os.makedirs(out_dir, exist_ok=True)
  onnx.save_model(proto, os.fspath(out_path))


def onnx_inputs(path: str | os.PathLike) -> dict[str, list[int | str]]:
  """An ONNX file -> {input name: its shape}, a symbolic dimension by its name ('N')."""
  graph = onnx.load(os.fspath(path), load_external_data=False).graph
  return {value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
          for value in graph.input}


def _raise_on_mismatch(out_path: str, errors: dict[str, float]) -> None:
  """Prints each output's relative error; OnnxMismatchError naming those over `CHECK_TOLERANCE`."""
  for name, error in errors.items():
    print(f'{out_path}: {name}: max |onnx - jax| / max |jax| = {error:.2e}', file=sys.stderr)
  bad = {name: error for name, error in errors.items() if not error <= CHECK_TOLERANCE}
  if bad:
    raise OnnxMismatchError(
        f'{out_path}: onnxruntime output(s) differ from JAX by more than '
        f'{CHECK_TOLERANCE:g} of their largest value: '
        + ', '.join(f'{name} {error:.2e}' for name, error in bad.items()))


def _static_shapes(graph: onnx.GraphProto) -> dict[str, list[int | str]]:
  """Value name -> shape, from the value_info jax2onnx writes (symbolic dims as names)."""
  return {value.name: [dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim]
          for value in graph.value_info}


def upsampling_as_resize(graph: onnx.GraphProto) -> int:
  """Rewrites each nearest 2x upsampling as one Resize; returns how many.

  `upsample_nearest_2x` traces to Reshape [N, h, 1, w, 1, C] -> Expand ->
  Reshape [N, 2h, 2w, C], with Shape arithmetic for the dynamic batch. Those
  are channels-last ops between channels-first convs, so onnxruntime converts
  the layout around each of them; Resize (nearest, floor of out / 2: the same
  pixels) is one op that its NCHW kernels run in place. Channels-last
  Transposes keep the graph's other nodes as they are; onnxruntime folds
  them into their neighbours.
  """
  shapes = _static_shapes(graph)
  producers = {out: node for node in graph.node for out in node.output}
  rewritten = 0
  for node in list(graph.node):
    if node.op_type != 'Reshape':
      continue
    expanded = producers.get(node.input[0])  # the broadcast, in one or more Expands
    source = expanded
    while source is not None and source.op_type == 'Expand':
      source = producers.get(source.input[0])
    if expanded is source or source is None or source.op_type != 'Reshape':
      continue
    image = source.input[0]
    if len(shapes.get(image, ())) != 4:
      continue
    n, h, w, c = shapes[image]
    if not all(isinstance(size, int) for size in (h, w, c)):
      continue
    if (shapes.get(source.output[0]) != [n, h, 1, w, 1, c]
        or shapes.get(expanded.output[0]) != [n, h, 2, w, 2, c]
        or shapes.get(node.output[0]) != [n, 2 * h, 2 * w, c]):
      continue
    name = node.output[0]
    scales = onnx.helper.make_tensor(f'{name}_scales', onnx.TensorProto.FLOAT, [4],
                                     [1.0, 1.0, 2.0, 2.0])
    graph.initializer.append(scales)
    replacement = [
        onnx.helper.make_node('Transpose', [image], [f'{name}_nchw'], perm=(0, 3, 1, 2)),
        onnx.helper.make_node('Resize', [f'{name}_nchw', '', scales.name], [f'{name}_up'],
                              mode='nearest', coordinate_transformation_mode='asymmetric',
                              nearest_mode='floor'),
        onnx.helper.make_node('Transpose', [f'{name}_up'], [name], perm=(0, 2, 3, 1)),
    ]
    position = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new_node in enumerate(replacement):
      graph.node.insert(position + offset, new_node)
    rewritten += 1
  if rewritten:
    _remove_dead_nodes(graph)
  return rewritten


def _remove_dead_nodes(graph: onnx.GraphProto) -> None:
  """Drops nodes whose outputs nothing reads (the upsampling's Expand and Shape arithmetic)."""
  while True:
    used = {name for node in graph.node for name in node.input}
    used |= {output.name for output in graph.output}
    dead = [node for node in graph.node if not any(out in used for out in node.output)]
    if not dead:
      return
    for node in dead:
      graph.node.remove(node)


def check_onnx(path: str, forward: Callable[[jax.Array], tuple[jax.Array, ...]],
               shape: Sequence[int], seed: int = 0) -> dict[str, float]:
  """Runs `path` and `forward` on random pixels of `shape`; output name -> max |onnx - jax| / max |jax|."""
  images = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
  session = predictor.onnx_session(path)
  names = [output.name for output in session.get_outputs()]
  ours = session.run(names, {INPUT_NAME: images})
  expected = jax.jit(forward)(images)
  if len(expected) != len(ours):
    raise OnnxMismatchError(f'{path}: {len(ours)} outputs, JAX gives {len(expected)}')
  return {name: _relative_error(path, name, onnx_out, jax_out)
          for name, onnx_out, jax_out in zip(names, ours, expected)}


def _relative_error(path: str, name: str, onnx_out: np.ndarray, jax_out: jax.Array) -> float:
  """max |onnx - jax| / max |jax| of output `name`; OnnxMismatchError if the shapes differ."""
  jax_out = np.asarray(jax_out)
  if onnx_out.shape != jax_out.shape:
    raise OnnxMismatchError(f'{path}: output {name} has shape {onnx_out.shape}, '
                            f'JAX gives {jax_out.shape}')
  scale = max(float(np.abs(jax_out).max()), np.finfo(np.float32).tiny)
  return float(np.abs(onnx_out - jax_out).max()) / scale


def export_workdir(workdir: str, out_path: str, step: int | None = None, **kwargs) -> str:
  """Exports a checkpoint of a `jaxpose train` / `convert` workdir (latest step by default).

  Keyword arguments are those of `export_onnx`. A STAF model is written by
  `export_recurrent_onnx` (channels last only), with its own normalisation.
  """
  variables, model_config = checkpoint.restore_variables(workdir, step)
  models.check_variables(variables, model_config, source=checkpoint.checkpoint_dir(workdir))
  model = models.create_model(model_config)
  if kwargs.get('input_size') is None:
    kwargs['input_size'] = models.trained_input_size(model_config)
  if not isinstance(model, staf.StafOpenPose):
    return export_onnx(variables, model_config, out_path, **kwargs)
  if kwargs.pop('nchw', False):
    raise ValueError(f'{workdir}: the recurrent STAF model is exported channels last only')
  kwargs.pop('resize_upsampling', None)  # it has no upsampling
  return export_recurrent_onnx(variables, model, out_path,
                               normalization=models.input_normalization(model_config), **kwargs)


# The recurrent (STAF) model: the previous frame's maps are extra inputs.
PREVIOUS_PREFIX = 'previous_'
# Frames of the clip `check_recurrent_onnx` runs.
CHECK_FRAMES = 5


def recurrent_feedback(model: staf.StafOpenPose) -> dict[str, str]:
  """Output name -> the input of the next frame it feeds: `{map}_stage{last}` -> `previous_{map}`."""
  return {model.last_stage_name(name): PREVIOUS_PREFIX + name for name in staf.RECURRENT_MAPS}


def recurrent_network_fn(variables: dict, model: staf.StafOpenPose, normalization: Normalization,
                         last_only: bool = False) -> tuple[Callable[..., tuple], list[str]]:
  """The eval-mode recurrent network and its output names.

  forward(images, previous heatmaps, pafs, tafs): RGB pixels [N, H, W, 3] and
  the previous frame's last-stage maps [N, H/8, W/8, C] (zeros on a clip's
  first frame) -> this frame's outputs [N, H/8, W/8, C] in the order of the
  names: every stage's heatmaps and PAFs and the TAFs, or with `last_only`
  the last stage's heatmaps, PAFs and TAFs.
  """
  names = list(recurrent_feedback(model)) if last_only else model.output_names

  def forward(images: jax.Array, *previous: jax.Array) -> tuple[jax.Array, ...]:
    outputs = model.apply(variables, normalization.normalize(images),
                          dict(zip(staf.RECURRENT_MAPS, previous, strict=True)), train=False)
    # A copy per output, as `Approach.network_fn` does: the last stage's
    # maps also feed the TAF stage.
    return tuple(jnp.copy(outputs[name]) for name in names)

  return forward, names


def export_recurrent_onnx(variables: dict, model: staf.StafOpenPose, out_path: str, *,
                          normalization: Normalization | None = None,
                          input_size: Sequence[int] | None = None, last_only: bool = False,
                          check: bool = True, opset: int = DEFAULT_OPSET) -> str:
  """Writes the recurrent STAF model as ONNX, run frame by frame; returns `out_path`.

  Inputs: `images` [N, H, W, 3] RGB pixels 0..255 (normalised inside the
  graph, as by `export_onnx`), and `previous_heatmaps`, `previous_pafs`,
  `previous_tafs` [N, H/8, W/8, C]: the previous frame's outputs named in
  `recurrent_feedback`, zeros on a clip's first frame. Outputs as
  `recurrent_network_fn`'s, channels last; N is dynamic, H and W fixed.

  Args:
    variables: {'params', 'batch_stats'} of `model`.
    model: the STAF model (`jaxpose.models.staf.StafOpenPose`).
    out_path: the .onnx file to write.
    normalization: the input normalisation its weights were trained with;
      default the family's `DEFAULT_NORMALIZATION`.
    input_size: (width, height); default the family's `DEFAULT_INPUT_SIZE`.
    last_only: only the last stage's maps (those fed back) as outputs.
    check: run a `CHECK_FRAMES`-frame clip with onnxruntime and JAX, each fed
      its own outputs (`check_recurrent_onnx`).
    opset: ONNX opset to target.

  Raises:
    ValueError: on an input size that is not a positive multiple of 8.
    OnnxMismatchError: if `check` finds an output off by more than `CHECK_TOLERANCE`.
  """
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  width, height = (int(size) for size in (input_size or model.DEFAULT_INPUT_SIZE))
  if width <= 0 or height <= 0 or width % model.input_multiple or height % model.input_multiple:
    raise ValueError(f'input_size: the STAF model needs a width and height that are positive '
                     f'multiples of {model.input_multiple}, got {width}x{height} (W x H)')
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  forward, names = recurrent_network_fn(
      variables, model, normalization or model.DEFAULT_NORMALIZATION, last_only)
  previous_shapes = model.previous_shapes(1, height, width)
  inputs = [(BATCH_DIM, height, width, 3)] + [
      (BATCH_DIM, *previous_shapes[name][1:]) for name in staf.RECURRENT_MAPS]
  input_names = [INPUT_NAME] + [PREVIOUS_PREFIX + name for name in staf.RECURRENT_MAPS]
  with _quiet_onnx_ir(), layers.portable_convs():
    proto = to_onnx(forward, inputs=inputs, opset=opset, model_name='jaxpose_staf',
                    input_names=input_names, output_names=names)
  with files.replacing(out_path) as temporary:
    _save_model(proto, temporary)
    if check:
      _raise_on_mismatch(out_path, check_recurrent_onnx(
          str(temporary), forward, recurrent_feedback(model), (CHECK_BATCH, height, width, 3)))
  return out_path


def check_recurrent_onnx(path: str, forward: Callable[..., tuple[jax.Array, ...]],
                         feedback: dict[str, str], shape: Sequence[int],
                         num_frames: int = CHECK_FRAMES, seed: int = 0) -> dict[str, float]:
  """Runs a clip of random frames of `shape` through `path` and `forward`, each fed its own outputs.

  Args:
    path: a recurrent export (`export_recurrent_onnx`).
    forward: the JAX network, with the inputs of `path` in order.
    feedback: output name -> the input it feeds on the next frame
      (`recurrent_feedback`); zeros on the first frame.
    shape: [N, H, W, 3] of each frame.
    num_frames: frames of the clip.
    seed: of the random pixels.

  Returns:
    Output name -> the largest over the frames of max |onnx - jax| / max |jax|.
  """
  rng = np.random.default_rng(seed)
  session = predictor.onnx_session(path)
  names = [output.name for output in session.get_outputs()]
  input_names = [value.name for value in session.get_inputs()]
  # Zeros of each previous input's shape, the batch dimension set to the clip's.
  ours = {value.name: np.zeros((shape[0], *value.shape[1:]), np.float32)
          for value in session.get_inputs()[1:]}
  theirs = dict(ours)
  errors = dict.fromkeys(names, 0.0)
  run = jax.jit(forward)
  for _ in range(num_frames):
    images = rng.uniform(0, 255, shape).astype(np.float32)
    onnx_outputs = dict(zip(names, session.run(names, {INPUT_NAME: images, **ours})))
    jax_outputs = dict(zip(names, run(images, *(theirs[name] for name in input_names[1:]))))
    for name in names:
      errors[name] = max(errors[name], _relative_error(path, name, onnx_outputs[name],
                                                       jax_outputs[name]))
    ours = {feedback[name]: onnx_outputs[name] for name in feedback}
    theirs = {feedback[name]: np.asarray(jax_outputs[name]) for name in feedback}
  return errors
