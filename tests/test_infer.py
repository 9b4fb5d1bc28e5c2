"""jaxpose infer: per-frame records, tracked ids and an annotated video, for both approaches and backends."""

import json
import pathlib
import signal
import subprocess
import threading
import time

import cv2
import numpy as np
import pytest

from jaxpose import approaches, cli, skeletons
from jaxpose.inference import pipeline
from jaxpose.deploy import predictor
from jaxpose.approaches.protocols import jaxpose_topdown, lightweight_openpose
from jaxpose import tracking
from jaxpose.inference import frame_sources
import inference_models
from mjpeg_server import MjpegServer
import test_cli

DATA = pathlib.Path(__file__).parent / 'data'
DEMO_VIDEO = DATA / 'video' / 'demo.mp4'
COCO_DIR = DATA / 'coco'
COCO_DETECTIONS = COCO_DIR / 'test_coco_det_AP_H_56.json'
NUM_FRAMES = 5
# Keypoints may differ by a rounding of the quarter-pixel shift between backends.
KEYPOINT_TOLERANCE = 0.05  # pixels
SCORE_TOLERANCE = 1e-3  # of the largest score
# A stream batched with others against alone (issue 28's acceptance).
STREAMS_TOLERANCE = 1e-2  # pixels


@pytest.fixture(scope='module')
def models():
  return inference_models.shared_models()


@pytest.fixture(scope='module')
def video_detections(tmp_path_factory):
  """Two people boxes per frame of the demo video, drifting, in COCO results format."""
  records = []
  for frame in range(NUM_FRAMES):
    records.append({'image_id': frame, 'category_id': 1, 'score': 0.9,
                    'bbox': [100 + 20 * frame, 100, 120, 300]})
    records.append({'image_id': frame, 'category_id': 1, 'score': 0.8,
                    'bbox': [600 - 10 * frame, 150, 100, 250]})
  path = tmp_path_factory.mktemp('detections') / 'video_detections.json'
  path.write_text(json.dumps(records))
  return path


def _run(out: pathlib.Path, *flags: str) -> tuple[dict, list[dict], list[dict]]:
  summary = cli.run(['infer', *flags, '--out', str(out)])
  return (summary, json.loads((out / pipeline.RESULTS_FILE).read_text()),
          json.loads((out / pipeline.FRAMES_FILE).read_text()))


def _video_properties(path: pathlib.Path) -> tuple[int, int, int, float]:
  """(frames decoded, width, height, fps), read with cv2."""
  capture = cv2.VideoCapture(str(path))
  count = 0
  while capture.read()[0]:
    count += 1
  return (count, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
          int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), capture.get(cv2.CAP_PROP_FPS))


def _assert_same_records(ours: list[dict], expected: list[dict],
                         keypoint_tolerance: float = KEYPOINT_TOLERANCE):
  assert len(ours) == len(expected)
  assert [(r['frame'], r['image_id'], r['track_id']) for r in ours] == [
      (r['frame'], r['image_id'], r['track_id']) for r in expected]
  keypoints = np.array([r['keypoints'] for r in ours]).reshape(len(ours), -1, 3)
  reference = np.array([r['keypoints'] for r in expected]).reshape(len(ours), -1, 3)
  np.testing.assert_allclose(keypoints[..., :2], reference[..., :2], atol=keypoint_tolerance)
  scale = np.abs(reference[..., 2]).max()
  np.testing.assert_allclose(keypoints[..., 2], reference[..., 2], atol=SCORE_TOLERANCE * scale)
  scores = np.array([r['score'] for r in expected])
  np.testing.assert_allclose([r['score'] for r in ours], scores,
                             atol=SCORE_TOLERANCE * np.abs(scores).max())


