"""jaxpose.approaches: the model's family decides the approach; the network function is the model behind its normalisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import approaches, models, skeletons
from jaxpose import config as config_lib
import random_weights

HOURGLASS = {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1, 'num_joints': 17,
             'num_features': 8, 'depth': 2}
OPENPOSE = {'arch': 'lightweight_openpose', 'num_refinement_stages': 2, 'num_channels': 16}


def test_the_family_decides_the_approach_and_its_facts():
  top_down = approaches.for_description(HOURGLASS)
  assert isinstance(top_down, approaches.TopDown) and top_down.per_person
  assert (top_down.stride, top_down.input_multiple) == (4, 16)  # 4 * 2**depth
  assert top_down.output_names() == ['heatmaps_stack0', 'heatmaps_stack1']
  bottom_up = approaches.for_description(OPENPOSE)
  assert isinstance(bottom_up, approaches.BottomUp) and not bottom_up.per_person
  assert (bottom_up.stride, bottom_up.input_multiple) == (8, 8)
  assert bottom_up.output_names(last_only=True) == ['heatmaps_stage2', 'pafs_stage2']
  assert bottom_up.default_input_size == (456, 256)
  with pytest.raises(ValueError, match="input_size: hourglass needs .* multiples of 16, got "
                     r'40x32 \(W x H\)'):
    top_down.check_input_size((40, 32))
  with pytest.raises(ValueError, match="'resnet'"):
    approaches.for_description({'arch': 'resnet'})


@pytest.mark.parametrize('description', [HOURGLASS, OPENPOSE])
def test_network_fn_is_the_model_on_normalised_pixels(description):
  approach = approaches.for_description(description)
  model = models.create_model(description)
  images = np.random.default_rng(0).uniform(0, 255, (2, 32, 48, 3)).astype(np.float32)
  variables = random_weights.random_variables(model, jnp.zeros((1, 32, 48, 3)))
  outputs = jax.jit(approach.network_fn(variables))(images)
  expected = models.flat_outputs(jax.jit(lambda x: model.apply(
      variables, approach.normalize(x), train=False))(images))
  assert len(outputs) == len(approach.output_names()) == len(expected)
  assert all(np.isfinite(maps).all() and np.abs(maps).max() > 0 for maps in expected)
  for ours, theirs in zip(outputs, expected):
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
  nchw = jax.jit(approach.network_fn(variables, nchw=True, last_only=True))(
      images.transpose(0, 3, 1, 2))
  np.testing.assert_allclose(nchw[-1], np.asarray(expected[-1]).transpose(0, 3, 1, 2),
                             rtol=0, atol=1e-5 * np.abs(expected[-1]).max())
  named = dict(zip(approach.output_names(), outputs))
  last = approach.last_maps(named)
  last = last if isinstance(last, tuple) else (last,)
  for ours, theirs in zip(last, outputs[-len(last):]):
    np.testing.assert_array_equal(ours, theirs)


def test_each_approach_checks_the_datasets_keypoints():
  config = config_lib.default_config()
  config.model.num_joints = 16
  with pytest.raises(ValueError, match="num_joints is 16, but config.data.source 'synthetic' "
                     'has the 17 coco keypoints'):
    approaches.for_config(config).check_data(config, skeletons.COCO)
  approaches.for_config(config).check_data(config, skeletons.MPII)
  config.model = config_lib.lightweight_openpose_model()
  with pytest.raises(ValueError, match='is bottom-up and learns COCO keypoints'):
    approaches.for_config(config).check_data(config, skeletons.MPII)
  with pytest.raises(ValueError, match='distillation is defined for top-down students'):
    approaches.for_config(config).check_teacher(HOURGLASS, 'teacher_dir')
