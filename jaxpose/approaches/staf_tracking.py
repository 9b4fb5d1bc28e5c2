"""A STAF model's people on videos, tracked by TAF and by OKS, scored by PoseTrack's MOTA.

The people come frame by frame from `staf_runner.RecurrentRunner` (the
recurrent model, each frame's people in image and network-input pixels,
with their TAFs); its names are re-exported here.

`score` tracks the same people twice, by `TafTracker` (the TAFs first, OKS
where they are silent) and by the OKS `Tracker` alone, both on the
network-input keypoints with their default settings, and scores both with
PoseTrack's MOTA (`jaxpose.metrics.posetrack`), and the people with its AP.
On generated clips it does so twice: for the people the model found, and
for the clip's own people given the model's TAFs (`ground_truth_people`),
which measures the linking alone, whatever the detections' quality.

Ground truth of generated clips (`clip_ground_truth`): each person present
in a frame with its labelled keypoints (COCO visibility 1 or 2; occluded
ones count, as PoseTrack labels them) and its track id. PoseTrack measures
distances in head sizes, from the head box; a generated head is a disc whose
rim holds both ears (`synthetic.figure_points`: the ears are one radius to
either side of its centre, whatever the yaw), so its box is the square of
side the ears' distance centred between them. Generated people have COCO's
keypoints, scored in PoseTrack's slots: the eyes where PoseTrack has
head_bottom and head_top, so those two columns measure eyes here.
On a PoseTrack18 file the model's eyes are not PoseTrack's head_bottom and
head_top: predictions leave those two joints out (they count as misses).
"""

from collections.abc import Sequence
import dataclasses

import ml_collections
import numpy as np

from jaxpose import skeletons
from jaxpose.approaches import base
from jaxpose.data import sources
from jaxpose.data.images import read_image
from jaxpose.data.posetrack import PoseTrackFrame, PoseTrackVideo
from jaxpose import tracking
from jaxpose.metrics import posetrack
from jaxpose.metrics.oks import boxes_from_keypoints
# Re-exported: they lived here before the runner had a module of its own.
from jaxpose.approaches.staf_runner import (FramePeople, FramesFn, RecurrentRunner,  # noqa: F401
                                            decode_frame)

# COCO's eyes sit in PoseTrack18's head_bottom and head_top slots.
_HEAD_SLOTS = [1, 2]
# COCO's ears (the generated head's rim).
_EARS = [3, 4]


def ground_truth_people(clip: dict, frames: Sequence[FramePeople]) -> list[FramePeople]:
  """A generated clip and the model's frames -> the clip's own people in each frame, with the model's TAFs.

  Each present person with its labelled keypoints (score 1; (0, 0) and
  score 0 where unlabelled), in image and in network-input pixels (through
  the frame's placement, where the TAFs lie). Both trackers then get the
  same, perfect detections, so their MOTAs differ only by how they link.
  """
  if len(frames) != len(clip['frame_ids']):
    raise ValueError(f'ground_truth_people: {len(frames)} frames of people for a clip of '
                     f'{len(clip["frame_ids"])} frames')
  people = []
  for index, frame in enumerate(frames):
    present = np.asarray(clip['present'][index])
    scores = (np.asarray(clip['visible'][index])[present] > 0).astype(np.float32)
    keypoints = np.where(scores[..., None] > 0,
                         np.asarray(clip['keypoints'][index], np.float32)[present], 0)
    # input = (image + 0.5) * scale + pad - 0.5, `Letterbox.to_image` inverted.
    placement = frame.placement
    input_keypoints = ((keypoints + 0.5) * np.asarray(placement.scale)
                       + np.asarray(placement.pad) - 0.5)
    input_keypoints = np.where(scores[..., None] > 0, input_keypoints, 0).astype(np.float32)
    boxes = boxes_from_keypoints(keypoints, scores, score_threshold=0.0).astype(np.float32)
    people.append(FramePeople(base.People(keypoints, scores, boxes, scores.sum(axis=-1)),
                              input_keypoints, frame.tafs, placement))
  return people


