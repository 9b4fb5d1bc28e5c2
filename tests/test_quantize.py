"""jaxpose.deploy.quantize and `jaxpose export --int8`: int8 models calibrated as inference feeds them, and the agreement gate."""

import concurrent.futures
import pathlib
import shutil

import cv2
import numpy as np
import onnx
import pytest

from jaxpose import approaches, cli
from jaxpose import config as config_lib
from jaxpose.approaches.protocols import jaxpose_topdown, lightweight_openpose
from jaxpose.deploy import export, predictor, quantize
from jaxpose.inference import frame_sources
from jaxpose.training import checkpoint, trainer
import inference_models
import test_cli
import test_export
import test_staf_model

COCO = test_cli.COCO  # 4 images of people, 427x640 to 640x480


def _people(keypoints, scores) -> approaches.People:
  """Hand-made People: keypoints [P, J, 2], scores [P, J]; boxes and person scores unused."""
  scores = np.asarray(scores, np.float32)
  keypoints = np.asarray(keypoints, np.float32).reshape(*scores.shape, 2)
  return approaches.People(keypoints, scores, np.zeros((len(scores), 4)), np.ones(len(scores)))


def test_int8_file_is_named_after_the_float_one():
  assert quantize.int8_path('out/model.onnx') == 'out/model.int8.onnx'
  assert quantize.int8_path('model') == 'model.int8.onnx'


