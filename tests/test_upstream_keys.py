"""The upstream models' state_dict keys and shapes (data written from upstream's code) = the test references' = what `jaxpose convert` reads.

tests/data/upstream/*.json were written by `scripts/upstream_state_dict_shapes.py`
from checkouts of the upstream repositories (each file names its repository,
commit and source file: bearpaw/pytorch-pose edc7aece651649927764435ce0c1f03cffa2edaf
`pose/models/hourglass.py`, Daniil-Osokin/lightweight-human-pose-estimation.pytorch
d23c284b09acf27a163e1febd511e7482cac25ed `models/with_mobilenet.py`,
Hzzone/pytorch-openpose 5ee71dc10020403dc3def2bb68f9b77c40337ae2 `src/model.py`,
open-mmlab/mmpose 759b39c13fea6ba094afc1fa932f51dc1b11cbf9
`mmpose/models/backbones/hourglass.py` + `mmpose/models/heads/heatmap_heads/cpm_head.py`
as mmpose's TopdownPoseEstimator holds them: `backbone.*`, `head.*`).
A reference in tests/ that drifted from upstream, or a jaxpose model whose
converter expects other keys, fails here, naming the key.
"""

import json
import pathlib

import pytest

from jaxpose import models
from jaxpose.deploy import convert
import torch_hourglass
import torch_mmpose_hourglass
import torch_openpose

UPSTREAM = pathlib.Path(__file__).parent / 'data' / 'upstream'
BEARPAW = [(1, 1), (2, 1), (2, 2), (8, 1)]


def _upstream(name: str) -> dict[str, tuple[int, ...]]:
  record = json.loads((UPSTREAM / f'{name}.json').read_text())
  assert len(record['commit']) == 40 and record['file'].endswith('.py')
  return {key: tuple(shape) for key, shape in record['keys'].items()}


def _torch_shapes(model) -> dict[str, tuple[int, ...]]:
  return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _learned(shapes: dict) -> dict:
  """Without BatchNorm's step counters, which hold no weights."""
  return {key: shape for key, shape in shapes.items() if not key.endswith('num_batches_tracked')}


def _assert_same(found: dict, expected: dict, what: str) -> None:
  missing, unknown = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
  assert not missing and not unknown, f'{what}: missing {missing[:5]}, unknown {unknown[:5]}'
  wrong = {key: (found[key], expected[key]) for key in expected if found[key] != expected[key]}
  assert not wrong, f'{what}: shapes differ {dict(list(wrong.items())[:5])}'


@pytest.mark.parametrize('stacks, blocks', BEARPAW)
def test_bearpaw_hourglass_keys(stacks, blocks):
  upstream = _upstream(f'bearpaw_hourglass_s{stacks}_b{blocks}')
  reference = torch_hourglass.HourglassNet(stacks, blocks, num_classes=16)
  assert list(_torch_shapes(reference)) == list(upstream)  # the same modules, in order
  _assert_same(_torch_shapes(reference), upstream, 'tests/torch_hourglass.py')
  model = models.create_model({'arch': 'hourglass', 'num_stacks': stacks,
                               'num_blocks': blocks, 'num_joints': 16})
  _assert_same(convert.expected_state_dict_shapes(model, (1, 64, 64, 3)), _learned(upstream),
               'jaxpose StackedHourglass')


def test_lightweight_openpose_keys():
  upstream = _upstream('lightweight_openpose_r1')
  reference = torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages=1)
  assert list(_torch_shapes(reference)) == list(upstream)
  model = models.create_model({'arch': 'lightweight_openpose', 'num_refinement_stages': 1})
  _assert_same(convert.expected_state_dict_shapes(model, (1, 64, 64, 3)), _learned(upstream),
               'jaxpose LightweightOpenPose')


@pytest.mark.parametrize('stacks', [1, 2])
def test_mmpose_hourglass_keys(stacks):
  upstream = _upstream(f'mmpose_hourglass_s{stacks}')
  # One stack has an `inters.0` block too, which upstream builds and never runs.
  assert 'backbone.inters.0.conv1.weight' in upstream
  assert not any(key.startswith('backbone.inters.1.') for key in upstream)
  reference = torch_mmpose_hourglass.MmposeTopdown(stacks, num_joints=17)
  assert list(_torch_shapes(reference)) == list(upstream)
  _assert_same(_torch_shapes(reference), upstream, 'tests/torch_mmpose_hourglass.py')
  model = models.create_model({'arch': 'mmpose_hourglass', 'num_stacks': stacks,
                               'num_joints': 17})
  _assert_same(convert.expected_state_dict_shapes(model, (1, 128, 128, 3)), _learned(upstream),
               'jaxpose MmposeHourglass')


def test_a_drifted_reference_is_named():
  # The check itself: the reference's layer2 as it was before it was rewritten
  # from upstream's file (64 planes, no downsample) is caught, by key.
  upstream = _upstream('bearpaw_hourglass_s1_b1')
  drifted = dict(upstream)
  del drifted['layer2.0.downsample.0.weight']
  with pytest.raises(AssertionError, match=r"missing \['layer2.0.downsample.0.weight'\]"):
    _assert_same(drifted, upstream, 'drifted')
  drifted = dict(upstream, **{'layer2.0.bn2.running_mean': (64,)})
  with pytest.raises(AssertionError, match=r"layer2.0.bn2.running_mean.*\(64,\), \(128,\)"):
    _assert_same(drifted, upstream, 'drifted')
