"""A small MJPEG-over-HTTP server: watch a headless robot's output in a browser.

``multipart/x-mixed-replace`` at ``/`` and ``/stream`` (what browsers, VLC and OpenCV's FFmpeg
backend read), the latest frame at ``/snapshot.jpg``. It binds to loopback unless told
otherwise; a non-loopback host is allowed but logged as a warning, since anyone on that
network can then watch the camera.

It doubles as a live test source: :meth:`MjpegServer.play` publishes pre-encoded JPEGs at a
fixed rate, so tests and benchmarks get a real network stream without any external tool.

:class:`MjpegClient` is the other end: it reads such a stream (from this server or an IP camera)
part by part and hands out the raw JPEG bytes without decoding them, so a live source can leave
frames that get replaced before anyone reads them undecoded. Standard library only; every buffer
is bounded (:data:`MAX_PART_BYTES`) so a hostile server cannot exhaust memory.
"""

from __future__ import annotations

import base64
import errno
import html
import http.client
import ipaddress
import json
import logging
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from email.utils import collapse_rfc2231_value
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

import cv2
import numpy as np

from .errors import SourceError, UsageError

log = logging.getLogger(__name__)

BOUNDARY = "edgesegframe"
DEFAULT_PORT = 8080
MAX_CLIENTS = 8  # each client is one thread; a handful is plenty for monitoring
SNAPSHOT_EVERY_S = 0.5  # with no stream client connected, refresh the snapshot at most this often
SEND_TIMEOUT_S = 5.0  # a stalled client is dropped instead of holding its thread forever
REQUEST_TIMEOUT_S = 10.0  # a connection that sends no request in time is closed (one thread each)
REQUEST_DEADLINE_S = 5.0  # the whole request head must arrive within this, however slowly it trickles
MAX_HANDLERS = 32  # connections handled at once (one thread each); more are answered 503 and closed
LISTEN_BACKLOG = 256  # connections the kernel queues for accept: a crowd gets an answer, not a timeout
MAX_STATS_BYTES = 64 << 10  # /stats.json
MAX_PART_BYTES = 32 << 20  # largest JPEG part a client accepts (an 8K frame at quality 100 is ~15 MB)
MAX_HEADER_BYTES = 16 << 10  # the header block of one part
READ_CHUNK = 64 << 10  # bytes asked of the socket at a time
_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))  # printable ASCII stays as written


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_address(addr: str | int, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``'127.0.0.1:8080'``, ``':8080'``, ``'8080'``, ``'[::1]:8080'``, ``'::1'``, ``'http://host:port'``
    -> ``(host, port)``; IPv6 addresses take their port only inside brackets."""
    text = str(addr).strip()
    for prefix in ("http://", "mjpeg://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.split("/", 1)[0]
    if text.startswith("["):  # [IPv6] or [IPv6]:port
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise UsageError(f"server address {addr!r} is malformed; write [IPv6]:PORT, e.g. [::1]:8080")
        host, port_text = inside, rest[1:]
    elif text.count(":") > 1:  # a bare IPv6 address: its colons are not a port separator
        host, port_text = text, ""
        if not _is_ip(host):
            raise UsageError(f"server address {addr!r} is neither HOST:PORT nor an IPv6 address; "
                             "put an IPv6 address in brackets to give a port, e.g. [::1]:8080")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:  # one part: a port ("8080") or a host ("localhost")
            host, port_text = ("", text) if text.isdigit() else (text, "")
    host = host or default_host
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
    except ValueError:
        raise UsageError(f"server address {addr!r} has no valid port; write HOST:PORT, e.g. 127.0.0.1:8080") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"server port {port} in {addr!r} is out of range; use 1-65535 (0 picks a free port)")
    if any(c.isspace() or c in "[]" for c in host):
        raise UsageError(f"server host {host!r} in {addr!r} is not a host name or IP address")
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve_bind_host(host: str, port: int) -> tuple[int, str]:
    """``host`` (name or IP) -> (address family, IP to bind); raises :class:`socket.gaierror`.

    A name is looked up, so one that has only an IPv6 address (``ip6-localhost``) binds an IPv6
    socket; a name with both families binds its IPv4 address, as a plain IPv4 server would.
    """
    if _is_ip(host):
        return (socket.AF_INET6 if ":" in host else socket.AF_INET), host
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    found = [(family, sockaddr[0]) for family, _, _, _, sockaddr in infos
             if family in (socket.AF_INET, socket.AF_INET6)]
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no IPv4 or IPv6 address")
    return min(found, key=lambda f: f[0] != socket.AF_INET)  # IPv4 first, in resolver order


def _peer_gone(sock: socket.socket) -> bool:
    """Whether the other end closed the connection (a viewer that left while no frame was sent)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one response per connection: the stream ends when we close it
    timeout = REQUEST_TIMEOUT_S  # socket timeout while the request is read

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("mjpeg %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.server.request_read(self.connection)
        path = self.path.split("?", 1)[0]
        page = self.server.owner.page_html
        if path == "/" and page is not None:
            self._send(page, "text/html; charset=utf-8")
        elif path == "/stats.json" and page is not None:
            self._send(self.server.owner.stats_json, "application/json")
        elif path in ("/", "/stream", "/stream.mjpg"):
            self._stream()
        elif path == "/snapshot.jpg":
            self._snapshot()
        else:
            self.send_error(HTTPStatus.NOT_FOUND, "try / (stream) or /snapshot.jpg")

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

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
                seq, jpeg = owner.wait_frame(seq, timeout=0.2)  # also how soon a viewer that left is noticed
                if jpeg is None:
                    if _peer_gone(self.connection):  # writes would tell, but none may come for a while
                        break
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
    request_queue_size = LISTEN_BACKLOG
    block_on_close = False  # stop() drops connections itself; don't wait on handler threads
    owner: MjpegServer

    def server_activate(self) -> None:
        self._open: set[socket.socket] = set()  # connections being handled, for drop_connections
        self._pending: dict[socket.socket, float] = {}  # connections still sending their request -> deadline
        self._open_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._open_lock:
            busy = len(self._open) >= MAX_HANDLERS
            if not busy:
                self._open.add(request)
                self._pending[request] = time.monotonic() + REQUEST_DEADLINE_S
        if busy:  # answered here, without a thread: a crowd cannot grow the thread count
            _refuse(request)
            return
        super().process_request(request, client_address)

    def request_read(self, request: socket.socket) -> None:
        """The handler has the whole request: its deadline no longer applies."""
        with self._open_lock:
            self._pending.pop(request, None)

    def service_actions(self) -> None:
        """Between accepts (every poll interval): cut connections whose request is overdue."""
        now = time.monotonic()
        with self._open_lock:
            overdue = [s for s, t in self._pending.items() if t < now]
            for s in overdue:
                del self._pending[s]
        for sock in overdue:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # its handler's read returns at once and the thread ends
            except OSError:
                pass

    def shutdown_request(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)
            self._pending.pop(request, None)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut every open connection down, so handlers blocked on it return at once."""
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its handler


def _refuse(sock: socket.socket) -> None:
    """A short 503 on a connection beyond MAX_HANDLERS, sent without waiting, then closed."""
    try:
        sock.setblocking(False)
        sock.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\n"
                  b"Connection: close\r\n\r\ntoo many connections; try again later\n")
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Server6(_Server):
    address_family = socket.AF_INET6  # the socket family must match the address to bind


def _bind_advice(e: OSError) -> str:
    """What to change when binding failed: the port when it is taken, the host otherwise."""
    if e.errno in (errno.EADDRINUSE, errno.EACCES):
        return "pick another port (or 0 for any free one)"
    if isinstance(e, socket.gaierror):
        return "check the host name, or give an IP address such as 127.0.0.1"
    return "give an address of this machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces)"


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ margin: 0; background: #111; color: #eee; font: 14px system-ui, sans-serif; display: flex; flex-wrap: wrap; }}
main {{ flex: 1 1 640px; padding: 8px; }} main img {{ width: 100%; height: auto; background: #000; }}
aside {{ flex: 0 0 260px; padding: 8px 12px; }} h1 {{ font-size: 16px; margin: 4px 0 8px; }}
h2 {{ font-size: 13px; margin: 14px 0 6px; color: #aaa; text-transform: uppercase; }}
#legend li {{ list-style: none; margin: 2px 0; }} #legend {{ padding: 0; margin: 0; }}
.swatch {{ display: inline-block; width: 14px; height: 14px; margin-right: 6px; vertical-align: -2px; border: 1px solid #555; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ padding: 2px 4px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }} .lost {{ color: #f55; font-weight: bold; }}
</style></head>
<body><main><img id="stream" src="/stream" alt="live segmentation stream"></main>
<aside><h1>{title}</h1>
<h2>Cameras</h2><table id="stats"><thead><tr><th>camera</th><th>FPS</th><th>p50 ms</th><th>p99 ms</th><th>drops</th></tr></thead>
<tbody>{rows}</tbody></table><p id="updated">waiting for figures</p>
<h2>Classes</h2><ul id="legend">{legend}</ul></aside>
<script>
async function refresh() {{
  try {{
    const r = await fetch('/stats.json', {{cache: 'no-store'}});
    const d = await r.json();
    const body = document.querySelector('#stats tbody');
    body.replaceChildren(...(d.cameras || []).map(c => {{
      const tr = document.createElement('tr');
      const cells = c.no_signal ? [c.name, 'NO SIGNAL ' + c.outage_s + ' s', '', '', c.drops]
        : [c.name, c.fps.toFixed(1), c.latency_p50_ms ?? '-', c.latency_p99_ms ?? '-', c.drops];
      for (const v of cells) {{ const td = document.createElement('td'); td.textContent = v; tr.appendChild(td); }}
      if (c.no_signal) tr.className = 'lost';
      return tr;
    }}));
    document.getElementById('updated').textContent = 'frames: ' + (d.cameras || []).map(c => c.frames).join(' / ');
  }} catch (e) {{ document.getElementById('updated').textContent = 'no figures (' + e + ')'; }}
}}
setInterval(refresh, 500); refresh();
</script></body></html>
"""


def render_page(page: dict) -> bytes:
    """The web view's HTML: the stream, a legend with the class colours, a live figures table."""
    esc = html.escape
    classes = [str(c) for c in page.get("classes", [])]
    palette = list(page.get("palette", []))
    legend = "".join(
        f'<li><span class="swatch" style="background: rgb({int(c[0])}, {int(c[1])}, {int(c[2])})"></span>'
        f"{esc(name)}</li>" for name, c in zip(classes, palette, strict=False))
    rows = "".join(f"<tr><td>{esc(str(n))}</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>"
                   for n in page.get("cameras", []))
    return PAGE.format(title=esc(str(page.get("title", "edgeseg"))), legend=legend, rows=rows).encode("utf-8")


class MjpegServer:
    """``with MjpegServer(port=0) as srv: srv.publish(frame_bgr)``; read it at ``srv.url``.

    ``port=0`` takes a free ephemeral port (see :attr:`port`). ``publish`` accepts a BGR image
    (encoded here, at most once per frame and only while someone can see it) or ready JPEG bytes.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, quality: int = 80,
                 page: dict | None = None) -> None:
        # page: serve the web view at / (title, classes, palette (RGB), cameras); the stream moves to /stream
        self.page_html: bytes | None = render_page(page) if page is not None else None
        self.stats_json = b"{}"
        if not 1 <= int(quality) <= 100:
            raise UsageError(f"JPEG quality {quality} is out of range; use 1-100")
        self.host, self.quality = host, int(quality)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            family, ip = resolve_bind_host(host, int(port))
            if not is_loopback(ip):  # judged on the address bound, so a name for 127.0.0.1 is local too
                log.warning("MJPEG server on %s:%s is reachable from other machines; anyone on that network "
                            "can watch the stream (bind 127.0.0.1 to keep it local)", host, port)
            server_class = _Server6 if family == socket.AF_INET6 else _Server
            self._server = server_class((ip, int(port)), _Handler, bind_and_activate=True)
        except OSError as e:
            raise SourceError(f"cannot serve MJPEG on {shown}: {e.strerror or e}; {_bind_advice(e)}") from None
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

    @property
    def page_url(self) -> str:
        """The web view (or the stream, for a server without a page)."""
        return self.url[: -len("/stream")] + "/" if self.page_html is not None else self.url

    def set_stats(self, figures: dict) -> None:
        """What ``/stats.json`` serves from now on (live figures for the page)."""
        body = json.dumps(figures, allow_nan=False, default=str).encode("utf-8")
        if len(body) <= MAX_STATS_BYTES:
            self.stats_json = body

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
        self._server.drop_connections()  # before server_close, which waits for every handler thread
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


# -- client -----------------------------------------------------------------------------------------
def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@`` (for logs and error messages)."""
    return re.sub(r"//[^/?#]*@", "//***@", url)  # up to the last '@' of the authority: passwords may hold '@'


class NotMjpegError(SourceError):
    """The server answered, but not with a multipart MJPEG stream (another reader such as FFmpeg may cope).

    ``answer`` says what came back instead, e.g. ``"HTTP 404 Not Found"``.
    """

    def __init__(self, message: str, answer: str) -> None:
        super().__init__(message)
        self.answer = answer


class MjpegProtocolError(SourceError):
    """The stream broke the format or a limit (an oversized part, endless headers): not just an outage."""


def _why(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text.splitlines()[0] if text else type(e).__name__


class MjpegClient:
    """One GET of an MJPEG-over-HTTP stream; :meth:`read_jpeg` returns the next part's JPEG bytes.

    Connecting raises :class:`SourceError` when the server cannot be reached, and
    :class:`NotMjpegError` when it answers with anything but ``200`` and
    ``multipart/x-mixed-replace; boundary=...``. ``timeout`` bounds the whole answer (connect,
    status line and headers) and each whole frame, not single socket reads: a server that
    trickles a byte now and then still times out. After a failed read the client stays failed
    (the stream position is lost): open a new one. Not thread-safe: one reader at a time.
    """

    def __init__(self, url: str, timeout: float = 5.0, max_part: int = MAX_PART_BYTES) -> None:
        self.url, self.shown, self.timeout, self.max_part = url, redact_url(url), timeout, max_part
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"MJPEG stream URL {self.shown!r} must be http://HOST[:PORT]/PATH or https://...")
        try:
            port = parts.port
        except ValueError:
            raise UsageError(f"stream URL {self.shown!r} has an invalid port") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        path = quote(path, safe=_URL_SAFE)  # a request line is ASCII: percent-encode the rest (UTF-8)
        headers = {"User-Agent": "edgeseg", "Accept": "*/*", "Connection": "close"}
        if parts.username is not None:
            user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(user_pass.encode("utf-8")).decode("ascii")
        if scheme == "https":
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, port, timeout=timeout, context=ssl.create_default_context())
        else:
            self._conn = http.client.HTTPConnection(parts.hostname, port, timeout=timeout)
        self._buf = bytearray()
        self._failure: SourceError | None = None  # set once a read failed: the stream position is lost
        self._deadline = 0.0  # monotonic time by which the frame being read must be complete
        # http.client reads the answer's head line by line with a per-read timeout only: a watchdog
        # shuts the socket when the whole head has not arrived within ``timeout``.
        self._opening, self._timed_out = True, False
        watchdog = threading.Timer(timeout, self._abort_open)
        watchdog.daemon = True
        watchdog.start()
        try:
            self._conn.request("GET", path, headers=headers)
            self._resp = self._conn.getresponse()
        except Exception as e:
            if self._timed_out:
                self.close()
                raise SourceError(f"cannot open stream {self.shown}: no complete answer within {timeout:g} s; check "
                                  "the URL and that the camera/server is running") from None
            self._open_failed(e, timeout)
        finally:
            self._opening = False
            watchdog.cancel()
        if self._timed_out:
            self.close()
            raise SourceError(f"cannot open stream {self.shown}: no complete answer within {timeout:g} s")
        self._check_answer()

    def _abort_open(self) -> None:
        """Watchdog: the answer's head took longer than ``timeout``; unblock the reading thread."""
        if not self._opening:
            return
        self._timed_out = True
        sock = self._conn.sock
        if sock is None:  # still connecting (bounded by the socket timeout): look again shortly
            retry = threading.Timer(0.05, self._abort_open)
            retry.daemon = True
            retry.start()
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _open_failed(self, e: BaseException, timeout: float) -> None:
        """Turn a failed request into the error that says what happened (always raises)."""
        try:
            raise e
        except ssl.SSLCertVerificationError as e:
            self.close()
            raise NotMjpegError(f"stream {self.shown}: TLS certificate not trusted ({e.verify_message})",
                                "with a TLS certificate this machine does not trust") from None
        except (ssl.SSLError, http.client.HTTPException) as e:
            # It answered, just not in HTTP(S) as http.client speaks it: let another reader try.
            self.close()
            raise NotMjpegError(f"stream {self.shown} did not answer in HTTP: {_why(e)}",
                                f"something that is not HTTP ({_why(e)})") from None
        except TimeoutError:
            self.close()
            raise SourceError(f"cannot open stream {self.shown}: no answer within {timeout:g} s; check the "
                              "URL and that the camera/server is running") from None
        except OSError as e:
            self.close()
            raise SourceError(f"cannot open stream {self.shown}: {_why(e)}; check the URL and that the "
                              "camera/server is running") from None

    def _check_answer(self) -> None:
        """NotMjpegError unless the answer is a ``200`` multipart stream with a usable boundary."""
        status, reason = self._resp.status, self._resp.reason
        ctype = self._resp.headers.get_content_type()  # lower case; text/plain when absent
        boundary = self._resp.headers.get_param("boundary")
        if isinstance(boundary, tuple):  # RFC 2231 form
            boundary = collapse_rfc2231_value(boundary)
        core = (boundary or "").strip().strip('"').lstrip("-")  # dashes or not: matched either way
        if status != 200 or ctype != "multipart/x-mixed-replace" or not core or len(core) > 200:
            self.close()
            if status != 200:
                answer = f"HTTP {status} {reason}".strip()
            elif ctype != "multipart/x-mixed-replace":
                answer = f"HTTP 200 with Content-Type {ctype}"
            else:
                answer = "a multipart stream without a usable boundary"
            raise NotMjpegError(f"stream {self.shown} is not an MJPEG stream: the server answered {answer}",
                                answer)
        try:
            self._core = core.encode("ascii")
        except UnicodeEncodeError:
            self.close()
            raise NotMjpegError(f"stream {self.shown} has a non-ASCII multipart boundary",
                                "a multipart stream without a usable boundary") from None

    # -- reading ----------------------------------------------------------------------------------
    def read_jpeg(self) -> bytes:
        """The next part's body (JPEG bytes, not checked); :class:`SourceError` when the stream fails."""
        if self._failure is not None:
            raise type(self._failure)(str(self._failure))
        self._deadline = time.monotonic() + self.timeout  # for the whole frame, however it trickles
        try:
            return self._next_part()
        except SourceError as e:
            failure = e
        except TimeoutError:
            failure = SourceError(f"no data from stream {self.shown} within {self.timeout:g} s that completes a frame")
        except (OSError, ValueError, http.client.HTTPException) as e:
            failure = SourceError(f"stream {self.shown} broke off: {_why(e)}")
        self._failure = failure
        raise failure from None

    def _next_part(self) -> bytes:
        self._skip_to_boundary()
        length: int | None = None
        size = 0
        while True:  # part headers, up to the blank line
            line = self._readline(MAX_HEADER_BYTES)
            if line.startswith(b"\xff\xd8"):  # no headers at all, JPEG data right away: give it back
                self._buf[:0] = line
                break
            size += len(line)
            if not line.endswith(b"\n") or size > MAX_HEADER_BYTES:
                raise MjpegProtocolError(f"stream {self.shown} sent part headers over {MAX_HEADER_BYTES} bytes")
            text = line.strip()
            if not text:
                break
            name, sep, value = text.partition(b":")
            if sep and name.strip().lower() == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    length = None  # a garbled length: find the end by the boundary instead
                if length is not None and length < 0:
                    length = None
        if length is not None:
            if length > self.max_part:
                raise MjpegProtocolError(f"stream {self.shown} sent a part of {length} bytes, over the "
                                  f"{self.max_part >> 20} MiB limit; refusing it")
            return self._read_exact(length)
        return self._read_to_boundary()

    def _fill(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock = self._conn.sock
        if sock is not None:
            sock.settimeout(min(left, self.timeout))  # this read ends by the frame's deadline
        data = self._resp.read1(READ_CHUNK)  # what the socket has, up to one chunk (de-chunks too)
        if not data:
            raise SourceError(f"stream {self.shown} ended (the server closed the connection)")
        self._buf += data

    def _readline(self, limit: int) -> bytes:
        """One line with its newline, or ``limit`` bytes without one when the line is longer."""
        start = 0
        while True:
            i = self._buf.find(b"\n", start)
            if 0 <= i < limit:
                n = i + 1
            elif i >= limit or len(self._buf) >= limit:
                n = limit
            else:
                start = len(self._buf)
                self._fill()
                continue
            line = bytes(self._buf[:n])
            del self._buf[:n]
            return line

    def _boundary_kind(self, line: bytes) -> int:
        """1 for a part boundary, 2 for the closing one, 0 for anything else (CRLF or LF, any dashes)."""
        text = line.strip().lstrip(b"-")
        if text == self._core:
            return 1
        if text == self._core + b"--":
            return 2
        return 0

    def _skip_to_boundary(self) -> None:
        skipped, at_line_start = 0, True
        while True:
            line = self._readline(1024)  # boundary lines are short; longer ones are skipped in pieces
            kind = self._boundary_kind(line) if at_line_start else 0
            if kind == 1:
                return
            if kind == 2:
                raise SourceError(f"stream {self.shown} ended (closing boundary)")
            at_line_start = line.endswith(b"\n")
            skipped += len(line)
            if skipped > self.max_part:
                raise MjpegProtocolError(f"stream {self.shown} sent {skipped} bytes without a part boundary; "
                                  "not an MJPEG stream this reader understands")

    def _read_exact(self, n: int) -> bytes:
        buf = self._buf
        if len(buf) >= n:
            data = bytes(buf[:n])
            del buf[:n]
            return data
        try:
            while len(buf) < n:  # chunk by chunk, each read bounded by the frame's deadline
                self._fill()
        except SourceError:
            raise SourceError(f"stream {self.shown} ended in the middle of a frame") from None
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def _read_to_boundary(self) -> bytes:
        """The body of a part without Content-Length: everything up to the next boundary line."""
        buf, core = self._buf, self._core
        pos = 0
        while True:
            i = buf.find(core, pos)
            while i >= 0:
                j = i
                while j > 0 and buf[j - 1] == 0x2D:  # the boundary's dashes, however many
                    j -= 1
                if j == 0 or buf[j - 1] == 0x0A:  # only a match at the start of a line counts
                    end = j
                    if end > 0 and buf[end - 1] == 0x0A:
                        end -= 1
                        if end > 0 and buf[end - 1] == 0x0D:
                            end -= 1
                    data = bytes(buf[:end])
                    del buf[:j]  # the boundary line stays: it starts the next part
                    return data
                i = buf.find(core, i + 1)
            if len(buf) > self.max_part:
                raise MjpegProtocolError(f"stream {self.shown} sent a part over the {self.max_part >> 20} MiB "
                                  "limit without a boundary; refusing it")
            pos = max(0, len(buf) - len(core))
            self._fill()

    def close(self) -> None:
        """Close the connection (safe to call twice)."""
        resp = getattr(self, "_resp", None)
        if resp is not None:
            resp.close()
        self._conn.close()

    def __enter__(self) -> MjpegClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
