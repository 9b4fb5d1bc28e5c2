"""mmpose's top-down COCO evaluation of one image's detected people, transcribed (numpy + cv2).

A transcription (written for this project) of open-mmlab/mmpose at commit
759b39c13fea6ba094afc1fa932f51dc1b11cbf9, the protocol of
`configs/body_2d_keypoint/topdown_heatmap/coco/td-hm_hourglass52_8xb32-210e_coco-256x256.py`
(val pipeline LoadImage, GetBBoxCenterScale, TopdownAffine (256, 256),
PackPoseInputs; codec MSRAHeatmap (256, 256) -> (64, 64), sigma 2; test_cfg
flip_test=True, flip_mode='heatmap', shift_heatmap=True; CocoMetric with its
defaults), read from these files:
- `mmpose/datasets/datasets/base/base_coco_style_dataset.py`
  `_load_detection_results` (person detections, float32 boxes xywh -> xyxy,
  float32 scores, dummy keypoints, running `id`) and `filter_data`
  (`bbox_score_thr`, which the hourglass config does not set);
- `mmpose/structures/bbox/transforms.py` `bbox_xywh2xyxy`, `bbox_xyxy2xywh`,
  `bbox_xyxy2cs`, `get_warp_matrix` (rot 0, no shift, fix_aspect_ratio),
  `_rotate_point`, `_get_3rd_point`;
- `mmpose/datasets/transforms/common_transforms.py` `GetBBoxCenterScale`
  (padding 1.25);
- `mmpose/datasets/transforms/topdown_transforms.py` `TopdownAffine`
  (`_fix_aspect_ratio`, `transform` without UDP; the dummy keypoints it
  also warps are not used by prediction and are left out);
- `mmpose/datasets/transforms/formatting.py` `PackPoseInputs` (which keys
  become gt_instances: bboxes, bbox_scores, bbox_scales; metainfo);
- `mmpose/models/pose_estimators/topdown.py` `TopdownPoseEstimator.predict`
  (the flip of the input along its width) and `add_pred_to_datasample`;
- `mmpose/models/heads/heatmap_heads/cpm_head.py` `CPMHead.predict` and
  `mmpose/models/heads/base_head.py` `BaseHead.decode` (per sample);
- `mmpose/models/utils/tta.py` `flip_heatmaps` (flip_mode 'heatmap');
- `mmpose/codecs/msra_heatmap.py` `MSRAHeatmap.decode` (not unbiased),
  `mmpose/codecs/utils/post_processing.py` `get_heatmap_maximum`,
  `mmpose/codecs/utils/refinement.py` `refine_keypoints`;
- `mmpose/evaluation/metrics/coco_metric.py` `CocoMetric.process`,
  `compute_metrics` (grouping by image, `_sort_and_unique_bboxes`,
  score_mode 'bbox_keypoint', keypoint_score_thr 0.2, nms_mode 'oks_nms',
  nms_thr 0.9) and `results2json` (the list it dumps, not the file);
- `mmpose/evaluation/functional/nms.py` `oks_iou`, `oks_nms` (vis_thr None);
- `configs/_base_/datasets/coco.py` (sigmas, as float32 by
  `mmpose/datasets/datasets/utils.py` `parse_pose_metainfo`; flip_indices
  from its swap pairs).

Torch tensors are numpy arrays here (`Tensor.flip(-1)` copies, as
`np.flip(...).copy()`). The network `net` stands for the data preprocessor,
backbone and head: the warped images [N, H, W, 3] RGB uint8 as
TopdownAffine leaves them (LoadImage reads BGR and the preprocessor swaps to
RGB; the warp is per channel, so the RGB image is warped directly) ->
heatmaps [N, K, h, w] float32 (the last stage). Its flip is of the width
axis, as mmpose flips the NCHW batch. Not part of the package.
"""

from itertools import product

import cv2
import numpy as np

SIGMAS = np.array([
    0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062,
    0.062, 0.107, 0.107, 0.087, 0.087, 0.089, 0.089], dtype=np.float32)
