"""Object keypoint similarity (COCO's OKS) between sets of people, and OKS non-maximum suppression."""

from collections.abc import Sequence

import numpy as np

from jaxpose import skeletons

# Keypoints scored at or below this are treated as absent.
DEFAULT_SCORE_THRESHOLD = 0.2
# Of two people of an image with a higher OKS, the lower-scored one is dropped (mmpose).
OKS_NMS_THRESHOLD = 0.9


def checked_people(keypoints: np.ndarray, scores: np.ndarray, name: str = 'people'
            ) -> tuple[np.ndarray, np.ndarray]:
  """Checks and converts keypoints [P, J, 2] and scores [P, J] to float64."""
  keypoints = np.asarray(keypoints, np.float64)
  scores = np.asarray(scores, np.float64)
  if keypoints.ndim != 3 or keypoints.shape[-1] != 2 or scores.shape != keypoints.shape[:2]:
    raise ValueError(f'{name}: expected keypoints [P, J, 2] and scores [P, J], '
                     f'got {keypoints.shape} and {scores.shape}')
  return keypoints, scores


def boxes_from_keypoints(keypoints: np.ndarray, scores: np.ndarray,
                         score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
  """Keypoints [P, J, 2], scores [P, J] -> boxes [P, 4] (x, y, w, h) around the present keypoints.

  Present: scored above `score_threshold`.

  A person with no such keypoint gets the empty box (0, 0, 0, 0), whose IoU
  with anything is 0.
  """
  keypoints, scores = checked_people(keypoints, scores)
  present = (scores > score_threshold)[..., None]
  low = np.where(present, keypoints, np.inf).min(axis=1)
  high = np.where(present, keypoints, -np.inf).max(axis=1)
  anyone = present.any(axis=1)
  low = np.where(anyone, low, 0.)
  high = np.where(anyone, high, 0.)
  return np.concatenate([low, high - low], axis=-1)


def person_scores(box_scores: np.ndarray, keypoint_scores: np.ndarray,
                  threshold: float = DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
  """Box scores [P], keypoint scores [P, J] -> [P]: box score x mean of keypoint scores above `threshold` (0 if none).

  The rescoring of SimpleBaseline, HRNet and mmpose top-down results, for
  evaluation and inference alike.
  """
  confident = keypoint_scores > threshold
  total = np.where(confident, keypoint_scores, 0.0).sum(-1)
  mean = np.where(confident.any(-1), total / np.maximum(confident.sum(-1), 1), 0.0)
  return box_scores * mean


def shared_keypoints(scores_a: np.ndarray, scores_b: np.ndarray,
                     score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
  """Scores [A, J], [B, J] -> [A, B, J] bool, keypoints scored above the threshold in both."""
  present_a = np.asarray(scores_a) > score_threshold
  present_b = np.asarray(scores_b) > score_threshold
  return present_a[:, None, :] & present_b[None, :, :]


def oks(keypoints_a: np.ndarray, scores_a: np.ndarray, keypoints_b: np.ndarray,
        scores_b: np.ndarray, areas: np.ndarray, sigmas: Sequence[float],
        score_threshold: float = DEFAULT_SCORE_THRESHOLD) -> np.ndarray:
  """People a ([A, J, 2], [A, J]) vs b ([B, J, 2], [B, J]), areas [B] or [A, B] -> OKS [A, B].

  COCO's formula (pycocotools `COCOeval.computeOks`, with b in the role of the
  ground truth and areas [B] its areas): the mean over keypoints j scored
  above `score_threshold` in both of exp(-d_j^2 / (2 (area + eps)
  (2 sigma_j)^2)). A pair with no such keypoint gets 0 (where COCO would
  measure the distance to b's box instead).
  """
  keypoints_a, scores_a = checked_people(keypoints_a, scores_a, 'oks: people a')
  keypoints_b, scores_b = checked_people(keypoints_b, scores_b, 'oks: people b')
  sigmas = np.asarray(sigmas, np.float64)
  if keypoints_a.shape[1] != len(sigmas) or keypoints_b.shape[1] != len(sigmas):
    raise ValueError(f'oks: expected {len(sigmas)} keypoints (one per sigma), '
                     f'got {keypoints_a.shape[1]} and {keypoints_b.shape[1]}')
  areas = np.asarray(areas, np.float64)
  pairs = (len(keypoints_a), len(keypoints_b))
  if areas.shape not in (pairs[1:], pairs):
    raise ValueError(f'oks: expected areas [{pairs[1]}] or {list(pairs)}, got {areas.shape}')
  squared_distance = ((keypoints_a[:, None] - keypoints_b[None]) ** 2).sum(-1)  # [A, B, J]
  # COCO's eps (np.spacing(1)) keeps a zero area finite.
  areas = np.broadcast_to(areas, pairs)
  scale = 2 * (areas[..., None] + np.spacing(1)) * (2 * sigmas) ** 2
  shared = shared_keypoints(scores_a, scores_b, score_threshold)
  count = shared.sum(-1)
  total = np.where(shared, np.exp(-squared_distance / scale), 0.).sum(-1)
  return np.where(count > 0, total / np.maximum(count, 1), 0.)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray,
            threshold: float = OKS_NMS_THRESHOLD,
            sigmas: Sequence[float] = skeletons.COCO.sigmas) -> np.ndarray:
  """One image's people: keypoints [P, J, 2], scores [P], box areas [P] -> kept indices, best first.

  Greedy, as mmpose's `oks_nms`: the best-scored person is kept and everyone
  whose OKS with it exceeds `threshold` is dropped; the OKS of two people is
  normalised by the mean of their areas and counts every keypoint.
  """
  order = list(np.argsort(-np.asarray(scores), kind='stable'))
  everywhere = np.ones(keypoints.shape[:2])
  kept = []
  while order:
    best, order = order[0], order[1:]
    kept.append(best)
    if not order:
      break
    pair_areas = ((areas[order] + areas[best]) / 2)[:, None]  # [A, 1]
    similarity = oks(keypoints[order], everywhere[order], keypoints[best:best + 1],
                     everywhere[best:best + 1], pair_areas, sigmas, score_threshold=0.0)[:, 0]
    order = [p for p, s in zip(order, similarity) if s <= threshold]
  return np.array(kept, np.int64)
