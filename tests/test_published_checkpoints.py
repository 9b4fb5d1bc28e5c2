"""Published checkpoints of the seed's families: saved in the upstream file's layout -> `jaxpose convert` -> `jaxpose export` / JAX give upstream's outputs from the same uint8 pixels.

Upstream here is the PyTorch reference transcribed from each upstream file
(tests/torch_hourglass.py: bearpaw/pytorch-pose; tests/torch_openpose.py:
Lightweight OpenPose; tests/torch_cmu_openpose.py: Hzzone/pytorch-openpose;
tests/torch_mmpose_hourglass.py: mmpose's HourglassNet + CPMHead), fed what
upstream's own code feeds it: bearpaw's RGB / 255 minus its MPII mean
(`color_normalize`, no std), Lightweight OpenPose's (BGR - 128) / 256, the
CMU port's BGR / 256 - 0.5, mmpose's (RGB - mean) / std. jaxpose gets the uint8 RGB pixels and applies
the normalisation that `convert` recorded with the weights. A converted
bearpaw checkpoint also gets bearpaw's MPII predictions and PCKh
(tests/bearpaw_mpii_reference.py: its `example/main.py -e` and `eval_PCKh.py`).
"""

import concurrent.futures
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from jaxpose import cli, evaluation, skeletons
from jaxpose.training import checkpoint
from jaxpose.deploy import predictor
from jaxpose.approaches import Options
from jaxpose.approaches.protocols import bearpaw_mpii
from jaxpose.data import images, mpii
from jaxpose.models import hourglass
import bearpaw_mpii_reference
from test_metrics import _bearpaw_eval_pckh
from test_mpii import write_official_mat
from test_sources import coco_sample_config
import torch_cmu_openpose
import torch_hourglass
import torch_mmpose_hourglass
import torch_openpose
import test_cli

TOLERANCE = 1e-4  # of the largest output value


def _pixels(height: int, width: int) -> np.ndarray:
  return np.random.default_rng(3).integers(0, 256, (2, height, width, 3), dtype=np.uint8)


def _bearpaw_input(pixels: np.ndarray) -> torch.Tensor:
  """bearpaw: RGB / 255 (float32), minus the MPII mean of data/mpii/mean.pth.tar, NCHW."""
  mean = np.array(hourglass.BEARPAW_MPII.mean, np.float32)
  rgb = pixels.astype(np.float32) / np.float32(255)
  return torch.from_numpy((rgb - mean).transpose(0, 3, 1, 2).copy())


def _lightweight_input(pixels: np.ndarray) -> torch.Tensor:
  """Osokin's demo: the cv2 (BGR) image as float32, (x - 128) / 256, NCHW."""
  bgr = pixels[..., ::-1].astype(np.float32)
  return torch.from_numpy(((bgr - 128) / 256).transpose(0, 3, 1, 2).copy())


def _convert_and_export(tmp_path, state_dict: dict, arch: str, size: tuple[int, int],
                        *options: str) -> tuple[str, str]:
  torch.save(state_dict, tmp_path / 'published.pth')
  workdir, onnx_path = str(tmp_path / 'workdir'), str(tmp_path / 'model.onnx')
  cli.run(['convert', '--arch', arch, '--checkpoint', str(tmp_path / 'published.pth'),
            '--workdir', workdir, *options])
  cli.run(['export', '--workdir', workdir, '--out', onnx_path,
            f'--input_size={size[0]},{size[1]}'])
  return workdir, onnx_path


def _assert_close(ours: np.ndarray, expected: np.ndarray, what: str) -> None:
  assert ours.shape == expected.shape, what
  np.testing.assert_allclose(ours, expected, rtol=0, atol=TOLERANCE * np.abs(expected).max(),
                             err_msg=what)


