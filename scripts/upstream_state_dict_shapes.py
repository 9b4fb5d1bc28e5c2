"""Writes the state_dict key -> shape lists of the upstream PyTorch models jaxpose loads, as JSON test data.

  python scripts/upstream_state_dict_shapes.py \
      --bearpaw PATH/pytorch-pose --osokin PATH/lightweight-human-pose-estimation.pytorch \
      --hzzone PATH/pytorch-openpose --mmpose PATH/mmpose --out tests/data/upstream

Each path is a checkout of the upstream repository; the script imports the
model classes from it (`pose/models/hourglass.py` `HourglassNet`,
`models/with_mobilenet.py` `PoseEstimationWithMobileNet`, `src/model.py`
`bodypose_model`, mmpose's `HourglassNet` and `CPMHead`), builds each tested
configuration and writes `{configuration}.json`: {"repository", "commit",
"file", "keys": {key: shape}}. The committed files were written from
bearpaw/pytorch-pose at edc7aece651649927764435ce0c1f03cffa2edaf,
Daniil-Osokin/lightweight-human-pose-estimation.pytorch at
d23c284b09acf27a163e1febd511e7482cac25ed, Hzzone/pytorch-openpose at
5ee71dc10020403dc3def2bb68f9b77c40337ae2 and open-mmlab/mmpose at
759b39c13fea6ba094afc1fa932f51dc1b11cbf9.

mmpose (`--mmpose`, a folder holding the `mmpose` package, e.g. `git archive
HEAD mmpose | tar -x -C DIR` of a clone, with a COMMIT file when it is not a
clone) needs `pip install mmengine mmcv-lite` (pure Python; mmcv-lite has
`mmcv.cnn.ConvModule`), which jaxpose does not depend on. mmpose's own
package `__init__`s import its datasets, evaluation and every model
(xtcocotools, ...), so they are not run: `mmpose`, `mmpose.models` and the
other packages on the way are registered in `sys.modules` as empty packages
whose `__path__` is the checkout's folder, and Python then loads only the
files the two classes import, from the checkout: `registry.py`,
`models/backbones/{base_backbone,resnet,hourglass}.py`,
`models/heads/{base_head.py,heatmap_heads/cpm_head.py}`,
`models/losses/heatmap_loss.py` (CPMHead builds its `KeypointMSELoss`, which
holds no weights), `models/utils/tta.py`, `utils/{tensor_utils,typing}.py`.
Two names that only mmpose's training and prediction code use
(`evaluation.functional.pose_pck_accuracy`, `structures.PoseDataSample`)
are placeholders: building the two classes does not reach them. Backbone and
head are then held as `backbone` and `head` by a plain `torch.nn.Module`, as
mmpose's `TopdownPoseEstimator` holds them (whose data preprocessor's
mean and std are non-persistent buffers: no state_dict keys), for
`mmpose_hourglass_s{1,2}.json`: HourglassNet(num_stacks) with upstream's
other defaults, CPMHead(in_channels=256, out_channels=17,
num_stages=num_stacks, deconv_out_channels=None) as the COCO configs
(`configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_hourglass52_*.py`).
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
import types

# (stacks, blocks) of bearpaw's hourglass checked against jaxpose.
BEARPAW_CONFIGURATIONS = ((1, 1), (2, 1), (2, 2), (8, 1))
# Stacks of mmpose's HourglassNet checked against jaxpose (hourglass52, hourglass104).
MMPOSE_STACKS = (1, 2)
MMPOSE_COCO_JOINTS = 17
# mmpose's packages whose __init__ is not run (see the module docstring).
_MMPOSE_PACKAGES = ('mmpose', 'mmpose.models', 'mmpose.models.backbones', 'mmpose.models.heads',
                    'mmpose.models.heads.heatmap_heads', 'mmpose.models.losses',
                    'mmpose.models.utils', 'mmpose.utils', 'mmpose.evaluation',
                    'mmpose.evaluation.functional', 'mmpose.structures')


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


def _mmpose_classes(checkout: str):
  """(HourglassNet, CPMHead) from the files of an mmpose checkout, without its package __init__s."""
  for name in _MMPOSE_PACKAGES:
    package = types.ModuleType(name)
    package.__path__ = [os.path.join(checkout, *name.split('.'))]
    sys.modules[name] = package
  # Only mmpose's training and prediction code calls these.
  placeholder = lambda *args, **kwargs: None
  sys.modules['mmpose.evaluation.functional'].pose_pck_accuracy = placeholder
  sys.modules['mmpose.structures'].PoseDataSample = type('PoseDataSample', (), {})
  importlib.import_module('mmpose.models.losses.heatmap_loss')  # registers KeypointMSELoss
  hourglass = importlib.import_module('mmpose.models.backbones.hourglass')
  cpm_head = importlib.import_module('mmpose.models.heads.heatmap_heads.cpm_head')
  return hourglass.HourglassNet, cpm_head.CPMHead


def _mmpose_models(checkout: str):
  """[(stacks, a module holding mmpose's `backbone` and `head` as TopdownPoseEstimator does)]."""
  import torch  # pylint: disable=g-import-not-at-top
  hourglass_net, cpm_head = _mmpose_classes(checkout)
  built = []
  for stacks in MMPOSE_STACKS:
    estimator = torch.nn.Module()
    estimator.backbone = hourglass_net(num_stacks=stacks)
    estimator.head = cpm_head(in_channels=256, out_channels=MMPOSE_COCO_JOINTS,
                              num_stages=stacks, deconv_out_channels=None)
    built.append((stacks, estimator))
  return built


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--bearpaw', help='checkout of bearpaw/pytorch-pose')
  parser.add_argument('--osokin',
                      help='checkout of Daniil-Osokin/lightweight-human-pose-estimation.pytorch')
  parser.add_argument('--hzzone', help='checkout of Hzzone/pytorch-openpose')
  parser.add_argument('--mmpose', help='folder holding the mmpose package of open-mmlab/mmpose')
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
  if args.mmpose:
    for stacks, estimator in _mmpose_models(args.mmpose):
      _write(args.out, f'mmpose_hourglass_s{stacks}', 'open-mmlab/mmpose', args.mmpose,
             'mmpose/models/backbones/hourglass.py + mmpose/models/heads/heatmap_heads/cpm_head.py',
             estimator)


if __name__ == '__main__':
  main()
