"""A small MJPEG-over-HTTP server: watch a headless robot's output in a browser.

``multipart/x-mixed-replace`` at ``/`` and ``/stream`` (what browsers, VLC and OpenCV's FFmpeg
backend read), the latest frame at ``/snapshot.jpg``. It binds to loopback unless told
otherwise; a non-loopback host is allowed but logged as a warning, since anyone on that
network can then watch the camera.

It doubles as a live test source: :meth:`MjpegServer.play` publishes pre-encoded JPEGs at a
fixed rate, so tests and benchmarks get a real network stream without any external tool.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from .errors import SourceError, UsageError

log = logging.getLogger(__name__)

BOUNDARY = "edgesegframe"
DEFAULT_PORT = 8080
MAX_CLIENTS = 8  # each client is one thread; a handful is plenty for monitoring
SNAPSHOT_EVERY_S = 0.5  # with no stream client connected, refresh the snapshot at most this often
SEND_TIMEOUT_S = 5.0  # a stalled client is dropped instead of holding its thread forever


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(addr: str | int, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``'127.0.0.1:8080'``, ``':8080'``, ``'8080'``, ``'http://host:port'`` -> ``(host, port)``."""
    text = str(addr).strip()
    for prefix in ("http://", "mjpeg://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    host, sep, port_text = text.rpartition(":")
    if not sep:  # one part: a port ("8080") or a host ("localhost")
        host, port_text = ("", text) if text.isdigit() else (text, "")
    host = host.strip("[]") or default_host
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise UsageError(f"server address {addr!r} has no valid port; write HOST:PORT, e.g. 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"server port {port} in {addr!r} is out of range; use 1-65535 (0 picks a free port)")
    if any(c.isspace() for c in host):
        raise UsageError(f"server host {host!r} in {addr!r} is not a host name or IP address")
    return host, port


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one response per connection: the stream ends when we close it

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("mjpeg %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?", 1)[0]
        if path in ("/", "/stream", "/stream.mjpg"):
            self._stream()
        elif path == "/snapshot.jpg":
            self._snapshot()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "try / (stream) or /snapshot.jpg")

    def _snapshot(self) -> None:
        owner = self.server.owner
        jpeg = owner.wait_frame(0, timeout=0.5)[1]  # a first frame may be on its way
        if jpeg is None:
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(jpeg)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(jpeg)

    def _stream(self) -> None:
        owner = self.server.owner
        if not owner._add_client():
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, f"at most {MAX_CLIENTS} viewers")
            return
        try:
            self.connection.settimeout(SEND_TIMEOUT_S)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            seq = 0
            while not owner._stopping.is_set():
                seq, jpeg = owner.wait_frame(seq, timeout=0.5)
                if jpeg is None:
                    continue  # no new frame yet; look at the stop flag again
                head = (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n").encode("ascii")
                self.wfile.write(head)
                self.wfile.write(jpeg)
                self.wfile.write(b"\r\n")
        except (ConnectionError, TimeoutError, OSError):
            pass  # the viewer went away; nothing to clean up but the count
        finally:
            owner._remove_client()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted server can take its port back at once
    owner: MjpegServer


class MjpegServer:
    """``with MjpegServer(port=0) as srv: srv.publish(frame_bgr)``; read it at ``srv.url``.

    ``port=0`` takes a free ephemeral port (see :attr:`port`). ``publish`` accepts a BGR image
    (encoded here, at most once per frame and only while someone can see it) or ready JPEG bytes.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, quality: int = 80) -> None:
        if not 1 <= int(quality) <= 100:
            raise UsageError(f"JPEG quality {quality} is out of range; use 1-100")
        self.host, self.quality = host, int(quality)
        if not is_loopback(host):
            log.warning("MJPEG server on %s:%s is reachable from other machines; anyone on that network "
                        "can watch the stream (bind 127.0.0.1 to keep it local)", host, port)
        try:
            self._server = _Server((host, int(port)), _Handler, bind_and_activate=True)
        except OSError as e:
            raise SourceError(f"cannot serve MJPEG on {host}:{port}: {e.strerror or e}; pick another port "
                              "(or 0 for any free one)") from None
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self._cond = threading.Condition()
        self._seq = 0
        self._jpeg: bytes | None = None
        self._clients = 0
        self._last_snapshot = 0.0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name=f"mjpeg:{self.port}", daemon=True)
        self._thread.start()
        self._player: threading.Thread | None = None
        self._params = [int(cv2.IMWRITE_JPEG_QUALITY), self.quality]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/stream"

    @property
    def clients(self) -> int:
        return self._clients

    def __enter__(self) -> MjpegServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- publishing -------------------------------------------------------------------------------
    def publish(self, frame: np.ndarray | bytes) -> None:
        """Make ``frame`` (BGR (H, W, 3) uint8, or JPEG bytes) the current one for all viewers."""
        if isinstance(frame, (bytes, bytearray, memoryview)):
            jpeg = bytes(frame)
        else:
            now = time.perf_counter()
            # Nobody is watching the stream: only keep /snapshot.jpg reasonably fresh.
            if self._clients == 0 and now - self._last_snapshot < SNAPSHOT_EVERY_S:
                return
            self._last_snapshot = now
            ok, buf = cv2.imencode(".jpg", frame, self._params)  # buf: (n,) uint8
            if not ok:
                raise SourceError(f"could not JPEG-encode a {frame.shape} {frame.dtype} frame for the MJPEG stream")
            jpeg = buf.tobytes()
        with self._cond:
            self._jpeg = jpeg
            self._seq += 1
            self._cond.notify_all()

    def wait_frame(self, after: int, timeout: float) -> tuple[int, bytes | None]:
        """The newest frame with a sequence number above ``after`` -> ``(seq, jpeg)``; ``None`` on timeout."""
        with self._cond:
            if self._seq <= after:
                self._cond.wait_for(lambda: self._seq > after or self._stopping.is_set(), timeout)
            if self._seq <= after:
                return after, None
            return self._seq, self._jpeg

    def play(self, frames: Sequence[np.ndarray | bytes], fps: float, loop: bool = True,
             max_frames: int | None = None) -> None:
        """Publish ``frames`` at ``fps`` in a background thread, like a camera (until :meth:`stop`)."""
        if fps <= 0:
            raise UsageError(f"play fps must be positive, got {fps}")
        if not frames:
            raise UsageError("play needs at least one frame")
        jpegs = [f if isinstance(f, bytes) else encode_jpeg(f, self.quality) for f in frames]

        def run() -> None:
            period = 1.0 / fps
            t_next = time.perf_counter()
            n = 0
            while not self._stopping.is_set() and (max_frames is None or n < max_frames):
                if n >= len(jpegs) and not loop:
                    break
                self.publish(jpegs[n % len(jpegs)])
                n += 1
                t_next += period
                delay = t_next - time.perf_counter()
                if delay > 0:
                    self._stopping.wait(delay)
                else:
                    t_next = time.perf_counter()  # fell behind: don't burst to catch up

        self._player = threading.Thread(target=run, name=f"mjpeg-play:{self.port}", daemon=True)
        self._player.start()

    # -- lifetime ---------------------------------------------------------------------------------
    def _add_client(self) -> bool:
        with self._cond:
            if self._clients >= MAX_CLIENTS:
                return False
            self._clients += 1
            return True

    def _remove_client(self) -> None:
        with self._cond:
            self._clients -= 1

    def stop(self) -> None:
        """Stop serving and drop every viewer (their streams end); safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
        if self._player is not None:
            self._player.join(timeout=5.0)
        # Handler threads notice the stop flag within 0.5 s and close their connections.
        deadline = time.perf_counter() + 2.0
        while self._clients > 0 and time.perf_counter() < deadline:
            time.sleep(0.02)


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])  # (n,) uint8
    if not ok:
        raise SourceError(f"could not JPEG-encode a {image.shape} {image.dtype} image")
    return buf.tobytes()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests that restart a server on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
