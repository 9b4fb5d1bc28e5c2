"""jaxpose.deploy.convert and `jaxpose convert`: published checkpoints in, clear errors on bad ones."""

import functools
import json

import jax
import numpy as np
import pytest
import torch

from jaxpose import cli
from jaxpose.training import checkpoint
from jaxpose.deploy import convert
from jaxpose.models.hourglass import StackedHourglass
import torch_hourglass

INPUT_SHAPE = (1, 64, 64, 3)  # smallest input the hourglass accepts: fast to trace


@pytest.fixture(scope='module')
def torch_model():
  return torch_hourglass.randomize(torch_hourglass.HourglassNet(2, 1, num_classes=16))


def _convert(state_dict, num_stacks=2):
  return convert.variables_from_torch(
      StackedHourglass(num_stacks=num_stacks, num_blocks=1, num_joints=16), state_dict,
      input_shape=INPUT_SHAPE)


def test_conv_and_batch_norm_layouts(torch_model):
  variables = _convert(torch_model.state_dict())
  conv = torch_model.hg[0].hg[3][0][0].conv2.weight.detach().numpy()  # [O, I, kh, kw]
  ours = variables['params']['hg_0']['hg_3_0_0']['conv2']['kernel']  # [kh, kw, I, O]
  np.testing.assert_array_equal(ours, conv.transpose(2, 3, 1, 0))
  bn = torch_model.fc[1][1]
  np.testing.assert_array_equal(variables['batch_stats']['fc_1_1']['var'],
                                bn.running_var.numpy())
  np.testing.assert_array_equal(variables['params']['fc_1_1']['scale'], bn.weight.detach().numpy())
  np.testing.assert_array_equal(variables['params']['score__0']['bias'],
                                torch_model.score_[0].bias.detach().numpy())


def test_dataparallel_prefix_and_numpy_values(torch_model):
  plain = _convert(torch_model.state_dict())
  wrapped = _convert({f'module.{k}': v.numpy() for k, v in torch_model.state_dict().items()})
  for a, b in zip(jax.tree_util.tree_leaves(plain), jax.tree_util.tree_leaves(wrapped)):
    np.testing.assert_array_equal(a, b)


def test_missing_key_is_named(torch_model):
  state_dict = dict(torch_model.state_dict())
  del state_dict['hg.1.hg.2.1.0.bn2.running_mean']
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"missing key 'hg\.1\.hg\.2\.1\.0\.bn2\.running_mean'"):
    _convert(state_dict)


def test_wrong_shape_is_named(torch_model):
  state_dict = dict(torch_model.state_dict())
  state_dict['score.1.weight'] = torch.zeros(17, 256, 1, 1)
  with pytest.raises(convert.CheckpointMismatchError,
                     match=r"'score\.1\.weight' has shape \(1, 1, 256, 17\).*\(1, 1, 256, 16\)"):
    _convert(state_dict)


def test_unknown_key_is_named(torch_model):
  # A 2-stack checkpoint into a 1-stack model: the second stack is left over.
  with pytest.raises(convert.CheckpointMismatchError, match=r"unknown key.*'fc\.1\.0\.bias'"):
    _convert(torch_model.state_dict(), num_stacks=1)


