"""The MJPEG server (endpoints, loopback default, address parsing, clean stop) and the MJPEG client."""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest
from testkit.http_streams import RawHttpServer, hold, multipart_head, part

from edgeseg.runtime.errors import SourceError, UsageError
from edgeseg.runtime.mjpeg import (
    BOUNDARY,
    MjpegClient,
    MjpegServer,
    NotMjpegError,
    encode_jpeg,
    free_port,
    is_loopback,
    parse_address,
    redact_url,
    resolve_bind_host,
)

pytestmark = pytest.mark.timing  # wall-clock checks: 'make test' runs them apart from the parallel rest


def _get(port: int, path: str, timeout: float = 3.0) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    return conn.getresponse()


def test_binds_loopback_by_default_and_serves_snapshot() -> None:
    img = np.zeros((30, 40, 3), np.uint8)
    img[:, 20:] = (0, 0, 255)  # (30, 40, 3): right half red
    with MjpegServer(port=0) as srv:
        assert srv.host == "127.0.0.1" and srv.port > 0
        assert srv._server.server_address[0] == "127.0.0.1"
        srv.publish(encode_jpeg(img))
        resp = _get(srv.port, "/snapshot.jpg")
        assert resp.status == 200 and resp.getheader("Content-Type") == "image/jpeg"
        got = cv2.imdecode(np.frombuffer(resp.read(), np.uint8), cv2.IMREAD_COLOR)  # (30, 40, 3)
        assert got.shape == (30, 40, 3) and got[:, 25:, 2].mean() > 200 and got[:, :15, 2].mean() < 40
        assert _get(srv.port, "/etc/passwd").status == 404


def test_snapshot_before_any_frame_is_503() -> None:
    with MjpegServer(port=0) as srv:
        assert _get(srv.port, "/snapshot.jpg").status == 503


def test_stream_is_multipart_and_ends_when_server_stops() -> None:
    with MjpegServer(port=0) as srv:
        srv.play([np.full((16, 16, 3), v, np.uint8) for v in (0, 128, 255)], fps=100)
        resp = _get(srv.port, "/stream")
        assert resp.status == 200
        assert resp.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        chunk = resp.read(4000)
        assert chunk.count(f"--{BOUNDARY}".encode()) >= 2 and b"Content-Type: image/jpeg" in chunk
        assert srv.clients == 1
        t0 = time.perf_counter()
        srv.stop()
        rest = resp.read()  # returns once the server closed the connection
        assert time.perf_counter() - t0 < 3.0
        assert isinstance(rest, bytes)
        assert srv.clients == 0


def test_a_viewer_that_leaves_while_no_frame_comes_frees_its_place() -> None:
    """Only a write would fail on a closed connection, and a paused stream writes nothing."""
    with MjpegServer(port=0) as srv:
        srv.publish(encode_jpeg(np.zeros((16, 16, 3), np.uint8)))
        for _ in range(12):  # more than MAX_CLIENTS, one after another
            resp = _get(srv.port, "/stream")
            assert resp.status == 200
            resp.close()
            deadline = time.perf_counter() + 3.0  # noticed at the next frame wait (0.2 s), on a busy machine later
            while srv.clients and time.perf_counter() < deadline:
                time.sleep(0.05)
            assert srv.clients == 0


def test_stop_closes_connections_that_never_sent_a_request() -> None:
    srv = MjpegServer(port=0)
    idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
    try:
        time.sleep(0.3)  # accepted, each handler waiting for a request line
        t0 = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - t0 < 3.0
        for sock in idle:
            sock.settimeout(2.0)
            assert sock.recv(10) == b""  # closed by the server, not left hanging
    finally:
        for sock in idle:
            sock.close()


def test_a_connection_that_sends_no_request_is_closed_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeseg.runtime import mjpeg

    monkeypatch.setattr(mjpeg._Handler, "timeout", 0.3)
    with MjpegServer(port=0) as srv, socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(3.0)
        t0 = time.perf_counter()
        assert sock.recv(10) == b""
        assert time.perf_counter() - t0 < 2.0


def test_publish_images_encodes_only_for_viewers() -> None:
    with MjpegServer(port=0) as srv:
        frame = np.full((20, 20, 3), 200, np.uint8)
        srv.publish(frame)
        seq_first = srv._seq
        srv.publish(frame)  # nobody is watching and the snapshot is fresh: skipped
        assert srv._seq == seq_first == 1


def test_non_loopback_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeseg.runtime.mjpeg"):
        srv = MjpegServer(host="0.0.0.0", port=0)
        srv.stop()
    assert any("reachable from other machines" in r.getMessage() for r in caplog.records)


