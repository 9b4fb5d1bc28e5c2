"""The one image reader of training, evaluation and inference: a file -> RGB pixels, as stored.

EXIF orientation is ignored: pixels are decoded in the order the file stores
them, which is the grid COCO's and MPII's annotations (and their width and
height) refer to, and so the grid every keypoint jaxpose reads or writes is
in. A photo whose camera recorded a rotation in EXIF is therefore processed
as stored, not as a viewer would turn it. cv2 decodes straight to RGB.
"""

import os

import cv2
import numpy as np


def _id_text(image_id: int | None) -> str:
  return '' if image_id is None else f' (image id {image_id})'


# JPEG start and end of image markers. Entropy-coded data never holds 0xFFD9
# (0xFF is always followed by 0x00 or a restart marker there), so a file whose
# tail has no EOI was cut short: libjpeg decodes such a file into a partly grey
# image with only a printed warning.
_JPEG_SOI = b'\xff\xd8'
_JPEG_EOI = b'\xff\xd9'
# Some writers pad after the EOI; look for it this far from the end.
_JPEG_TAIL = 1024


def read_image_bytes(path: str, image_id: int | None = None) -> bytes:
  """An image file's bytes; raises naming the file and image id if it is missing or a cut-short JPEG."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise FileNotFoundError(f'image file {path}{_id_text(image_id)} does not exist') from None
  if data.startswith(_JPEG_SOI) and _JPEG_EOI not in data[-_JPEG_TAIL:]:
    raise ValueError(f'image file {path}{_id_text(image_id)} is truncated: its JPEG data '
                     f'has no end-of-image marker ({len(data)} bytes)')
  return data


def read_image(path: str | os.PathLike, image_id: int | None = None) -> np.ndarray:
  """Image file -> uint8 [H, W, 3] RGB, as stored; raises naming the file (and image id) if it is missing or corrupt."""
  path = os.fspath(path)
  data = read_image_bytes(path, image_id)
  if not data:
    raise ValueError(f'image file {path}{_id_text(image_id)} is empty')
  # Decoding straight to RGB saves converting the whole image afterwards.
  image = cv2.imdecode(np.frombuffer(data, np.uint8),
                       cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
  if image is None:
    raise ValueError(f'image file {path}{_id_text(image_id)} cannot be decoded '
                     f'({len(data)} bytes)')
  return image