FLIP_INDICES = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
NUM_KEYPOINTS = 17
INPUT_SIZE = (256, 256)
HEATMAP_SIZE = (64, 64)


# --- mmpose/structures/bbox/transforms.py --------------------------------------

def bbox_xyxy2xywh(bbox_xyxy):
  bbox_xywh = bbox_xyxy.copy()
  bbox_xywh[:, 2] = bbox_xywh[:, 2] - bbox_xywh[:, 0]
  bbox_xywh[:, 3] = bbox_xywh[:, 3] - bbox_xywh[:, 1]
  return bbox_xywh


def bbox_xywh2xyxy(bbox_xywh):
  bbox_xyxy = bbox_xywh.copy()
  bbox_xyxy[:, 2] = bbox_xyxy[:, 2] + bbox_xyxy[:, 0]
  bbox_xyxy[:, 3] = bbox_xyxy[:, 3] + bbox_xyxy[:, 1]
  return bbox_xyxy


def bbox_xyxy2cs(bbox, padding=1.):
  dim = bbox.ndim
  if dim == 1:
    bbox = bbox[None, :]
  scale = (bbox[..., 2:] - bbox[..., :2]) * padding
  center = (bbox[..., 2:] + bbox[..., :2]) * 0.5
  if dim == 1:
    center = center[0]
    scale = scale[0]
  return center, scale


def _rotate_point(pt, angle_rad):
  sn, cs = np.sin(angle_rad), np.cos(angle_rad)
  rot_mat = np.array([[cs, -sn], [sn, cs]])
  return rot_mat @ pt


def _get_3rd_point(a, b):
  direction = a - b
  c = b + np.r_[-direction[1], direction[0]]
  return c