# Both slow (~30 s and ~1 min): by default test_hourglass compares two stacks
# with bearpaw's HourglassNet, test_convert converts its DataParallel
# checkpoint through the CLI and test_export takes one to ONNX.
@pytest.mark.slow
@pytest.mark.parametrize('stacks, blocks', [(1, 2), (2, 1)])
def test_bearpaw_hourglass(tmp_path, stacks, blocks):
  model = torch_hourglass.randomize(torch_hourglass.HourglassNet(stacks, blocks, 16), seed=stacks)
  # As bearpaw's example/main.py saves it: DataParallel's keys inside 'state_dict'.
  published = {'epoch': 10, 'arch': 'hg', 'best_acc': 0.5,
               'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}}
  workdir, onnx_path = _convert_and_export(tmp_path, published, 'hourglass', (64, 64),
                                           f'--num_stacks={stacks}', f'--num_blocks={blocks}')
  pixels = _pixels(64, 64)
  with torch.no_grad():
    expected = [out.numpy().transpose(0, 2, 3, 1) for out in model(_bearpaw_input(pixels))]
  session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
  onnx_outputs = session.run(None, {'images': pixels.astype(np.float32)})
  jax_outputs = predictor.JaxPredictor(workdir)(pixels)
  assert len(onnx_outputs) == len(jax_outputs) == len(expected) == stacks
  for i, want in enumerate(expected):
    _assert_close(onnx_outputs[i], want, f'onnx stack {i}')
    _assert_close(jax_outputs[f'heatmaps_stack{i}'], want, f'jax stack {i}')


def test_lightweight_openpose(tmp_path):
  model = torch_openpose.randomize(torch_openpose.PoseEstimationWithMobileNet(1))
  # As Osokin's train.py saves it: {'state_dict', 'optimizer', ...}.
  published = {'state_dict': model.state_dict(), 'iter': 420000}
  workdir, onnx_path = _convert_and_export(tmp_path, published, 'lightweight_openpose',
                                           (96, 64), '--num_refinement_stages=1')
  pixels = _pixels(64, 96)
  with torch.no_grad():
    expected = [out.numpy().transpose(0, 2, 3, 1) for out in model(_lightweight_input(pixels))]
  session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
  onnx_outputs = session.run(None, {'images': pixels.astype(np.float32)})
  jax_outputs = list(predictor.JaxPredictor(workdir)(pixels).values())
  assert len(onnx_outputs) == len(jax_outputs) == len(expected) == 4  # 2 stages x (heatmaps, pafs)
  for i, want in enumerate(expected):
    _assert_close(onnx_outputs[i], want, f'onnx output {i}')
    _assert_close(jax_outputs[i], want, f'jax output {i}')


@pytest.mark.slow  # ~2 min: exports the 52M-parameter CMU model; its JAX parity runs by default
def test_cmu_openpose(tmp_path):
  model = torch_cmu_openpose.randomize(torch_cmu_openpose.BodyPoseModel())
  # body_pose_model.pth: a bare state_dict of flat keys (`util.transfer`).
  published = torch_cmu_openpose.published_state_dict(model)
  workdir, onnx_path = _convert_and_export(tmp_path, published, 'openpose', (64, 48))
  pixels = _pixels(48, 64)
  # The port's body.py: the cv2 (BGR) image as float32, / 256 - 0.5, NCHW.
  bgr = pixels[..., ::-1].astype(np.float32)
  with torch.no_grad():
    stages = model.forward_all(torch.from_numpy((bgr / 256 - 0.5).transpose(0, 3, 1, 2).copy()))
  expected = [maps.numpy().transpose(0, 2, 3, 1) for l1, l2 in stages for maps in (l2, l1)]
  session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
  onnx_outputs = session.run(None, {'images': pixels.astype(np.float32)})
  jax_outputs = list(predictor.JaxPredictor(workdir)(pixels).values())
  assert len(onnx_outputs) == len(jax_outputs) == len(expected) == 12  # 6 x (heatmaps, pafs)
  for i, want in enumerate(expected):
    _assert_close(onnx_outputs[i], want, f'onnx output {i}')
    _assert_close(jax_outputs[i], want, f'jax output {i}')


def test_normalisation_travels_with_the_converted_weights(tmp_path):
  model = torch_hourglass.HourglassNet(1, 1, 16)
  torch.save(model.state_dict(), tmp_path / 'bare.pth')  # a bare state_dict loads too
  cli.run(['convert', '--arch', 'hourglass', '--num_stacks=1', '--num_blocks=1',
            '--checkpoint', str(tmp_path / 'bare.pth'), '--workdir', str(tmp_path / 'w')])
  _, description = checkpoint.restore_variables(str(tmp_path / 'w'))
  assert description['normalization'] == hourglass.BEARPAW_MPII.to_dict()
  # bearpaw trains and evaluates at 256x256: the size export and infer default to.
  assert description['input_size'] == [256, 256] and description['stride'] == 4
  assert description['normalization']['mean'][0] == pytest.approx(0.4404, abs=1e-4)


def _bearpaw_case(tmp_path):
  """A converted random bearpaw checkpoint on the bundled MPII sample -> (workdir, annotation file, MPII folder, bearpaw's MeanOfJoints).

  bearpaw's `example/main.py -e` then `eval_PCKh.py` (transcribed) give the
  figure; `bearpaw_mpii.predict_mpii` is checked to give bearpaw's whole-pixel
  predictions on the way.
  """
  model = torch_hourglass.randomize(torch_hourglass.HourglassNet(1, 1, 16), seed=5).eval()
  torch.save({'state_dict': {f'module.{k}': v for k, v in model.state_dict().items()}},
             tmp_path / 'hg.pth')
  workdir = str(tmp_path / 'hg')
  cli.run(['convert', '--arch', 'hourglass', '--num_stacks=1', '--num_blocks=1',
            '--checkpoint', str(tmp_path / 'hg.pth'), '--workdir', workdir])
  jax_model = predictor.JaxPredictor(workdir)
  heatmaps_fn = lambda pixels: jax_model.approach.last_maps(jax_model(pixels))

  mpii_dir = os.path.join(os.path.dirname(__file__), 'data', 'mpii')
  with open(os.path.join(mpii_dir, 'test_mpii.json')) as f:
    annotation_file = write_official_mat(tmp_path / 'mpii.mat', json.load(f))
  records = mpii.load_mpii(annotation_file, mpii_dir)
  mean = torch.tensor(hourglass.BEARPAW_MPII.mean, dtype=torch.float32)
  expected, ours = [], []
  for record in records:
    image = images.read_image(record.path, record.image_id)
    people = [(c + 1, s) for c, s in zip(record.center.astype(np.float64), record.scale)]
    with torch.no_grad():
      expected.append(bearpaw_mpii_reference.validate_image(
          lambda batch: model(batch)[-1], image, people, mean) - 1)
    ours.append(bearpaw_mpii.predict_mpii(heatmaps_fn, image, record.center, record.scale,
                                             (256, 256), skeletons.MPII.flip_permutation()))
  expected, ours = np.concatenate(expected), np.concatenate(ours)
  np.testing.assert_array_equal(ours, expected)
  target = np.concatenate([r.keypoints for r in records])
  visible = np.concatenate([r.visible for r in records]) > 0
  head_boxes = np.concatenate([r.head_boxes for r in records])
  _, mean_of_joints = _bearpaw_eval_pckh(expected, target, visible.astype(np.float64), head_boxes)
  return workdir, annotation_file, mpii_dir, mean_of_joints


def test_bearpaw_checkpoint_scores_bearpaws_mpii_pckh(tmp_path):
  # `jaxpose eval --protocol=bearpaw_mpii`'s library call on the converted checkpoint.
  workdir, annotation_file, mpii_dir, mean_of_joints = _bearpaw_case(tmp_path)
  config = coco_sample_config(**{'input_size': (256, 256), 'data.source': 'mpii',
                                 'data.eval_annotations': annotation_file,
                                 'data.eval_images': mpii_dir})
  config.model.num_joints = 16
  metrics = evaluation.evaluate_workdir(config, workdir, options=Options(protocol='bearpaw_mpii'))
  assert metrics['MeanOfJoints'] == pytest.approx(mean_of_joints, abs=1e-9)


@pytest.mark.slow  # ~1 min: two `jaxpose eval` processes at 256x256
def test_the_bearpaw_protocol_by_name_and_by_its_old_flag_on_the_command_line(tmp_path):
  workdir, annotation_file, mpii_dir, mean_of_joints = _bearpaw_case(tmp_path)
  evaluate = ['eval', '--config=configs/hourglass_mpii.py', f'--workdir={workdir}',
              '--config.model.num_stacks=1', '--config.model.num_blocks=1',
              '--config.data.source=mpii', f'--config.data.eval_annotations={annotation_file}',
              f'--config.data.eval_images={mpii_dir}', '--config.input_size=256,256']
  runs = [evaluate + ['--protocol=bearpaw_mpii', f'--results={tmp_path / "a.json"}'],
          evaluate + ['--mpii_protocol=bearpaw', f'--results={tmp_path / "b.json"}']]
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    by_name, by_old_flag = pool.map(lambda arguments: test_cli.jaxpose(*arguments), runs)
  metrics = test_cli.last_json(by_name)
  assert metrics == test_cli.last_json(by_old_flag)
  assert metrics['MeanOfJoints'] == pytest.approx(mean_of_joints, abs=1e-9)
  assert '--mpii_protocol=bearpaw is deprecated: use --protocol=bearpaw_mpii' in by_old_flag.stderr


@pytest.mark.slow  # ~75 s on 2 cores: jax2onnx and the export's check on 95M parameters
def test_mmpose_hourglass(tmp_path):
  # hourglass52 as mmpose's published hourglass52_coco_*.pth files hold it:
  # {'state_dict': backbone.* + keypoint_head.* (mmpose 0.x), 'meta': ...}.
  model = torch_mmpose_hourglass.randomize(torch_mmpose_hourglass.MmposeTopdown(1, 17), seed=7)
  published = torch_mmpose_hourglass.published_checkpoint(model, '0.x')
  workdir, onnx_path = _convert_and_export(tmp_path, published, 'mmpose_hourglass', (128, 128),
                                           '--num_stacks=1', '--num_joints=17')
  _, description = checkpoint.restore_variables(workdir)
  assert description['normalization'] == {'channels': 'RGB', 'divisor': 1.0,
                                           'mean': [123.675, 116.28, 103.53],
                                           'std': [58.395, 57.12, 57.375]}
  pixels = _pixels(128, 128)
  # mmpose's data preprocessor: (RGB - mean) / std, NCHW.
  with torch.no_grad():
    expected = [out.numpy().transpose(0, 2, 3, 1)
                for out in model(torch_mmpose_hourglass.normalize(pixels))]
  session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
  onnx_outputs = session.run(None, {'images': pixels.astype(np.float32)})
  assert [o.name for o in session.get_outputs()] == ['heatmaps_stack0']
  assert len(onnx_outputs) == len(expected) == 1
  _assert_close(onnx_outputs[0], expected[0], 'onnx stack 0')
