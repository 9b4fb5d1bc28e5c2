"""jaxpose.inference.predictor: the JAX and ONNX backends give the same outputs; bad models fail clearly."""

import numpy as np
import pytest

from jaxpose.training import checkpoint
from jaxpose import approaches
from jaxpose.deploy import predictor
import inference_models

TOLERANCE = 1e-4  # of each output's largest magnitude, as jaxpose.deploy.export checks


@pytest.fixture(scope='module')
def models():
  return inference_models.shared_models()


@pytest.mark.parametrize('name, shape', [('hourglass', (3, 256, 256, 3)),
                                         ('openpose', (1, 256, 456, 3))])
def test_jax_and_onnx_agree(models, name, shape):
  images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
  jax_outputs = predictor.JaxPredictor(models[name])(images)
  onnx_predictor = predictor.OnnxPredictor(models[f'{name}_onnx'])
  onnx_outputs = onnx_predictor(images)
  assert onnx_predictor.input_size == shape[2:0:-1]  # (width, height)
  assert sorted(jax_outputs) == sorted(onnx_outputs)
  expected_names = (['heatmaps_stack0', 'heatmaps_stack1'] if name == 'hourglass' else
                    ['heatmaps_stage0', 'pafs_stage0', 'heatmaps_stage1', 'pafs_stage1'])
  assert list(jax_outputs) == expected_names
  for output, expected in jax_outputs.items():
    assert onnx_outputs[output].shape == expected.shape
    assert expected.shape[0] == shape[0]
    error = np.abs(onnx_outputs[output] - expected).max() / np.abs(expected).max()
    assert error <= TOLERANCE, output


def test_approach_from_model(models):
  assert isinstance(predictor.JaxPredictor(models['hourglass']).approach, approaches.TopDown)
  assert isinstance(predictor.JaxPredictor(models['openpose']).approach, approaches.BottomUp)
  assert isinstance(predictor.OnnxPredictor(models['openpose_onnx']).approach,
                    approaches.BottomUp)
  assert isinstance(predictor.OnnxPredictor(models['hourglass_onnx']).approach,
                    approaches.TopDown)


def test_batches_pad_to_powers_of_two_and_three_times_them():
  sizes = [predictor.padded_batch_size(count) for count in range(1, 18)]
  assert sizes == [1, 2, 3, 4, 6, 6, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 24]
  assert max(size / count for count, size in enumerate(sizes, start=1)) < 1.5
  assert predictor.padded_batch_size(1025) == 1536


def test_batch_padding_does_not_change_outputs(models):
  # 5 images run as a padded batch of 6; each image alone gives the same maps.
  images = np.random.default_rng(1).integers(0, 256, (5, 256, 256, 3), dtype=np.uint8)
  model = predictor.JaxPredictor(models['hourglass'])
  together = approaches.last_output(model(images), 'heatmaps')
  alone = np.concatenate([approaches.last_output(model(image[None]), 'heatmaps')
                          for image in images])
  np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5 * np.abs(alone).max())


def test_a_model_that_needs_boxes_where_whole_images_are_asked_for_names_the_path(models):
  with pytest.raises(ValueError, match=f'{models["hourglass"]}: the model is top-down, but a '
                     'model that finds people in whole images'):
    predictor.JaxPredictor(models['hourglass'], whole_images=True)
  with pytest.raises(ValueError, match=f'{models["hourglass_onnx"]}: the model is top-down'):
    predictor.OnnxPredictor(models['hourglass_onnx'], whole_images=True)
  assert predictor.OnnxPredictor(models['openpose_onnx'], whole_images=True).approach.name == (
      'bottom-up')


def test_checkpoint_of_another_architecture_names_the_path(models, tmp_path):
  # Lightweight OpenPose variables under a stacked hourglass description.
  variables, _ = checkpoint.restore_variables(models['openpose'])
  workdir = tmp_path / 'mislabelled'
  checkpoint.save_variables(str(workdir), variables, inference_models.HOURGLASS)
  with pytest.raises(ValueError, match=f'{workdir}.*another architecture'):
    predictor.JaxPredictor(str(workdir))


def test_missing_paths_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nowhere')):
    predictor.JaxPredictor(str(tmp_path / 'nowhere'))
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'none.onnx')):
    predictor.OnnxPredictor(str(tmp_path / 'none.onnx'))
  (tmp_path / 'empty_workdir').mkdir()
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'empty_workdir')):
    predictor.JaxPredictor(str(tmp_path / 'empty_workdir'))
  garbage = tmp_path / 'garbage.onnx'
  garbage.write_bytes(b'not a model' * 10)
  with pytest.raises(ValueError, match=str(garbage)):
    predictor.OnnxPredictor(str(garbage))


def test_onnx_input_size_is_enforced(models):
  model = predictor.OnnxPredictor(models['hourglass_onnx'])
  with pytest.raises(ValueError, match='256x256'):
    model(np.zeros((1, 128, 256, 3), np.uint8))
