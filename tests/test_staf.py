"""STAF in the workflows: pair transform, TAF loss, train step, tracking evaluation, `jaxpose infer` and `eval`."""

import json
import pathlib
import types

import cv2
import jax
import numpy as np
import pytest

from jaxpose import approaches, cli, skeletons, sweep
from jaxpose.training import checkpoint
from jaxpose.deploy import export
from jaxpose.inference import pipeline
from jaxpose.training import parallel
from jaxpose.deploy import predictor
from jaxpose.training import trainer
from jaxpose.approaches import base, staf, staf_tracking
from jaxpose.approaches.protocols import lightweight_openpose
from jaxpose.codecs import paf, taf
from jaxpose.data import geometry, synthetic_clips
from jaxpose import tracking
from jaxpose.metrics.oks import boxes_from_keypoints
import test_staf_model
from test_train import compiled_train_step

REPO = pathlib.Path(__file__).resolve().parents[1]
STAF_QUICKSTART = REPO / 'configs' / 'staf_quickstart.py'
# The quick start shrunk: test_staf_model's tiny model on 64x64 frames.
TINY_OVERRIDES = {
    'model.num_channels': 8, 'model.taf_channels': 8, 'model.num_taf_blocks': 1,
    'input_size': (64, 64), 'data.image_size': (64, 64), 'batch_size': 8,
    'num_train_steps': 2, 'eval_every_steps': 2, 'log_every_steps': 1, 'warmup_steps': 0,
    'data.num_train_examples': 8, 'data.num_eval_examples': 2, 'data.clip_length': 4,
    'data.track_eval_clips': 1, 'data.track_eval_frame_steps': (1,), 'input_size_schedule': ()}


def tiny_config(**overrides):
  config = sweep.load_config_file(str(STAF_QUICKSTART))
  for dotted, value in {**TINY_OVERRIDES, **overrides}.items():
    node = config
    *parents, leaf = dotted.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


def _flags(config_overrides: dict) -> list[str]:
  """Overrides -> --config.FIELD=VALUE flags (tuples, nested or empty, as ml_collections reads them)."""
  return [f'--config.{name}={value!r}' if isinstance(value, tuple) else f'--config.{name}={value}'
          for name, value in config_overrides.items()]


# --- data ----------------------------------------------------------------------

def _fitted_affine(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, float]:
  """Points [N, 2] -> [N, 2]: the least-squares [2, 3] affine map and its largest residual."""
  design = np.concatenate([source, np.ones((len(source), 1))], axis=1)
  solution = np.linalg.lstsq(design, target, rcond=None)[0]
  return solution.T, float(np.abs(design @ solution - target).max())


