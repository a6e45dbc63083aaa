"""Loopback HTTP servers for stream tests: hand-written MJPEG answers and plain file serving.

``RawHttpServer(respond)`` accepts connections on 127.0.0.1, reads each request head (kept in
``.requests``) and calls ``respond(conn, stop)`` to write whatever bytes the test wants: a
well-formed stream, a corrupt part, a boundary without dashes, a 401. ``part()`` builds one
multipart part. ``FileHttpServer(folder)`` serves files (for the FFmpeg fallback).
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Responder = Callable[[socket.socket, threading.Event], None]


def multipart_head(boundary: str = "frame", status: str = "200 OK", ctype: str | None = None) -> bytes:
    ctype = ctype or f"multipart/x-mixed-replace; boundary={boundary}"
    return f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nCache-Control: no-store\r\n\r\n".encode("ascii")


def part(jpeg: bytes, boundary_line: bytes = b"--frame", nl: bytes = b"\r\n", length: bool = True) -> bytes:
    """One part: boundary line, headers (with Content-Length or not), blank line, body, newline."""
    head = boundary_line + nl + b"Content-Type: image/jpeg" + nl
    if length:
        head += f"Content-Length: {len(jpeg)}".encode("ascii") + nl
    return head + nl + jpeg + nl


def hold(conn: socket.socket, stop: threading.Event) -> None:
    """Keep the connection open and silent until the server stops (a camera that froze)."""
    stop.wait(10.0)


class RawHttpServer:
    """``with RawHttpServer(respond) as srv: open_source(srv.url())``; one thread per connection."""

    def __init__(self, respond: Responder) -> None:
        self._respond = respond
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name=f"raw-http:{self.port}", daemon=True)
        self._accept.start()

    def url(self, path: str = "/stream", userinfo: str = "") -> str:
        return f"http://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5.0)
            request = b""
            try:
                while b"\r\n\r\n" not in request and len(request) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    request += chunk
                self.requests.append(request)
                self._respond(conn, self._stop)
            except OSError:
                pass  # the client went away

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._accept.join(timeout=2.0)
        for t in self._threads:
            t.join(timeout=2.0)

    def __enter__(self) -> RawHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class FileHttpServer:
    """Serve ``folder`` over plain HTTP on 127.0.0.1 (``.url(name)``) until :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietFiles, directory=str(folder)))
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> FileHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