def get_warp_matrix(center, scale, rot, output_size, shift=(0., 0.), inv=False,
                    fix_aspect_ratio=True):
  shift = np.array(shift)
  src_w, src_h = scale[:2]
  dst_w, dst_h = output_size[:2]
  rot_rad = np.deg2rad(rot)
  src_dir = _rotate_point(np.array([src_w * -0.5, 0.]), rot_rad)
  dst_dir = np.array([dst_w * -0.5, 0.])
  src = np.zeros((3, 2), dtype=np.float32)
  src[0, :] = center + scale * shift
  src[1, :] = center + src_dir + scale * shift
  dst = np.zeros((3, 2), dtype=np.float32)
  dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
  dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
  if fix_aspect_ratio:
    src[2, :] = _get_3rd_point(src[0, :], src[1, :])
    dst[2, :] = _get_3rd_point(dst[0, :], dst[1, :])
  else:
    src_dir_2 = _rotate_point(np.array([0., src_h * -0.5]), rot_rad)
    dst_dir_2 = np.array([0., dst_h * -0.5])
    src[2, :] = center + src_dir_2 + scale * shift
    dst[2, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir_2
  if inv:
    warp_mat = cv2.getAffineTransform(np.float32(dst), np.float32(src))
  else:
    warp_mat = cv2.getAffineTransform(np.float32(src), np.float32(dst))
  return warp_mat


# --- base_coco_style_dataset.py ------------------------------------------------

def load_detection_results(det_results, num_keypoints=NUM_KEYPOINTS):
  """A detections list (COCO results format) -> mmpose's data_list (image paths left out)."""
  data_list = []
  id_ = 0
  for det in det_results:
    if det['category_id'] != 1:
      continue
    bbox_xywh = np.array(det['bbox'][:4], dtype=np.float32).reshape(1, 4)
    bbox = bbox_xywh2xyxy(bbox_xywh)
    bbox_score = np.array(det['score'], dtype=np.float32).reshape(1)
    keypoints = np.zeros((1, num_keypoints, 2), dtype=np.float32)
    keypoints_visible = np.ones((1, num_keypoints), dtype=np.float32)
    data_list.append({
        'img_id': det['image_id'],
        'bbox': bbox,
        'bbox_score': bbox_score,
        'keypoints': keypoints,
        'keypoints_visible': keypoints_visible,
        'id': id_,
    })
    id_ += 1
  return data_list


def filter_data(data_list, filter_cfg=None):
  if filter_cfg is None:
    return data_list
  if 'bbox_score_thr' in filter_cfg:
    thr = filter_cfg['bbox_score_thr']
    data_list = [ann for ann in data_list if not ann['bbox_score'] < thr]
  return data_list


# --- the val pipeline ----------------------------------------------------------

def get_bbox_center_scale(results, padding=1.25):
  """GetBBoxCenterScale.transform (no bbox_center / bbox_scale given)."""
  bbox = results['bbox']
  center, scale = bbox_xyxy2cs(bbox, padding=padding)
  results['bbox_center'] = center
  results['bbox_scale'] = scale
  return results


def _fix_aspect_ratio(bbox_scale, aspect_ratio):
  w, h = np.hsplit(bbox_scale, [1])
  bbox_scale = np.where(w > h * aspect_ratio,
                        np.hstack([w, w / aspect_ratio]),
                        np.hstack([h * aspect_ratio, h]))
  return bbox_scale


def topdown_affine(results, input_size=INPUT_SIZE):
  """TopdownAffine.transform, use_udp False, no rotation."""
  w, h = input_size
  warp_size = (int(w), int(h))
  results['bbox_scale'] = _fix_aspect_ratio(results['bbox_scale'], aspect_ratio=w / h)
  assert results['bbox_center'].shape[0] == 1
  center = results['bbox_center'][0]
  scale = results['bbox_scale'][0]
  rot = 0.
  warp_mat = get_warp_matrix(center, scale, rot, output_size=(w, h))
  results['img'] = cv2.warpAffine(results['img'], warp_mat, warp_size, flags=cv2.INTER_LINEAR)
  results['input_size'] = (w, h)
  results['input_center'] = center
  results['input_scale'] = scale
  return results


def pack_pose_inputs(results):
  """PackPoseInputs: (input image, data sample {gt_instances, metainfo})."""
  gt_instances = {}
  for key, packed_key in (('bbox', 'bboxes'), ('bbox_score', 'bbox_scores'),
                          ('keypoints', 'keypoints'),
                          ('keypoints_visible', 'keypoints_visible'),
                          ('bbox_scale', 'bbox_scales')):
    if key in results:
      gt_instances[packed_key] = results[key]
  metainfo = {k: results[k] for k in ('id', 'img_id', 'category_id', 'input_size',
                                      'input_center', 'input_scale', 'flip_indices')
              if k in results}
  return results['img'], {'gt_instances': gt_instances, 'metainfo': metainfo}


# --- the model: tta.py, cpm_head.py, base_head.py, msra_heatmap.py -------------

def flip_heatmaps(heatmaps, flip_indices=None, flip_mode='heatmap', shift_heatmap=True):
  assert flip_mode == 'heatmap'
  heatmaps = np.flip(heatmaps, -1).copy()
  if flip_indices is not None:
    assert len(flip_indices) == heatmaps.shape[1]
    heatmaps = heatmaps[:, flip_indices]
  if shift_heatmap:
    heatmaps[..., 1:] = heatmaps[..., :-1].copy()
  return heatmaps


def get_heatmap_maximum(heatmaps):
  assert heatmaps.ndim == 3 or heatmaps.ndim == 4
  if heatmaps.ndim == 3:
    K, H, W = heatmaps.shape
    B = None
    heatmaps_flatten = heatmaps.reshape(K, -1)
  else:
    B, K, H, W = heatmaps.shape
    heatmaps_flatten = heatmaps.reshape(B * K, -1)
  y_locs, x_locs = np.unravel_index(np.argmax(heatmaps_flatten, axis=1), shape=(H, W))
  locs = np.stack((x_locs, y_locs), axis=-1).astype(np.float32)
  vals = np.amax(heatmaps_flatten, axis=1)
  locs[vals <= 0.] = -1
  if B:
    locs = locs.reshape(B, K, 2)
    vals = vals.reshape(B, K)
  return locs, vals


def refine_keypoints(keypoints, heatmaps):
  N, K = keypoints.shape[:2]
  H, W = heatmaps.shape[1:]
  for n, k in product(range(N), range(K)):
    x, y = keypoints[n, k, :2].astype(int)
    if 1 < x < W - 1 and 0 < y < H:
      dx = heatmaps[k, y, x + 1] - heatmaps[k, y, x - 1]
    else:
      dx = 0.
    if 1 < y < H - 1 and 0 < x < W:
      dy = heatmaps[k, y + 1, x] - heatmaps[k, y - 1, x]
    else:
      dy = 0.
    keypoints[n, k] += np.sign([dx, dy], dtype=np.float32) * 0.25
  return keypoints


def msra_decode(encoded, input_size=INPUT_SIZE, heatmap_size=HEATMAP_SIZE):
  """MSRAHeatmap.decode, unbiased False: heatmaps [K, H, W] -> keypoints [1, K, 2], scores [1, K]."""
  scale_factor = (np.array(input_size) / heatmap_size).astype(np.float32)
  heatmaps = encoded.copy()
  keypoints, scores = get_heatmap_maximum(heatmaps)
  keypoints, scores = keypoints[None], scores[None]
  keypoints = refine_keypoints(keypoints, heatmaps)
  keypoints = keypoints * scale_factor
  return keypoints, scores


def head_predict(net, inputs, batch_data_samples, test_cfg):
  """TopdownPoseEstimator.predict's feature step and CPMHead.predict, then BaseHead.decode."""
  if test_cfg.get('flip_test', False):
    flip_indices = batch_data_samples[0]['metainfo']['flip_indices']
    _batch_heatmaps = net(inputs)
    _batch_heatmaps_flip = flip_heatmaps(
        net(np.flip(inputs, 2).copy()),  # inputs.flip(-1) of the NCHW batch
        flip_mode=test_cfg.get('flip_mode', 'heatmap'),
        flip_indices=flip_indices,
        shift_heatmap=test_cfg.get('shift_heatmap', False))
    batch_heatmaps = (_batch_heatmaps + _batch_heatmaps_flip) * 0.5
  else:
    batch_heatmaps = net(inputs)
  preds = []
  for heatmaps in batch_heatmaps:
    keypoints, scores = msra_decode(heatmaps)
    preds.append({'keypoints': keypoints, 'keypoint_scores': scores})
  return preds


def add_pred_to_datasample(batch_pred_instances, batch_data_samples):
  for pred_instances, data_sample in zip(batch_pred_instances, batch_data_samples):
    gt_instances = data_sample['gt_instances']
    input_center = data_sample['metainfo']['input_center']
    input_scale = data_sample['metainfo']['input_scale']
    input_size = data_sample['metainfo']['input_size']
    pred_instances['keypoints'][..., :2] = \
        pred_instances['keypoints'][..., :2] / input_size * input_scale \
        + input_center - 0.5 * input_scale
    if 'keypoints_visible' not in pred_instances:
      pred_instances['keypoints_visible'] = pred_instances['keypoint_scores']
    pred_instances['bboxes'] = gt_instances['bboxes']
    pred_instances['bbox_scores'] = gt_instances['bbox_scores']
    data_sample['pred_instances'] = pred_instances
  return batch_data_samples


# --- nms.py --------------------------------------------------------------------

def oks_iou(g, d, a_g, a_d, sigmas=None, vis_thr=None):
  if sigmas is None:
    sigmas = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                       .87, .87, .89, .89]) / 10.0
  vars = (sigmas * 2)**2
  xg = g[0::3]
  yg = g[1::3]
  vg = g[2::3]
  ious = np.zeros(len(d), dtype=np.float32)
  for n_d in range(0, len(d)):
    xd = d[n_d, 0::3]
    yd = d[n_d, 1::3]
    vd = d[n_d, 2::3]
    dx = xd - xg
    dy = yd - yg
    e = (dx**2 + dy**2) / vars / ((a_g + a_d[n_d]) / 2 + np.spacing(1)) / 2
    if vis_thr is not None:
      ind = list((vg > vis_thr) & (vd > vis_thr))
      e = e[ind]
    ious[n_d] = np.sum(np.exp(-e)) / len(e) if len(e) != 0 else 0.0
  return ious


