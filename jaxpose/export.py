"""Orbax checkpoint -> ONNX model, checked against JAX with onnxruntime.

The exported graph is the model in inference mode (BatchNorm with its running
statistics), its parameters stored as initializers, traced by jax2onnx with a
symbolic batch dimension. Its interface:

- one input `images`: float32 [N, H, W, 3] RGB pixel values in 0..255
  (channels last), N dynamic; with `nchw=True`, [N, 3, H, W]. The model's own
  normalisation (`jaxpose.models.normalize_images`: ImageNet mean and std for
  the hourglass, BGR (x - 128) / 256 for Lightweight OpenPose) is inside the
  graph, so a consumer feeds plain RGB pixels. H and W are fixed at export
  (`input_size`; by default 256x256 for the hourglass and 256x456 (H x W) for
  Lightweight OpenPose).
- outputs, channels last [N, h, w, C] (with `nchw=True`, [N, C, h, w]):
  `heatmaps_stack{i}` for each hourglass stack (h, w = H/4, W/4), or
  `heatmaps_stage{i}` and `pafs_stage{i}` for each Lightweight OpenPose stage,
  in that order (h, w = H/8, W/8); with `last_only=True` only the last stack or
  stage, still named by its index.

After writing, `export_onnx` runs the file with onnxruntime on a random batch
and fails if any output differs from the JAX model's by more than
`CHECK_TOLERANCE` times that output's largest magnitude.
"""

import argparse
from collections.abc import Callable, Iterator, Sequence
import contextlib
import logging
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import onnx

from jaxpose import checkpoint, models
from jaxpose.models import hourglass, openpose

# Opset 17 has every operator these models need (Conv, BatchNormalization,
# MaxPool, Elu, ...) and is read by onnxruntime >= 1.13 and TensorRT >= 8.6.
DEFAULT_OPSET = 17
# Largest |ONNX - JAX| accepted, relative to the output's largest |JAX| value.
CHECK_TOLERANCE = 1e-4
CHECK_BATCH = 2
INPUT_NAME = 'images'
# The symbolic batch dimension of the input and outputs.
BATCH_DIM = 'N'
# (H, W) exported when `input_size` is not given.
DEFAULT_INPUT_SIZE = {'hourglass': (256, 256), 'lightweight_openpose': (256, 456)}
# H and W must be multiples of the total downsampling: the hourglass's stem
# (4) times its 2**depth pooling levels; OpenPose's backbone stride.
_INPUT_MULTIPLE = {'hourglass': 4 * 2**hourglass.HOURGLASS_DEPTH,
                   'lightweight_openpose': openpose.STRIDE}


class OnnxMismatchError(ValueError):
  """The exported model's outputs differ from the JAX model's."""


def output_names(model_config: dict[str, Any], last_only: bool = False) -> list[str]:
  """The ONNX output names, in output order, for a model description."""
  arch = model_config.get('arch')
  if arch == 'hourglass':
    num_stacks = model_config.get('num_stacks', models.ARCHITECTURES[arch].num_stacks)
    names = [f'heatmaps_stack{i}' for i in range(num_stacks)]
    return names[-1:] if last_only else names
  if arch == 'lightweight_openpose':
    num_stages = 1 + model_config.get('num_refinement_stages',
                                      models.ARCHITECTURES[arch].num_refinement_stages)
    stages = range(num_stages - 1, num_stages) if last_only else range(num_stages)
    return [name for i in stages for name in (f'heatmaps_stage{i}', f'pafs_stage{i}')]
  raise ValueError(f'model config: field "arch" is {arch!r}, expected one of '
                   f'{sorted(models.ARCHITECTURES)}')


