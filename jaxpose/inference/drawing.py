"""Pictures: skeletons and heatmaps drawn on images (uint8 BGR, as cv2 writes them)."""

import colorsys

import cv2
import numpy as np

from jaxpose.skeletons import Skeleton


def color_for(index: int) -> tuple[int, int, int]:
  """A distinct, stable BGR color for a person or track id."""
  hue = (index * 0.618033988749895) % 1.0
  r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
  return int(255 * b), int(255 * g), int(255 * r)


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, visible: np.ndarray,
                  skeleton: Skeleton, color: tuple[int, int, int] = (0, 255, 0),
                  radius: int = 3, thickness: int = 2) -> np.ndarray:
  """Image [H, W, 3] uint8, keypoints [J, 2] (x, y), visible [J] -> a copy with bones and joints drawn."""
  out = image.copy()
  points = np.round(np.asarray(keypoints)).astype(int)
  shown = np.asarray(visible) > 0
  for a, b in skeleton.limbs:
    if shown[a] and shown[b]:
      cv2.line(out, tuple(map(int, points[a])), tuple(map(int, points[b])), color,
               thickness, cv2.LINE_AA)
  for j in np.flatnonzero(shown):
    cv2.circle(out, tuple(map(int, points[j])), radius, color, -1, cv2.LINE_AA)
  return out


def overlay_heatmaps(image: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
  """Image [H, W, 3] uint8, heatmaps [h, w, J] -> image with max over joints as a color map."""
  peak = np.clip(np.asarray(heatmaps, np.float32).max(axis=-1), 0, 1)
  peak = cv2.resize(peak, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
  colored = cv2.applyColorMap((255 * peak).astype(np.uint8), cv2.COLORMAP_JET)
  return cv2.addWeighted(image, 1 - alpha, colored, alpha, 0)


def draw_people(image: np.ndarray, keypoints: np.ndarray, scores: np.ndarray,
                track_ids: np.ndarray, skeleton: Skeleton, score_threshold: float = 0.2,
                rgb: bool = True) -> np.ndarray:
  """Image [H, W, 3] uint8, keypoints [P, J, 2], scores [P, J], ids [P] -> a copy with skeletons by id.

  Each person is drawn in `color_for(its id)`, so a track keeps its color
  across frames, with the id written above its top keypoint; a person with
  id < 0 (untracked) gets a color by its row. Keypoints scored at or below
  `score_threshold` are not drawn. `rgb` says the image's channel order
  (`color_for` gives BGR).
  """
  out = np.ascontiguousarray(image).copy()
  keypoints = np.asarray(keypoints, np.float64)
  scores = np.asarray(scores)
  for row, (points, person_scores, track_id) in enumerate(zip(keypoints, scores, track_ids)):
    color = color_for(int(track_id) if track_id >= 0 else row)
    color = color[::-1] if rgb else color
    shown = person_scores > score_threshold
    out = draw_skeleton(out, points, shown, skeleton, color)
    if track_id >= 0 and shown.any():
      top = points[shown][np.argmin(points[shown, 1])]
      cv2.putText(out, str(int(track_id)), (int(top[0]), int(top[1]) - 8),
                  cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2, cv2.LINE_AA)
  return out


def draw_pafs(image: np.ndarray, pafs: np.ndarray, step: int = 1, min_magnitude: float = 0.1,
              color: tuple[int, int, int] = (0, 255, 255), thickness: int = 1) -> np.ndarray:
  """Image [H, W, 3] uint8, part affinity fields [h, w, 2L] -> a copy with the fields as arrows.

  Channels 2l, 2l + 1 are limb l's (x, y) unit-vector field (the layout of
  `jaxpose.codecs.paf`). At every `step`-th cell the limbs' vectors are
  summed; where the sum is longer than `min_magnitude` an arrow from the
  cell's centre points along it, scaled to the cell size on the image.
  """
  pafs = np.asarray(pafs, np.float32)
  if pafs.ndim != 3 or pafs.shape[-1] % 2:
    raise ValueError(f'draw_pafs: expected fields [h, w, 2L], got shape {pafs.shape}')
  out = np.ascontiguousarray(image).copy()
  height, width = pafs.shape[:2]
  cell = np.array([image.shape[1] / width, image.shape[0] / height])
  field = pafs.reshape(height, width, -1, 2).sum(axis=2)
  for y in range(0, height, step):
    for x in range(0, width, step):
      vector = field[y, x]
      length = float(np.hypot(*vector))
      if length <= min_magnitude:
        continue
      start = (np.array([x, y]) + 0.5) * cell
      end = start + vector / length * cell * step * min(length, 1.0)
      cv2.arrowedLine(out, tuple(int(v) for v in np.round(start)),
                      tuple(int(v) for v in np.round(end)), color, thickness, cv2.LINE_AA,
                      tipLength=0.3)
  return out