def oks_nms(kpts_db, thr, sigmas=None, vis_thr=None, score_per_joint=False):
  if len(kpts_db) == 0:
    return []
  if score_per_joint:
    scores = np.array([k['score'].mean() for k in kpts_db])
  else:
    scores = np.array([k['score'] for k in kpts_db])
  kpts = np.array([k['keypoints'].flatten() for k in kpts_db])
  areas = np.array([k['area'] for k in kpts_db])
  order = scores.argsort()[::-1]
  keep = []
  while len(order) > 0:
    i = order[0]
    keep.append(i)
    oks_ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
    inds = np.where(oks_ovr <= thr)[0]
    order = order[inds + 1]
  keep = np.array(keep)
  return keep


# --- coco_metric.py ------------------------------------------------------------

def coco_metric_process(data_samples):
  """CocoMetric.process with an annotation file: the preds (gts are not needed)."""
  preds = []
  for data_sample in data_samples:
    keypoints = data_sample['pred_instances']['keypoints']
    keypoint_scores = data_sample['pred_instances']['keypoint_scores']
    assert keypoint_scores.shape == keypoints.shape[:2]
    pred = dict()
    pred['id'] = data_sample['metainfo']['id']
    pred['img_id'] = data_sample['metainfo']['img_id']
    pred['keypoints'] = keypoints
    pred['keypoint_scores'] = keypoint_scores
    pred['category_id'] = data_sample['metainfo'].get('category_id', 1)
    if 'bboxes' in data_sample['pred_instances']:
      pred['bbox'] = bbox_xyxy2xywh(data_sample['pred_instances']['bboxes'])
    pred['bbox_scores'] = data_sample['pred_instances']['bbox_scores']
    if 'bbox_scales' in data_sample['gt_instances']:
      pred['areas'] = np.prod(data_sample['gt_instances']['bbox_scales'], axis=1)
    preds.append(pred)
  return preds


