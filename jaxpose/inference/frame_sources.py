"""Frames in and pictures out: a video file, a folder of images or one image; an annotated video or PNGs.

Frames are RGB uint8 [H, W, 3]: video frames are converted from cv2's BGR
here, once; image files are read by `jaxpose.data.images.read_image`, the
reader of training and evaluation (pixels as stored, EXIF orientation
ignored). Each comes with its index in the source, a name for its output file
and an `image_id` for COCO-format results: the file name's number where it is
one (COCO's `000000000785.jpg` -> 785, so a detections file matches), else
the frame index.

Unreadable input fails before the first frame with a message naming the path:
a missing file, a video that cv2 cannot open or decode (garbage bytes, an
empty file), an empty folder, an image that cv2 cannot decode.
"""

from collections.abc import Iterator
import dataclasses
import os
import pathlib
import time

import cv2
import numpy as np

from jaxpose import files
from jaxpose.data.images import read_image

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_CODEC = 'mp4v'
# Used where a video does not report its frame rate.
DEFAULT_FPS = 30.0


@dataclasses.dataclass(frozen=True)
class Frame:
  """One frame: RGB pixels [H, W, 3] uint8, its index, an output name, a COCO image id, when it was read.

  `captured`: `time.monotonic()` when the frame was decoded (latency runs from it).
  """
  index: int
  image: np.ndarray
  name: str
  image_id: int
  captured: float = 0.0


def _image_id(path: pathlib.Path, index: int) -> int:
  return int(path.stem) if path.stem.isdigit() else index


class ImageSource:
  """Frames from image files, in the order given (`image_folder` sorts by name)."""

  def __init__(self, paths: list[pathlib.Path], source: str):
    self.paths = paths
    self.source = source
    self.fps = DEFAULT_FPS
    # Read the first image now, so that a bad one fails before any work.
    self._first = read_image(paths[0])

  def __len__(self) -> int:
    return len(self.paths)

  def __iter__(self) -> Iterator[Frame]:
    for index, path in enumerate(self.paths):
      image = self._first if index == 0 else read_image(path)
      yield Frame(index, image, path.stem, _image_id(path, index), time.monotonic())


def image_file(path: str | os.PathLike) -> ImageSource:
  """One image file -> a source of one frame."""
  return ImageSource([pathlib.Path(path)], os.fspath(path))


def image_folder(folder: str | os.PathLike) -> ImageSource:
  """A folder -> its image files (by suffix, sorted by name) as frames."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f'{folder}: no such folder of images')
  paths = sorted(p for p in folder.iterdir()
                 if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
  if not paths:
    raise ValueError(f'{folder}: no image files ({", ".join(IMAGE_SUFFIXES)}) in this folder')
  return ImageSource(paths, os.fspath(folder))


class VideoSource:
  """Frames of a video file, decoded by cv2.VideoCapture."""

  def __init__(self, path: str | os.PathLike):
    """Opens `path` and decodes its first frame; FileNotFoundError / ValueError naming it."""
    self.source = os.fspath(path)
    if not os.path.isfile(self.source):
      raise FileNotFoundError(f'{self.source}: no such video file')
    capture = cv2.VideoCapture(self.source)
    try:
      if not capture.isOpened():
        raise ValueError(f'{self.source}: cv2 cannot open this video (empty, corrupt or '
                         'an unsupported format?)')
      ok, first = capture.read()
      if not ok or first is None:
        raise ValueError(f'{self.source}: cv2 opened the video but cannot decode a frame')
      fps = capture.get(cv2.CAP_PROP_FPS)
      self.fps = fps if fps > 0 else DEFAULT_FPS
      self.size = (first.shape[1], first.shape[0])  # (width, height)
      self._count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
      capture.release()
    self._stem = pathlib.Path(self.source).stem

  def __len__(self) -> int:
    """The frame count the container reports (may be approximate)."""
    return max(self._count, 0)

  def __iter__(self) -> Iterator[Frame]:
    capture = cv2.VideoCapture(self.source)
    try:
      index = 0
      while True:
        ok, image = capture.read()
        if not ok:
          return
        yield Frame(index, cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                    f'{self._stem}_{index:06d}', index, time.monotonic())
        index += 1
    finally:
      capture.release()


class VideoWriter:
  """An mp4 (mp4v) writer of RGB frames of one size; use as a context manager."""

  def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int]):
    """Opens `path` for frames of `size` (width, height) at `fps`."""
    self.path = os.fspath(path)
    self.size = tuple(int(s) for s in size)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    self._writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*VIDEO_CODEC), fps,
                                   self.size)
    if not self._writer.isOpened():
      raise ValueError(f'{self.path}: cv2 cannot write an {VIDEO_CODEC} video here')
    self.frames_written = 0

  def write(self, image: np.ndarray) -> None:
    """Appends an RGB frame [H, W, 3] uint8 of the writer's size."""
    if (image.shape[1], image.shape[0]) != self.size:
      raise ValueError(f'{self.path}: frame of size {image.shape[1]}x{image.shape[0]}, '
                       f'the video is {self.size[0]}x{self.size[1]}')
    self._writer.write(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    self.frames_written += 1

  def close(self) -> None:
    self._writer.release()

  def __enter__(self) -> 'VideoWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def write_png(path: str | os.PathLike, image: np.ndarray) -> str:
  """Writes an RGB image [H, W, 3] uint8 as PNG; returns the path."""
  path = os.fspath(path)
  with files.replacing(path) as temporary:  # whole or not at all
    if not cv2.imwrite(os.fspath(temporary),
                       cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)):
      raise ValueError(f'{path}: cv2 cannot write this PNG')
  return path


def count_frames(path: str | os.PathLike) -> int:
  """Frames that cv2 decodes from a video, counted by reading them all."""
  capture = cv2.VideoCapture(os.fspath(path))
  count = 0
  while capture.read()[0]:
    count += 1
  capture.release()
  return count