def test_pair_transform_moves_both_frames_alike_and_keeps_each_track_in_its_slot():
  clips = synthetic_clips.SyntheticClips(4, clip_length=6, image_size=(96, 64), max_people=4,
                                         seed=3, enter_leave_probability=1.0, frame_step=4)
  windows = synthetic_clips.SyntheticClipWindows(clips)
  # A window with someone in one frame only (entering or leaving).
  index = next(i for i in range(len(windows))
               if np.any(windows[i]['present'][0] != windows[i]['present'][1]))
  window = windows[index]
  transform = staf.ClipPairTransform(64, stride=8, max_people=5, scale_factor=0.25,
                                     rotation_degrees=30, rotation_probability=1.0,
                                     flip_probability=1.0)
  out = transform.random_map(window, np.random.default_rng(7))
  num_people = len(window['track_ids'])
  np.testing.assert_array_equal(out['track_ids'], list(range(num_people)) + [-1] * (5 - num_people))
  # The raw frames' people as the transform orders them: OpenPose-18, mirrored.
  mirror = skeletons.OPENPOSE.flip_permutation()
  raw = [skeletons.openpose_from_coco(window['keypoints'][t], window['visible'][t])[0][:, mirror]
         for t in (0, 1)]
  shown = [out['visible_prev'][:num_people] > 0, out['visible'][:num_people] > 0]
  matrix, residual = _fitted_affine(raw[0][shown[0]], out['keypoints_prev'][:num_people][shown[0]])
  assert residual < 1e-3
  assert abs(matrix[0, 1]) > 1e-3 and matrix[0, 0] < 0  # rotated and mirrored
  # Frame t went through the same map: its points and its image.
  moved = geometry.apply_affine(raw[1][shown[1]], matrix)
  np.testing.assert_allclose(out['keypoints'][:num_people][shown[1]], moved, atol=1e-3)
  for image, t in ((out['image_prev'], 0), (out['image'], 1)):
    warped = geometry.warp(window['images'][t], matrix, (64, 64)).astype(int)
    assert np.abs(image.astype(int) - warped).max() <= 1
  # Slots stay the window's people: present in one frame, missing from the other.
  for t, suffix in ((0, '_prev'), (1, '')):
    assert out[f'person_mask{suffix}'][:num_people].tolist() == shown[t].any(-1).tolist()
  assert np.any(out['person_mask_prev'] != out['person_mask'])
  # Another draw is another map (the check above can tell them apart).
  other = transform.random_map(window, np.random.default_rng(8))
  assert np.abs(other['keypoints_prev'] - out['keypoints_prev']).max() > 1
  with pytest.raises(ValueError, match='config.data.max_people'):
    staf.ClipPairTransform(64, max_people=1).random_map(window, np.random.default_rng(0))


def test_taf_targets_and_loss_by_construction():
  config = tiny_config(**{'data.augment': False, 'data.max_people': 4})
  approach = approaches.for_config(config)
  source, _ = trainer.create_sources(config)
  transform = trainer.create_transform(config, train=True)
  windows = [source[i] for i in (1, 5)]
  batch = {key: np.stack([transform.random_map(w, np.random.default_rng(0))[key]
                          for w in windows]) for key in transform.random_map(
                              windows[0], np.random.default_rng(0))}
  targets = approach.make_targets(batch, config)
  # Unaugmented 64x64 frames: the TAFs of the windows' own COCO people,
  # moved half a pixel right and down as the transform fits a frame in the
  # input (its centre (W - 1) / 2 at the input's W / 2); keypoints that this
  # takes out of the input are dropped.
  padded = lambda name, t: np.stack([np.pad(w[name][t], [(0, 4 - len(w[name][t]))] + [(0, 0)] *
                                            (w[name][t].ndim - 1)) for w in windows])
  people = []
  for t in (0, 1):
    keypoints = padded('keypoints', t) + 0.5
    inside = np.all((np.floor(keypoints + 0.5) >= 0) & (np.floor(keypoints + 0.5) < 64), -1)
    people += [keypoints, (padded('visible', t) > 0) & inside]
  present = people[1].any(-1) & people[3].any(-1)
  expected = taf.encode(*people, present, image_size=(64, 64))
  np.testing.assert_allclose(targets['tafs'], expected, atol=1e-6)
  assert np.abs(expected).max() > 0.5
  # Outputs equal to the targets: loss 0; a known error: its known L2.
  model = approach.model
  perfect = {staf.PREVIOUS_FRAME: {}, staf.FRAME: {}}
  for key, suffix in ((staf.PREVIOUS_FRAME, '_prev'), (staf.FRAME, '')):
    for i in range(model.num_stages):
      for name in ('heatmaps', 'pafs'):
        perfect[key][f'{name}_stage{i}'] = targets[name + suffix]
  perfect[staf.FRAME]['tafs_stage1'] = targets['tafs']
  loss, parts = approach.loss(perfect, batch, targets, None, config)
  assert float(loss) == 0.0 and float(parts['taf_loss']) == 0.0
  wrong = jax.tree_util.tree_map(lambda x: x, perfect)
  wrong[staf.FRAME]['tafs_stage1'] = targets['tafs'].at[1, 2, 3, :].add(0.5)
  wrong[staf.PREVIOUS_FRAME]['pafs_stage0'] = targets['pafs_prev'].at[0, 4, 4, 7].add(2.0)
  loss, parts = approach.loss(wrong, batch, targets, None, config)
  # sum of (error * mask)^2 / 2 / batch size; the masks are 1 on generated frames.
  assert float(parts['taf_loss']) == pytest.approx(66 * 0.5**2 / 2 / 2)
  assert float(parts['pose_loss']) == pytest.approx(2.0**2 / 2 / 2)
  assert float(loss) == pytest.approx(float(parts['taf_loss'] + parts['pose_loss']))


