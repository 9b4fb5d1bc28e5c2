"""Live sources: the newest frame kept and the others counted as dropped, reconnection, masked passwords."""

import logging
import pathlib
import time

import numpy as np
import pytest

from jaxpose.inference import frame_sources, live_sources
from mjpeg_server import MjpegServer

DEMO_VIDEO = pathlib.Path(__file__).parent / 'data' / 'video' / 'demo.mp4'
PASSWORD = 'pa55-word'


@pytest.fixture(scope='module')
def demo_frames() -> list[np.ndarray]:
  return [frame.image for frame in frame_sources.VideoSource(DEMO_VIDEO)]


@pytest.mark.parametrize('spec, masked', [
    ('rtsp://admin:s3cr@t@10.0.0.7:554/Streaming/Channels/101',
     'rtsp://admin:***@10.0.0.7:554/Streaming/Channels/101'),
    ('http://user:pw@host/video.mjpg?user=a&pwd=zz&fps=5',
     'http://user:***@host/video.mjpg?user=a&pwd=***&fps=5'),
    ('rtsp://admin@host/stream', 'rtsp://admin@host/stream'),  # a user, no password
    ('rtsp://host/s?a=%2F', 'rtsp://host/s?a=%2F'),  # nothing to hide: the query as written
    ('clips/a:b@c.mp4', 'clips/a:b@c.mp4'),  # a file name, not a URL
    ('0', '0'),
])
def test_mask_url(spec, masked):
  assert live_sources.mask_url(spec) == masked


@pytest.mark.parametrize('spec, name', [
    ('rtsp://admin:secret@10.0.0.7:554/Streaming/Channels/101',
     '10.0.0.7_554_Streaming_Channels_101'),
    ('http://u:p@cam.local/video.mjpg', 'cam.local_video.mjpg'),
    ('2', 'camera2'),
    ('videos/shop.entrance.mp4', 'shop.entrance'),
])
def test_stream_name_has_no_credentials(spec, name):
  assert live_sources.stream_name(spec) == name


@pytest.mark.parametrize('spec, live', [('rtsp://h/s', True), ('http://h/x.mjpg', True),
                                        ('0', True), ('12', True), ('clip.mp4', False),
                                        ('/data/0', False), ('C:/clip.mp4', False)])
def test_is_live(spec, live):
  assert live_sources.is_live(spec) == live


def test_a_slow_reader_gets_the_newest_frame_and_the_others_are_counted_dropped(demo_frames):
  with MjpegServer(demo_frames, fps=60, credentials=f'user:{PASSWORD}') as server:
    source = live_sources.LiveSource(server.url(f'user:{PASSWORD}'))
    try:
      assert source.size == (demo_frames[0].shape[1], demo_frames[0].shape[0])
      taken, extra_takes = [], 0
      for _ in range(4):
        time.sleep(0.25)  # a model at 4 frames/s, the camera at 60
        assert source.wait(2.0)
        taken.append(source.take())
        # A frame is handed out once: taking again gives nothing, or (on a
        # loaded machine, 16 ms later) a newer frame, never the same one.
        again = source.take()
        if again is not None:
          assert again.index > taken[-1].index, (again.index, taken[-1].index)
          extra_takes += 1
    finally:
      source.close()
    indices = [frame.index for frame in taken]
    # About 15 frames pass between two takes: the reader skipped them.
    assert all(later - earlier >= 5 for earlier, later in zip(indices, indices[1:])), indices
    counts = source.counts
    assert counts.taken == 4 + extra_takes
    assert counts.read == counts.taken + counts.dropped
    assert counts.dropped >= indices[-1] - counts.taken
    # The newest frame, RGB: the served frame it is (JPEG-compressed), not a stale one.
    frame = taken[-1]
    served = demo_frames[frame.index % len(demo_frames)]
    others = [np.abs(f.astype(int) - frame.image).mean() for f in demo_frames]
    assert np.argmin(others) == frame.index % len(demo_frames)
    assert np.abs(served.astype(int) - frame.image).mean() < 4
    assert 0 < time.monotonic() - frame.captured < 5


def test_a_lost_stream_reconnects_and_the_log_masks_the_password(demo_frames, caplog):
  caplog.set_level(logging.WARNING)
  server = MjpegServer(demo_frames, fps=30, credentials=f'user:{PASSWORD}').start()
  source = live_sources.LiveSource(server.url(f'user:{PASSWORD}'), reconnect_attempts=5)
  try:
    assert source.wait(2.0)
    server.stop()  # the camera goes offline ...
    deadline = time.monotonic() + 10
    while not caplog.records and time.monotonic() < deadline:
      time.sleep(0.05)
    server.start()  # ... and comes back on the same address
    read_before = source.counts.read
    deadline = time.monotonic() + 15
    while source.counts.read < read_before + 10 and time.monotonic() < deadline:
      time.sleep(0.05)
    assert source.counts.read >= read_before + 10  # frames again, after reconnecting
    assert source.counts.reconnects >= 1
    assert not source.ended
  finally:
    source.close()
    server.stop()
  messages = [record.getMessage() for record in caplog.records]
  assert any('reconnecting in 0.5 s (attempt 1 of 5)' in m for m in messages), messages
  assert all('user:***@127.0.0.1' in m and PASSWORD not in m for m in messages), messages


def test_a_stream_lost_for_good_ends_after_its_attempts(demo_frames, caplog):
  server = MjpegServer(demo_frames, fps=30).start()
  source = live_sources.LiveSource(server.url(), reconnect_attempts=1)
  server.stop()
  deadline = time.monotonic() + 15  # a 0.5 s wait, one refused reopen
  while not source.ended and time.monotonic() < deadline:
    source.take()
    time.sleep(0.05)
  assert source.ended
  assert source.counts.reconnects == 1
  assert 'lost; no frame after 1 reconnection attempts' in caplog.text
  source.close()


def test_wrong_credentials_fail_at_open_without_the_password(demo_frames):
  with MjpegServer(demo_frames, credentials='user:right') as server:
    with pytest.raises(ValueError) as error:
      live_sources.LiveSource(server.url(f'user:{PASSWORD}'))
  assert 'http://user:***@127.0.0.1' in str(error.value)
  assert 'cannot open this stream' in str(error.value)
  assert PASSWORD not in str(error.value)