def inference_fn(variables: dict, model_config: dict[str, Any], *, nchw: bool = False,
                 last_only: bool = False, cpu_convs: bool | None = None
                 ) -> Callable[[jax.Array], tuple[jax.Array, ...]]:
  """The function that is exported: RGB pixels [N, H, W, 3] -> tuple of outputs [N, h, w, C].

  With `nchw`, images [N, 3, H, W] -> outputs [N, C, h, w]. The outputs are in
  the order of `output_names`. `cpu_convs` chooses how 1x1 and depthwise
  convs compute (the models' `cpu_convs`; export keeps them convs).
  """
  model = models.create_model(model_config, cpu_convs=cpu_convs)
  arch = model_config['arch']

  def forward(images: jax.Array) -> tuple[jax.Array, ...]:
    if nchw:
      images = jnp.transpose(images, (0, 2, 3, 1))
    outputs = model.apply(variables, models.normalize_images(images, arch), train=False)
    if arch == 'lightweight_openpose':  # [(heatmaps, pafs), ...] -> flat
      outputs = [maps for stage in outputs for maps in stage]
      outputs = outputs[-2:] if last_only else outputs
    else:
      outputs = outputs[-1:] if last_only else outputs
    if nchw:
      outputs = [jnp.transpose(maps, (0, 3, 1, 2)) for maps in outputs]
    # jax2onnx 0.17.1 folds inverse Transpose pairs without counting graph
    # outputs as consumers: an intermediate stack's heatmaps, which also feed
    # the next stack, would lose the Transpose that produces the graph output
    # and leave it dangling. A copy (an ONNX Identity) gives every output a
    # node of its own.
    return tuple(jnp.copy(maps) for maps in outputs)

  return forward


def _input_shape(model_config: dict[str, Any], input_size: Sequence[int] | None,
                 nchw: bool) -> tuple[int, int, int, int]:
  """[N, H, W, 3] (or [N, 3, H, W]) with N = 1, checked against the architecture's stride."""
  arch = model_config['arch']
  height, width = input_size if input_size is not None else DEFAULT_INPUT_SIZE[arch]
  multiple = _INPUT_MULTIPLE[arch]
  if height % multiple or width % multiple or height <= 0 or width <= 0:
    raise ValueError(f'input_size: {arch} needs H and W positive multiples of '
                     f'{multiple}, got {height}x{width}')
  return (1, 3, height, width) if nchw else (1, height, width, 3)


def check_variables(variables: dict, model_config: dict[str, Any], source: str) -> None:
  """Raises ValueError naming `source` unless `variables` fit the described model exactly."""
  try:
    model = models.create_model(model_config)
  except ValueError as e:
    raise ValueError(f'{source}: {e}') from None
  shape = _input_shape(model_config, None, nchw=False)
  expected = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  expected = flax.traverse_util.flatten_dict(flax.core.unfreeze(expected), sep='/')
  found = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables), sep='/')
  for name, leaf in expected.items():
    if name not in found:
      raise ValueError(f'{source}: checkpoint has no variable {name!r} (shape {leaf.shape}) '
                       f'that the model {model_config} needs; was it written for another '
                       'architecture?')
    if tuple(np.shape(found[name])) != leaf.shape:
      raise ValueError(f'{source}: variable {name!r} has shape {np.shape(found[name])}, '
                       f'the model {model_config} expects {leaf.shape}')
  unknown = sorted(set(found) - set(expected))
  if unknown:
    raise ValueError(f'{source}: {len(unknown)} variable(s) that the model {model_config} '
                     f'does not have, first {unknown[0]!r}; was it written for another '
                     'architecture?')


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
    input_size: (H, W) of the input; default `DEFAULT_INPUT_SIZE[arch]`.
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
  # ONNX runtimes have fast depthwise and 1x1 convs: export them as Conv
  # nodes, not as the multiply-adds and matrix products XLA's CPU backend is given.
  forward = inference_fn(variables, model_config, nchw=nchw, last_only=last_only,
                         cpu_convs=False)
  shape = _input_shape(model_config, input_size, nchw)
  names = output_names(model_config, last_only)
  with _quiet_onnx_ir():
    proto = to_onnx(forward, inputs=[(BATCH_DIM, *shape[1:])], opset=opset,
                    model_name=f'jaxpose_{model_config["arch"]}',
                    input_names=[INPUT_NAME], output_names=names)
  if resize_upsampling:
    upsampling_as_resize(proto.graph)
  # jax2onnx leaves value_info of the layout it traced before it removed
  # transposes (NHWC shapes on NCHW values); onnxruntime infers shapes itself
  # and would warn about every mismatch.
  del proto.graph.value_info[:]
  out_dir = os.path.dirname(os.path.abspath(out_path))
  os.makedirs(out_dir, exist_ok=True)
  onnx.save_model(proto, out_path)
  if check:
    errors = check_onnx(out_path, forward, (CHECK_BATCH, *shape[1:]))
    for name, error in errors.items():
      print(f'{out_path}: {name}: max |onnx - jax| / max |jax| = {error:.2e}')
    bad = {name: error for name, error in errors.items() if not error <= CHECK_TOLERANCE}
    if bad:
      raise OnnxMismatchError(
          f'{out_path}: onnxruntime output(s) differ from JAX by more than '
          f'{CHECK_TOLERANCE:g} of their largest value: '
          + ', '.join(f'{name} {error:.2e}' for name, error in bad.items()))
  return out_path


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


