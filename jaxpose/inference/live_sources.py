"""Live video: a camera or a stream URL read on its own thread, the newest frame kept, a lost stream reconnected.

  source = open_video('rtsp://user:password@10.0.0.7/stream1')  # or a file, or '0'
  frame = source.take()  # the newest frame not yet taken, or None

A live source (`is_live`: a URL such as rtsp://, http:// MJPEG, or a camera
index such as '0') is decoded by cv2's FFmpeg (or V4L2) backend on a reader
thread that holds one frame: the newest. The model always works on the
latest picture; a frame replaced before anyone took it is dropped and
counted, so a model slower than the camera falls behind by at most one
frame instead of by a growing queue (OpenPose's RTSP lag).

A stream that stops delivering (a network cut, a camera reboot) is
reopened after a pause that doubles from `RECONNECT_FIRST_DELAY` up to
`RECONNECT_MAX_DELAY`, each attempt logged; after `reconnect_attempts`
failures in a row the source ends. Opening and reading time out after
`TIMEOUT_MS`, so a dead stream neither hangs the reader nor a clean stop.

Camera URLs carry passwords. `mask_url` shows them as `user:***@host`; the
sources name themselves (`name`, `source`) and log only with it, so no
password reaches logs, summaries, results or file names.
"""

import dataclasses
import logging
import re
import threading
import time
import urllib.parse

import cv2
import numpy as np

from jaxpose.inference import frame_sources

# FFmpeg's open and read timeouts: a stream silent this long is lost.
TIMEOUT_MS = 5000
RECONNECT_FIRST_DELAY = 0.5  # seconds
RECONNECT_MAX_DELAY = 10.0
DEFAULT_RECONNECT_ATTEMPTS = 10
# Query fields whose values `mask_url` hides.
PASSWORD_FIELDS = ('password', 'passwd', 'pass', 'pwd', 'token', 'key', 'secret')
_URL = re.compile(r'^[a-zA-Z][a-zA-Z0-9+.-]*://')


def is_live(spec: str) -> bool:
  """True for a stream URL (scheme://...) or a camera index ('0', '1', ...); False for a file."""
  return bool(_URL.match(spec)) or spec.isdigit()


def mask_url(spec: str) -> str:
  """'rtsp://user:secret@host:554/s?password=x' -> 'rtsp://user:***@host:554/s?password=***'.

  The password of the address and the values of query fields that name one
  (`PASSWORD_FIELDS`: some cameras take their credentials there) are
  masked; anything else, and a spec that is not a URL, is as it is.
  """
  if not _URL.match(spec):
    return spec
  parts = urllib.parse.urlsplit(spec)
  if parts.password is not None:
    host = parts.netloc.rpartition('@')[2]
    parts = parts._replace(netloc=f'{parts.username}:***@{host}')
  fields = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
  if any(key.lower() in PASSWORD_FIELDS for key, _ in fields):
    fields = [(key, '***' if key.lower() in PASSWORD_FIELDS else value) for key, value in fields]
    parts = parts._replace(query=urllib.parse.urlencode(fields, safe='*'))
  return urllib.parse.urlunsplit(parts)


def stream_name(spec: str) -> str:
  """A file-name-safe name for a source, without credentials: 'camera0', '10.0.0.7_554_stream1', or a file's stem."""
  if spec.isdigit():
    return f'camera{spec}'
  if not _URL.match(spec):
    stem = spec.rstrip('/').rpartition('/')[2].rpartition('.')
    return stem[0] or stem[2]
  parts = urllib.parse.urlsplit(spec)
  place = f'{parts.hostname or ""}_{parts.port or ""}_{parts.path}'
  return re.sub(r'[^A-Za-z0-9.-]+', '_', place).strip('_') or parts.scheme


@dataclasses.dataclass
class StreamCounts:
  """What a source has done so far: frames decoded, taken and dropped unseen, reconnections."""
  read: int = 0
  taken: int = 0
  dropped: int = 0
  reconnects: int = 0


