"""Tiny randomly initialised models for the inference tests: checkpoints and ONNX files."""

import fcntl
import json
import functools
import os
import pathlib

from jaxpose.training import checkpoint
from jaxpose.deploy import export
import test_export

# COCO-17 heatmaps; test_export's layer2 of 64 planes is the layout jaxpose
# had before it followed bearpaw, so the random weights are those that
# tests/data/recorded was written with.
HOURGLASS = dict(test_export.HOURGLASS, num_joints=17)
OPENPOSE = test_export.OPENPOSE
HOURGLASS_INPUT = (1, 256, 256, 3)
OPENPOSE_INPUT = (1, 256, 456, 3)


def write_models(folder: pathlib.Path, onnx: bool = True) -> dict[str, str]:
  """Writes both tiny models as workdirs (and ONNX files) under `folder` -> {name: path}."""
  paths = {}
  for name, config, shape in (('hourglass', HOURGLASS, HOURGLASS_INPUT),
                              ('openpose', OPENPOSE, OPENPOSE_INPUT)):
    # Fan-in scaled weights: O(1) activations, as a trained model's (see test_export).
    variables = test_export._randomized(config, shape)  # pylint: disable=protected-access
    workdir = folder / name
    checkpoint.save_variables(str(workdir), variables, config)
    paths[name] = str(workdir)
    if onnx:
      paths[f'{name}_onnx'] = export.export_onnx(variables, config, str(folder / f'{name}.onnx'),
                                                 input_size=(shape[2], shape[1]), check=False)
  return paths


@functools.cache
def shared_models() -> dict[str, str]:
  """`write_models` once per test run, whichever pytest-xdist worker asks first (exporting takes most of the time).

  The models live in the run's folder (conftest.py's JAXPOSE_TEST_RUN_DIR),
  removed when the run ends; a lock makes the other workers wait for them.
  """
  folder = pathlib.Path(os.environ['JAXPOSE_TEST_RUN_DIR']) / 'inference_models'
  folder.mkdir(exist_ok=True)
  with open(folder / '.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = folder / 'paths.json'
    if not done.exists():
      done.write_text(json.dumps(write_models(folder)))
    return json.loads(done.read_text())
