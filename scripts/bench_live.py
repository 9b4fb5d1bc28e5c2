"""Benchmark: `jaxpose infer` on live MJPEG cameras faster than the model, and several streams in one process.

1. Live: a 60 frames/s HTTP MJPEG stream with a password (the bundled
   demo.mp4, 960x540, looped; served on 127.0.0.1 by tests/mjpeg_server.py,
   on the clock as a camera does) read by `jaxpose infer --video
   http://user:password@127.0.0.1:PORT/stream.mjpg` for --seconds, then
   SIGTERM. Reported from the command's summary: frames read, processed,
   dropped, processing frames/s, latency from capture to result (p50, p95);
   and, measured here, how long the process took to exit after SIGTERM,
   its exit status, and whether the password appeared anywhere (stdout,
   stderr, written files and their names). With --cameras 2, two such
   streams in one process.
2. Several streams: the demo looped to --frames frames, as N files given
   to one `jaxpose infer` (one model call per round) against the same N
   files run one after another, each alone (the reference: one process per
   camera, run back to back). Reported: total frames/s after the first
   round, and the model calls.

The model: Lightweight OpenPose (1 refinement stage, 128 channels) at the
demo's height 256 (256x456 input), Flax's initialisation: it finds nobody,
so these rows time decoding, network, peak search and writing, not the
grouping of people (scripts/bench_crowd.py times that against crowd size).
Each as a JAX workdir (jitted) and as its ONNX export (onnxruntime).

Usage: python scripts/bench_live.py [--seconds 25] [--frames 50] [--streams 2]
"""

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from jaxpose import models
from jaxpose.deploy import export
from jaxpose.inference import frame_sources
from jaxpose.training import checkpoint

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'tests'))
from mjpeg_server import MjpegServer  # pylint: disable=wrong-import-position

import bench_video  # pylint: disable=wrong-import-position

JAXPOSE = pathlib.Path(sys.executable).with_name('jaxpose')
PASSWORD = 'n0t-in-any-output'


def write_models(folder: pathlib.Path) -> dict[str, list[str]]:
  """Lightweight OpenPose as a workdir and an ONNX file -> {backend: its `jaxpose infer` flags}."""
  config = bench_video.OPENPOSE
  model = models.create_model(config)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 256, 456, 3)), train=False)
  workdir = folder / 'lwop'
  checkpoint.save_variables(str(workdir), variables, config)
  onnx_path = export.export_onnx(variables, config, str(folder / 'lwop.onnx'),
                                 input_size=(456, 256), check=False)
  return {'jax': ['--workdir', str(workdir)], 'onnx': ['--onnx', onnx_path]}


def _password_seen(folder: pathlib.Path, *texts: str) -> bool:
  for path in folder.rglob('*'):
    if PASSWORD in path.name or (path.is_file() and PASSWORD in path.read_text(errors='ignore')):
      return True
  return any(PASSWORD in text for text in texts)


def live_run(model_flags: list[str], cameras: int, seconds: float, out: pathlib.Path) -> dict:
  """`jaxpose infer` on `cameras` 60 frames/s MJPEG streams, SIGTERM after `seconds` -> figures."""
  frames = [frame.image for frame in frame_sources.VideoSource(bench_video.DEMO_VIDEO)]
  servers = [MjpegServer(frames, fps=60, credentials=f'user:{PASSWORD}').start()
             for _ in range(cameras)]
  try:
    videos = [flag for server in servers for flag in ('--video', server.url(f'user:{PASSWORD}'))]
    process = subprocess.Popen([str(JAXPOSE), 'infer', *model_flags, *videos, '--nopictures',
                                '--out', str(out)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(seconds)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    stdout, stderr = process.communicate(timeout=120)
    exit_seconds = time.monotonic() - signalled
  finally:
    for server in servers:
      server.stop()
  if process.returncode != 0:
    raise RuntimeError(f'jaxpose infer exited {process.returncode}: {stderr[-2000:]}')
  summary = json.loads(stdout.strip().splitlines()[-1])
  return {'exit_status': process.returncode, 'exit_seconds': round(exit_seconds, 2),
          'password_seen': _password_seen(out, stdout, stderr),
          'streams': [{key: stream[key] for key in ('frames_read', 'frames_processed',
                                                     'frames_dropped', 'fps', 'latency_ms')}
                      for stream in summary['streams']]}


def streams_run(model_flags: list[str], videos: list[pathlib.Path], out: pathlib.Path) -> dict:
  """One `jaxpose infer` with every video -> {frames, seconds after the first round, model_calls}."""
  arguments = [flag for video in videos for flag in ('--video', str(video))]
  done = subprocess.run([str(JAXPOSE), 'infer', *model_flags, *arguments, '--nopictures',
                         '--out', str(out)], capture_output=True, text=True, check=False)
  if done.returncode != 0:
    raise RuntimeError(f'jaxpose infer exited {done.returncode}: {done.stderr[-2000:]}')
  summary = json.loads(done.stdout.strip().splitlines()[-1])
  first_round = len(videos)
  return {'frames': summary['frames'],
          'seconds_after_first': (summary['frames'] - first_round) / summary['fps_after_first'],
          'model_calls': summary['model_calls']}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--seconds', type=float, default=25.0)
  parser.add_argument('--frames', type=int, default=50)
  parser.add_argument('--streams', type=int, default=2)
  parser.add_argument('--backends', default='jax,onnx')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as folder:
    folder = pathlib.Path(folder)
    backends = write_models(folder)
    video = bench_video.looped_video(folder / 'looped.mp4', args.frames)
    videos = [folder / f'camera{i}.mp4' for i in range(args.streams)]
    for path in videos:
      os.link(video, path)
    results = {}
    for backend in args.backends.split(','):
      flags = backends[backend]
      for cameras in (1, args.streams):
        results[f'{backend} live x{cameras}'] = live_run(flags, cameras, args.seconds,
                                                         folder / f'live_{backend}_{cameras}')
        print(json.dumps({f'{backend} live x{cameras}': results[f'{backend} live x{cameras}']}),
              flush=True)
      together = streams_run(flags, videos, folder / f'together_{backend}')
      alone = [streams_run(flags, [path], folder / f'alone_{backend}_{i}')
               for i, path in enumerate(videos)]
      results[f'{backend} files'] = {
          'streams': args.streams,
          'together_fps': (together['frames'] - args.streams) / together['seconds_after_first'],
          'together_model_calls': together['model_calls'],
          'alone_fps': sum(a['frames'] - 1 for a in alone) / sum(a['seconds_after_first']
                                                                  for a in alone),
          'alone_model_calls': sum(a['model_calls'] for a in alone)}
      print(json.dumps({f'{backend} files': results[f'{backend} files']}), flush=True)
  print(json.dumps(results, indent=1))


if __name__ == '__main__':
  main()