def _sort_and_unique_bboxes(kpts, key='id'):
  for img_id, persons in kpts.items():
    num = len(persons)
    kpts[img_id] = sorted(kpts[img_id], key=lambda x: x[key])
    for i in range(num - 1, 0, -1):
      if kpts[img_id][i][key] == kpts[img_id][i - 1][key]:
        del kpts[img_id][i]
  return kpts


def coco_metric_results(preds, score_mode='bbox_keypoint', keypoint_score_thr=0.2,
                        nms_mode='oks_nms', nms_thr=0.9, num_keypoints=NUM_KEYPOINTS,
                        sigmas=SIGMAS):
  """compute_metrics up to results2json: the results list it dumps, and the kept instances."""
  kpts = {}
  for pred in preds:
    img_id = pred['img_id']
    for idx, keypoints in enumerate(pred['keypoints']):
      instance = {
          'id': pred['id'],
          'img_id': pred['img_id'],
          'category_id': pred['category_id'],
          'keypoints': keypoints,
          'keypoint_scores': pred['keypoint_scores'][idx],
          'bbox_score': pred['bbox_scores'][idx],
      }
      if 'bbox' in pred:
        instance['bbox'] = pred['bbox'][idx]
      if 'areas' in pred:
        instance['area'] = pred['areas'][idx]
      else:
        area = (np.max(keypoints[:, 0]) - np.min(keypoints[:, 0])) * (
            np.max(keypoints[:, 1]) - np.min(keypoints[:, 1]))
        instance['area'] = area
      kpts.setdefault(img_id, []).append(instance)
  kpts = _sort_and_unique_bboxes(kpts, key='id')
  valid_kpts = {}
  for img_id, instances in kpts.items():
    for instance in instances:
      instance['keypoints'] = np.concatenate(
          [instance['keypoints'], instance['keypoint_scores'][:, None]], axis=-1)
      assert score_mode == 'bbox_keypoint'
      bbox_score = instance['bbox_score']
      mean_kpt_score = 0
      valid_num = 0
      for kpt_idx in range(num_keypoints):
        kpt_score = instance['keypoint_scores'][kpt_idx]
        if kpt_score > keypoint_score_thr:
          mean_kpt_score += kpt_score
          valid_num += 1
      if valid_num != 0:
        mean_kpt_score /= valid_num
      instance['score'] = bbox_score * mean_kpt_score
    if nms_mode == 'none':
      valid_kpts[img_id] = instances
    else:
      assert nms_mode == 'oks_nms'
      keep = oks_nms(instances, nms_thr, sigmas=sigmas)
      valid_kpts[img_id] = [instances[_keep] for _keep in keep]
  # results2json
  cat_results = []
  for _, img_kpts in valid_kpts.items():
    _keypoints = np.array([img_kpt['keypoints'] for img_kpt in img_kpts])
    _keypoints = _keypoints.reshape(-1, num_keypoints * 3)
    for img_kpt, keypoint in zip(img_kpts, _keypoints):
      res = {
          'image_id': img_kpt['img_id'],
          'category_id': img_kpt['category_id'],
          'keypoints': keypoint.tolist(),
          'score': float(img_kpt['score']),
      }
      if 'bbox' in img_kpt:
        res['bbox'] = img_kpt['bbox'].tolist()
      cat_results.append(res)
  return cat_results, valid_kpts


