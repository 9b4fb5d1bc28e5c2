"""Benchmark: float vs int8 ONNX latency in onnxruntime, side by side in one run (`jaxpose export --int8`).

For each model family, the float file of `jaxpose.deploy.export` and its
int8 copies, all sessions with the same options (all graph optimisations,
--threads intra-op threads, sequential), one image (batch 1), 3 warm-up
runs each, then --repeats runs with the models taking turns; the median
and best of each, and each one's speedup over float (median over median).

- lightweight_openpose: configs/lightweight_openpose_coco.py's model (1
  refinement stage, 128 channels) at 368x368, its full upstream size;
- hourglass: configs/hourglass_coco.py's (4 stacks, 17 joints) at its
  192x256 (W x H) crops.

Weights are random, fan-in scaled (tests/random_weights.py, as
tests/test_export.py draws them): they set no accuracy, but latency does not
depend on their values. Calibration: generated people (`jaxpose.data.synthetic`)
fed as inference feeds them (`deploy.quantize.CalibrationReader`). The int8
rows are `jaxpose export --int8`'s setting (`quantize.quantize_model`) and,
with --variants, what else onnxruntime offers: no pre-processing, int8
activations, QOperator format, reduce_range, only Conv quantised.

With --workdir (a trained model) and --calibration DIR, the model is exported
at its trained size and quantised as `jaxpose export --int8` does, and the
agreement of its people with the float model's is printed (on --check DIR,
default the calibration images) beside the side-by-side latency.

Usage: python scripts/bench_int8.py [--repeats 30] [--threads 2] [--families lightweight_openpose,hourglass] [--variants]
       python scripts/bench_int8.py --workdir W --calibration DIR [--check DIR]
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime import quantization

from timing import interleaved_times, onnx_session  # scripts/timing.py
from jaxpose import config as config_lib
from jaxpose import models
from jaxpose.data import synthetic
from jaxpose.deploy import export, predictor, quantize
from jaxpose.inference import frame_sources

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import random_weights  # pylint: disable=g-import-not-at-top

CALIBRATION_IMAGES = 8


def families() -> dict[str, tuple[dict, tuple[int, int]]]:
  """Family name -> (model description, input (width, height))."""
  return {
      'lightweight_openpose': (config_lib.lightweight_openpose_model(num_refinement_stages=1)
                               .to_dict(), (368, 368)),
      'hourglass': (config_lib.hourglass_model(num_stacks=4, num_joints=17).to_dict(), (192, 256)),
  }


def generated_images(count: int, size: tuple[int, int]) -> list[np.ndarray]:
  """`count` RGB images [H, W, 3] of generated people, (width, height) `size`."""
  people = synthetic.SyntheticPeople(count, image_size=size, max_people=2, seed=11)
  return [people[i]['image'] for i in range(count)]


def variants(prepared: str) -> dict[str, tuple[str, dict]]:
  """What else onnxruntime offers: name -> (input model, quantize_static keywords beyond the export's)."""
  return {
      'int8, no quant_pre_process': (None, {}),
      'int8, int8 activations': (prepared, {'activation_type': quantization.QuantType.QInt8}),
      'int8, symmetric uint8 activations': (prepared,
                                            {'extra_options': {'ActivationSymmetric': True}}),
      'int8, QOperator format': (prepared, {'quant_format': quantization.QuantFormat.QOperator}),
      'int8, reduce_range (7-bit weights)': (prepared, {'reduce_range': True}),
      'int8, Conv only': (prepared, {'op_types_to_quantize': ['Conv']}),
  }


def quantize_variant(float_path: str, source: str | None, out: str, reader, extra: dict) -> str:
  """quantize_static of `source` (None: the float file itself) with the export's settings updated by `extra`."""
  settings = dict(quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                  weight_type=quantization.QuantType.QInt8,
                  activation_type=quantization.QuantType.QUInt8,
                  calibrate_method=quantization.CalibrationMethod.MinMax)
  settings.update(extra)
  with quantize._quiet_quantization():  # pylint: disable=protected-access
    quantization.quantize_static(source or float_path, out, reader, **settings)
  return out


def max_relative_error(ours: list[np.ndarray], theirs: list[np.ndarray]) -> float:
  """Largest max |a - b| / max |b| over the outputs."""
  return max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(ours, theirs))


def report(label: str, paths: dict[str, str], feed: dict[str, np.ndarray],
           args: argparse.Namespace) -> None:
  """Times every file of `paths` side by side on `feed`; prints a table, speedups over 'float'."""
  sessions = {name: onnx_session(path, args.threads) for name, path in paths.items()}
  outputs = {name: s.run(None, feed) for name, s in sessions.items()}
  runs = {name: (lambda s=s: s.run(None, feed)) for name, s in sessions.items()}
  times = interleaved_times(runs, args.repeats)
  base = np.median(times['float'])
  print(f'\n{label}')
  print(f'  {"model":36s} {"MB":>6s} {"median ms":>10s} {"best ms":>8s} {"speedup":>8s} '
        f'{"max rel. err":>12s}')
  for name, seconds in times.items():
    error = max_relative_error(outputs[name], outputs['float'])
    print(f'  {name:36s} {os.path.getsize(paths[name]) / 1e6:6.1f} '
          f'{np.median(seconds) * 1e3:10.2f} {min(seconds) * 1e3:8.2f} '
          f'{base / np.median(seconds):7.2f}x {error:12.1e}', flush=True)


