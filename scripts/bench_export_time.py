"""Benchmark: how long `jaxpose export` takes as the hourglass grows, beside `torch.onnx.export`.

For each stack count, bearpaw's HourglassNet (tests/torch_hourglass.py, 1
block, 256 channels, 16 joints, random weights) is exported by
`torch.onnx.export` (the TorchScript exporter), and the same weights,
converted with `jaxpose.deploy.convert.variables_from_torch`, by
`jaxpose.deploy.export.export_onnx` (jax2onnx, without the onnxruntime
check), both at 256x256 with a dynamic batch. It prints the wall time of
each export and the nodes of each graph. With --profile, jaxpose's export
runs under cProfile instead (which slows this Python-bound work about 4x, so
the time printed is not comparable) and the row gives the share of it spent
in jax2onnx's `remove_redundant_transpose_pairs_ir` pass.

Why: that pass looks up each value's producer by scanning the node list
(jax2onnx 0.17.1, `optimizer_graph_utils._producer_node`), so its time grows
with the square of the graph; bearpaw's published model has 8 stacks.

Usage: python scripts/bench_export_time.py [--stacks 1,2,4,8] [--profile]
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time

import onnx

from bench_inference import export_torch  # scripts/bench_inference.py
from jaxpose import models
from jaxpose.deploy import convert
from jaxpose.deploy import export

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests'))
import torch_hourglass  # pylint: disable=g-import-not-at-top

SIZE = (256, 256)
TRANSPOSE_PASS = 'remove_redundant_transpose_pairs_ir'


def time_exports(stacks: int, folder: str, profiled: bool) -> dict:
  """Exports a `stacks`-stack hourglass both ways -> seconds, node counts (and the pass's share)."""
  reference = torch_hourglass.randomize(torch_hourglass.HourglassNet(stacks, 1, num_classes=16))
  description = {'arch': 'hourglass', 'num_stacks': stacks, 'num_blocks': 1, 'num_joints': 16}
  variables = convert.variables_from_torch(models.create_model(description),
                                           reference.state_dict(), (1, *SIZE, 3))
  torch_path = os.path.join(folder, f'torch_{stacks}.onnx')
  start = time.perf_counter()
  export_torch(reference, 'hourglass', SIZE, torch_path)
  torch_seconds = time.perf_counter() - start

  jax_path = os.path.join(folder, f'jaxpose_{stacks}.onnx')
  profile = cProfile.Profile()
  start = time.perf_counter()
  if profiled:
    profile.enable()
  export.export_onnx(variables, description, jax_path, input_size=SIZE, check=False)
  profile.disable()
  jax_seconds = time.perf_counter() - start
  share = None
  if profiled:
    stats = pstats.Stats(profile).stats  # {(file, line, name): (cc, nc, tt, cumulative, callers)}
    share = sum(entry[3] for key, entry in stats.items() if key[2] == TRANSPOSE_PASS) / jax_seconds
  return {'stacks': stacks, 'jaxpose_s': jax_seconds, 'torch_s': torch_seconds,
          'jaxpose_nodes': len(onnx.load(jax_path).graph.node),
          'torch_nodes': len(onnx.load(torch_path).graph.node),
          'transpose_pass_share': share}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--stacks', default='1,2,4,8', help='stack counts, comma-separated')
  parser.add_argument('--profile', action='store_true',
                      help=f"report the share of jaxpose's export in {TRANSPOSE_PASS} (under cProfile)")
  args = parser.parse_args()
  extra = f' share in {TRANSPOSE_PASS} (cProfile) |' if args.profile else ''
  print(f'| stacks | jaxpose export s | torch.onnx.export s | ratio | nodes (jaxpose / torch) |{extra}')
  print('| --- | --- | --- | --- | --- |' + (' --- |' if args.profile else ''))
  with tempfile.TemporaryDirectory() as folder:
    for stacks in (int(s) for s in args.stacks.split(',')):
      row = time_exports(stacks, folder, args.profile)
      share = (f" {100 * row['transpose_pass_share']:.0f} % |" if args.profile else '')
      print(f"| {stacks} | {row['jaxpose_s']:.1f} | {row['torch_s']:.1f} | "
            f"{row['jaxpose_s'] / row['torch_s']:.0f}x the time | "
            f"{row['jaxpose_nodes']} / {row['torch_nodes']} |{share}", flush=True)


if __name__ == '__main__':
  main()