@pytest.mark.slow  # ~6 min on a loaded 2-core CPU (2 min of CPU): init and two compiles
def test_one_train_step_under_none_and_pmap_includes_the_taf_loss():
  config = tiny_config()
  source, _ = trainer.create_sources(config)
  batch = next(iter(trainer.train_loader(source, config)))
  learning_rate_fn = trainer.create_learning_rate_fn(config)
  tx = trainer.create_optimizer(config, learning_rate_fn)
  state = trainer.create_train_state(config, trainer.create_model(config), tx)
  metrics = {}
  for mode in ('none', 'pmap'):
    data = parallel.DataParallel(mode)
    step = compiled_train_step(data, config, tx, learning_rate_fn)
    _, metrics[mode] = data.unreplicate(step(data.replicate(state), data.shard_batch(batch), None))
  for mode, values in metrics.items():
    assert np.isfinite(values['loss']) and values['taf_loss'] > 0, mode
    assert values['loss'] == pytest.approx(values['pose_loss'] + values['taf_loss'], rel=1e-6)
  assert metrics['pmap']['loss'] == pytest.approx(metrics['none']['loss'], rel=1e-5)


# --- tracking ------------------------------------------------------------------

def _ground_truth_frames(clip: dict) -> list[staf_tracking.FramePeople]:
  """A generated clip's own people and the TAFs encoded from them: what a perfect model would give."""
  frames = []
  for t in range(len(clip['frame_ids'])):
    present = clip['present'][t]
    scores = (clip['visible'][t][present] > 0).astype(np.float32)
    keypoints = np.where(scores[..., None] > 0, clip['keypoints'][t][present], 0)
    people = base.People(keypoints, scores, boxes_from_keypoints(keypoints, scores, 0.0),
                         scores.sum(-1))
    tafs = None if t == 0 else np.asarray(taf.encode(
        clip['keypoints'][t - 1], clip['visible'][t - 1], clip['keypoints'][t],
        clip['visible'][t], clip['present'][t - 1] & present,
        image_size=clip['images'].shape[2:0:-1]))
    frames.append(staf_tracking.FramePeople(people, keypoints, tafs))
  return frames


def test_ground_truth_fields_track_without_switches_where_oks_switches():
  # The people and fields of the clips themselves (a perfect model): TAF
  # tracking keeps every track at the full and at a quarter of the frame
  # rate; OKS matching, on the same people, switches at the quarter rate.
  config = tiny_config(**{'data.track_eval_clips': 4, 'data.clip_length': 6,
                          'data.track_eval_frame_steps': (1, 4)})
  results = staf_tracking.evaluate_clips(_ground_truth_frames, config)
  assert [r.key for r in results] == ['step1', 'gt_people_step1', 'step4', 'gt_people_step4']
  found = {result.key: result for result in results}
  for result in results:
    assert result.taf.num_switches.sum() == 0
    np.testing.assert_allclose(result.taf.mota, 100)
  for step in (1, 4):
    np.testing.assert_allclose(found[f'step{step}'].pose.ap, 100)  # the ground truth as predictions
    assert found[f'gt_people_step{step}'].pose is None
    # The people here are the clip's own already: the second scoring, of
    # `ground_truth_people` with the same fields, is the same.
    for kind in ('taf', 'oks'):
      for name in ('mota', 'num_switches', 'num_misses', 'num_false_positives'):
        np.testing.assert_array_equal(getattr(getattr(found[f'step{step}'], kind), name),
                                      getattr(getattr(found[f'gt_people_step{step}'], kind), name))
  assert found['step1'].oks.num_switches.sum() == 0
  assert found['step4'].oks.num_switches.sum() > 0 and found['step4'].oks.totals()['mota'] < 95
  summary = staf_tracking.summary(results)
  assert summary['mota_taf'] == summary['mota_taf_step1'] == 100
  assert summary['mota_oks_step4'] == found['step4'].oks.totals()['mota']
  assert 'ap_gt_people_step4' not in summary and summary['mota_oks_gt_people_step4'] < 95