def new_trackers() -> dict[str, tracking.Tracker]:
  """{'taf': TafTracker, 'oks': Tracker} with their defaults, for COCO-17 people."""
  sigmas = skeletons.COCO.sigmas
  return {'taf': tracking.TafTracker(sigmas), 'oks': tracking.Tracker(sigmas)}


def track_frames(frames: Sequence[FramePeople]) -> dict[str, list[np.ndarray]]:
  """A video's people -> {'taf': track ids per frame, 'oks': ...}, both on the network-input keypoints."""
  trackers = new_trackers()
  ids = {kind: [] for kind in trackers}
  for frame in frames:
    scores = frame.people.keypoint_scores
    ids['taf'].append(trackers['taf'].update(frame.input_keypoints, scores, tafs=frame.tafs))
    ids['oks'].append(trackers['oks'].update(frame.input_keypoints, scores))
  return ids


def confident_people(frame: FramePeople, threshold: float) -> FramePeople:
  """A frame's people keeping only the keypoints scored at least `threshold`; people left with none dropped.

  PoseTrack's MOTA counts every submitted keypoint: one not matched is a
  false positive, whatever its score. Tracking benchmarks therefore submit
  only confident keypoints, as DetectAndTrack's evaluation does with
  EVAL_MPII_KPT_THRESHOLD (github.com/facebookresearch/DetectAndTrack at
  9fe354006339ede4cfe7af6ef18d07718316f7e5, lib/core/config.py). AP ranks
  keypoints by score instead, so it is computed on all of them (`score`).
  Boxes are recomputed from the kept keypoints; the person scores are kept.
  """
  scores = frame.people.keypoint_scores
  kept = scores >= threshold
  keep = kept.any(axis=-1)
  scores = np.where(kept, scores, 0).astype(np.float32)[keep]
  keypoints = np.where(kept[..., None], frame.people.keypoints, 0).astype(np.float32)[keep]
  input_keypoints = np.where(kept[..., None], frame.input_keypoints, 0).astype(np.float32)[keep]
  boxes = boxes_from_keypoints(keypoints, scores, score_threshold=0.0).astype(np.float32)
  people = base.People(keypoints, scores, boxes, np.asarray(frame.people.scores)[keep])
  return dataclasses.replace(frame, people=people, input_keypoints=input_keypoints)


def predicted_frame(people: base.People, track_ids: np.ndarray, truth: PoseTrackFrame,
                    head_slots: bool = True) -> PoseTrackFrame:
  """One frame's tracked people -> a PoseTrack prediction frame paired with `truth`.

  Keypoints not found are (0, 0, 0); people without a track id (-1) or a
  keypoint are left out; without `head_slots`, COCO's eyes too (PoseTrack18's
  head_bottom and head_top are other points).
  """
  found = people.keypoint_scores > 0
  if not head_slots:
    found[:, _HEAD_SLOTS] = False
  keypoints = np.concatenate([people.keypoints, people.keypoint_scores[..., None]], axis=-1)
  keypoints = np.where(found[..., None], keypoints, 0)
  keep = (np.asarray(track_ids) >= 0) & found.any(axis=-1)
  missing = np.full((int(keep.sum()), 4), np.nan)
  return PoseTrackFrame(truth.file_name, truth.image_path, truth.image_id, truth.is_labeled,
                        keypoints[keep], np.asarray(track_ids)[keep],
                        people.keypoint_scores[keep], missing, people.boxes[keep])


def clip_ground_truth(clip: dict, name: str) -> PoseTrackVideo:
  """A generated clip (`SyntheticClips` example) -> its PoseTrack ground truth (module docstring)."""
  frames = []
  for index, frame_id in enumerate(clip['frame_ids']):
    present = np.asarray(clip['present'][index])
    visible = np.asarray(clip['visible'][index])[present]
    keypoints = np.asarray(clip['keypoints'][index], np.float64)[present]
    labelled = np.concatenate([keypoints, visible[..., None]], axis=-1)
    ears = keypoints[:, _EARS]
    side = np.linalg.norm(ears[:, 0] - ears[:, 1], axis=-1)[:, None]
    head_boxes = np.concatenate([ears.mean(axis=1) - side / 2, side, side], axis=-1)
    frames.append(PoseTrackFrame(
        f'{name}/{int(frame_id):06d}.png', '', index, True,
        np.where(visible[..., None] > 0, labelled, 0), np.asarray(clip['track_ids'])[present],
        np.full(visible.shape, np.nan), head_boxes, np.asarray(clip['boxes'][index])[present]))
  return PoseTrackVideo(name, tuple(frames))