# --- one image, end to end -------------------------------------------------------

def evaluate_image(net, image_rgb, image_id, bboxes_xywh, bbox_scores, flip_test=True,
                   bbox_score_thr=None):
  """One image through mmpose's top-down COCO evaluation.

  Args:
    net: warped images [N, 256, 256, 3] uint8 RGB -> heatmaps [N, 17, 64, 64].
    image_rgb: [H, W, 3] uint8.
    image_id: its COCO id.
    bboxes_xywh: [N, 4] detection boxes (COCO x, y, w, h); bbox_scores [N].

  Returns:
    (keypoints [N, 17, 2] image pixels, keypoint scores [N, 17], per
    detection in file order; the results CocoMetric writes for this image,
    after rescoring and OKS-NMS; the detection indices of those results).
  """
  det_results = [{'image_id': image_id, 'category_id': 1, 'bbox': list(map(float, box)),
                  'score': float(score)} for box, score in zip(bboxes_xywh, bbox_scores)]
  filter_cfg = None if bbox_score_thr is None else {'bbox_score_thr': bbox_score_thr}
  data_list = filter_data(load_detection_results(det_results), filter_cfg)
  inputs, data_samples = [], []
  for data_info in data_list:
    results = dict(data_info, img=image_rgb.copy(), flip_indices=FLIP_INDICES)
    results = topdown_affine(get_bbox_center_scale(results))
    img, data_sample = pack_pose_inputs(results)
    inputs.append(img)
    data_samples.append(data_sample)
  test_cfg = dict(flip_test=flip_test, flip_mode='heatmap', shift_heatmap=True)
  preds = head_predict(net, np.stack(inputs), data_samples, test_cfg)
  data_samples = add_pred_to_datasample(preds, data_samples)
  keypoints = np.concatenate([s['pred_instances']['keypoints'] for s in data_samples])
  keypoint_scores = np.concatenate([s['pred_instances']['keypoint_scores']
                                    for s in data_samples])
  results, valid_kpts = coco_metric_results(coco_metric_process(data_samples))
  kept = [instance['id'] for instance in valid_kpts.get(image_id, [])]
  return keypoints, keypoint_scores, results, kept