def test_evaluate_clips_scores_mota_at_the_config_s_keypoint_threshold():
  # Above every ground-truth score (1) nobody is submitted for MOTA: each
  # frame is poseval's frame without predictions (one object, one miss, one
  # false positive per joint: MOTA -100); AP still counts every keypoint.
  config = tiny_config(**{'data.track_keypoint_threshold': 1.5})
  found, _ = staf_tracking.evaluate_clips(_ground_truth_frames, config)
  assert '>= 1.5' in found.title
  for metrics in (found.taf, found.oks):
    np.testing.assert_allclose(metrics.mota, -100)
    np.testing.assert_array_equal(metrics.num_misses, metrics.num_objects)
    np.testing.assert_array_equal(metrics.num_false_positives, metrics.num_objects)
  np.testing.assert_allclose(found.pose.ap, 100)
  with pytest.raises(ValueError, match='track_keypoint_threshold: expected a score >= 0'):
    staf_tracking.evaluate_clips(_ground_truth_frames,
                                 tiny_config(**{'data.track_keypoint_threshold': -0.1}))


def _with_a_doubtful_person(frame: staf_tracking.FramePeople, score: float
                            ) -> staf_tracking.FramePeople:
  """The frame plus one person far below the image, every keypoint scored `score`."""
  people = frame.people
  keypoints = np.concatenate([people.keypoints, people.keypoints[:1] * 0 + [50.0, 500.0]])
  scores = np.concatenate([people.keypoint_scores, np.full((1, 17), score, np.float32)])
  return staf_tracking.FramePeople(
      base.People(keypoints, scores, boxes_from_keypoints(keypoints, scores, 0.0),
                  scores.sum(-1)), keypoints, frame.tafs)


def test_mota_counts_only_keypoints_scored_above_the_threshold_and_ap_counts_all():
  # The clip's own people (scores 1) and a spurious person (scores 0.3)
  # nowhere near anyone: with every keypoint submitted, each of its 15
  # PoseTrack joints is a false positive in each scored frame (poseval
  # leaves a video's last one out: 2 of 3); above 0.5 it is gone.
  clip = synthetic_clips.SyntheticClips(1, clip_length=3, image_size=(96, 96), max_people=2,
                                        min_people=2)[0]
  truth = [staf_tracking.clip_ground_truth(clip, 'clip0')]
  frames = [[_with_a_doubtful_person(frame, 0.3) for frame in _ground_truth_frames(clip)]]
  everything = staf_tracking.score('all', 'all', truth, frames)
  confident = staf_tracking.score('confident', 'confident', truth, frames, keypoint_threshold=0.5)
  scored_joints = [k for k in range(17) if k not in (3, 4)]  # PoseTrack18 labels no ears
  labelled = sum(int((frame.keypoints[:, scored_joints, 2] > 0).sum())
                 for frame in truth[0].frames[:-1])
  for kind in ('taf', 'oks'):
    metrics = getattr(everything, kind)
    np.testing.assert_array_equal(metrics.num_false_positives, 2)  # per joint
    assert metrics.num_misses.sum() == 0 and metrics.num_switches.sum() == 0
    np.testing.assert_allclose(metrics.totals()['mota'],
                               100 * (1 - 30 / labelled))
    assert metrics.num_objects.sum() == labelled
    assert metrics.num_false_positives.sum() == 30
    np.testing.assert_allclose(getattr(confident, kind).mota, 100)
  # AP ranks keypoints by score: the same predictions, whatever the threshold.
  np.testing.assert_array_equal(everything.pose.ap, confident.pose.ap)
  # A person with no keypoint at the threshold leaves; the others keep theirs.
  frame = frames[0][1]
  kept = staf_tracking.confident_people(frame, 0.5)
  assert len(kept.people.keypoints) == len(frame.people.keypoints) - 1
  np.testing.assert_array_equal(kept.people.keypoint_scores, frame.people.keypoint_scores[:-1])
  np.testing.assert_allclose(kept.people.boxes, frame.people.boxes[:-1], rtol=1e-6)
  assert kept.tafs is frame.tafs