def onnx_session(path: str, num_threads: int = 0):
  """An onnxruntime CPU session for `path`, all graph optimisations on; 0 threads = ORT's default."""
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
  options.intra_op_num_threads = num_threads
  options.log_severity_level = 3  # errors only
  return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def check_onnx(path: str, forward: Callable[[jax.Array], tuple[jax.Array, ...]],
               shape: Sequence[int], seed: int = 0) -> dict[str, float]:
  """Runs `path` and `forward` on random pixels of `shape`; output name -> max |onnx - jax| / max |jax|."""
  images = np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)
  session = onnx_session(path)
  names = [output.name for output in session.get_outputs()]
  ours = session.run(names, {INPUT_NAME: images})
  expected = jax.jit(forward)(images)
  if len(expected) != len(ours):
    raise OnnxMismatchError(f'{path}: {len(ours)} outputs, JAX gives {len(expected)}')
  errors = {}
  for name, onnx_out, jax_out in zip(names, ours, expected):
    jax_out = np.asarray(jax_out)
    if onnx_out.shape != jax_out.shape:
      raise OnnxMismatchError(f'{path}: output {name} has shape {onnx_out.shape}, '
                              f'JAX gives {jax_out.shape}')
    scale = max(float(np.abs(jax_out).max()), np.finfo(np.float32).tiny)
    errors[name] = float(np.abs(onnx_out - jax_out).max()) / scale
  return errors


def export_workdir(workdir: str, out_path: str, step: int | None = None, **kwargs) -> str:
  """Exports a checkpoint of a `jaxpose train` / `convert` workdir (latest step by default).

  Keyword arguments are those of `export_onnx`.
  """
  variables, model_config = checkpoint.restore_variables(workdir, step)
  check_variables(variables, model_config, source=checkpoint.checkpoint_dir(workdir))
  return export_onnx(variables, model_config, out_path, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """The flags of `jaxpose export`."""
  parser.add_argument('--workdir', required=True,
                      help='workdir written by `jaxpose train` or `jaxpose convert`')
  parser.add_argument('--step', type=int, default=None,
                      help='checkpoint step (default: the latest)')
  parser.add_argument('--out', required=True, help='.onnx file to write')
  parser.add_argument('--nchw', action='store_true',
                      help='input [N, 3, H, W] and outputs [N, C, h, w] (default: channels last)')
  parser.add_argument('--last-only', action='store_true',
                      help='export only the last stack / stage')
  parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'), default=None,
                      help='input height and width (default: 256 256 for hourglass, '
                      '256 456 for Lightweight OpenPose)')
  parser.add_argument('--opset', type=int, default=DEFAULT_OPSET, help='ONNX opset')


def run_export(args: argparse.Namespace) -> None:
  """`jaxpose export`: workdir -> .onnx, checked against JAX."""
  path = export_workdir(args.workdir, args.out, step=args.step, input_size=args.input_size,
                        nchw=args.nchw, last_only=args.last_only, opset=args.opset)
  print(f'{args.workdir} -> {path} ({os.path.getsize(path) / 2**20:.1f} MiB)')