def family_section(name: str, args: argparse.Namespace, scratch: str) -> None:
  """One family with random weights: float, the export's int8 and (--variants) the others."""
  description, (width, height) = families()[name]
  model = models.create_model(description)
  variables = random_weights.random_variables(model, jnp.zeros((1, height, width, 3)),
                                              train=False)
  float_path = export.export_onnx(variables, description, os.path.join(scratch, f'{name}.onnx'),
                                  input_size=(width, height), check=False)
  network = predictor.OnnxPredictor(float_path)
  images = generated_images(CALIBRATION_IMAGES, (width, height))
  reader = lambda: quantize.CalibrationReader(network, images)
  paths = {'float': float_path}
  start = time.perf_counter()
  paths['int8 (jaxpose export --int8)'] = quantize.quantize_model(
      float_path, os.path.join(scratch, f'{name}.int8.onnx'), reader())
  print(f'{name}: quantised in {time.perf_counter() - start:.1f} s '
        f'({CALIBRATION_IMAGES} calibration images)', flush=True)
  if args.variants:
    prepared = quantize.prepare_model(float_path, os.path.join(scratch, f'{name}.prepared.onnx'))
    for index, (label, (source, extra)) in enumerate(variants(prepared).items()):
      paths[label] = quantize_variant(float_path, source, os.path.join(
          scratch, f'{name}.variant{index}.onnx'), reader(), extra)
  (batch,) = quantize.network_inputs(network, images[0])[:1]
  report(f'{name}, {width}x{height} (W x H), random weights, batch {len(batch)}', paths,
         network.feed(batch), args)


def trained_section(args: argparse.Namespace, scratch: str) -> None:
  """A trained workdir: exported, quantised and checked as `jaxpose export --int8` does."""
  float_path = export.export_workdir(args.workdir, os.path.join(scratch, 'trained.onnx'))
  calibration = frame_sources.image_folder(args.calibration)
  check = frame_sources.image_folder(args.check) if args.check else calibration
  summary = quantize.export_int8(float_path, calibration, check, min_agreement=0.0)
  print(f'\n{args.workdir}: agreement {summary["agreement"]:.3f} of '
        f'{summary["keypoints_compared"]} keypoints on {summary["check_images"]} check images '
        f'({args.check or args.calibration}), calibrated on {summary["calibration_images"]}; '
        f'per image through approach.predict: float {summary["float_ms"]:.2f} ms, '
        f'int8 {summary["int8_ms"]:.2f} ms')
  network = predictor.OnnxPredictor(float_path)
  first = next(iter(check)).image
  (batch,) = quantize.network_inputs(network, first)[:1]
  report(f'{args.workdir}, {network.input_size[0]}x{network.input_size[1]}, batch {len(batch)}',
         {'float': float_path, 'int8 (jaxpose export --int8)': summary['out']},
         network.feed(batch), args)


def cpu_model() -> str:
  """lscpu's model name, else the platform's processor string."""
  try:
    lscpu = subprocess.run(['lscpu'], capture_output=True, text=True, check=True).stdout
    for line in lscpu.splitlines():
      if line.startswith('Model name:'):
        return line.split(':', 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return platform.processor() or 'unknown CPU'


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=30)
  parser.add_argument('--threads', type=int, default=2,
                      help='onnxruntime intra-op threads (same for every model)')
  parser.add_argument('--families', default='lightweight_openpose,hourglass',
                      type=lambda text: text.split(','),
                      help=f'comma separated, of {", ".join(families())}')
  parser.add_argument('--variants', action='store_true',
                      help="also time onnxruntime's other quantisation settings")
  parser.add_argument('--workdir', help='a trained model: also print its int8 agreement')
  parser.add_argument('--calibration', help='with --workdir: a folder of calibration images')
  parser.add_argument('--check', help='with --workdir: a folder of check images '
                      '(default: the calibration images)')
  args = parser.parse_args()
  if args.workdir and not args.calibration:
    parser.error('--workdir needs --calibration DIR')
  print(f'onnxruntime {ort.__version__}, onnx {onnx.__version__}, {cpu_model()}, '
        f'{os.cpu_count()} CPU cores, intra-op threads {args.threads}, batch 1, '
        f'{args.repeats} interleaved runs after 3 warm-ups')
  with tempfile.TemporaryDirectory() as scratch:
    if args.workdir:
      trained_section(args, scratch)
    else:
      for name in args.families:
        family_section(name, args, scratch)


if __name__ == '__main__':
  main()