def test_ground_truth_people_lie_where_the_frame_s_placement_puts_them():
  # A 96x64 frame letterboxed into a 96x96 input (16 rows of padding): the
  # clip's people in image pixels, and in input pixels where the TAFs lie.
  clip = synthetic_clips.SyntheticClips(1, clip_length=2, image_size=(96, 64), max_people=2)[0]
  _, placement = lightweight_openpose.letterbox(clip['images'][0], input_size=(96, 96))
  tafs = np.ones((12, 12, taf.NUM_CHANNELS), np.float32)
  frames = [staf_tracking.FramePeople(None, None, None, placement),
            staf_tracking.FramePeople(None, None, tafs, placement)]
  people = staf_tracking.ground_truth_people(clip, frames)
  assert people[0].tafs is None and people[1].tafs is tafs
  for t, frame in enumerate(people):
    present = clip['present'][t]
    labelled = clip['visible'][t][present] > 0
    np.testing.assert_array_equal(frame.people.keypoint_scores, labelled)
    np.testing.assert_allclose(frame.people.keypoints[labelled],
                               clip['keypoints'][t][present][labelled], atol=1e-4)
    np.testing.assert_allclose(frame.input_keypoints[labelled],
                               clip['keypoints'][t][present][labelled] + [0, 16], atol=1e-4)
    np.testing.assert_allclose(placement.to_image(frame.input_keypoints[labelled]),
                               frame.people.keypoints[labelled], atol=1e-4)
  with pytest.raises(ValueError, match='1 frames of people for a clip of 2 frames'):
    staf_tracking.ground_truth_people(clip, frames[:1])


def test_decoded_people_come_back_in_the_image():
  # Maps drawn from a frame's people where the letterbox puts them in the
  # input (96x64 frame in a 96x96 input: 16 rows of padding above), decoded
  # as the runner decodes: the people land where they are in the frame.
  clip = synthetic_clips.SyntheticClips(1, clip_length=1, image_size=(96, 64), max_people=2,
                                        height_range=(0.8, 0.9))[0]
  _, placement = lightweight_openpose.letterbox(clip['images'][0], input_size=(96, 96))
  assert placement.pad == (0, 16)
  keypoints, visible = skeletons.openpose_from_coco(clip['keypoints'][0], clip['visible'][0])
  heatmaps, pafs = paf.encode(keypoints + [0, 16], visible, image_size=(96, 96), sigma=4.0)
  frame = staf_tracking.decode_frame(np.asarray(heatmaps), np.asarray(pafs), None, placement, 8)
  assert frame.tafs is None and len(frame.people.scores) >= 1
  found = frame.people.keypoint_scores > 0
  np.testing.assert_allclose(frame.input_keypoints[found] - [0, 16],
                             frame.people.keypoints[found], atol=1e-4)
  truth = clip['keypoints'][0][clip['visible'][0] > 0]  # [N, 2]
  errors = [np.linalg.norm(truth - point, axis=-1).min() for point in frame.people.keypoints[found]]
  assert np.median(errors) < 1.5, errors