def _replayed_track_ids(records: list[dict], skeleton: skeletons.Skeleton, fps: float) -> list:
  """Track ids that a fresh Tracker gives the records' people, frame by frame."""
  tracker = tracking.Tracker(skeleton.sigmas, frame_rate=fps)
  ids = []
  for frame in sorted({r['frame'] for r in records}):
    people = [r for r in records if r['frame'] == frame]
    flat = np.array([r['keypoints'] for r in people]).reshape(len(people), -1, 3)
    boxes = np.array([r['bbox'] for r in people]).reshape(-1, 4)
    ids.extend(int(i) for i in tracker.update(flat[..., :2], flat[..., 2], boxes))
  return ids


@pytest.fixture(scope='module')
def topdown_jax(models, video_detections, tmp_path_factory):
  out = tmp_path_factory.mktemp('topdown_jax')
  return out, _run(out, '--workdir', models['hourglass'], '--video', str(DEMO_VIDEO),
                   '--detections', str(video_detections))


@pytest.fixture(scope='module')
def bottomup_jax(models, tmp_path_factory):
  out = tmp_path_factory.mktemp('bottomup_jax')
  return out, _run(out, '--workdir', models['openpose'], '--video', str(DEMO_VIDEO))


def test_topdown_video(models, topdown_jax):
  out, (summary, records, frames) = topdown_jax
  assert summary['approach'] == 'top-down' and summary['frames'] == NUM_FRAMES
  assert [f['frame'] for f in frames] == list(range(NUM_FRAMES))
  assert [f['people'] for f in frames] == [2] * NUM_FRAMES  # one per box
  assert len(records) == 2 * NUM_FRAMES
  assert _video_properties(out / 'demo.mp4') == (NUM_FRAMES, 960, 540, 5.0)
  # Frame 0's records are predict_topdown on its boxes, in the box order.
  image = next(iter(frame_sources.VideoSource(DEMO_VIDEO))).image
  model = predictor.JaxPredictor(models['hourglass'])
  keypoints, scores = jaxpose_topdown.predict_topdown(
      lambda crops: approaches.last_output(model(crops), 'heatmaps'), image,
      np.array([[100, 100, 120, 300], [600, 150, 100, 250]]), (256, 256),
      skeletons.COCO.flip_permutation(), flip_test=False)
  first = np.array([r['keypoints'] for r in records[:2]]).reshape(2, 17, 3)
  np.testing.assert_allclose(first[..., :2], keypoints, atol=1e-3)
  np.testing.assert_allclose(first[..., 2], scores, atol=1e-5)
  # Person score: box score x mean keypoint score above 0.2 (mmpose's rescoring).
  above = np.where(scores > 0.2, scores, 0).sum(-1) / np.maximum((scores > 0.2).sum(-1), 1)
  np.testing.assert_allclose([r['score'] for r in records[:2]], [0.9, 0.8] * above, rtol=1e-5)
  assert [r['bbox'] for r in records[:2]] == [[100, 100, 120, 300], [600, 150, 100, 250]]
  assert _replayed_track_ids(records, skeletons.COCO, 5.0) == [r['track_id'] for r in records]


def test_topdown_flip_test(models, video_detections, tmp_path):
  _, records, frames = _run(tmp_path, '--workdir', models['hourglass'], '--video', str(DEMO_VIDEO),
                            '--detections', str(video_detections), '--flip-test',
                            '--max-frames', '2')
  assert len(frames) == 2 and len(records) == 4
  assert _video_properties(tmp_path / 'demo.mp4')[0] == 2
  image = next(iter(frame_sources.VideoSource(DEMO_VIDEO))).image
  model = predictor.JaxPredictor(models['hourglass'])
  keypoints, scores = jaxpose_topdown.predict_topdown(
      lambda crops: approaches.last_output(model(crops), 'heatmaps'), image,
      np.array([[100, 100, 120, 300], [600, 150, 100, 250]]), (256, 256),
      skeletons.COCO.flip_permutation(), flip_test=True)
  first = np.array([r['keypoints'] for r in records[:2]]).reshape(2, 17, 3)
  np.testing.assert_allclose(first[..., :2], keypoints, atol=1e-3)
  np.testing.assert_allclose(first[..., 2], scores, atol=1e-5)


