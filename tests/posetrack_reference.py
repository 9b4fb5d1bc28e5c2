"""Reference: PoseTrack's official evaluation (poseval), transcribed for the tests of `jaxpose.metrics.posetrack`.

Source: github.com/leonid-pishchulin/poseval, commit 4258a1575b9f2ddd0bdb85f74557235ab5df0f52:
- poseval/convert.py: `Video.from_new`, `Person.from_new`, `Person.to_old`,
  `Image.from_new`, `Image.to_old` (PoseTrack18 JSON -> its 2017 'annolist').
- poseval/eval_helpers.py: `Joint`, `load_data_dir`, `cleanupData`,
  `removeIgnoredPoints`, `getHeadSize`, `assignGTmulti`, `computeRPC`, `VOCap`.
- poseval/evaluateAP.py and poseval/evaluateTracking.py: `computeMetrics`.
The logic is rewritten here, step by step in poseval's own form (dicts of
'annorect's, python loops, shapely polygons, one py-motmetrics accumulator per
joint and sequence), so that it shares no code with the implementation.

Input: one PoseTrack18 JSON dict per video (as poseval reads a folder of
them), ground truth and predictions in the same order. Two departures, where
poseval would give no usable number:
- MOTP sums the distances of the MATCH and SWITCH events. poseval sums
  `events['D']`, which py-motmetrics >= 1.2 fills with a RAW event for every
  pair in range as well; the py-motmetrics that poseval was written against
  (its former submodule) recorded only MATCH, SWITCH, MISS and FP events.
- A sequence with a single scored frame adds nothing to the MOT metrics:
  poseval leaves each sequence's last frame out, and for such a sequence
  then fails to look its name up (`imgidxs[0, 0]` of an empty array).
"""

import copy

import motmetrics
import numpy as np
from shapely import geometry

NUM_JOINTS = 15  # poseval's Joint().count
# Its joints, by the names PoseTrack18's keypoints are converted with.
POSEVAL_NAMES = ['right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle',
                 'right_wrist', 'right_elbow', 'right_shoulder', 'left_shoulder', 'left_elbow',
                 'left_wrist', 'head_bottom', 'nose', 'head_top']
MIN_SCORE = -9999
MAX_TRACK_ID = 10000
DIST_THRESH = 0.5


def _annolist(video: dict) -> list[dict]:
  """One video's PoseTrack18 dict -> poseval's 2017 frames ({'annorect', 'ignore_regions'})."""
  names = video['categories'][0]['keypoints']
  conversion = [POSEVAL_NAMES.index(name) if name in POSEVAL_NAMES else None for name in names]
  frames = []
  for image in video['images']:
    rects = []
    for person in video['annotations']:
      if person['image_id'] != image['id']:
        continue
      scores = person.get('scores') or None
      points = []
      values = np.array(person['keypoints']).reshape(len(conversion), 3)
      for index, (x, y, visible) in enumerate(values):
        if conversion[index] is None or (x == 0 and y == 0 and visible == 0):
          continue
        point = {'id': [conversion[index]], 'x': [x], 'y': [y], 'is_visible': [visible]}
        if scores:
          point['score'] = [scores[index]]
        points.append(point)
      rect = {'track_id': [person['track_id']], 'annopoints': [{'point': points}]}
      if 'bbox_head' in person:
        x, y, w, h = person['bbox_head']
        rect.update(x1=[x], y1=[y], x2=[x + w], y2=[y + h])
      rects.append(rect)
    frame = {'annorect': rects}
    regions = [{'point': [{'x': [x], 'y': [y]} for x, y in zip(xs, ys)]}
               for xs, ys in zip(image.get('ignore_regions_x', []),
                                 image.get('ignore_regions_y', []))]
    if regions:
      frame['ignore_regions'] = regions
    frames.append(frame)
  return frames


