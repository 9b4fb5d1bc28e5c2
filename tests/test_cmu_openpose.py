"""jaxpose.models.cmu_openpose: the PyTorch port's `bodypose_model`, stage by stage, from its published file's flat keys."""

import jax
import numpy as np
import pytest
import torch

from jaxpose import models
from jaxpose.deploy import convert
from jaxpose.models.cmu_openpose import CmuOpenPose
import torch_cmu_openpose
import test_upstream_keys


@pytest.fixture(scope='module')
def torch_model():
  return torch_cmu_openpose.randomize(torch_cmu_openpose.BodyPoseModel())


def test_published_keys_are_the_converters():
  upstream = test_upstream_keys._upstream('cmu_openpose_body')  # pylint: disable=protected-access
  flat = {'.'.join(key.split('.')[1:]): shape for key, shape in upstream.items()}  # util.transfer
  assert len(flat) == len(upstream) == 184
  found = convert.expected_state_dict_shapes(CmuOpenPose(), (1, 64, 64, 3))
  test_upstream_keys._assert_same(found, flat, 'jaxpose CmuOpenPose')  # pylint: disable=protected-access


def test_every_stage_equals_the_port(torch_model):
  model = CmuOpenPose()
  variables = convert.variables_from_torch(
      model, torch_cmu_openpose.published_state_dict(torch_model), input_shape=(1, 48, 64, 3))
  images = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 48, 64, 3)).astype(np.float32)
  ours = model.apply(variables, images)  # op by op: 5 s here, compiled whole 15 s
  with torch.no_grad():
    theirs = torch_model.forward_all(torch.from_numpy(images.transpose(0, 3, 1, 2)))
  assert len(ours) == len(theirs) == 6
  for stage, ((heatmaps, pafs), (l1, l2)) in enumerate(zip(ours, theirs)):
    for name, a, b in (('heatmaps', heatmaps, l2), ('pafs', pafs, l1)):
      b = b.numpy().transpose(0, 2, 3, 1)
      assert a.shape == b.shape == (2, 6, 8, 19 if name == 'heatmaps' else 38)
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * np.abs(b).max(),
                                 err_msg=f'stage {stage} {name}')
  # The port's quirk: only the last stage's heatmaps are clipped at 0.
  assert (np.asarray(ours[-1][0]) >= 0).all() and (np.asarray(ours[-2][0]) < 0).any()


def test_a_checkpoint_of_another_family_names_the_key(torch_model):
  state = torch_cmu_openpose.published_state_dict(torch_model)
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"missing key 'bn1\.running_mean'.*StackedHourglass"):
    convert.variables_from_torch(models.create_model({'arch': 'hourglass', 'num_stacks': 1}),
                                 state, input_shape=(1, 64, 64, 3))
  del state['Mconv7_stage6_L2.bias']
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"missing key 'Mconv7_stage6_L2\.bias'"):
    convert.variables_from_torch(CmuOpenPose(), state, input_shape=(1, 64, 64, 3))
