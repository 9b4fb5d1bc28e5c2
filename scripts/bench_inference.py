"""Benchmark: inference latency of exported models, jaxpose's ONNX vs PyTorch's ONNX.

ONNX section: for each architecture, the PyTorch reference model of
tests/torch_*.py with random weights (eval mode), exported by
`torch.onnx.export`, and the same weights converted with
`jaxpose.deploy.convert.variables_from_torch` and exported by `jaxpose.deploy.export`
(channels last, and with `nchw=True`). Both graphs compute the same function:
the PyTorch model is wrapped with the same input normalisation that jaxpose
puts inside its graph, so every model takes RGB pixels 0..255. The script
checks that the outputs agree, then times onnxruntime on one image (batch 1):
the median (and best) of --repeats runs, the models interleaved run by run,
every session with the same options and thread count.

- hourglass: 2 stacks, 1 block, 256 channels (upstream's width), 16 joints,
  256x256 input;
- Lightweight OpenPose: 1 refinement stage, 256x456 input;
- CMU OpenPose (the PyTorch port's `bodypose_model`, whose forward returns
  the last stage only; jaxpose exports the last stage too): 184x248 input,
  the port's `body.py` scale 0.5 of its 368 box.
- mmpose hourglass52 (`HourglassNet` 1 stack + `CPMHead`, 17 joints,
  tests/torch_mmpose_hourglass.py): 256x256, mmpose's (RGB - mean) / std.

Each section is one function of (args, scratch folder), called from `main`,
so that others (e.g. video frames per second) can be added beside this one.

Usage: python scripts/bench_inference.py [--repeats 50] [--threads 2] [--families hourglass,openpose]
(families: hourglass, lightweight_openpose, openpose, mmpose_hourglass)
"""

import argparse
import collections
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch

from timing import interleaved_times, onnx_session  # scripts/timing.py
from jaxpose import models
from jaxpose.deploy import convert
from jaxpose.deploy import export

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import torch_cmu_openpose  # pylint: disable=g-import-not-at-top
import torch_hourglass  # pylint: disable=g-import-not-at-top
import torch_mmpose_hourglass  # pylint: disable=g-import-not-at-top
import torch_openpose  # pylint: disable=g-import-not-at-top

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
OPSET = export.DEFAULT_OPSET


class PixelInput(torch.nn.Module):
  """RGB pixels [N, 3, H, W] -> the wrapped model's input, as `models.normalize_images` does."""

  def __init__(self, model: torch.nn.Module, arch: str):
    super().__init__()
    self.model = model
    self.arch = arch
    self.register_buffer('mean', torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer('std', torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
    self.register_buffer('mmpose_mean', torch.tensor(torch_mmpose_hourglass.MEAN).view(1, 3, 1, 1))
    self.register_buffer('mmpose_std', torch.tensor(torch_mmpose_hourglass.STD).view(1, 3, 1, 1))

  def forward(self, images):
    if self.arch == 'hourglass':
      return self.model((images / 255.0 - self.mean) / self.std)
    if self.arch == 'mmpose_hourglass':  # mmpose's data preprocessor, on RGB
      return self.model((images - self.mmpose_mean) / self.mmpose_std)
    if self.arch == 'openpose':  # the port's body.py: BGR / 256 - 0.5; (pafs, heatmaps) out
      pafs, heatmaps = self.model(images.flip(1) / 256.0 - 0.5)
      return heatmaps, pafs
    return self.model((images.flip(1) - 128.0) / 256.0)  # BGR, as upstream


def reference_models() -> list[tuple[str, dict, torch.nn.Module, tuple[int, int], bool]]:
  """[(label, jaxpose model config, randomised PyTorch model, (H, W), last stage only)]."""
  return [
      ('hourglass 2x256, 256x256',
       {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1, 'num_joints': 16},
       torch_hourglass.randomize(torch_hourglass.HourglassNet(2, 1, num_classes=16)),
       (256, 256), False),
      ('Lightweight OpenPose, 256x456',
       {'arch': 'lightweight_openpose', 'num_refinement_stages': 1},
       torch_openpose.randomize(
           torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages=1)),
       (256, 456), False),
      ('CMU OpenPose body, 184x248',
       {'arch': 'openpose'},
       torch_cmu_openpose.randomize(torch_cmu_openpose.BodyPoseModel()),
       (184, 248), True),
      ('mmpose hourglass52, 256x256',
       {'arch': 'mmpose_hourglass', 'num_stacks': 1, 'num_joints': 17},
       torch_mmpose_hourglass.randomize(torch_mmpose_hourglass.MmposeTopdown(1, 17)),
       (256, 256), False),
  ]


def export_torch(model: torch.nn.Module, arch: str, size: tuple[int, int], path: str) -> str:
  """PyTorch model -> ONNX with input `images` [N, 3, H, W] pixels and a dynamic batch."""
  wrapped = PixelInput(model, arch).eval()
  # The TorchScript exporter: the torch.export-based default needs onnxscript,
  # which jaxpose does not depend on (its deprecation warning is silenced).
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', DeprecationWarning)
    torch.onnx.export(wrapped, (torch.zeros(1, 3, *size),), path, dynamo=False,
                      opset_version=OPSET, input_names=['images'],
                      dynamic_axes={'images': {0: 'N'}})
  return path


def op_counts(path: str, ops: tuple[str, ...]) -> str:
  """How many of each of `ops` an ONNX file has, as 'Transpose 3, ...'."""
  counts = collections.Counter(node.op_type for node in onnx.load(path).graph.node)
  return ', '.join(f'{op} {counts[op]}' for op in ops if counts[op]) or 'none'


# Ops that cost time beyond the convs: layout changes, un-fused BatchNorm,
# upsampling and the shape arithmetic of a dynamic batch.
EXPORTED_OPS = ('Conv', 'BatchNormalization', 'Transpose', 'Resize', 'Expand', 'Pad', 'Gather',
                'Reshape')
# What onnxruntime runs after its optimisations: NCHWc layout conversions
# (Reorder*) and Transposes that it could not fold away.
RUNTIME_OPS = ('Transpose', 'ReorderInput', 'ReorderOutput', 'BatchNormalization', 'Expand')


def max_relative_error(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
  """Largest max |a - b| / max |b| over the outputs."""
  return max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, theirs))


