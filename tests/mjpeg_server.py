"""A live HTTP MJPEG stream on 127.0.0.1 for the tests: a camera that never waits for its viewer.

  with MjpegServer(frames, fps=60, credentials='user:secret') as server:
    url = server.url('user:secret')  # http://user:secret@127.0.0.1:PORT/stream.mjpg

Frames (RGB uint8 [H, W, 3]) are JPEG-encoded once and sent in a loop as
multipart/x-mixed-replace parts at `fps`, each viewer on its own thread, on
the clock rather than on the viewer's pace: as an IP camera does, so that a
slow reader falls behind unless it drops frames. With `credentials` the
server answers 401 to a request without them (HTTP Basic). `stop()` closes
the socket and every open stream (a camera going offline); `start()` opens
it again on the same port.
"""

import base64
import http.server
import socketserver
import threading
import time

import cv2
import numpy as np


class MjpegServer:
  """A 127.0.0.1 MJPEG stream of `frames` at `fps`; counts the frames it sent (`sent`)."""

  def __init__(self, frames: list[np.ndarray], fps: float = 60.0, credentials: str | None = None,
               port: int = 0):
    self.jpegs = [cv2.imencode('.jpg', cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))[1].tobytes()
                  for frame in frames]
    self.fps = fps
    self.credentials = credentials
    self.port = port
    self.sent = 0
    self._server = None
    self._closing = threading.Event()

  def url(self, credentials: str | None = None) -> str:
    userinfo = f'{credentials}@' if credentials else ''
    return f'http://{userinfo}127.0.0.1:{self.port}/stream.mjpg'

  def _handler(self):
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):  # quiet: the tests read stderr of their own processes
        del args

      def do_GET(self):
        expected = None
        if server.credentials:
          expected = 'Basic ' + base64.b64encode(server.credentials.encode()).decode()
        if expected and self.headers.get('Authorization') != expected:
          self.send_response(401)
          self.send_header('WWW-Authenticate', 'Basic realm="camera"')
          self.end_headers()
          return
        self.send_response(200)
        self.send_header('Content-Type', 'multipart/x-mixed-replace; boundary=frame')
        self.end_headers()
        start, index = time.monotonic(), 0
        try:
          while not server._closing.is_set():  # pylint: disable=protected-access
            jpeg = server.jpegs[index % len(server.jpegs)]
            self.wfile.write(b'--frame\r\nContent-Type: image/jpeg\r\nContent-Length: '
                             + str(len(jpeg)).encode() + b'\r\n\r\n' + jpeg + b'\r\n')
            index += 1
            server.sent += 1
            time.sleep(max(0.0, start + index / server.fps - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError):
          pass

    return Handler

  def start(self) -> 'MjpegServer':
    self._closing.clear()
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    self._server = socketserver.ThreadingTCPServer(('127.0.0.1', self.port), self._handler())
    self._server.daemon_threads = True
    self.port = self._server.server_address[1]
    threading.Thread(target=self._server.serve_forever, daemon=True).start()
    return self

  def stop(self) -> None:
    self._closing.set()
    if self._server is not None:
      self._server.shutdown()
      self._server.server_close()
      self._server = None

  def __enter__(self) -> 'MjpegServer':
    return self.start()

  def __exit__(self, *exc) -> None:
    self.stop()