def _without_ignored_points(rects: list[dict], polygons: list) -> list[dict]:
  kept = []
  for rect in rects:
    points = [p for p in rect['annopoints'][0]['point']
              if not any(polygon.contains(geometry.Point(p['x'][0], p['y'][0]))
                         for polygon in polygons)]
    if points:
      rect['annopoints'][0]['point'] = points
      kept.append(rect)
  return kept


def _load(ground_truth: list[dict], predictions: list[dict]) -> tuple[list, list]:
  """load_data_dir, cleanupData and removeIgnoredPoints: the scored frames of both sides."""
  gt_frames, pr_frames = [], []
  for sequence, (gt_video, pr_video) in enumerate(zip(ground_truth, predictions)):
    gt, pr = _annolist(copy.deepcopy(gt_video)), _annolist(copy.deepcopy(pr_video))
    assert len(gt) == len(pr)
    for frames in (gt, pr):
      for frame in frames:
        frame['seq_id'] = sequence
        ids = [rect['track_id'][0] for rect in frame['annorect']]
        assert len(set(ids)) == len(ids) and all(i < MAX_TRACK_ID for i in ids)
        for rect in frame['annorect']:
          rect['track_id'][0] += sequence * MAX_TRACK_ID
    gt_frames += gt
    pr_frames += pr
  keep = [index for index, frame in enumerate(gt_frames) if frame['annorect']]
  gt_frames = [gt_frames[index] for index in keep]
  pr_frames = [pr_frames[index] for index in keep]
  for gt, pr in zip(gt_frames, pr_frames):
    if gt.get('ignore_regions'):
      polygons = [geometry.Polygon([(p['x'][0], p['y'][0]) for p in region['point']])
                  for region in gt['ignore_regions']]
      pr['annorect'] = _without_ignored_points(pr['annorect'], polygons)
      gt['annorect'] = _without_ignored_points(gt['annorect'], polygons)
  return gt_frames, pr_frames


def _point(points: list[dict], joint: int):
  for point in points:
    if point['id'][0] == joint:
      return point
  return None


def _dummy_mot() -> dict:
  return {joint: {'trackidxGT': [0], 'trackidxPr': [0], 'dist': np.full((1, 1), np.nan)}
          for joint in range(NUM_JOINTS)}


