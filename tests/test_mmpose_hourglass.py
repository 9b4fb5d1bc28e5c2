"""jaxpose.models.mmpose_hourglass: mmpose's HourglassNet + CPMHead, stack by stack, from either generation's checkpoint keys.

The reference is tests/torch_mmpose_hourglass.py (a transcription of mmpose's
files; its keys are checked against upstream's in tests/test_upstream_keys.py).
The network is deep (52 conv layers a stack): one 128x128 image, the
smallest input it takes, and no jit (compiling the whole network takes
longer than running it op by op once).
"""

import jax
import numpy as np
import pytest
import torch

from jaxpose import models
from jaxpose.deploy import convert
from jaxpose.models.mmpose_hourglass import MmposeHourglass
import torch_hourglass
import torch_mmpose_hourglass

INPUT_SHAPE = (1, 128, 128, 3)


def _converted(stacks: int, seed: int):
  """(randomised reference, jaxpose model, variables converted from the 1.x layout)."""
  reference = torch_mmpose_hourglass.randomize(torch_mmpose_hourglass.MmposeTopdown(stacks),
                                               seed=seed)
  model = MmposeHourglass(num_stacks=stacks, num_joints=17)
  published = torch_mmpose_hourglass.published_checkpoint(reference, '1.x')
  return reference, model, convert.variables_from_torch(model, published['state_dict'],
                                                        INPUT_SHAPE)


@pytest.mark.parametrize('stacks', [
    pytest.param(1, marks=pytest.mark.slow),  # ~14 s; two stacks check the first one too
    2])
def test_every_stack_equals_mmpose_from_either_layout(stacks):
  reference, model, variables = _converted(stacks, seed=stacks)
  # mmpose 0.x's files (the published ones) name the head `keypoint_head`: same weights.
  old = torch_mmpose_hourglass.published_checkpoint(reference, '0.x')['state_dict']
  assert 'keypoint_head.multi_final_layers.0.weight' in old
  from_old = convert.variables_from_torch(model, old, INPUT_SHAPE)
  jax.tree_util.tree_map(np.testing.assert_array_equal, from_old, variables)

  images = np.random.default_rng(stacks).normal(size=INPUT_SHAPE).astype(np.float32)
  ours = jax.jit(model.apply)(variables, images)
  with torch.no_grad():
    theirs = reference(torch.from_numpy(images.transpose(0, 3, 1, 2)))
  assert len(ours) == len(theirs) == stacks
  assert models.output_names(model) == [f'heatmaps_stack{i}' for i in range(stacks)]
  for i, (a, b) in enumerate(zip(ours, theirs)):
    b = b.numpy().transpose(0, 2, 3, 1)
    assert a.shape == b.shape == (1, 32, 32, 17)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max(), err_msg=f'stack {i}')


def test_family_facts():
  model = models.create_model({'arch': 'mmpose_hourglass', 'num_stacks': 2,
                               'stage_channels': [256, 256, 384, 384, 384, 512]})
  assert model.input_multiple == 128 and model.num_stages == 2
  assert model.stage_channels == (256, 256, 384, 384, 384, 512)  # JSON lists become tuples
  assert models.model_config(model)['stage_blocks'] == (2, 2, 2, 2, 2, 4)
  normalization = MmposeHourglass.UPSTREAM_NORMALIZATION
  assert (normalization.channels, normalization.divisor) == ('RGB', 1.0)
  assert normalization.mean == (123.675, 116.28, 103.53)
  with pytest.raises(ValueError, match='divisible by 128'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), np.zeros((1, 192, 128, 3)), train=False))
  assert MmposeHourglass.torch_module_path(('hourglass_modules_0', 'low2', 'up1_1', 'bn2')) == (
      'backbone.hourglass_modules.0.low2.up1.1.bn2')
  assert MmposeHourglass.torch_module_path(('multi_final_layers_1',)) == (
      'head.multi_final_layers.1')


def test_a_checkpoint_of_another_family_names_the_key():
  bearpaw = torch_hourglass.HourglassNet(1, 1, num_classes=17).state_dict()
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"missing key 'backbone\.[\w.]+'.*MmposeHourglass"):
    convert.variables_from_torch(MmposeHourglass(), bearpaw, INPUT_SHAPE)


def test_a_checkpoint_of_other_options_names_the_key():
  two = torch_mmpose_hourglass.published_checkpoint(torch_mmpose_hourglass.MmposeTopdown(2),
                                                    '0.x')['state_dict']
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"unknown key.*'backbone\.conv1x1s\.0\.bn\.bias'"):
    convert.variables_from_torch(MmposeHourglass(num_stacks=1), two, INPUT_SHAPE)
  one = torch_mmpose_hourglass.published_checkpoint(torch_mmpose_hourglass.MmposeTopdown(1),
                                                    '0.x')['state_dict']
  # 16 MPII joints against COCO's 17: named as the file has it.
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"'head\.multi_final_layers\.0\.bias' \(the file's "
                     r"'keypoint_head\.multi_final_layers\.0\.bias'\) has shape \(17,\)"):
    convert.variables_from_torch(MmposeHourglass(num_joints=16), one, INPUT_SHAPE)
  both = dict(one)
  both['head.multi_final_layers.0.bias'] = one['keypoint_head.multi_final_layers.0.bias']
  with pytest.raises(convert.CheckpointMismatchError, match=r"both hold 'head\.multi_final"):
    convert.variables_from_torch(MmposeHourglass(), both, INPUT_SHAPE)


def test_data_preprocessor_buffers_are_not_weights():
  reference = torch_mmpose_hourglass.MmposeTopdown(1)
  state = dict(reference.state_dict(), **{'data_preprocessor.mean': torch.zeros(3, 1, 1),
                                          'data_preprocessor.std': torch.ones(3, 1, 1)})
  variables = convert.variables_from_torch(MmposeHourglass(), state, INPUT_SHAPE)
  np.testing.assert_array_equal(variables['params']['multi_final_layers_0']['bias'],
                                reference.head.multi_final_layers[0].bias.detach().numpy())
  # The block upstream builds for one stack and never runs has its place too.
  assert 'inters_0' in variables['params'] and 'inters_0' in variables['batch_stats']
