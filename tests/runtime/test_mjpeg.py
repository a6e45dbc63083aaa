"""The MJPEG server: endpoints, loopback default, address parsing, clean stop."""

from __future__ import annotations

import http.client
import logging
import time

import cv2
import numpy as np
import pytest

from edgeseg.runtime.errors import SourceError, UsageError
from edgeseg.runtime.mjpeg import BOUNDARY, MjpegServer, encode_jpeg, is_loopback, parse_address


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
])
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1:http", "127.0.0.1:70000", "bad host:80"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_address(text)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")