def _assign(gt_frames: list, pr_frames: list):
  """assignGTmulti: per joint and frame the AP scores and labels, GT counts [15, F], MOT inputs."""
  scores_all = {j: {f: np.zeros(0) for f in range(len(gt_frames))} for j in range(NUM_JOINTS)}
  labels_all = {j: {f: np.zeros(0, np.int8) for f in range(len(gt_frames))}
                for j in range(NUM_JOINTS)}
  num_gt_all = np.zeros((NUM_JOINTS, len(gt_frames)))
  mot_all = {}
  for f, (gt, pr) in enumerate(zip(gt_frames, pr_frames)):
    gt_rects, pr_rects = gt['annorect'], pr['annorect']
    dist = np.full((len(pr_rects), len(gt_rects), NUM_JOINTS), np.inf)
    score = np.full((len(pr_rects), NUM_JOINTS), np.nan)
    has_pr = np.zeros((len(pr_rects), NUM_JOINTS), bool)
    has_gt = np.zeros((len(gt_rects), NUM_JOINTS), bool)
    track_gt = [rect['track_id'][0] for rect in gt_rects]
    track_pr = [rect['track_id'][0] for rect in pr_rects]
    for g, rect in enumerate(gt_rects):
      for j in range(NUM_JOINTS):
        has_gt[g, j] = _point(rect['annopoints'][0]['point'], j) is not None
    for p, rect in enumerate(pr_rects):
      for j in range(NUM_JOINTS):
        point = _point(rect['annopoints'][0]['point'], j)
        if point is not None:
          score[p, j] = point['score'][0] if 'score' in point else MIN_SCORE
          has_pr[p, j] = True
    if pr_rects and gt_rects:
      for g, gt_rect in enumerate(gt_rects):
        head_size = 0.6 * np.linalg.norm(np.subtract([gt_rect['x2'][0], gt_rect['y2'][0]],
                                                     [gt_rect['x1'][0], gt_rect['y1'][0]]))
        for p, pr_rect in enumerate(pr_rects):
          for j in range(NUM_JOINTS):
            if has_pr[p, j] and has_gt[g, j]:
              a = _point(gt_rect['annopoints'][0]['point'], j)
              b = _point(pr_rect['annopoints'][0]['point'], j)
              dist[p, g, j] = np.linalg.norm(
                  np.subtract([a['x'][0], a['y'][0]], [b['x'][0], b['y'][0]])) / head_size
      match = dist <= DIST_THRESH
      pck = 1.0 * np.sum(match, axis=2)
      num_labelled = np.sum(has_gt, axis=1)
      for p in range(len(pr_rects)):
        for g in range(len(gt_rects)):
          if num_labelled[g] > 0:
            pck[p, g] = pck[p, g] / num_labelled[g]
      best = np.argmax(pck, axis=1)
      for p in range(pck.shape[0]):
        for g in range(pck.shape[1]):
          if g != best[p]:
            pck[p, g] = 0
      pr_to_gt = np.argmax(pck, axis=0)
      pr_to_gt[np.max(pck, axis=0) == 0] = -1
      mot = {}
      for j in range(NUM_JOINTS):
        rows_gt = np.argwhere(has_gt[:, j]).flatten().tolist()
        rows_pr = np.argwhere(has_pr[:, j]).flatten().tolist()
        pair = np.full((len(rows_gt), len(rows_pr)), np.nan)
        for b, p in enumerate(rows_pr):
          for a, g in enumerate(rows_gt):
            if match[p, g, j]:
              pair[a, b] = dist[p, g, j]
        mot[j] = {'trackidxGT': [track_gt[g] for g in rows_gt],
                  'trackidxPr': [track_pr[p] for p in rows_pr], 'dist': pair}
      for p in range(len(pr_rects)):
        if p in pr_to_gt:
          g = np.argwhere(pr_to_gt == p)
          assert g.size == 1
          labels = match[p, g[0, 0], :]
        else:
          labels = np.zeros(NUM_JOINTS, bool)
        for j in range(NUM_JOINTS):
          if has_pr[p, j]:
            scores_all[j][f] = np.append(scores_all[j][f], score[p, j])
            labels_all[j][f] = np.append(labels_all[j][f], labels[j])
    else:
      if not gt_rects:
        for p in range(len(pr_rects)):
          for j in range(NUM_JOINTS):
            if has_pr[p, j]:
              scores_all[j][f] = np.append(scores_all[j][f], score[p, j])
              labels_all[j][f] = np.append(labels_all[j][f], False)
      mot = _dummy_mot()
    num_gt_all[:, f] += has_gt.sum(axis=0)
    mot_all[f] = mot
  return scores_all, labels_all, num_gt_all, mot_all


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
  mpre = np.concatenate([[0.0], precision, [0.0]])
  mrec = np.concatenate([[0.0], recall, [1.0]])
  for i in range(mpre.size - 2, -1, -1):
    mpre[i] = max(mpre[i], mpre[i + 1])
  i = np.argwhere(~np.equal(mrec[1:], mrec[:-1])).flatten() + 1
  return np.sum((mrec[i] - mrec[i - 1]) * mpre[i])


def _mean_of_numbers(values: np.ndarray) -> float:
  """The mean of the values that are not NaN (NaN if there are none, where poseval warns)."""
  values = values[~np.isnan(values)]
  return values.mean() if values.size else np.nan