def test_topdown_onnx_gives_the_same_records(models, video_detections, topdown_jax, tmp_path):
  _, (_, expected, _) = topdown_jax
  _, records, _ = _run(tmp_path, '--onnx', models['hourglass_onnx'], '--video', str(DEMO_VIDEO),
                       '--detections', str(video_detections))
  _assert_same_records(records, expected)


def test_bottomup_video(models, bottomup_jax):
  out, (summary, records, frames) = bottomup_jax
  assert summary['approach'] == 'bottom-up' and summary['frames'] == NUM_FRAMES
  assert [f['frame'] for f in frames] == list(range(NUM_FRAMES))
  assert _video_properties(out / 'demo.mp4') == (NUM_FRAMES, 960, 540, 5.0)
  # Each frame's records are predict_demo's people, converted to COCO-17.
  model = predictor.JaxPredictor(models['openpose'])
  for frame in frame_sources.VideoSource(DEMO_VIDEO):
    people, person_scores = lightweight_openpose.predict_demo(model, frame.image)
    keypoints, keypoint_scores, scores = lightweight_openpose.coco_keypoints(people, person_scores)
    ours = [r for r in records if r['frame'] == frame.index]
    assert frames[frame.index]['people'] == len(ours) == len(people)
    flat = np.array([r['keypoints'] for r in ours]).reshape(len(ours), 17, 3)
    np.testing.assert_allclose(flat[..., :2], keypoints, atol=1e-3)
    np.testing.assert_allclose(flat[..., 2], keypoint_scores, atol=1e-6)
    np.testing.assert_allclose([r['score'] for r in ours], scores, rtol=1e-6)
  assert len(records) > 0  # the random model's maps group into people on this video
  assert _replayed_track_ids(records, skeletons.COCO, 5.0) == [r['track_id'] for r in records]


def test_bottomup_onnx_gives_the_same_records(models, bottomup_jax, tmp_path):
  _, (_, expected, _) = bottomup_jax
  _, records, _ = _run(tmp_path, '--onnx', models['openpose_onnx'], '--video', str(DEMO_VIDEO))
  _assert_same_records(records, expected)


def test_image_folder_with_detections(models, tmp_path):
  threshold = 0.9
  _, records, frames = _run(tmp_path, '--onnx', models['hourglass_onnx'], '--images',
                            str(COCO_DIR), '--detections', str(COCO_DETECTIONS),
                            '--detection-threshold', str(threshold), '--no-track')
  detections = json.loads(COCO_DETECTIONS.read_text())
  image_ids = [785, 40083, 196141, 197388]
  expected = [sum(d['image_id'] == i and d['score'] >= threshold for d in detections)
              for i in image_ids]
  assert [f['image_id'] for f in frames] == image_ids
  assert [f['people'] for f in frames] == expected
  assert [r['image_id'] for r in records] == [i for i, n in zip(image_ids, expected)
                                              for _ in range(n)]
  assert {r['track_id'] for r in records} == {-1}
  for frame in frames:
    picture = cv2.imread(str(tmp_path / f'{frame["name"]}.png'))
    original = cv2.imread(str(COCO_DIR / f'{frame["name"]}.jpg'))
    assert picture.shape == original.shape


@pytest.mark.parametrize('content', [b'', b'\x00garbage\xff' * 100])
def test_unreadable_video_names_the_path(models, tmp_path, content):
  path = tmp_path / 'broken.mp4'
  path.write_bytes(content)
  with pytest.raises(SystemExit, match=str(path)):
    _run(tmp_path / 'out', '--workdir', models['openpose'], '--video', str(path))