def test_cli_writes_an_orbax_checkpoint_with_pytorch_outputs(torch_model, tmp_path, capsys):
  path = tmp_path / 'model.pth.tar'
  # bearpaw/pytorch-pose saves {'epoch', 'arch', 'state_dict', ...} from a DataParallel model.
  torch.save({'epoch': 3, 'arch': 'hg',
              'state_dict': {f'module.{k}': v for k, v in torch_model.state_dict().items()}},
             path)
  workdir = tmp_path / 'converted'
  cli.run(['convert', '--arch', 'hourglass', '--num-stacks', '2', '--num-blocks', '1',
           '--checkpoint', str(path), '--out', str(workdir)])
  output = capsys.readouterr()
  # --out still works for one release, with a warning naming --workdir.
  assert '--out is deprecated, use --workdir' in output.err
  printed = json.loads(output.out.strip().splitlines()[-1])
  assert printed['workdir'] == str(workdir) and printed['input_size'] == [256, 256]
  assert printed['parameters'] == sum(p.numel() for p in torch_model.parameters())

  variables, model_config = checkpoint.restore_variables(str(workdir))
  # bearpaw's hourglasses always halve four times: depth 4.
  # bearpaw's layer2 has 128 planes; its inputs are RGB / 255 minus its MPII mean.
  assert model_config == {'arch': 'hourglass', 'num_stacks': 2, 'num_blocks': 1,
                          'num_joints': 16, 'num_features': 128, 'depthwise': False,
                          'depth': 4, 'layer2_features': 128,
                          'normalization': {'channels': 'RGB', 'divisor': 255.0,
                                            'mean': [0.440442830324173, 0.4440267086029053,
                                                     0.4326828420162201],
                                            'std': [1.0, 1.0, 1.0]},
                          'input_size': [256, 256], 'stride': 4}
  model = StackedHourglass(num_stacks=2, num_blocks=1, num_joints=16)
  images = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype(np.float32)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2)))[-1]
  ours = model.apply(variables, images, train=False)[-1]
  expected = expected.numpy().transpose(0, 2, 3, 1)
  np.testing.assert_allclose(ours, expected, atol=1e-4 * np.abs(expected).max())


def test_cli_names_the_checkpoint_and_key_on_a_wrong_architecture(torch_model, tmp_path):
  path = tmp_path / 'two_stacks.pth'
  torch.save(torch_model.state_dict(), path)
  with pytest.raises(SystemExit, match=rf"{path}.*unknown key"):
    cli.run(['convert', '--arch', 'hourglass', '--num-stacks', '1', '--checkpoint',
              str(path), '--workdir', str(tmp_path / 'out')])
  assert not (tmp_path / 'out').exists()  # nothing half-written


def test_cli_names_a_file_that_is_not_a_checkpoint(tmp_path):
  path = tmp_path / 'notes.pth'
  path.write_text('not a checkpoint')
  with pytest.raises(SystemExit, match=rf'{path}: not a readable PyTorch checkpoint'):
    cli.run(['convert', '--arch', 'hourglass', '--checkpoint', str(path),
              '--workdir', str(tmp_path / 'out')])


def test_cli_converts_lightweight_openpose(tmp_path):
  import torch_openpose  # pylint: disable=g-import-not-at-top
  from jaxpose.models.openpose import LightweightOpenPose  # pylint: disable=g-import-not-at-top
  torch_model = torch_openpose.randomize(
      torch_openpose.PoseEstimationWithMobileNet(num_refinement_stages=1))
  path = tmp_path / 'checkpoint_iter_370000.pth'
  # Lightweight OpenPose saves {'state_dict', 'optimizer', 'scheduler', 'iter', ...}.
  torch.save({'state_dict': torch_model.state_dict(), 'iter': 370000}, path)
  cli.run(['convert', '--arch', 'lightweight_openpose', '--num-refinement-stages', '1',
            '--checkpoint', str(path), '--workdir', str(tmp_path / 'lwop')])
  variables, model_config = checkpoint.restore_variables(str(tmp_path / 'lwop'))
  assert model_config['arch'] == 'lightweight_openpose'
  assert model_config['num_refinement_stages'] == 1
  images = np.random.default_rng(0).normal(size=(1, 64, 96, 3)).astype(np.float32)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2)))
  heatmaps, pafs = LightweightOpenPose(num_refinement_stages=1).apply(
      variables, images, train=False)[-1]
  for ours, theirs in ((heatmaps, expected[-2]), (pafs, expected[-1])):
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, theirs, atol=1e-4 * np.abs(theirs).max())