def reference_ap(ground_truth: list[dict], predictions: list[dict]) -> dict[str, np.ndarray]:
  """evaluateAP -> {'ap', 'pre', 'rec'}: [16] each, 15 joints then the total (percent)."""
  scores_all, labels_all, num_gt_all, _ = _assign(*_load(ground_truth, predictions))
  result = {name: np.zeros(NUM_JOINTS + 1) for name in ('ap', 'pre', 'rec')}
  with np.errstate(divide='ignore', invalid='ignore'):
    for j in range(NUM_JOINTS):
      scores = np.concatenate([scores_all[j][f] for f in range(num_gt_all.shape[1])])
      labels = np.concatenate([labels_all[j][f] for f in range(num_gt_all.shape[1])])
      total_positives = num_gt_all[j].sum()
      order = scores.argsort()[::-1]
      sorted_labels = labels[order]
      precision, recall = np.zeros(len(scores)), np.zeros(len(scores))
      positives = 0
      for rank in range(len(order)):
        positives += sorted_labels[rank] == 1
        recall[rank] = 1.0 * positives / total_positives
        precision[rank] = 1.0 * positives / (rank + 1)
      if len(precision):
        result['ap'][j] = _voc_ap(recall, precision) * 100
        result['pre'][j] = precision[-1] * 100
        result['rec'][j] = recall[-1] * 100
  for values in result.values():
    values[NUM_JOINTS] = _mean_of_numbers(values[:NUM_JOINTS])
  return result


def reference_mot(ground_truth: list[dict], predictions: list[dict]) -> dict[str, np.ndarray]:
  """evaluateTracking -> {'mota', 'motp', 'pre', 'rec'} [16] (percent) and the event counts [15]."""
  gt_frames, pr_frames = _load(ground_truth, predictions)
  _, _, _, mot_all = _assign(gt_frames, pr_frames)
  names = ['num_misses', 'num_switches', 'num_false_positives', 'num_objects', 'num_detections']
  sums = {name: np.zeros(NUM_JOINTS) for name in names + ['sumD']}
  sequences = np.array([frame['seq_id'] for frame in gt_frames])
  host = motmetrics.metrics.create()
  for sequence in np.unique(sequences):
    frames = np.argwhere(sequences == sequence)[:-1, 0]
    accumulators = [motmetrics.MOTAccumulator(auto_id=True) for _ in range(NUM_JOINTS)]
    for f in frames:
      for j in range(NUM_JOINTS):
        accumulators[j].update(mot_all[f][j]['trackidxGT'], mot_all[f][j]['trackidxPr'],
                               mot_all[f][j]['dist'])
    if not len(frames):
      continue
    for j in range(NUM_JOINTS):
      counts = host.compute(accumulators[j], metrics=names, return_dataframe=False, name='acc')
      for name in names:
        sums[name][j] += counts[name]
      events = accumulators[j].events
      matched = events[events.Type.isin(['MATCH', 'SWITCH'])]['D'].sum()
      sums['sumD'][j] += 0 if np.isnan(matched) else matched
  result = {name: np.zeros(NUM_JOINTS + 1) for name in ('mota', 'motp', 'pre', 'rec')}
  with np.errstate(divide='ignore', invalid='ignore'):
    for j in range(NUM_JOINTS):
      objects = sums['num_objects'][j] if sums['num_objects'][j] > 0 else np.nan
      false_positives = sums['num_false_positives'][j]
      detections = sums['num_detections'][j]
      result['mota'][j] = 100 * (1. - (sums['num_misses'][j] + sums['num_switches'][j] +
                                       false_positives) / objects)
      result['motp'][j] = 0.0 if detections == 0 else 100 * (1. - sums['sumD'][j] / detections)
      all_detections = false_positives + detections if false_positives + detections > 0 else np.nan
      result['pre'][j] = 100 * detections / all_detections
      result['rec'][j] = 100 * detections / objects
    for values in result.values():
      values[NUM_JOINTS] = _mean_of_numbers(values[:NUM_JOINTS])
  return result | {name: sums[name] for name in names}
