"""jaxpose.deploy.export: ONNX files that onnxruntime runs to the JAX (and PyTorch) outputs."""


import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from jaxpose import approaches, cli, models
from jaxpose.training import checkpoint
from jaxpose.deploy import convert
from jaxpose.deploy import export
import random_weights
import torch_hourglass

TOLERANCE = 1e-4  # of the output's largest magnitude
# A narrow layer2 (64 planes) keeps this tiny model tiny; bearpaw's is 128.
HOURGLASS = {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1, 'num_joints': 5,
             'num_features': 8, 'depthwise': False, 'layer2_features': 64}
OPENPOSE = {'arch': 'lightweight_openpose', 'num_refinement_stages': 1, 'num_channels': 16,
            'num_heatmaps': 19, 'num_pafs': 38}


def _randomized(config: dict, input_shape: tuple[int, ...], seed: int = 0) -> dict:
  """`random_weights.random_variables` of the family `config` describes, for inputs of `input_shape`."""
  return random_weights.random_variables(models.create_model(config), jnp.zeros(input_shape),
                                         seed=seed, train=False)


def _pixels(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


# Each family's input normalisation, written out: ImageNet mean and std on
# RGB / 255 (models trained here), (BGR - 128) / 256 (Lightweight OpenPose).
_NORMALIZE = {
    'hourglass': lambda x: ((x / 255.0 - jnp.asarray((0.485, 0.456, 0.406)))
                            / jnp.asarray((0.229, 0.224, 0.225))),
    'lightweight_openpose': lambda x: (x[..., ::-1] - 128.0) / 256.0,
}


def _jax_outputs(variables: dict, config: dict, images: np.ndarray) -> list[np.ndarray]:
  """Model outputs on RGB pixels [B, H, W, 3], flattened as the ONNX outputs are ordered."""
  model = models.create_model(config)
  apply = jax.jit(lambda v, x: model.apply(v, _NORMALIZE[config['arch']](x), train=False))
  outputs = apply(variables, images)
  if config['arch'] == 'lightweight_openpose':
    outputs = [maps for stage in outputs for maps in stage]
  return [np.asarray(maps) for maps in outputs]


def _assert_close(ours: np.ndarray, expected: np.ndarray) -> None:
  assert ours.shape == expected.shape
  np.testing.assert_allclose(ours, expected, rtol=0, atol=TOLERANCE * np.abs(expected).max())


@pytest.fixture(scope='module')
def hourglass_onnx():
  """(variables, ONNX path, description): HOURGLASS with 17 joints at 256x256, the inference tests' shared export.

  One export of this graph per run (jax2onnx takes ~15 s on it), not one per file.
  """
  import inference_models  # pylint: disable=g-import-not-at-top  (it imports this file)
  shared = inference_models.shared_models()
  variables, description = checkpoint.restore_variables(shared['hourglass'])
  assert description['num_stacks'] == HOURGLASS['num_stacks'] == 2
  return variables, shared['hourglass_onnx'], description


def test_hourglass_matches_jax_at_any_batch(hourglass_onnx):
  variables, path, description = hourglass_onnx
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  assert [i.name for i in session.get_inputs()] == ['images']
  assert session.get_inputs()[0].shape == ['N', 256, 256, 3]
  assert [o.name for o in session.get_outputs()] == ['heatmaps_stack0', 'heatmaps_stack1']
  # Every upsampling (4 per stack) became a Resize; no broadcast is left.
  ops = [node.op_type for node in onnx.load(path).graph.node]
  assert ops.count('Resize') == 8 and 'Expand' not in ops
  # 1x1 convs stay Conv nodes, though JAX on the CPU computes them as products.
  assert 'MatMul' not in ops and 'Einsum' not in ops and 'Gemm' not in ops
  images = _pixels((3, 256, 256, 3))
  expected = _jax_outputs(variables, description, images)
  # The two stacks differ, so a swapped or duplicated output would fail.
  assert np.abs(expected[0] - expected[1]).max() > 0.1 * np.abs(expected[1]).max()
  for batch in (1, 3):  # the same graph runs any batch size
    ours = session.run(None, {'images': images[:batch]})
    assert ours[0].shape == (batch, 64, 64, 17)
    for a, b in zip(ours, expected, strict=True):
      _assert_close(a, b[:batch])


@pytest.mark.slow  # ~2 min: a second hourglass export; the NCHW path is also tested on LWOP
def test_hourglass_nchw_last_only(tmp_path):
  variables = _randomized(HOURGLASS, (1, 64, 64, 3), seed=2)
  path = export.export_onnx(variables, HOURGLASS, str(tmp_path / 'hg_nchw.onnx'),
                            input_size=(128, 64), nchw=True, last_only=True,
                            check=False)
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  assert session.get_inputs()[0].shape == ['N', 3, 64, 128]
  assert [o.name for o in session.get_outputs()] == ['heatmaps_stack1']
  images = _pixels((3, 64, 128, 3))
  (ours,) = session.run(None, {'images': images.transpose(0, 3, 1, 2)})
  expected = _jax_outputs(variables, HOURGLASS, images)[-1]
  _assert_close(ours, expected.transpose(0, 3, 1, 2))


def test_lightweight_openpose_matches_jax_at_any_batch(tmp_path):
  variables = _randomized(OPENPOSE, (1, 64, 96, 3))
  path = export.export_onnx(variables, OPENPOSE, str(tmp_path / 'lwop.onnx'),
                            input_size=(96, 64), check=False)
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  assert [o.name for o in session.get_outputs()] == [
      'heatmaps_stage0', 'pafs_stage0', 'heatmaps_stage1', 'pafs_stage1']
  # The 14 depthwise convs (11 in the backbone, 3 in the CPM) stay grouped
  # Conv nodes, which onnxruntime runs fast, though JAX on the CPU computes
  # them by shifts.
  grouped = [node for node in onnx.load(path).graph.node if node.op_type == 'Conv' and
             any(a.name == 'group' and a.i > 1 for a in node.attribute)]
  assert len(grouped) == 14
  ops = [node.op_type for node in onnx.load(path).graph.node]
  assert 'MatMul' not in ops and 'Einsum' not in ops and 'Gemm' not in ops
  # BGR order matters: a channel-symmetric input would hide a missing flip.
  images = _pixels((4, 64, 96, 3), seed=10)
  images[..., 0] *= 0.2
  both = _jax_outputs(variables, OPENPOSE, np.concatenate([images, images[..., ::-1]]))
  expected, flipped = [maps[:4] for maps in both], [maps[4:] for maps in both]
  assert np.abs(flipped[-1] - expected[-1]).max() > 10 * TOLERANCE * np.abs(expected[-1]).max()
  for batch in (1, 4):
    ours = session.run(None, {'images': images[:batch]})
    assert ours[1].shape == (batch, 8, 12, 38)
    for a, b in zip(ours, expected, strict=True):
      _assert_close(a, b[:batch])


def test_output_names_last_only():
  names = lambda config, **kw: approaches.for_description(config).output_names(**kw)
  assert names(OPENPOSE, last_only=True) == ['heatmaps_stage1', 'pafs_stage1']
  assert names({'arch': 'lightweight_openpose'}) == [
      'heatmaps_stage0', 'pafs_stage0', 'heatmaps_stage1', 'pafs_stage1']
  assert names({'arch': 'hourglass', 'num_stacks': 8}, last_only=True) == ['heatmaps_stack7']


def test_pytorch_checkpoint_to_onnx_gives_pytorch_outputs(tmp_path, capsys):
  torch_model = torch_hourglass.randomize(torch_hourglass.HourglassNet(1, 1, num_classes=16))
  path = tmp_path / 'hg.pth'
  torch.save(torch_model.state_dict(), path)
  # The library path of `jaxpose convert`.
  model = models.create_model({'arch': 'hourglass', 'num_stacks': 1, 'num_blocks': 1,
                               'num_joints': 16})
  variables = convert.variables_from_torch(model, convert.load_torch_checkpoint(str(path)),
                                           input_shape=(1, 64, 64, 3))
  checkpoint.save_variables(str(tmp_path / 'workdir'), variables, models.model_config(model))

  cli.run(['export', '--workdir', str(tmp_path / 'workdir'), '--out', str(tmp_path / 'hg.onnx'),
            '--input-size=64,64', '--nchw'])
  assert 'heatmaps_stack0: max |onnx - jax|' in capsys.readouterr().err

  images = _pixels((2, 3, 64, 64))
  session = ort.InferenceSession(str(tmp_path / 'hg.onnx'), providers=['CPUExecutionProvider'])
  (ours,) = session.run(None, {'images': images})
  mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
  std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
  with torch.no_grad():
    (expected,) = torch_model(torch.from_numpy((images / 255 - mean) / std))
  _assert_close(ours, expected.numpy())


def test_missing_workdir_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'nothing')):
    export.export_workdir(str(tmp_path / 'nothing'), str(tmp_path / 'x.onnx'))
  assert not (tmp_path / 'x.onnx').exists()