@dataclasses.dataclass(frozen=True)
class TrackingResult:
  """TAF and OKS tracking of the same people on a set of videos, scored as PoseTrack.

  Attributes:
    title: what was scored, for printing.
    key: the suffix of its `summary` keys.
    taf: MOTA etc. of `TafTracker`'s ids.
    oks: the same of the OKS `Tracker`'s ids.
    pose: AP of the people (the trackers do not change it); None when the
      people are the ground truth's (`ground_truth_people`).
  """
  title: str
  key: str
  taf: posetrack.TrackingMetrics
  oks: posetrack.TrackingMetrics
  pose: posetrack.PoseMetrics | None


def score(title: str, key: str, ground_truth: Sequence[PoseTrackVideo],
          detections: Sequence[Sequence[FramePeople]], head_slots: bool = True,
          with_ap: bool = True, keypoint_threshold: float = 0.0) -> TrackingResult:
  """Ground-truth videos and each one's frames of people -> both trackers' MOTA and (`with_ap`) the AP.

  `head_slots`: as `predicted_frame`'s. The trackers and MOTA see only the
  keypoints scored at least `keypoint_threshold` (`confident_people`; 0:
  all); AP is of all keypoints.
  """
  if keypoint_threshold < 0:
    raise ValueError(f'config.data.track_keypoint_threshold: expected a score >= 0, '
                     f'got {keypoint_threshold}')
  predictions = {'taf': [], 'oks': [], 'all': []}
  for video, frames in zip(ground_truth, detections, strict=True):
    if len(frames) != len(video.frames):
      raise ValueError(f'video {video.name!r}: {len(frames)} frames of people for '
                       f'{len(video.frames)} ground-truth frames')
    confident = [confident_people(frame, keypoint_threshold) for frame in frames]
    ids = track_frames(confident)
    for kind in ('taf', 'oks'):
      predictions[kind].append(PoseTrackVideo(video.name, tuple(
          predicted_frame(frame.people, frame_ids, truth, head_slots)
          for frame, frame_ids, truth in zip(confident, ids[kind], video.frames))))
    if not with_ap:
      continue
    # AP needs no identities: every person, numbered within its frame.
    predictions['all'].append(PoseTrackVideo(video.name, tuple(
        predicted_frame(frame.people, np.arange(len(frame.people.keypoints)), truth,
                        head_slots) for frame, truth in zip(frames, video.frames))))
  if not with_ap:
    pose = None
  elif any(len(frame.track_ids) for video in predictions['all'] for frame in video.frames):
    pose = posetrack.average_precision(ground_truth, predictions['all'])
  else:  # no one found: AP 0 (posetrack.average_precision needs a prediction)
    pose = posetrack.PoseMetrics(*np.zeros((3, posetrack.NUM_JOINTS)))
  return TrackingResult(title, key, posetrack.mota(ground_truth, predictions['taf']),
                        posetrack.mota(ground_truth, predictions['oks']), pose)


