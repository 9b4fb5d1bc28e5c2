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

The model description (`models.describe`: architecture, options, input size,
normalisation and the keypoint layout) is in the file's metadata, under
`DESCRIPTION_KEY`, as JSON: `deploy.predictor.OnnxPredictor` reads it, so
that inference from the ONNX file alone names and draws the keypoints of
the layout the model learnt.

After writing, `export_onnx` runs the file with onnxruntime on a random batch
and fails if any output differs from the JAX model's by more than
`CHECK_TOLERANCE` times that output's largest magnitude.

The graph's interface is the approach's `export_signature`: the recurrent
STAF model (`jaxpose.models.staf`) has the previous frame's heatmaps, PAFs
and TAFs as the extra inputs `previous_heatmaps`, `previous_pafs`,
`previous_tafs` (zeros on a clip's first frame), so that a runtime loops it
frame by frame, feeding each frame's last-stage maps to the next (the
signature's `feedback`); its check runs a clip that way.
"""

from collections.abc import Callable, Iterator, Sequence
import contextlib
import json
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
from jaxpose.models import layers

# Opset 17 has every operator these models need (Conv, BatchNormalization,
# MaxPool, Elu, ...) and is read by onnxruntime >= 1.13 and TensorRT >= 8.6.
DEFAULT_OPSET = 17
# Largest |ONNX - JAX| accepted, relative to the output's largest |JAX| value.
CHECK_TOLERANCE = 1e-4
CHECK_BATCH = 2
INPUT_NAME = 'images'
DESCRIPTION_KEY = predictor.DESCRIPTION_KEY
# The symbolic batch dimension of the input and outputs.
BATCH_DIM = 'N'
class OnnxMismatchError(ValueError):
  """The exported model's outputs differ from the JAX model's."""


def _quiet_onnx_ir():
  """Silences onnx_ir's per-value warnings about symbolic shape helpers it does not serialise."""
  return quiet_logger('onnx_ir.serde')


@contextlib.contextmanager
def quiet_logger(name: str | None = None) -> Iterator[None]:
  """Within the block, the logger `name` (None: the root logger) passes errors only."""
  logger = logging.getLogger(name)
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

  The graph's inputs and outputs are its approach's `export_signature` (one
  `images` input, or with a recurrent model its previous maps too), the
  network its `export_fn`.

  Args:
    variables: {'params', 'batch_stats'} of the model.
    model_config: the model description (`jaxpose.models.model_config`).
    out_path: the .onnx file to write (one file, initializers included).
    input_size: (width, height) of the input; default the size the model
      was trained at (`models.trained_input_size` of `model_config`).
    nchw: input [N, 3, H, W] and outputs [N, C, h, w] instead of channels last.
    last_only: export only the last stack's (stage's) outputs.
    check: run the file with onnxruntime and compare with JAX (`check_onnx`,
      or frame by frame `check_recurrent_onnx` for a recurrent model).
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
  signature = approach.export_signature(
      input_size if input_size is not None else approach.default_input_size,
      nchw=nchw, last_only=last_only)
  forward = approach.export_fn(variables, nchw=nchw, last_only=last_only)
  # ONNX runtimes have fast depthwise and 1x1 convs: trace them as Conv nodes,
  # not as the multiply-adds and matrix products XLA's CPU backend is given.
  with _quiet_onnx_ir(), layers.portable_convs():
    proto = to_onnx(forward, inputs=[(BATCH_DIM, *shape[1:]) for shape in signature.inputs.values()],
                    opset=opset, model_name=f'jaxpose_{model_config["arch"]}',
                    input_names=list(signature.inputs), output_names=signature.outputs)
  if resize_upsampling:
    upsampling_as_resize(proto.graph)
  # The model description travels in the file: a runtime with the ONNX file
  # alone knows the keypoint layout (names, limbs, flip pairs, sigmas), the
  # input size and normalisation it was trained with.
  onnx.helper.set_model_props(proto, {DESCRIPTION_KEY: json.dumps(model_config)})
  # Checked before it takes the name: a failed check leaves any earlier file.
  with files.replacing(out_path) as temporary:
    _save_model(proto, temporary)
    if check:
      check_shape = (CHECK_BATCH, *signature.inputs[INPUT_NAME][1:])
      if signature.feedback:
        errors = check_recurrent_onnx(str(temporary), forward, signature.feedback, check_shape)
      else:
        errors = check_onnx(str(temporary), forward, check_shape)
      _raise_on_mismatch(out_path, errors)
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


def export_workdir(workdir: str, out_path: str, step: int | None = None,
                   check_model: Callable[[dict[str, Any]], None] | None = None, **kwargs) -> str:
  """Exports a checkpoint of a `jaxpose train` / `convert` workdir (latest step by default).

  Keyword arguments are those of `export_onnx`; the input size defaults to
  the one the model was trained at. `check_model` is called with the model
  description before anything is traced or written, to refuse a model that
  a later step cannot take (`quantize.check_quantizable`).
  """
  variables, model_config = checkpoint.restore_variables(workdir, step)
  models.check_variables(variables, model_config, source=checkpoint.checkpoint_dir(workdir))
  if check_model is not None:
    check_model(model_config)
  if kwargs.get('input_size') is None:
    kwargs['input_size'] = models.trained_input_size(model_config)
  return export_onnx(variables, model_config, out_path, **kwargs)


# Frames of the clip `check_recurrent_onnx` runs.
CHECK_FRAMES = 5


def check_recurrent_onnx(path: str, forward: Callable[..., tuple[jax.Array, ...]],
                         feedback: dict[str, str], shape: Sequence[int],
                         num_frames: int = CHECK_FRAMES, seed: int = 0) -> dict[str, float]:
  """Runs a clip of random frames of `shape` through `path` and `forward`, each fed its own outputs.

  Args:
    path: a recurrent export (`export_onnx` of a STAF model).
    forward: the JAX network, with the inputs of `path` in order.
    feedback: output name -> the input it feeds on the next frame
      (`ExportSignature.feedback`); zeros on the first frame.
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