def test_agreement_counts_moved_and_missed_keypoints_whatever_the_order_of_people():
  reference = _people([[(10, 10), (20, 20), (30, 30)],
                       [(100, 100), (110, 110), (0, 0)]], [[1, 1, 1], [1, 1, 0]])
  # The int8 people in the other order: B's second keypoint moved by 8 px,
  # A's second by 9 px and its third not found.
  candidate = _people([[(100, 100), (110, 118), (0, 0)],
                       [(10, 10), (20, 29), (30, 30)]], [[1, 1, 0], [0.5, 0.5, 0]])
  assert quantize.keypoint_agreement([reference], [candidate], 8.0) == quantize.Agreement(3, 5)
  assert quantize.keypoint_agreement([reference], [candidate], 9.0) == quantize.Agreement(4, 5)
  assert quantize.Agreement(3, 5).share == 0.6
  # A float person the int8 model lost agrees on none of its keypoints;
  # people the int8 model adds are not counted.
  assert quantize.keypoint_agreement([reference], [_people(candidate.keypoints[1:], [[1, 1, 1]])],
                                     8.0) == quantize.Agreement(2, 5)
  extra = _people(np.concatenate([reference.keypoints, reference.keypoints + 50]),
                  [[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
  assert quantize.keypoint_agreement([reference], [extra], 1.0) == quantize.Agreement(5, 5)
  # Summed over images, each with its own tolerance.
  assert quantize.keypoint_agreement([reference, reference], [candidate, candidate],
                                     [8.0, 9.0]) == quantize.Agreement(7, 10)


def test_people_are_matched_for_the_most_agreeing_keypoints():
  # Within 45 px: A agrees with X on 2 keypoints and with Y on 1; B with X
  # on 2 and with Y on none. Matching A to X, its best, would leave B
  # nothing (2 in all); A-Y and B-X give 3.
  reference = _people([[(0, 0), (10, 0)], [(0, 0), (90, 0)]], [[1, 1], [1, 1]])
  candidate = _people([[(0, 0), (50, 0)], [(100, 0), (10, 0)]], [[1, 1], [1, 1]])
  assert quantize.keypoint_agreement([reference], [candidate], 45.0) == quantize.Agreement(3, 4)


def test_no_keypoint_found_cannot_be_measured():
  nobody = _people(np.zeros((0, 17, 2)), np.zeros((0, 17)))
  blank = _people(np.zeros((1, 17, 2)), np.zeros((1, 17)))
  found = _people(np.ones((1, 17, 2)), np.ones((1, 17)))
  assert quantize.keypoint_agreement([nobody, blank], [found, found], 8.0).share is None
  assert quantize.keypoint_agreement([found], [nobody], 8.0) == quantize.Agreement(0, 17)


def test_default_tolerance_is_one_heatmap_cell_on_the_image():
  openpose = approaches.for_description(inference_models.OPENPOSE)
  hourglass = approaches.for_description(inference_models.HOURGLASS)
  # Letterboxed: 640x480 fits 456x256 at 256 / 480 (height limits); 8 input px per cell.
  assert quantize.heatmap_cell(openpose, (480, 640, 3), (456, 256)) == pytest.approx(8 * 480 / 256)
  # The whole 100x50 image as a box, made 3:4 (48x64) and enlarged 1.25x:
  # 125 px wide for 48 input px; 4 input px per cell.
  assert quantize.heatmap_cell(hourglass, (50, 100, 3), (48, 64)) == pytest.approx(4 * 125 / 48)


def test_the_recurrent_staf_model_is_refused():
  with pytest.raises(ValueError, match="--int8: 'staf' is recurrent"):
    quantize.check_quantizable({'arch': 'staf', **test_staf_model.TINY})
  quantize.check_quantizable(inference_models.OPENPOSE)


def test_calibration_feeds_what_inference_feeds():
  models = inference_models.shared_models()
  image = cv2.cvtColor(cv2.imread(str(COCO / '000000000785.jpg')), cv2.COLOR_BGR2RGB)
  # Bottom-up: the image letterboxed to the file's fixed input size, as float pixels.
  openpose = predictor.OnnxPredictor(models['openpose_onnx'])
  (feed,) = list(_feeds(quantize.CalibrationReader(openpose, [image])))
  letterboxed, _ = lightweight_openpose.letterbox(image, input_size=(456, 256))
  np.testing.assert_array_equal(feed['images'], letterboxed[None].astype(np.float32))
  # Top-down: the whole image as one box through the protocol's crop, then
  # its mirror image for the flip test.
  hourglass = predictor.OnnxPredictor(models['hourglass_onnx'])
  crops, _ = jaxpose_topdown.crop_people(image, [[0, 0, image.shape[1], image.shape[0]]],
                                         (256, 256))
  feeds = list(_feeds(quantize.CalibrationReader(hourglass, [image, image])))
  assert len(feeds) == 4  # two images, two network calls each
  np.testing.assert_array_equal(feeds[0]['images'], crops.astype(np.float32))
  np.testing.assert_array_equal(feeds[1]['images'],
                                jaxpose_topdown.mirror_crops(crops, 4).astype(np.float32))


def _feeds(reader: quantize.CalibrationReader):
  while (feed := reader.get_next()) is not None:
    yield feed


def _coco_folder(folder: pathlib.Path, count: int) -> pathlib.Path:
  """A folder of the first `count` images of the COCO sample (fewer images, faster tests)."""
  folder.mkdir()
  for path in sorted(COCO.glob('*.jpg'))[:count]:
    shutil.copyfile(path, folder / path.name)
  return folder


@pytest.fixture(scope='module')
def quantized_openpose(tmp_path_factory) -> tuple[str, str, pathlib.Path]:
  """(float, int8 paths, calibration folder): the tiny random Lightweight OpenPose, calibrated on 2 COCO images."""
  float_path = inference_models.shared_models()['openpose_onnx']
  network = predictor.OnnxPredictor(float_path)
  calibration = _coco_folder(tmp_path_factory.mktemp('int8') / 'coco2', 2)
  out = calibration.parent / 'openpose.int8.onnx'
  quantize.quantize_model(float_path, out, quantize.CalibrationReader(
      network, frame_sources.image_folder(calibration)))
  return float_path, str(out), calibration


def test_int8_graph_has_int8_weights_and_uint8_activations(quantized_openpose):
  float_path, int8_path, _ = quantized_openpose
  graph = onnx.load(int8_path).graph
  initializers = {tensor.name: tensor for tensor in graph.initializer}
  producers = {out: node for node in graph.node for out in node.output}
  convs = [node for node in graph.node if node.op_type == 'Conv']
  assert len(convs) == sum(node.op_type == 'Conv' for node in onnx.load(float_path).graph.node)
  for conv in convs:
    # Each Conv's input and weight come through DequantizeLinear: of uint8
    # activations, and of int8 weights with a scale per output channel.
    activation, weight = (producers[name] for name in conv.input[:2])
    assert activation.op_type == weight.op_type == 'DequantizeLinear', conv.name
    weight_tensor = initializers[weight.input[0]]
    assert weight_tensor.data_type == onnx.TensorProto.INT8, conv.name
    assert len(initializers[weight.input[1]].dims) == 1  # per channel
    quantized = producers[activation.input[0]]
    assert quantized.op_type == 'QuantizeLinear'
    assert initializers[quantized.input[2]].data_type == onnx.TensorProto.UINT8
  # The model description travels, so the file runs as the float one does.
  float_model, int8_model = predictor.OnnxPredictor(float_path), predictor.OnnxPredictor(int8_path)
  assert int8_model.model_config == float_model.model_config
  assert int8_model.output_names == float_model.output_names
  assert int8_model.input_size == float_model.input_size == (456, 256)


def test_int8_maps_are_close_to_float_on_the_calibration_images(quantized_openpose):
  float_path, int8_path, calibration = quantized_openpose
  float_model, int8_model = predictor.OnnxPredictor(float_path), predictor.OnnxPredictor(int8_path)
  errors = []
  for frame in frame_sources.image_folder(calibration):
    batch, _ = lightweight_openpose.letterbox(frame.image, input_size=(456, 256))
    ours, theirs = int8_model(batch[None]), float_model(batch[None])
    for name in ('heatmaps_stage1', 'pafs_stage1'):
      errors.append(np.abs(ours[name] - theirs[name]).max() / np.abs(theirs[name]).max())
  # Random weights spread every layer's range; a trained model's int8
  # error is smaller. A float model would be 1e-6, a broken scale > 0.5.
  assert max(errors) < 0.1, errors
  assert min(errors) > 1e-4  # it is quantised


def test_a_top_down_hourglass_quantizes_too(tmp_path):
  # Its graph has MaxPool, Resize and residual Adds after BatchNorm, and
  # onnxruntime's symbolic shape inference gives up on it; calibrated on a
  # crop of a COCO image and its mirror image.
  float_path = inference_models.shared_models()['hourglass_onnx']
  network = predictor.OnnxPredictor(float_path)
  calibration = _coco_folder(tmp_path / 'coco1', 1)
  int8_path = quantize.quantize_model(float_path, tmp_path / 'hourglass.int8.onnx',
                                      quantize.CalibrationReader(
                                          network, frame_sources.image_folder(calibration)))
  ops = [node.op_type for node in onnx.load(int8_path).graph.node]
  assert ops.count('Resize') == 8 and ops.count('QuantizeLinear') > 50
  int8_model = predictor.OnnxPredictor(int8_path)
  image = next(iter(frame_sources.image_folder(calibration))).image
  crops = quantize.network_inputs(network, image)
  for batch in crops:  # the crop, then its mirror image
    ours, theirs = int8_model(batch)['heatmaps_stack1'], network(batch)['heatmaps_stack1']
    # Random weights grow the maps to ~1e4 with heavy tails: the error is
    # measured against their spread (0.06-0.07 here; a wrong scale gives ~1).
    assert np.sqrt(np.mean((ours - theirs)**2)) < 0.15 * theirs.std()


def _fake_export(source: str):
  """export.export_workdir that copies `source` (an ONNX file) to --out, after the command's check_model."""
  def export_workdir(workdir, out_path, step=None, check_model=None, **kwargs):
    del workdir, step, kwargs
    if check_model is not None:
      check_model(predictor.OnnxPredictor(source).model_config)
    pathlib.Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, out_path)
    return out_path
  return export_workdir


def _blank_folder(folder: pathlib.Path) -> pathlib.Path:
  folder.mkdir()
  cv2.imwrite(str(folder / 'blank.png'), np.zeros((256, 456, 3), np.uint8))
  return folder


def test_export_int8_summary_and_the_gate_in_process(tmp_path, monkeypatch, capsys):
  # The command around a float file already exported (tracing is the slow
  # part; the slow tests run it whole, in a subprocess).
  source = inference_models.shared_models()['openpose_onnx']
  monkeypatch.setattr(export, 'export_workdir', _fake_export(source))
  models = tmp_path / 'models'
  out = models / 'model.onnx'
  calibration = _coco_folder(tmp_path / 'coco1', 1)
  summary = cli.run(['export', '--workdir=unused', f'--out={out}', '--int8',
                     f'--calibration={calibration}', '--int8_min_agreement=0'])
  int8 = summary['int8']
  assert int8['out'] == str(models / 'model.int8.onnx')
  assert int8['bytes'] == (models / 'model.int8.onnx').stat().st_size < out.stat().st_size / 2
  assert int8['calibration_images'] == int8['check_images'] == 1
  assert int8['keypoints_compared'] > 0 and 0 <= int8['agreement'] <= 1
  assert int8['float_ms'] > 0 and int8['int8_ms'] > 0 and int8['tolerance'] == 'heatmap cell'
  assert sorted(p.name for p in models.iterdir()) == ['model.int8.onnx', 'model.onnx']
  capsys.readouterr()

  # One blank calibration image, checked on itself: the int8 file is not
  # written, and the one of the earlier export (of the float model this
  # export replaced) is removed; the float model stays.
  blank = _blank_folder(tmp_path / 'blank')
  assert cli.main(['export', '--workdir=unused', f'--out={out}', '--int8',
                   f'--calibration={blank}']) == 1
  error = capsys.readouterr().err.strip().splitlines()
  assert len(error) == 1 and error[0].startswith('jaxpose export: int8 agreement '), error
  assert f'{models / "model.int8.onnx"} was not written, the float model is at {out}' in error[0]
  assert f'1 check image(s) in {blank}' in error[0]
  assert [p.name for p in models.iterdir()] == ['model.onnx']


@pytest.mark.parametrize('agreement, message', [
    (quantize.Agreement(17, 20), 'int8 agreement 0.850 < --int8_min_agreement 0.9 (17 of 20 '
     'keypoints within 2.5 px) on 1 check image(s) in {folder}; {int8} was not written, the float '
     'model is at {out}'),
    (quantize.Agreement(0, 0), 'int8 agreement cannot be measured: the float model {out} finds no '
     'keypoint on the 1 check image(s) in {folder} (give --int8_check images with people); {int8} '
     'was not written, the float model is at {out}'),
])
def test_a_failed_gate_names_agreement_threshold_images_and_folder(agreement, message, tmp_path,
                                                                   monkeypatch):
  # The gate alone: the "int8" model is a copy of the float one, the agreement given.
  monkeypatch.setattr(quantize, 'quantize_model',
                      lambda source, out, calibration: shutil.copyfile(source, out))
  monkeypatch.setattr(quantize, 'keypoint_agreement', lambda *args: agreement)
  out = tmp_path / 'model.onnx'
  shutil.copyfile(inference_models.shared_models()['openpose_onnx'], out)
  folder = _blank_folder(tmp_path / 'blank')
  frames = frame_sources.image_folder(folder)
  with pytest.raises(quantize.AgreementError) as failed:
    quantize.export_int8(out, frames, frames, min_agreement=0.9, tolerance=2.5)
  assert str(failed.value) == message.format(folder=folder, out=out,
                                             int8=tmp_path / 'model.int8.onnx')
  assert sorted(p.name for p in tmp_path.iterdir()) == ['blank', 'model.onnx']


def test_int8_flags_are_checked_before_any_work(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'notes.txt').write_text('not an image')
  out = tmp_path / 'out' / 'model.onnx'
  common = ['export', f'--workdir={tmp_path / "no_workdir"}', f'--out={out}']
  cases = {  # arguments -> phrases of the one-line error
      ('--int8',): ['--int8 needs --calibration DIR'],
      ('--int8', f'--calibration={empty}'): [f'--calibration {empty}: no image files'],
  }
  # Through the installed executable: exit status 2 and one line, nothing written.
  with concurrent.futures.ThreadPoolExecutor(len(cases)) as pool:
    done = dict(zip(cases, pool.map(lambda arguments: test_cli.jaxpose(*common, *arguments),
                                    cases)))
  for arguments, phrases in cases.items():
    test_cli.assert_one_line_error(done[arguments], 2, 'jaxpose export: ', *phrases)
  # The same checks in-process, for the other mistakes.
  in_process = {
      (f'--calibration={COCO}',): '--calibration applies only with --int8',
      ('--int8_tolerance=3', '--int8_min_agreement=0.5'):
          '--int8_min_agreement, --int8_tolerance apply only with --int8',
      ('--int8', f'--calibration={tmp_path / "missing"}'):
          f'--calibration {tmp_path / "missing"}: no such folder',
      ('--int8', f'--calibration={COCO}', f'--int8_check={empty}'):
          f'--int8_check {empty}: no image files',
      ('--int8', f'--calibration={COCO}', '--int8_tolerance=0'):
          '--int8_tolerance: expected a positive number of pixels, got 0',
      ('--int8', f'--calibration={COCO}', '--int8_min_agreement=1.5'): 'int8_min_agreement',
  }
  for arguments, phrase in in_process.items():
    with pytest.raises(cli.CommandFailed) as failed:
      cli.run([*common, *arguments])
    assert failed.value.status == 2 and phrase in failed.value.message, failed.value.message
  assert not out.parent.exists()


@pytest.mark.slow  # ~40 s: two real exports through the executable
def test_int8_export_through_the_executable_nchw_then_a_blank_image(tmp_path):
  workdir = tmp_path / 'lwop'
  variables = test_export._randomized(  # pylint: disable=protected-access
      inference_models.OPENPOSE, (1, 64, 64, 3))
  checkpoint.save_variables(str(workdir), variables, inference_models.OPENPOSE)
  out = tmp_path / 'models' / 'model.onnx'
  export_int8 = ['export', f'--workdir={workdir}', f'--out={out}', '--input_size=64,64', '--int8']
  # Channels first works too: calibration feeds what OnnxPredictor feeds.
  summary = test_cli.last_json(test_cli.jaxpose(*export_int8, '--nchw', f'--calibration={COCO}',
                                                '--int8_min_agreement=0'))
  assert summary['inputs'] == {'images': ['N', 3, 64, 64]}
  int8 = pathlib.Path(summary['int8']['out'])
  assert int8 == out.parent / 'model.int8.onnx' and summary['int8']['calibration_images'] == 4
  assert predictor.OnnxPredictor(str(int8)).nchw
  # One blank calibration image: exit 1, the float check's lines and then
  # one line of error, no traceback; the float model is in place, the int8
  # one (of the model just replaced) is not.
  blank = _blank_folder(tmp_path / 'blank')
  done = test_cli.jaxpose(*export_int8, f'--calibration={blank}')
  assert done.returncode == 1 and done.stdout == '' and 'Traceback' not in done.stderr
  *checks, error = done.stderr.strip().splitlines()
  assert len(checks) == 4 and all(': max |onnx - jax| / max |jax| = ' in line for line in checks)
  assert error.startswith('jaxpose export: int8 agreement ') and str(blank) in error
  assert error.endswith(f'{int8} was not written, the float model is at {out}')
  assert [p.name for p in out.parent.iterdir()] == ['model.onnx']
  test_cli.assert_quiet(done.stderr)


def _training_crops(config, folder: pathlib.Path, split: int, count: int) -> pathlib.Path:
  """The first `count` examples of the config's train (split 0) or eval (1) data as the model's inputs, PNG files."""
  folder.mkdir()
  source = trainer.create_sources(config)[split]
  transform = trainer.create_transform(config, train=False)
  for index in range(count):
    example = transform.random_map(source[index], np.random.default_rng(0))
    cv2.imwrite(str(folder / f'{index:03d}.png'), cv2.cvtColor(example['image'], cv2.COLOR_RGB2BGR))
  return folder


@pytest.mark.slow  # ~3 min (5 with other jobs): trains the quick start's hourglass
def test_a_trained_model_passes_the_gate(tmp_path):
  # The quick start's hourglass, trained as shipped (evaluated once, at the end).
  workdir = tmp_path / 'quickstart'
  test_cli.last_json(test_cli.jaxpose('train', '--config=configs/quickstart.py',
                                      f'--workdir={workdir}', '--config.eval_every_steps=400',
                                      '--config.data.num_eval_examples=32'))
  config = config_lib.load_config_file(str(test_cli.REPO / 'configs' / 'quickstart.py'))
  calibration = _training_crops(config, tmp_path / 'train_crops', 0, 16)
  check = _training_crops(config, tmp_path / 'eval_crops', 1, 16)
  out = tmp_path / 'models' / 'model.onnx'
  summary = test_cli.last_json(test_cli.jaxpose(
      'export', f'--workdir={workdir}', f'--out={out}', '--int8', f'--calibration={calibration}',
      f'--int8_check={check}'))['int8']
  assert summary['agreement'] >= 0.9 and summary['keypoints_compared'] >= 48, summary
  assert summary['check_images'] == summary['calibration_images'] == 16
  # Checked on one blank image, the trained model finds nobody: nothing to compare.
  blank = tmp_path / 'blank'
  blank.mkdir()
  cv2.imwrite(str(blank / 'blank.png'), np.zeros((64, 64, 3), np.uint8))
  done = test_cli.jaxpose('export', f'--workdir={workdir}', f'--out={out}', '--int8',
                          f'--calibration={calibration}', f'--int8_check={blank}')
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      f'jaxpose export: int8 agreement cannot be measured: the float model {out} finds no '
      f'keypoint on the 1 check image(s) in {blank} (give --int8_check images with people); '
      f'{out.parent / "model.int8.onnx"} was not written, the float model is at {out}')
  assert [p.name for p in out.parent.iterdir()] == ['model.onnx']
