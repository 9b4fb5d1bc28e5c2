"""Person boxes from a bottom-up model's people for a top-down model: `BottomUp.person_boxes`, `--boxes_from`.

The bottom-up model is a stand-in that renders known people into the maps of
the input it is given (`paf.encode`, placed as upstream's demo letterboxes the
frame); Lightweight OpenPose's decoding then finds them, and their boxes go to
the top-down model (the tiny random hourglass of the inference tests).
"""

import json
import pathlib

import numpy as np
import pytest

from jaxpose import approaches, cli, evaluation, skeletons
from jaxpose.inference import pipeline
from jaxpose.deploy import predictor
from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.codecs import heatmap, paf
from jaxpose.data import geometry, images
from jaxpose.inference import frame_sources
from jaxpose.metrics import oks
import inference_models
from test_sources import coco_sample_config

DATA = pathlib.Path(__file__).parent / 'data'
COCO_JSON = DATA / 'coco' / 'test_coco.json'
DEMO_VIDEO = DATA / 'video' / 'demo.mp4'


def coco_people() -> dict[int, tuple[str, np.ndarray]]:
  """Image id -> (file name, its non-crowd people with 4 keypoints or more [P, 17, 3])."""
  data = json.loads(COCO_JSON.read_text())
  people = {}
  for image in data['images']:
    found = [np.array(a['keypoints'], np.float64).reshape(17, 3) for a in data['annotations']
             if a['image_id'] == image['id'] and not a['iscrowd'] and a['num_keypoints'] >= 4]
    people[image['id']] = image['file_name'], np.array(found)
  return people


