"""Benchmark: end-to-end `jaxpose infer` frames per second on a video, JAX vs onnxruntime.

The bundled `tests/data/video/demo.mp4` (5 frames, 960x540) is looped to
--frames frames and run through `jaxpose infer` (decode, model, grouping
or crops, tracking, drawing, writing the annotated mp4), for:

- top-down: stacked hourglass at the published size (2 stacks, 1 block,
  256 channels, i.e. num_features 128), 17 joints, 256x256 crops, no flip
  test, on person boxes: OpenCV's HOG detector where this OpenCV has it,
  else (OpenCV 5) a detections file with the 4 people of the demo's first
  frame, drawn by hand, on every frame;
- bottom-up: Lightweight OpenPose (1 refinement stage, 128 channels) at
  height 256 (256x456 input for this video).

Weights are Flax's initialisation with fresh BatchNorm statistics. Their
Lightweight OpenPose maps have no peak above the threshold, so the bottom-up
rows time everything but the PAF grouping of found people (0 people per
frame; scripts/bench_grouping.py times the grouping on real maps). Weights
that give O(1) maps (tests/test_export.py's `_randomized`) are no better:
their noise groups into ~250 "people" per frame, far more than a trained
model finds. The top-down rows do not depend on the weights. Each model runs as a JAX
checkpoint (jitted) and as its `jaxpose export` ONNX file (onnxruntime, CPU,
default threads). Reported: frames/s over all frames, and after the first
(which compiles the JAX function).

Usage: python scripts/bench_video.py [--frames 50]
"""

import argparse
import json
import os
import pathlib
import tempfile

import cv2
import jax
import jax.numpy as jnp

from jaxpose import cli, models
from jaxpose.training import checkpoint
from jaxpose.deploy import export
from jaxpose.inference import frame_sources

DEMO_VIDEO = pathlib.Path(__file__).resolve().parents[1] / 'tests' / 'data' / 'video' / 'demo.mp4'
HOURGLASS = {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1, 'num_joints': 17,
             'num_features': 128, 'depthwise': False}
OPENPOSE = {'arch': 'lightweight_openpose', 'num_refinement_stages': 1, 'num_channels': 128,
            'num_heatmaps': 19, 'num_pafs': 38}
# The four people of the demo's first frame (x, y, w, h), for OpenCV builds without HOG.
DEMO_BOXES = ([760, 180, 150, 360], [490, 160, 70, 170], [455, 165, 50, 125],
              [590, 165, 75, 175])


def looped_video(path: pathlib.Path, num_frames: int) -> pathlib.Path:
  """Writes the demo video repeated to `num_frames` frames (same size and fps) -> path."""
  source = frame_sources.VideoSource(DEMO_VIDEO)
  frames = [frame.image for frame in source]
  with frame_sources.VideoWriter(path, source.fps, source.size) as writer:
    for i in range(num_frames):
      writer.write(frames[i % len(frames)])
  return path


def write_model(folder: pathlib.Path, name: str, config: dict, input_size: tuple[int, int]
                ) -> tuple[str, str]:
  """Random weights -> (workdir, .onnx path)."""
  width, height = input_size
  variables = models.create_model(config).init(jax.random.key(0), jnp.zeros((1, height, width, 3)),
                                               train=False)
  workdir = folder / name
  checkpoint.save_variables(str(workdir), variables, config)
  # No JAX check: with untrained BatchNorm the maps are ~1e-4, where
  # onnxruntime's Elu is off by 1e-3 relative (see tests/test_export.py).
  onnx_path = export.export_onnx(variables, config, str(folder / f'{name}.onnx'),
                                 input_size=input_size, check=False)
  return str(workdir), onnx_path


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--frames', type=int, default=50, help='frames of the looped video')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory(prefix='bench_video_') as scratch:
    run_benchmark(pathlib.Path(scratch), args.frames)


def run_benchmark(folder: pathlib.Path, num_frames: int) -> None:
  """Writes the clip and models under `folder`, runs `jaxpose infer` four ways, prints the table."""
  clip = looped_video(folder / 'demo_looped.mp4', num_frames)
  hourglass = write_model(folder, 'hourglass', HOURGLASS, (256, 256))
  openpose = write_model(folder, 'openpose', OPENPOSE, (456, 256))
  detections = []
  if not hasattr(cv2, 'HOGDescriptor'):
    boxes_file = folder / 'demo_boxes.json'
    boxes_file.write_text(json.dumps([
        {'image_id': i, 'category_id': 1, 'bbox': box, 'score': 1.0}
        for i in range(num_frames) for box in DEMO_BOXES]))
    detections = ['--detections', str(boxes_file)]
  topdown, bottomup = 'top-down (hourglass, 256x256 crops)', 'bottom-up (Lightweight OpenPose, h 256)'
  runs = [(topdown, 'JAX', ['--workdir', hourglass[0], *detections]),
          (topdown, 'onnxruntime', ['--onnx', hourglass[1], *detections]),
          (bottomup, 'JAX', ['--workdir', openpose[0]]),
          (bottomup, 'onnxruntime', ['--onnx', openpose[1]])]
  rows = []
  for approach, backend, flags in runs:
    out = folder / f'out_{len(rows)}'
    summary = cli.main(['infer', *flags, '--video', str(clip), '--out', str(out)])
    rows.append((approach, backend, summary))
  boxes = 'HOG' if not detections else f'{len(DEMO_BOXES)} fixed boxes per frame'
  print(f'\n{num_frames} frames of demo.mp4 (960x540), {os.cpu_count()} CPU cores, '
        f'jax {jax.__version__} on {jax.devices()[0].platform}; top-down boxes: {boxes}\n')
  print('| approach | backend | people / frame | frames/s (all) | frames/s (after the first) |')
  print('| --- | --- | --- | --- | --- |')
  for approach, backend, summary in rows:
    print(f'| {approach} | {backend} | {summary["people"] / summary["frames"]:.1f} | '
          f'{summary["fps"]:.2f} | {summary["fps_after_first"]:.2f} |')
  print(f'\ncommand: python scripts/bench_video.py --frames {num_frames}')


if __name__ == '__main__':
  main()
