"""jaxpose.inference.frame_sources: frame sources, the annotated-video writer, and clear errors on bad input."""

import pathlib

import cv2
import numpy as np
import pytest

from jaxpose.inference import frame_sources

DATA = pathlib.Path(__file__).parent / 'data'
DEMO_VIDEO = DATA / 'video' / 'demo.mp4'
COCO_DIR = DATA / 'coco'


def test_video_frames_are_rgb_and_counted():
  source = frame_sources.VideoSource(DEMO_VIDEO)
  frames = list(source)
  assert len(frames) == len(source) == 5
  assert source.fps == 5.0
  assert source.size == (960, 540)
  capture = cv2.VideoCapture(str(DEMO_VIDEO))
  for frame in frames:
    ok, bgr = capture.read()
    assert ok
    np.testing.assert_array_equal(frame.image, bgr[..., ::-1])
  assert [f.index for f in frames] == [f.image_id for f in frames] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize('content', [b'', b'\x00garbage, not a video\xff' * 100])
def test_unreadable_video_names_the_path(tmp_path, content):
  path = tmp_path / 'broken.mp4'
  path.write_bytes(content)
  with pytest.raises(ValueError, match=str(path)):
    frame_sources.VideoSource(path)


def test_missing_video_names_the_path(tmp_path):
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'missing.mp4')):
    frame_sources.VideoSource(tmp_path / 'missing.mp4')


def test_image_folder_in_name_order_with_coco_ids():
  source = frame_sources.image_folder(COCO_DIR)
  frames = list(source)
  assert [f.image_id for f in frames] == [785, 40083, 196141, 197388]
  assert [f.name for f in frames] == ['000000000785', '000000040083', '000000196141',
                                      '000000197388']
  expected = cv2.imread(str(COCO_DIR / '000000000785.jpg'))[..., ::-1]
  np.testing.assert_array_equal(frames[0].image, expected)


def test_empty_folder_and_empty_image_name_the_path(tmp_path):
  with pytest.raises(ValueError, match=str(tmp_path)):
    frame_sources.image_folder(tmp_path)
  (tmp_path / 'a.png').write_bytes(b'')
  with pytest.raises(ValueError, match=str(tmp_path / 'a.png')):
    frame_sources.image_folder(tmp_path)
  with pytest.raises(ValueError, match=str(tmp_path / 'a.png')):
    frame_sources.image_file(tmp_path / 'a.png')
  with pytest.raises(FileNotFoundError, match=str(tmp_path / 'b.png')):
    frame_sources.image_file(tmp_path / 'b.png')


def test_writer_keeps_size_fps_and_frame_count(tmp_path):
  path = tmp_path / 'out.mp4'
  rng = np.random.default_rng(0)
  with frame_sources.VideoWriter(path, 7.0, (64, 48)) as writer:
    for _ in range(3):
      writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match='64x48'):
      writer.write(np.zeros((10, 10, 3), np.uint8))
  assert frame_sources.count_frames(path) == 3
  capture = cv2.VideoCapture(str(path))
  assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT),
          capture.get(cv2.CAP_PROP_FPS)) == (64, 48, 7.0)


def test_png_round_trip(tmp_path):
  image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
  path = frame_sources.write_png(tmp_path / 'x.png', image)
  np.testing.assert_array_equal(frame_sources.read_image(path), image)