def padded_extents(people: np.ndarray) -> np.ndarray:
  """People [P, 17, 3] -> their labelled keypoints' extent, x1.25 about its centre, [P, 4] (x, y, w, h)."""
  extent = oks.boxes_from_keypoints(people[..., :2], people[..., 2], score_threshold=0)
  size = extent[:, 2:] * geometry.BOX_PADDING
  return np.concatenate([extent[:, :2] + extent[:, 2:] / 2 - size / 2, size], -1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """[A, 4], [B, 4] (x, y, w, h) -> IoU [A, B]."""
  low = np.maximum(a[:, None, :2], b[None, :, :2])
  high = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
  inter = np.prod(np.clip(high - low, 0, None), -1)
  return inter / (a[:, None, 2:].prod(-1) + b[None, :, 2:].prod(-1) - inter)


class RenderingBottomUp:
  """A Lightweight OpenPose stand-in: each call's maps are those of `people` (frame pixels), placed in its input.

  `people` is set per image (or per frame) by the test: COCO keypoints
  [P, 17, 3] in the pixels of an image of `image_shape`.
  """
  input_size = None
  input_multiple = 8
  source = 'rendering stand-in'

  def __init__(self):
    self.approach = approaches.for_description({'arch': 'lightweight_openpose'})
    self.people = None
    self.image_shape = None
    self.calls = 0

  def __call__(self, inputs: np.ndarray) -> dict:
    self.calls += 1
    height, width = inputs.shape[1:3]
    _, placement = lightweight_openpose.letterbox(np.zeros(self.image_shape, np.uint8),
                                      self.approach.protocol(approaches.Options()).DEFAULT_HEIGHT, self.input_multiple)
    assert inputs.shape[1:3] == _.shape[:2]
    in_input = ((self.people[..., :2] + 0.5) * np.array(placement.scale) - 0.5 +
                np.array(placement.pad))
    keypoints, visible = skeletons.openpose_from_coco(in_input, self.people[..., 2])
    heatmaps, pafs = paf.encode(keypoints, visible, image_size=(width, height), stride=8)
    return {'heatmaps_stage1': np.asarray(heatmaps)[None], 'pafs_stage1': np.asarray(pafs)[None]}

  def show(self, image_shape, people):
    self.image_shape, self.people = tuple(image_shape), people


def test_person_boxes_are_the_padded_extents_of_the_rendered_people():
  standin = RenderingBottomUp()
  for image_id, (name, people) in coco_people().items():
    image = images.read_image(str(DATA / 'coco' / name), image_id)
    standin.show(image.shape, people)
    boxes, scores = standin.approach.person_boxes(standin, image)
    assert len(boxes) == len(people), name
    iou = box_iou(padded_extents(people), boxes)
    # Each person's box is found (decoded at 256 px high, a few px off).
    assert (iou.max(1) > 0.85).all(), (name, iou.max(1))
    assert ((scores > 0.5) & (scores <= 1.0)).all()


def moving_people() -> list[np.ndarray]:
  """Two COCO people (of 000000196141.jpg) moved into the demo video's 960x540, drifting 12 px a frame."""
  _, people = coco_people()[196141]
  chosen = people[np.argsort(-(people[..., 2] > 0).sum(-1))[:2]].copy()
  chosen[..., :2] = chosen[..., :2] * 1.2 + np.array([80.0, 20.0])
  frames = []
  for frame in range(5):
    moved = chosen.copy()
    moved[..., 0] += np.where(chosen[..., 2] > 0, 12.0 * frame, 0)
    frames.append(moved)
  return frames


class CanonicalPose:
  """A top-down stand-in: every crop's heatmaps hold one fixed standing pose, so each person's
  keypoints follow its box (a random hourglass's would jump, and the tracker
  would rightly call them strangers)."""
  input_size = (256, 256)
  source = 'canonical-pose stand-in'

  def __init__(self):
    self.approach = approaches.for_description(dict(inference_models.HOURGLASS))
    # COCO-17 in 64 x 64 heatmap pixels: head at the top, ankles at the bottom.
    x = np.array([32, 34, 30, 36, 28, 40, 24, 42, 22, 44, 20, 36, 28, 37, 27, 38, 26], np.float32)
    y = np.array([12, 10, 10, 11, 11, 20, 20, 29, 29, 37, 37, 36, 36, 46, 46, 56, 56], np.float32)
    self.maps, _ = heatmap.encode(np.stack([x, y], -1) * 4, np.ones(17), image_size=(256, 256),
                                  heatmap_size=(64, 64), sigma=2.0)

  def __call__(self, crops):
    return {'heatmaps_stack1': np.repeat(np.asarray(self.maps)[None], len(crops), 0)}


def test_video_people_are_boxed_by_the_bottom_up_model_and_tracked(tmp_path):
  frames = moving_people()

  class PerFrame(RenderingBottomUp):
    def __call__(self, inputs):
      self.people = frames[min(self.calls, len(frames) - 1)]
      return super().__call__(inputs)

  standin = PerFrame()
  standin.show((540, 960, 3), frames[0])
  estimator = pipeline.make_estimator(CanonicalPose(), boxes_from=standin)
  summary = pipeline.run(frame_sources.VideoSource(str(DEMO_VIDEO)), estimator, tmp_path)
  assert summary['frames'] == 5 and standin.calls == 5
  records = json.loads((tmp_path / pipeline.RESULTS_FILE).read_text())
  tracks = {}
  for frame, people in enumerate(frames):
    found = [r for r in records if r['frame'] == frame]
    assert len(found) == 2
    boxes = np.array([r['bbox'] for r in found])
    iou = box_iou(padded_extents(people), boxes)
    match = iou.argmax(1)
    # At 256 px high the frame is halved: keypoints decode ~4 frame px apart.
    assert (iou.max(1) > 0.8).all() and len(set(match)) == 2
    for person, index in enumerate(match):
      tracks.setdefault(person, set()).add(found[index]['track_id'])
  # One track per person through the five frames, two tracks in all.
  assert all(len(ids) == 1 for ids in tracks.values())
  assert len(set.union(*tracks.values())) == 2


def test_command_line_loads_the_bottom_up_model_and_refuses_a_top_down_one(tmp_path, monkeypatch):
  # Both models are stand-ins behind the loaders the command calls.
  standin = RenderingBottomUp()
  name, people = coco_people()[196141]
  real_load_path = predictor.load_path

  def load_path(path, what='model', whole_images=False):
    if path == 'standin':
      return standin
    if path == 'top-down':
      return CanonicalPose()
    return real_load_path(path, what, whole_images)

  monkeypatch.setattr(predictor, 'load_path', load_path)
  monkeypatch.setattr(predictor, 'load', lambda **kwargs: CanonicalPose())
  standin.show(images.read_image(str(DATA / 'coco' / name), 196141).shape, people)
  cli.run(['infer', '--workdir', 'hourglass', '--boxes_from', 'standin',
            '--image', str(DATA / 'coco' / name), '--out', str(tmp_path / 'out')])
  records = json.loads((tmp_path / 'out' / pipeline.RESULTS_FILE).read_text())
  boxes = np.array([r['bbox'] for r in records])
  assert len(boxes) == len(people) and standin.calls == 1
  assert (box_iou(padded_extents(people), boxes).max(1) > 0.85).all()
  # A top-down model is no source of boxes; nor are two sources at once.
  with pytest.raises(SystemExit, match='--boxes-from .*expected a bottom-up model'):
    cli.run(['infer', '--workdir', 'hourglass', '--boxes_from', 'top-down',
              '--image', str(DATA / 'coco' / name), '--out', str(tmp_path / 'out2')])
  with pytest.raises(SystemExit, match='--detections or --boxes-from, not both'):
    cli.run(['infer', '--workdir', 'hourglass', '--boxes_from', 'standin',
              '--detections', str(DATA / 'coco' / 'test_coco_det_AP_H_56.json'),
              '--image', str(DATA / 'coco' / name), '--out', str(tmp_path / 'out3')])


def test_eval_with_boxes_from_scores_the_bottom_up_boxes(tmp_path, monkeypatch):
  # The same boxes as a detections file and as a bottom-up model's people
  # give the same results, box for box.
  standin = RenderingBottomUp()
  people = coco_people()
  monkeypatch.setattr(predictor, 'load_path', lambda path, what='', whole_images=False: standin)
  real_read_image = images.read_image

  def read_image(path, image_id):
    image = real_read_image(path, image_id)
    standin.show(image.shape, people[image_id][1])
    return image

  monkeypatch.setattr(images, 'read_image', read_image)
  config = coco_sample_config(**{'input_size': (256, 256)})
  config.model.num_joints = 17
  top_down = CanonicalPose()
  heatmaps_fn = lambda crops: top_down.approach.last_maps(top_down(crops))
  from_model = evaluation.evaluate_workdir(
      config, str(tmp_path), model_fn=heatmaps_fn, results_file=str(tmp_path / 'model.json'),
      options=approaches.Options(boxes_from='standin', flip_test=False))
  assert standin.calls == len(people)
  detections = []
  for image_id, (name, image_people) in people.items():
    image = real_read_image(str(DATA / 'coco' / name), image_id)
    standin.show(image.shape, image_people)
    boxes, scores = standin.approach.person_boxes(standin, image)
    detections += [{'image_id': image_id, 'category_id': 1, 'bbox': b.tolist(),
                    'score': float(s)} for b, s in zip(boxes, scores)]
  (tmp_path / 'dets.json').write_text(json.dumps(detections))
  from_file = evaluation.evaluate_workdir(
      config, str(tmp_path), model_fn=heatmaps_fn, results_file=str(tmp_path / 'file.json'),
      options=approaches.Options(detections=str(tmp_path / 'dets.json'), flip_test=False))
  ours = json.loads((tmp_path / 'model.json').read_text())
  theirs = json.loads((tmp_path / 'file.json').read_text())
  assert len(ours) == len(theirs) == sum(len(p) for _, p in people.values())
  np.testing.assert_allclose([r['keypoints'] for r in ours], [r['keypoints'] for r in theirs],
                             atol=1e-3)
  assert from_model['AP'] == pytest.approx(from_file['AP'], abs=1e-9)


def test_load_path_takes_a_workdir_or_an_onnx_file_and_names_anything_else(tmp_path):
  paths = inference_models.write_models(tmp_path, onnx=False)
  bottom_up = predictor.load_path(paths['openpose'], '--boxes_from', whole_images=True)
  assert isinstance(bottom_up, predictor.JaxPredictor)
  assert isinstance(bottom_up.approach, approaches.BottomUp)
  with pytest.raises(ValueError, match='bottom-up'):
    predictor.load_path(paths['hourglass'], '--boxes_from', whole_images=True)
  with pytest.raises(FileNotFoundError, match='--boxes_from .*nowhere.pth: expected a workdir'):
    predictor.load_path(str(tmp_path / 'nowhere.pth'), what='--boxes_from')