def test_empty_folder_and_empty_image_name_the_path(models, tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(SystemExit, match=str(empty)):
    _run(tmp_path / 'out', '--workdir', models['openpose'], '--images', str(empty))
  (empty / 'zero.jpg').write_bytes(b'')
  with pytest.raises(SystemExit, match=str(empty / 'zero.jpg')):
    _run(tmp_path / 'out', '--workdir', models['openpose'], '--image', str(empty / 'zero.jpg'))


def _write_clip(path: pathlib.Path, frames: list[np.ndarray]) -> pathlib.Path:
  with frame_sources.VideoWriter(path, 5.0, (frames[0].shape[1], frames[0].shape[0])) as writer:
    for frame in frames:
      writer.write(frame)
  return path


def _jsonl_records(path: pathlib.Path) -> list[dict]:
  return [record for line in path.read_text().splitlines()
          for record in json.loads(line)['people']]


def test_two_streams_in_one_process_give_each_streams_own_people(models, bottomup_jax, tmp_path):
  """--video twice: one model call per round, and each stream's people and track ids are those of the stream alone."""
  _, (alone_summary, alone_demo, _) = bottomup_jax
  # The second stream: three frames of the demo backwards, so that its rows
  # differ from the first's and it ends first (its slot is then padded).
  backwards = [frame.image for frame in frame_sources.VideoSource(DEMO_VIDEO)][::-1][:3]
  clip = _write_clip(tmp_path / 'backwards.mp4', backwards)
  _, alone_clip, _ = _run(tmp_path / 'alone', '--workdir', models['openpose'], '--video', str(clip),
                          '--nopictures')
  out = tmp_path / 'both'
  summary = cli.run(['infer', '--workdir', models['openpose'], '--video', str(DEMO_VIDEO),
                     '--video', str(clip), '--out', str(out), '--nopictures'])
  assert summary['model_calls'] == NUM_FRAMES  # 5 rounds, both streams in the first 3
  assert alone_summary['model_calls'] == NUM_FRAMES
  assert [(s['name'], s['frames_read'], s['frames_processed'], s['frames_dropped'])
          for s in summary['streams']] == [('demo', 5, 5, 0), ('backwards', 3, 3, 0)]
  for name, alone in (('demo', alone_demo), ('backwards', alone_clip)):
    together = json.loads((out / name / pipeline.RESULTS_FILE).read_text())
    assert len(together) > 0
    _assert_same_records(together, alone, keypoint_tolerance=STREAMS_TOLERANCE)
    # The JSON lines written frame by frame hold the same records.
    assert _jsonl_records(out / name / pipeline.RESULTS_LINES_FILE) == together
  assert not list(out.glob('*/*.mp4'))  # --nopictures
  assert summary['frames'] == NUM_FRAMES + 3
  assert all(s['latency_ms']['p50'] > 0 and s['latency_ms']['p95'] >= s['latency_ms']['p50']
             for s in summary['streams'])


PASSWORD = 'pa55-word'


def _no_password_anywhere(folder: pathlib.Path, *texts: str) -> None:
  for path in folder.rglob('*'):
    assert PASSWORD not in path.name
    if path.is_file() and path.suffix in ('.json', '.jsonl'):
      assert PASSWORD not in path.read_text(), path
  for text in texts:
    assert PASSWORD not in text


def test_a_live_stream_keeps_up_by_dropping_and_stops_cleanly(models, tmp_path):
  """A 60 frames/s MJPEG camera, faster than the model: frames dropped and counted, a clean stop, nothing lost."""
  frames = [frame.image for frame in frame_sources.VideoSource(DEMO_VIDEO)]
  stop = threading.Event()
  with MjpegServer(frames, fps=60, credentials=f'user:{PASSWORD}') as server:
    source = pipeline.open_source(video_path=server.url(f'user:{PASSWORD}'))
    estimator = pipeline.make_estimator(predictor.JaxPredictor(models['openpose']))
    threading.Timer(3.0, stop.set).start()  # what SIGTERM does in `jaxpose infer`
    summary = pipeline.run_streams([source], estimator, tmp_path, stop=stop)
  stream, = summary['streams']
  assert summary['stopped'] is True
  assert stream['source'] == f'http://user:***@127.0.0.1:{server.port}/stream.mjpg'
  assert stream['frames_processed'] >= 2
  assert stream['frames_dropped'] > stream['frames_processed']  # the model is slower than 60/s
  assert stream['frames_read'] == stream['frames_processed'] + stream['frames_dropped']
  # Every processed frame is in the JSON lines and in the final files, in order.
  lines = [json.loads(line) for line in
           (tmp_path / pipeline.RESULTS_LINES_FILE).read_text().splitlines()]
  indices = [line['frame'] for line in lines]
  assert len(lines) == stream['frames_processed'] and indices == sorted(set(indices))
  assert [f['frame'] for f in json.loads((tmp_path / pipeline.FRAMES_FILE).read_text())] == indices
  assert json.loads((tmp_path / pipeline.RESULTS_FILE).read_text()) == [
      record for line in lines for record in line['people']]
  # The model compiled before the clock started: the first frame is no outlier.
  assert lines[0]['latency_ms'] < 10 * np.median([line['latency_ms'] for line in lines]) + 1000
  assert _video_properties(tmp_path / f'{stream["name"]}.mp4')[:3] == (len(lines), 960, 540)
  _no_password_anywhere(tmp_path, json.dumps(summary))


@pytest.mark.slow
def test_live_stream_through_the_command_sigterm_and_masked_password(models, tmp_path):
  """`jaxpose infer --video http://user:password@...` on a 60 frames/s stream, SIGTERM after ten frames."""
  frames = [frame.image for frame in frame_sources.VideoSource(DEMO_VIDEO)]
  with MjpegServer(frames, fps=60, credentials=f'user:{PASSWORD}') as server:
    process = subprocess.Popen(
        [str(test_cli.JAXPOSE), 'infer', '--workdir', models['openpose'], '--video',
         server.url(f'user:{PASSWORD}'), '--out', str(tmp_path), '--report_seconds', '1', '-v'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=test_cli.REPO)
    # Running a while (startup and compilation take long on a loaded machine):
    # ten frames processed, then SIGTERM.
    lines = tmp_path / pipeline.RESULTS_LINES_FILE
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None and not (
        lines.exists() and lines.read_text().count('\n') >= 10):
      time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    stdout, stderr = process.communicate(timeout=30)  # stops within seconds, or fails here
  assert process.returncode == 0, stderr
  assert time.monotonic() - stopped_at < 30
  assert 'SIGTERM: stopping after the frame in progress' in stderr
  summary = json.loads(stdout.strip().splitlines()[-1])
  stream, = summary['streams']
  assert summary['stopped'] is True and stream['frames_dropped'] > 0
  assert stream['frames_read'] == stream['frames_processed'] + stream['frames_dropped']
  # Progress every second on stderr, the password masked there too.
  reports = [line for line in stderr.splitlines() if 'latency p50' in line]
  assert len(reports) >= 2
  lines = (tmp_path / pipeline.RESULTS_LINES_FILE).read_text().splitlines()
  assert len(lines) == stream['frames_processed'] == summary['frames']
  assert len(json.loads((tmp_path / pipeline.FRAMES_FILE).read_text())) == len(lines)
  _no_password_anywhere(tmp_path, stdout, stderr)


@pytest.mark.slow
def test_two_topdown_streams_batch_their_crops_and_give_each_streams_own_people(
    models, video_detections, topdown_jax, tmp_path):
  """Top-down: the crops of both streams' people run in one call; each stream's records are its own alone."""
  _, (_, alone_demo, _) = topdown_jax
  backwards = [frame.image for frame in frame_sources.VideoSource(DEMO_VIDEO)][::-1]
  clip = _write_clip(tmp_path / 'backwards.mp4', backwards)
  flags = ['--workdir', models['hourglass'], '--detections', str(video_detections), '--nopictures']
  _, alone_clip, _ = _run(tmp_path / 'alone', *flags, '--video', str(clip))
  out = tmp_path / 'both'
  summary = cli.run(['infer', *flags, '--video', str(DEMO_VIDEO), '--video', str(clip),
                     '--out', str(out)])
  assert summary['model_calls'] == NUM_FRAMES  # 4 crops a round, one call
  for name, alone in (('demo', alone_demo), ('backwards', alone_clip)):
    together = json.loads((out / name / pipeline.RESULTS_FILE).read_text())
    _assert_same_records(together, alone, keypoint_tolerance=STREAMS_TOLERANCE)