def evaluate_clips(frames_fn: FramesFn, config: ml_collections.ConfigDict,
                   share: base.Share = base.Share()) -> list[TrackingResult]:
  """config.data.track_eval_clips held-out generated clips at each of config.data.track_eval_frame_steps -> results.

  For each frame step k two results: the people `frames_fn` found (key
  `step{k}`), and the clips' own people linked by its TAFs
  (`ground_truth_people`, key `gt_people_step{k}`, no AP). MOTA counts the
  keypoints scored at least config.data.track_keypoint_threshold (`score`).

  `frames_fn`: a clip (`SyntheticClips` example) -> its frames' people, e.g.
  `lambda clip: runner.video(clip['images'])`. `share`: the clips this
  process tracks (several processes), the results being everyone's.
  """
  results = []
  for frame_step in config.data.track_eval_frame_steps:
    clips = sources.generated_clips(config, config.data.track_eval_clips, held_out=True,
                                    frame_steps=(int(frame_step),))
    detections = share.gather([frames_fn(clips[index])
                               for index in share.take(range(len(clips)))])
    truths, true_people = [], []
    for index in range(len(clips)):
      clip = clips[index]
      truths.append(clip_ground_truth(clip, f'clip{index}'))
      true_people.append(ground_truth_people(clip, detections[index]))
    title = f'{len(clips)} generated clips, frame_step {frame_step}'
    threshold = float(config.data.track_keypoint_threshold)
    results.append(score(f'{title}, the people found (head_bottom, head_top: the eyes)'
                         f'{_threshold_note(threshold)}', f'step{frame_step}', truths, detections,
                         keypoint_threshold=threshold))
    results.append(score(f'{title}, the clips\' own people linked by the TAFs',
                         f'gt_people_step{frame_step}', truths, true_people, with_ap=False,
                         keypoint_threshold=threshold))
  return results


def evaluate_posetrack(runner: RecurrentRunner, videos: Sequence[PoseTrackVideo],
                       keypoint_threshold: float = 0.0,
                       share: base.Share = base.Share()) -> TrackingResult:
  """PoseTrack18 ground-truth videos (`load_posetrack`, with their images) -> the runner's result.

  `keypoint_threshold`: as `score`'s. `share`: the videos this process
  tracks (several processes), the result being everyone's.
  """
  detections = share.gather([runner.video(read_image(frame.image_path, frame.image_id)
                                          for frame in video.frames)
                             for video in share.take(videos)])
  return score(f'PoseTrack18, {len(videos)} videos{_threshold_note(keypoint_threshold)}',
               'posetrack', videos, detections, head_slots=False,
               keypoint_threshold=keypoint_threshold)


def _threshold_note(threshold: float) -> str:
  return f'; MOTA of keypoints scored >= {threshold:g}' if threshold > 0 else ''


def summary(results: Sequence[TrackingResult]) -> dict[str, float]:
  """Results -> {mota_taf_<key>, mota_oks_<key>, ap_<key> (with AP)} totals, and mota_taf, mota_oks of the first."""
  metrics = {}
  for result in results:
    metrics[f'mota_taf_{result.key}'] = result.taf.totals()['mota']
    metrics[f'mota_oks_{result.key}'] = result.oks.totals()['mota']
    if result.pose is not None:
      metrics[f'ap_{result.key}'] = result.pose.totals()['ap']
  if results:
    metrics['mota_taf'] = metrics[f'mota_taf_{results[0].key}']
    metrics['mota_oks'] = metrics[f'mota_oks_{results[0].key}']
  return metrics


def tracking_table(result) -> str:
  """A `TrackingResult` -> per joint and total: MOTA of TAF and OKS tracking, and AP."""
  columns = {'MOTA TAF': result.taf.mota, 'MOTA OKS': result.oks.mota}
  if result.pose is not None:  # None: the people are the ground truth's
    columns['AP'] = result.pose.ap
  lines = [result.title, f'{"joint":16}' + ''.join(f'{name:>10}' for name in columns)]
  rows = list(posetrack.JOINT_NAMES) + ['total']
  for row, name in enumerate(rows):
    values = [posetrack.total(v) if name == 'total' else v[row] for v in columns.values()]
    lines.append(f'{name:16}' + ''.join(f'{value:10.1f}' for value in values))
  switches = {'TAF': result.taf.num_switches, 'OKS': result.oks.num_switches}
  lines.append('identity switches: ' + ', '.join(f'{kind} {int(np.sum(count))}'
                                                 for kind, count in switches.items()))
  return '\n'.join(lines)
