"""Writes the state_dict key -> shape lists of the upstream PyTorch models jaxpose loads, as JSON test data.

  python scripts/upstream_state_dict_shapes.py \
      --bearpaw PATH/pytorch-pose --osokin PATH/lightweight-human-pose-estimation.pytorch \
      --hzzone PATH/pytorch-openpose --out tests/data/upstream

Each path is a checkout of the upstream repository; the script imports the
model classes from it (`pose/models/hourglass.py` `HourglassNet`,
`models/with_mobilenet.py` `PoseEstimationWithMobileNet`, `src/model.py`
`bodypose_model`), builds each tested configuration and writes
`{configuration}.json`: {"repository", "commit", "file", "keys": {key: shape}}.
The committed files were written from bearpaw/pytorch-pose at
edc7aece651649927764435ce0c1f03cffa2edaf, Daniil-Osokin/lightweight-human-pose-
estimation.pytorch at d23c284b09acf27a163e1febd511e7482cac25ed and
Hzzone/pytorch-openpose at 5ee71dc10020403dc3def2bb68f9b77c40337ae2.
Nothing of the upstream code is written, only the names and shapes of its
parameters, which `tests/test_upstream_keys.py` compares with the test
references in tests/ and with what `jaxpose convert` expects.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys

# (stacks, blocks) of bearpaw's hourglass checked against jaxpose.
BEARPAW_CONFIGURATIONS = ((1, 1), (2, 1), (2, 2), (8, 1))


def _commit(checkout: str) -> str:
  """The checkout's commit, from git when it is a clone, else from a COMMIT file beside it."""
  try:
    return subprocess.run(['git', '-C', checkout, 'rev-parse', 'HEAD'], capture_output=True,
                          text=True, check=True).stdout.strip()
  except (subprocess.CalledProcessError, FileNotFoundError):
    with open(os.path.join(checkout, 'COMMIT')) as f:
      return f.read().strip()


def _keys(model) -> dict[str, list[int]]:
  return {key: list(value.shape) for key, value in model.state_dict().items()}


def _write(out: str, name: str, repository: str, checkout: str, file: str, model) -> None:
  path = os.path.join(out, f'{name}.json')
  with open(path, 'w') as f:
    json.dump({'repository': repository, 'commit': _commit(checkout), 'file': file,
               'keys': _keys(model)}, f, indent=1)
    f.write('\n')
  print(f'{path}: {len(model.state_dict())} keys')


def _import_file(checkout: str, file: str):
  """The module of one upstream file, its checkout on the path for its own imports (not its package's __init__)."""
  spec = importlib.util.spec_from_file_location(
      f'upstream_{os.path.basename(file)[:-3]}', os.path.join(checkout, file))
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, checkout)
  try:
    spec.loader.exec_module(module)
  finally:
    sys.path.remove(checkout)
  return module


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--bearpaw', help='checkout of bearpaw/pytorch-pose')
  parser.add_argument('--osokin',
                      help='checkout of Daniil-Osokin/lightweight-human-pose-estimation.pytorch')
  parser.add_argument('--hzzone', help='checkout of Hzzone/pytorch-openpose')
  parser.add_argument('--out', default='tests/data/upstream')
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  if args.bearpaw:
    hourglass = _import_file(args.bearpaw, 'pose/models/hourglass.py')
    for stacks, blocks in BEARPAW_CONFIGURATIONS:
      model = hourglass.HourglassNet(hourglass.Bottleneck, num_stacks=stacks, num_blocks=blocks,
                                     num_classes=16)
      _write(args.out, f'bearpaw_hourglass_s{stacks}_b{blocks}', 'bearpaw/pytorch-pose',
             args.bearpaw, 'pose/models/hourglass.py', model)
  if args.osokin:
    with_mobilenet = _import_file(args.osokin, 'models/with_mobilenet.py')
    model = with_mobilenet.PoseEstimationWithMobileNet(num_refinement_stages=1)
    _write(args.out, 'lightweight_openpose_r1',
           'Daniil-Osokin/lightweight-human-pose-estimation.pytorch', args.osokin,
           'models/with_mobilenet.py', model)
  if args.hzzone:
    model_module = _import_file(args.hzzone, 'src/model.py')
    _write(args.out, 'cmu_openpose_body', 'Hzzone/pytorch-openpose', args.hzzone,
           'src/model.py', model_module.bodypose_model())


if __name__ == '__main__':
  main()