def test_busy_port_is_a_clear_error() -> None:
    with MjpegServer(port=0) as srv:
        with pytest.raises(SourceError, match=f"cannot serve MJPEG on 127.0.0.1:{srv.port}"):
            MjpegServer(port=srv.port)


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), (":9000", ("127.0.0.1", 9000)), ("9001", ("127.0.0.1", 9001)),
    ("http://0.0.0.0:81/stream", ("0.0.0.0", 81)), ("localhost", ("localhost", 8080)), ("[::1]:82", ("::1", 82)),
    ("::1", ("::1", 8080)), ("[::1]", ("::1", 8080)), ("http://[fe80::1]:83/stream", ("fe80::1", 83)),
    ("::", ("::", 8080)),
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:http", "127.0.0.1:70000", "bad host:80", "[::1", "[::1]80", "::1:zz",
                                  "a:b:80", "[bad host]:80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_address(text)


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine cannot bind IPv6 loopback")
def test_serves_on_ipv6_loopback() -> None:
    with MjpegServer(*parse_address("[::1]:0")) as srv:
        assert srv.url == f"http://[::1]:{srv.port}/stream"
        srv.publish(np.zeros((8, 8, 3), np.uint8))
        with urllib.request.urlopen(f"http://[::1]:{srv.port}/snapshot.jpg", timeout=5) as r:
            assert r.read(2) == b"\xff\xd8"  # a JPEG


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine cannot bind IPv6 loopback")
def test_host_name_with_only_an_ipv6_address_binds_ipv6(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - socket.getaddrinfo's signature
        if host == "cam6.test":
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", 0, 0, 0))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with caplog.at_level(logging.WARNING, logger="edgeseg.runtime.mjpeg"), MjpegServer("cam6.test", 0) as srv:
        assert srv.url == f"http://cam6.test:{srv.port}/stream"
        srv.publish(np.zeros((8, 8, 3), np.uint8))
        with urllib.request.urlopen(f"http://[::1]:{srv.port}/snapshot.jpg", timeout=5) as r:
            assert r.read(2) == b"\xff\xd8"
    assert not caplog.records  # ::1 is loopback: no warning about other machines


def test_host_name_is_judged_by_the_address_it_binds(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_bind_host("localhost", 0) == (socket.AF_INET, "127.0.0.1")
    assert resolve_bind_host("::1", 0) == (socket.AF_INET6, "::1")
    with caplog.at_level(logging.WARNING, logger="edgeseg.runtime.mjpeg"), MjpegServer("localhost", 0) as srv:
        srv.publish(np.zeros((8, 8, 3), np.uint8))
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/snapshot.jpg", timeout=5) as r:
            assert r.status == 200
    assert not caplog.records


@pytest.mark.parametrize("host, advice", [("no-such-host.invalid", "check the host name"),
                                          ("192.0.2.1", "give an address of this machine")])
def test_bind_failure_names_the_host_not_the_port(host: str, advice: str) -> None:
    with pytest.raises(SourceError, match=advice):
        MjpegServer(host=host, port=0)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


# -- client -----------------------------------------------------------------------------------------
def _jpegs(n: int) -> list[bytes]:
    return [encode_jpeg(np.full((12, 16, 3), 30 * i, np.uint8)) for i in range(n)]  # distinct payloads


def _send(*chunks: bytes):
    """A responder that writes ``chunks`` and closes the connection."""
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        for c in chunks:
            conn.sendall(c)
    return respond


def test_client_reads_parts_from_the_server_and_authenticates() -> None:
    jpegs = _jpegs(3)
    with MjpegServer(port=0) as srv:
        srv.play(jpegs, fps=100)
        with MjpegClient(srv.url, timeout=2.0) as client:
            got = {client.read_jpeg() for _ in range(6)}
    assert got <= set(jpegs) and len(got) >= 2  # exact bytes of the published JPEGs


# Header boundary / part boundary line / newline / Content-Length: what real cameras send.
@pytest.mark.parametrize("header, line, nl, length", [
    ("frame", b"--frame", b"\r\n", True),          # RFC 2046
    ("frame", b"--frame", b"\r\n", False),         # no Content-Length: scan for the boundary
    ("--frame", b"--frame", b"\r\n", True),        # boundary parameter already has the dashes
    ("--frame", b"--frame", b"\n", False),          # ... with bare LF and no length
    ("frame", b"frame", b"\r\n", False),           # boundary written without dashes
    ('"frame"', b"--frame", b"\n", True),           # quoted parameter, LF
])
def test_client_boundary_variants(header: str, line: bytes, nl: bytes, length: bool) -> None:
    jpegs = _jpegs(3)
    # Without a length a part ends where the next boundary starts, so a live server's next frame
    # begins with it: the trailing boundary line.
    body = b"".join(part(j, line, nl, length) for j in jpegs) + line + nl
    with RawHttpServer(_send(multipart_head(header), body)) as srv, MjpegClient(srv.url(), timeout=2.0) as c:
        assert [c.read_jpeg() for _ in jpegs] == jpegs
        with pytest.raises(SourceError, match="ended"):
            c.read_jpeg()  # the server closed the connection
        with pytest.raises(SourceError, match="ended"):
            c.read_jpeg()  # and the client stays failed


def test_client_part_without_headers_and_closing_boundary() -> None:
    jpeg = _jpegs(1)[0]
    body = b"--frame\r\n" + jpeg + b"\r\n--frame--\r\n"  # JPEG right after the boundary line
    with RawHttpServer(_send(multipart_head("frame"), body)) as srv, MjpegClient(srv.url(), timeout=2.0) as c:
        assert c.read_jpeg() == jpeg
        with pytest.raises(SourceError, match="closing boundary"):
            c.read_jpeg()


def test_client_sends_basic_auth_and_never_shows_the_password() -> None:
    jpeg = _jpegs(1)[0]
    with RawHttpServer(_send(multipart_head(), part(jpeg))) as srv:
        url = srv.url(userinfo="user:p%40ss")
        with MjpegClient(url, timeout=2.0) as c:
            assert c.read_jpeg() == jpeg
            assert "p%40ss" not in c.shown and "***@" in c.shown
    token = base64.b64encode(b"user:p@ss").decode("ascii")
    assert f"Authorization: Basic {token}".encode() in srv.requests[0]
    assert redact_url("https://a:b@cam/x") == "https://***@cam/x"


@pytest.mark.parametrize("head, answer", [
    (b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=x\r\n\r\n", "HTTP 401 Unauthorized"),
    (b"HTTP/1.0 200 OK\r\nContent-Type: video/mp4\r\n\r\n", "Content-Type video/mp4"),
    (b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace\r\n\r\n", "without a usable boundary"),
])
def test_client_not_mjpeg_says_what_the_server_answered(head: bytes, answer: str) -> None:
    with RawHttpServer(_send(head)) as srv:
        with pytest.raises(NotMjpegError) as e:
            MjpegClient(srv.url(userinfo="u:secret"), timeout=2.0)
    assert answer in e.value.answer and answer in str(e.value)
    assert "secret" not in str(e.value) and "\n" not in str(e.value)


def test_client_unreachable_is_a_source_error_not_a_probe_miss() -> None:
    with pytest.raises(SourceError) as e:
        MjpegClient(f"http://u:secret@127.0.0.1:{free_port()}/stream", timeout=1.0)
    assert not isinstance(e.value, NotMjpegError)
    assert "cannot open stream http://***@127.0.0.1" in str(e.value) and "secret" not in str(e.value)


def test_client_refuses_oversized_parts_without_reading_them() -> None:
    big = (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 1099511627776\r\n\r\n")
    with RawHttpServer(lambda conn, stop: (conn.sendall(multipart_head() + big), hold(conn, stop))) as srv:
        with MjpegClient(srv.url(), timeout=2.0) as c:
            t0 = time.perf_counter()
            with pytest.raises(SourceError, match="over the 32 MiB limit; refusing it"):
                c.read_jpeg()
            assert time.perf_counter() - t0 < 1.0  # refused from the header, nothing was read


@pytest.mark.parametrize("body, words", [
    (part(b"\xff\xd8" + b"x" * 5000, length=False), "part over the 0 MiB limit without a boundary"),
    (b"\x00" * 9000, "without a part boundary"),  # junk, never a boundary
])
def test_client_bounds_parts_without_length(body: bytes, words: str) -> None:
    with RawHttpServer(lambda conn, stop: (conn.sendall(multipart_head() + body), hold(conn, stop))) as srv:
        with MjpegClient(srv.url(), timeout=2.0, max_part=4096) as c:
            with pytest.raises(SourceError, match=words):
                c.read_jpeg()


def test_client_silent_stream_times_out() -> None:
    with RawHttpServer(lambda conn, stop: (conn.sendall(multipart_head()), hold(conn, stop))) as srv:
        with MjpegClient(srv.url(), timeout=0.3) as c:
            with pytest.raises(SourceError, match="no data from stream .* within 0.3 s"):
                c.read_jpeg()


def test_client_rejects_non_http_urls() -> None:
    with pytest.raises(UsageError):
        MjpegClient("rtsp://127.0.0.1/stream")