class LiveSource:
  """A camera or stream URL decoded on a reader thread that keeps only the newest frame.

  `take()` returns the newest frame not yet taken (None if there is none
  yet) and never blocks; `wait(timeout)` waits for one. Frames carry their
  index in the stream (gaps are dropped frames) and `captured`, the
  `time.monotonic()` at which they were decoded. `ended` is True once the
  stream is lost for good (or `close()` was called) and its last frame
  taken.
  """

  def __init__(self, spec: str, reconnect_attempts: int = DEFAULT_RECONNECT_ATTEMPTS):
    """Opens `spec` and decodes its first frame; ValueError naming the masked URL if it cannot."""
    self.spec = spec
    self.source = f'camera {spec}' if spec.isdigit() else mask_url(spec)
    self.name = stream_name(spec)
    self.reconnect_attempts = reconnect_attempts
    self.counts = StreamCounts()
    self._capture = self._open()
    ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
    if not ok or first is None:
      self._capture.release()
      raise ValueError(f'{self.source}: cv2 cannot open this stream or read a frame from it '
                       f'within {TIMEOUT_MS / 1000:g} s (wrong address or credentials, or the '
                       'camera is offline?)')
    fps = self._capture.get(cv2.CAP_PROP_FPS)
    self.fps = fps if 0 < fps < 1000 else frame_sources.DEFAULT_FPS
    self.size = (first.shape[1], first.shape[0])  # (width, height)
    self._lock = threading.Condition()
    self._newest: frame_sources.Frame | None = None
    self._stop = threading.Event()
    self._lost = False
    self._publish(first)
    self._thread = threading.Thread(target=self._read_frames, name=f'read {self.name}',
                                    daemon=True)
    self._thread.start()

  def __len__(self) -> int:
    return 0  # unknown: a live stream has no end

  def _open(self) -> cv2.VideoCapture:
    if self.spec.isdigit():
      return cv2.VideoCapture(int(self.spec))
    return cv2.VideoCapture(self.spec, cv2.CAP_FFMPEG,
                            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, TIMEOUT_MS,
                             cv2.CAP_PROP_READ_TIMEOUT_MSEC, TIMEOUT_MS])

  def _publish(self, bgr: np.ndarray) -> None:
    """Makes a decoded frame the newest; the one it replaces, if never taken, is dropped."""
    captured = time.monotonic()
    with self._lock:
      index = self.counts.read
      self.counts.read += 1
      if self._newest is not None:
        self.counts.dropped += 1
      # Converted on take(): a frame that is dropped costs no conversion.
      self._newest = frame_sources.Frame(index, bgr, f'{self.name}_{index:06d}', index,
                                         captured)
      self._lock.notify_all()

  def _read_frames(self) -> None:
    failures = 0
    while not self._stop.is_set():
      ok, bgr = self._capture.read()
      if ok and bgr is not None:
        failures = 0
        self._publish(bgr)
        continue
      self._capture.release()
      failures += 1
      if failures > self.reconnect_attempts:
        logging.error('%s: lost; no frame after %d reconnection attempts, the stream ends',
                      self.source, self.reconnect_attempts)
        break
      delay = min(RECONNECT_FIRST_DELAY * 2 ** (failures - 1), RECONNECT_MAX_DELAY)
      logging.warning('%s: no frame; reconnecting in %.1f s (attempt %d of %d)', self.source,
                      delay, failures, self.reconnect_attempts)
      if self._stop.wait(delay):
        break
      self._capture = self._open()
      self.counts.reconnects += 1
    self._capture.release()
    with self._lock:
      self._lost = True
      self._lock.notify_all()

  def take(self) -> frame_sources.Frame | None:
    """The newest frame not yet taken, RGB, or None."""
    with self._lock:
      frame, self._newest = self._newest, None
      if frame is None:
        return None
      self.counts.taken += 1
    return dataclasses.replace(frame, image=cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))

  def wait(self, timeout: float) -> bool:
    """Waits up to `timeout` seconds for a frame to take; True if there is one."""
    with self._lock:
      return self._lock.wait_for(lambda: self._newest is not None or self._lost, timeout) and (
          self._newest is not None)

  @property
  def ended(self) -> bool:
    with self._lock:
      return self._lost and self._newest is None

  def close(self, timeout: float = TIMEOUT_MS / 1000 + 1) -> None:
    """Stops the reader (within a read timeout); a frame left untaken counts as dropped."""
    self._stop.set()
    self._thread.join(timeout)
    with self._lock:
      self._lost = True
      if self._newest is not None:
        self.counts.dropped += 1
        self._newest = None
