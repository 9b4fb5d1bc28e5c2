"""jaxpose.approaches: the model's family decides the approach; the network function is the model behind its normalisation."""

import re

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
  with pytest.raises(ValueError, match="'lightweight_openpose' learns COCO keypoints .* but "
                     "config.data.source 'synthetic' has the 16 mpii keypoints"):
    approaches.for_config(config).check_data(config, skeletons.MPII)
  with pytest.raises(ValueError, match='distillation is defined for top-down students'):
    approaches.for_config(config).check_teacher(HOURGLASS, 'teacher_dir')


def test_protocols_come_from_the_table_by_arch_or_by_name():
  defaults = {arch: approaches.for_description({'arch': arch}).protocol(approaches.Options()).NAME
              for arch in models.ARCHITECTURES}
  assert defaults == {'hourglass': 'jaxpose_topdown', 'mmpose_hourglass': 'jaxpose_topdown',
                      'lightweight_openpose': 'lightweight_openpose', 'staf': 'lightweight_openpose',
                      'openpose': 'cmu_openpose'}
  top_down = approaches.for_description(HOURGLASS)
  assert top_down.protocol(approaches.Options(protocol='bearpaw_mpii')).NAME == 'bearpaw_mpii'
  with pytest.raises(ValueError, match='--protocol cmu_openpose is a bottom-up protocol, but '
                     "'hourglass' is a top-down model: use one of jaxpose_topdown, "
                     'mmpose_topdown, bearpaw_mpii'):
    top_down.protocol(approaches.Options(protocol='cmu_openpose'))
  with pytest.raises(ValueError, match="--protocol: expected one of .*, got 'val.py'"):
    top_down.protocol(approaches.Options(protocol='val.py'))
  # Each protocol module says what it reproduces, from which upstream commit (but jaxpose's own).
  for name, module in approaches.protocols.PROTOCOLS.items():
    assert module.NAME == name and module.APPROACH in ('top-down', 'bottom-up')
    if name != 'jaxpose_topdown':
      assert re.search(r'commit\s+[0-9a-f]{40}', module.__doc__), name


def test_the_old_per_case_protocol_options_map_to_names_with_a_warning():
  with pytest.warns(DeprecationWarning, match='--mpii_protocol=bearpaw is deprecated: use '
                    '--protocol=bearpaw_mpii'):
    assert approaches.Options(mpii_protocol='bearpaw').protocol == 'bearpaw_mpii'
  with pytest.warns(DeprecationWarning, match='--coco_protocol=mmpose'):
    assert approaches.Options(coco_protocol='mmpose').protocol == 'mmpose_topdown'
  with pytest.warns(DeprecationWarning):
    assert approaches.Options(coco_protocol='jaxpose').protocol is None  # the model's own
  with pytest.raises(ValueError, match="--mpii_protocol: expected one of"):
    approaches.Options(mpii_protocol='hrnet')


def test_stateless_approaches_keep_no_video_state_and_export_one_input():
  top_down = approaches.for_description(HOURGLASS)
  assert top_down.new_video_state(None, approaches.Options()) == {}
  signature = top_down.export_signature((32, 64), nchw=True)
  assert signature.inputs == {'images': ('N', 3, 64, 32)} and signature.feedback == {}
  assert signature.outputs == ['heatmaps_stack0', 'heatmaps_stack1']
  staf = approaches.for_description({'arch': 'staf'})
  with pytest.raises(ValueError, match='runs from its workdir'):
    staf.new_video_state(object(), approaches.Options())  # an ONNX predictor holds no variables
  with pytest.raises(ValueError, match='tracking is evaluated for STAF models'):
    top_down.tracking_results(None, None, approaches.Options())