def test_ground_truth_head_boxes_are_the_generated_heads():
  clips = synthetic_clips.SyntheticClips(1, clip_length=2, image_size=(128, 128), max_people=2)
  clip = clips[0]
  video = staf_tracking.clip_ground_truth(clip, 'clip0')
  walks = clips.walks(0)
  for t, frame in enumerate(video.frames):
    for person, box in zip(frame.track_ids, frame.head_boxes):
      _, head = walks[person].keypoints(np.array([float(t)]))
      radius = walks[person].head_radius
      # The ears lie on the rim, 2 radii apart; a turned face (yaw <= 0.4)
      # moves their midpoint by 0.2 yaw radius sideways and 0.05 up.
      np.testing.assert_allclose(box[2:], 2 * radius, rtol=1e-4)
      np.testing.assert_allclose(box[:2] + box[2:] / 2, head[0], atol=0.1 * radius)


@pytest.fixture(scope='module')
def staf_workdir(tmp_path_factory):
  """A tiny STAF model's workdir with O(1) random weights, and its description."""
  description = approaches.for_config(tiny_config()).description
  model = approaches.for_description(description).model
  variables = test_staf_model._randomized(model, (1, 64, 64, 3))  # pylint: disable=protected-access
  workdir = tmp_path_factory.mktemp('staf') / 'workdir'
  checkpoint.save_variables(str(workdir), variables, description)
  return str(workdir)


def test_infer_tracks_a_staf_model_by_its_fields(staf_workdir, tmp_path, monkeypatch):
  clip = synthetic_clips.SyntheticClips(1, clip_length=4, image_size=(64, 64))[0]
  for t, image in enumerate(clip['images']):
    cv2.imwrite(str(tmp_path / f'{t:06d}.png'), image[..., ::-1])
  fields = []
  update = tracking.TafTracker.update

  def spy(self, keypoints, scores, boxes=None, timestamp=None, tafs=None):
    fields.append(None if tafs is None else tafs.shape)
    return update(self, keypoints, scores, boxes, timestamp, tafs)
  monkeypatch.setattr(tracking.TafTracker, 'update', spy)
  summary = cli.run(['infer', '--workdir', staf_workdir, '--images', str(tmp_path),
                      '--height', '64', '--tracker', 'taf', '--out', str(tmp_path / 'out')])
  assert summary['frames'] == 4 and summary['tracker'] == 'taf'
  # The first frame has no fields; the others the TAFs of their 8x8 maps.
  assert fields == [None] + [(8, 8, taf.NUM_CHANNELS)] * 3
  with open(tmp_path / 'out' / pipeline.RESULTS_FILE) as f:
    results = json.load(f)
  assert len(results) == summary['people'] > 0
  assert all(r['track_id'] >= 0 for r in results)
  # --notrack still turns tracking off.
  summary = cli.run(['infer', '--workdir', staf_workdir, '--images', str(tmp_path),
                      '--height', '64', '--notrack', '--out', str(tmp_path / 'untracked')])
  with open(tmp_path / 'untracked' / pipeline.RESULTS_FILE) as f:
    assert {r['track_id'] for r in json.load(f)} == {-1}
  # Another model's people carry no fields to track by.
  lightweight = types.SimpleNamespace(
      approach=approaches.for_description({'arch': 'lightweight_openpose'}),
      skeleton=skeletons.COCO)
  with pytest.raises(ValueError, match='--tracker taf: a bottom-up model tracks by oks; TAF '
                     'tracking needs a STAF model'):
    pipeline.frame_tracker('taf', lightweight, 25.0)


