"""--timeout is seconds without a FRAME: servers that trickle bytes still time out, and a live
source then reconnects or ends as --reconnect says."""

from __future__ import annotations

import socket
import threading
import time

import cv2
import numpy as np
import pytest

from edgeseg.runtime.errors import SourceError
from edgeseg.runtime.mjpeg import MjpegClient
from edgeseg.runtime.sources import FrameStatus, open_source
from tests.testkit.http_streams import RawHttpServer, multipart_head, part

TRICKLE_S = 0.2  # one byte this often: every single socket read succeeds well within the timeout


def _jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
    assert ok
    return buf.tobytes()


def _trickle(conn: socket.socket, stop: threading.Event, data: bytes) -> None:
    for b in data:
        if stop.wait(TRICKLE_S):
            return
        conn.sendall(bytes([b]))


def trickle_head(conn, stop) -> None:
    conn.sendall(b"HTTP/1.0 200 OK\r\n")
    _trickle(conn, stop, b"X-Slow: " + b"a" * 10_000)


def trickle_part_headers(conn, stop) -> None:
    conn.sendall(multipart_head() + part(_jpeg()))
    _trickle(conn, stop, b"--frame\r\nContent-Type: image/jpeg\r\n" + b"X: " + b"b" * 10_000)


def trickle_body(conn, stop) -> None:
    jpeg = _jpeg()
    conn.sendall(multipart_head() + part(jpeg))
    body = part(jpeg)
    cut = body.index(b"\r\n\r\n") + 4
    conn.sendall(body[:cut])
    _trickle(conn, stop, body[cut:] * 50)


def test_a_trickled_answer_head_times_out() -> None:
    with RawHttpServer(trickle_head) as srv:
        t0 = time.monotonic()
        with pytest.raises(SourceError, match="no complete answer within 1 s"):
            MjpegClient(srv.url(), timeout=1.0)
        assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("respond", [trickle_part_headers, trickle_body], ids=["part-headers", "body"])
def test_a_trickled_frame_times_out(respond) -> None:
    with RawHttpServer(respond) as srv:
        client = MjpegClient(srv.url(), timeout=1.0)
        try:
            assert client.read_jpeg().startswith(b"\xff\xd8")  # the first, whole frame
            t0 = time.monotonic()
            with pytest.raises(SourceError, match="within 1 s that completes a frame"):
                client.read_jpeg()
            assert time.monotonic() - t0 < 2.5
        finally:
            client.close()


def _read_for(src, seconds: float) -> list:
    statuses, t0 = [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        f = src.read()
        statuses.append(f.status)
        f.release()
        if f.status in (FrameStatus.EOS, FrameStatus.ERROR):
            break
    return statuses


@pytest.mark.parametrize("respond", [trickle_part_headers, trickle_body], ids=["part-headers", "body"])
def test_a_live_source_on_a_trickling_server_ends_or_reconnects(respond) -> None:
    with RawHttpServer(respond) as srv:
        t0 = time.monotonic()
        with open_source(srv.url(), timeout=1.0, reconnect=0) as src:
            statuses = _read_for(src, 10)
        assert statuses[0] is FrameStatus.OK and statuses[-1] is FrameStatus.EOS, statuses
        assert time.monotonic() - t0 < 4
    if respond is trickle_body:
        return
    with RawHttpServer(respond) as srv:  # each outage gets its reconnects: a fresh connection, a fresh frame
        with open_source(srv.url(), timeout=0.8, reconnect=2, backoff=(0.1, 0.1)) as src:
            statuses = _read_for(src, 2.5)
            assert src.reconnects >= 1 and statuses.count(FrameStatus.OK) >= 2, (src.reconnects, statuses)


def test_demo_duration_ends_the_run_on_a_trickling_server(tmp_path, capsys) -> None:
    from edgeseg.cli import main

    with RawHttpServer(trickle_head) as srv:  # kept 'demo --duration 5 --timeout 3' running for 25 minutes
        t0 = time.monotonic()
        rc = main(["demo", "--source", srv.url(), "--duration", "2", "--timeout", "1", "--reconnect", "0",
                   "--json", str(tmp_path / "d.json")])
        took = time.monotonic() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 1 and took < 5, (rc, took)
    assert len(err.splitlines()) == 1 and "no complete answer within 1 s" in err, err