def onnx_section(args: argparse.Namespace, workdir: str) -> None:
  """jaxpose's ONNX (NHWC and NCHW input) against PyTorch's, latency at batch 1."""
  print(f'onnxruntime {ort.__version__}, torch {torch.__version__}, opset {OPSET}, '
        f'{os.cpu_count()} CPU cores, intra-op threads {args.threads}, batch 1, '
        f'{args.repeats} interleaved runs')
  rng = np.random.default_rng(0)
  for label, config, torch_model, size, last_only in reference_models():
    arch = config['arch']
    if arch not in args.families:
      continue
    model = models.create_model(config)
    # The CMU port's published file has flat keys (its util.transfer).
    state_dict = (torch_cmu_openpose.published_state_dict(torch_model) if arch == 'openpose'
                  else torch_model.state_dict())
    variables = convert.variables_from_torch(model, state_dict,
                                             input_shape=(1, *size, 3))
    paths = {
        'pytorch': export_torch(torch_model, arch, size, os.path.join(workdir, f'{arch}_torch.onnx')),
        'jaxpose nhwc': export.export_onnx(variables, config,
                                           os.path.join(workdir, f'{arch}_nhwc.onnx'),
                                           input_size=size[::-1], check=False,
                                           last_only=last_only),
        'jaxpose nchw': export.export_onnx(variables, config,
                                           os.path.join(workdir, f'{arch}_nchw.onnx'),
                                           input_size=size[::-1], nchw=True, check=False,
                                           last_only=last_only),
        # Before the graph rewrite: upsampling as jax2onnx traces it.
        'jaxpose as traced': export.export_onnx(
            variables, config, os.path.join(workdir, f'{arch}_traced.onnx'),
            input_size=size[::-1], check=False, resize_upsampling=False, last_only=last_only),
    }
    sessions = {name: onnx_session(path, args.threads) for name, path in paths.items()}
    images = rng.uniform(0, 255, (1, 3, *size)).astype(np.float32)
    feeds = {name: {'images': images if 'nchw' in name or name == 'pytorch' else images.transpose(0, 2, 3, 1)}
             for name in sessions}
    outputs = {name: s.run(None, feeds[name]) for name, s in sessions.items()}
    reference = outputs['pytorch']
    print(f'\n{label}')
    for name, outs in outputs.items():
      if feeds[name]['images'] is not images:  # channels last
        outs = [o.transpose(0, 3, 1, 2) for o in outs]
      print(f'  {name:17s} max |out - pytorch| / max |pytorch| = '
            f'{max_relative_error(outs, reference):.1e}')
      onnx_session(paths[name], args.threads, optimized_path=paths[name] + '.opt.onnx')
      print(f'  {"":17s} exported: {op_counts(paths[name], EXPORTED_OPS)}')
      print(f'  {"":17s} onnxruntime runs: {op_counts(paths[name] + ".opt.onnx", RUNTIME_OPS)}')
    runs = {name: (lambda s=s, f=feeds[name]: s.run(None, f)) for name, s in sessions.items()}
    times = interleaved_times(runs, args.repeats)
    base = np.median(times['pytorch'])
    print(f'  {"":17s} {"median ms":>10s} {"best ms":>8s} {"vs pytorch":>11s}')
    for name, seconds in times.items():
      print(f'  {name:17s} {np.median(seconds) * 1e3:10.2f} {min(seconds) * 1e3:8.2f} '
            f'{np.median(seconds) / base:10.2f}x')


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=50)
  parser.add_argument('--threads', type=int, default=os.cpu_count(),
                      help='onnxruntime intra-op threads (same for every model)')
  parser.add_argument('--families',
                      default='hourglass,lightweight_openpose,openpose,mmpose_hourglass',
                      type=lambda text: text.split(','),
                      help='model families (archs) to measure, comma separated')
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  with tempfile.TemporaryDirectory() as workdir:
    onnx_section(args, workdir)


if __name__ == '__main__':
  main()