def test_eval_prints_both_trackers_mota(staf_workdir, capsys):
  overrides = {name: value for name, value in TINY_OVERRIDES.items()
               if name.startswith(('model.', 'input_size', 'data.'))}
  metrics = cli.run(['eval', f'--config={STAF_QUICKSTART}', f'--workdir={staf_workdir}',
                      *_flags({**overrides, 'data.track_eval_frame_steps': (1, 4)})])
  output = capsys.readouterr()
  printed = output.err  # the tables are logs; stdout ends with the metrics as JSON
  assert 'MOTA TAF' in printed and 'MOTA OKS' in printed and 'identity switches' in printed
  assert '1 generated clips, frame_step 4' in printed
  assert json.loads(output.out.strip().splitlines()[-1]) == metrics
  assert {'mota_taf_step1', 'mota_oks_step1', 'mota_taf_step4', 'mota_oks_step4',
          'ap_step1', 'ap_step4', 'mota_taf', 'mota_oks', 'step', 'mota_taf_gt_people_step1',
          'mota_oks_gt_people_step1', 'mota_taf_gt_people_step4',
          'mota_oks_gt_people_step4'} == set(metrics)
  assert all(np.isfinite(value) for value in metrics.values())
  # The bundled PoseTrack18 sample: one frame per video, so no frame for MOTA.
  posetrack = REPO / 'tests' / 'data' / 'posetrack18'
  metrics = cli.run(['eval', f'--config={STAF_QUICKSTART}', f'--workdir={staf_workdir}',
                      *_flags(overrides), f'--posetrack={posetrack / "annotations" / "val"}',
                      f'--posetrack_images={posetrack}'])
  assert 'PoseTrack18, 3 videos' in capsys.readouterr().err
  assert set(metrics) == {'mota_taf_posetrack', 'mota_oks_posetrack', 'ap_posetrack',
                          'mota_taf', 'mota_oks', 'step'}


@pytest.mark.slow  # ~30 s of CPU (100 s on the loaded 2-core CPU): jax2onnx and a 5-frame check
def test_export_of_a_staf_workdir_feeds_back_the_previous_maps(staf_workdir, tmp_path):
  # export_workdir writes the recurrent graph and checks it against JAX over
  # a 5-frame clip fed its own outputs (it raises on a mismatch).
  path = export.export_workdir(staf_workdir, str(tmp_path / 'staf.onnx'), input_size=(64, 64),
                               last_only=True)
  session = predictor.onnx_session(path)
  assert [value.name for value in session.get_inputs()] == [
      'images', 'previous_heatmaps', 'previous_pafs', 'previous_tafs']
  assert [value.name for value in session.get_outputs()] == [
      'heatmaps_stage1', 'pafs_stage1', 'tafs_stage1']
  with pytest.raises(ValueError, match='channels last only'):
    export.export_workdir(staf_workdir, str(tmp_path / 'nchw.onnx'), nchw=True)


@pytest.mark.slow  # ~5 min on a loaded 2-core CPU: compiles the two-frame train step
def test_staf_quickstart_trains_and_reports_mota_at_each_evaluation(tmp_path):
  workdir = tmp_path / 'staf'
  cli.run(['train', f'--config={STAF_QUICKSTART}', f'--workdir={workdir}',
            *_flags({'num_train_steps': 2, 'eval_every_steps': 2, 'log_every_steps': 1,
                     'batch_size': 4, 'data.num_eval_examples': 2, 'data.track_eval_clips': 1,
                     'input_size_schedule': ((1, (96, 96)),)})])
  with open(workdir / 'summary.json') as f:
    summary = json.load(f)
  for key in ('mota_taf_step1', 'mota_oks_step1', 'mota_taf_step4', 'mota_oks_step4', 'loss'):
    assert np.isfinite(summary[key]), key
  assert summary['step'] == 2
  _, description = checkpoint.restore_variables(str(workdir))
  assert description['arch'] == 'staf'