def test_workdir_of_another_architecture_is_named(tmp_path):
  # Hourglass variables described as a 3-stack hourglass: the description lies.
  variables = jax.tree_util.tree_map(np.asarray, _randomized(HOURGLASS, (1, 64, 64, 3)))
  checkpoint.save_variables(str(tmp_path / 'three'), variables, {**HOURGLASS, 'num_stacks': 3})
  with pytest.raises(ValueError, match=rf"{tmp_path / 'three'}.*no variable '[a-z_]*/[a-z_]*_2"):
    export.export_workdir(str(tmp_path / 'three'), str(tmp_path / 'x.onnx'))
  # ... and as Lightweight OpenPose, and with an architecture jaxpose does not know.
  checkpoint.save_variables(str(tmp_path / 'lwop'), variables, OPENPOSE)
  with pytest.raises(ValueError, match=rf"{tmp_path / 'lwop'}.*another architecture"):
    export.export_workdir(str(tmp_path / 'lwop'), str(tmp_path / 'x.onnx'))
  checkpoint.save_variables(str(tmp_path / 'resnet'), variables, {'arch': 'resnet'})
  with pytest.raises(ValueError, match=rf"{tmp_path / 'resnet'}.*\"arch\" is 'resnet'"):
    export.export_workdir(str(tmp_path / 'resnet'), str(tmp_path / 'x.onnx'))
  assert not (tmp_path / 'x.onnx').exists()


def test_check_reports_a_mismatch_per_output(hourglass_onnx):
  variables, path, description = hourglass_onnx
  forward = approaches.for_description(description).network_fn(variables)
  # JAX's second stack scaled by 1.001: that output is off by 1e-3 of its max.
  errors = export.check_onnx(path, lambda images: (forward(images)[0], 1.001 * forward(images)[1]),
                             (2, 256, 256, 3))
  assert errors['heatmaps_stack0'] < 1e-5
  assert errors['heatmaps_stack1'] == pytest.approx(1e-3 / 1.001, rel=0.02)
