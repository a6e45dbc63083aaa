"""The --serve web view in a real headless browser, and the server's bounds under crowds and slow clients."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime import Segmenter, mjpeg
from edgeseg.runtime.mjpeg import MAX_CLIENTS, MjpegServer
from edgeseg.runtime.pipeline import run_pipeline
from edgeseg.runtime.sinks import MjpegSink
from edgeseg.runtime.sources import open_source

pytestmark = pytest.mark.timing

FIGURES = r'id="updated">frames: (\d+)'  # the page's text once its script fetched /stats.json
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,600",
           "--timeout=2500", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _dom_with_figures(url: str) -> str:
    """The page's DOM once its script has fetched /stats.json (a loaded machine may need another try)."""
    for _ in range(3):
        dom = _chromium(url, "--dump-dom").stdout
        if re.search(FIGURES, dom):
            return dom
    raise AssertionError(f"the page never showed figures: {dom[-800:]}")


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (Debian: apt-get install chromium)")
def test_web_view_renders_stream_legend_and_live_figures(tiny_onnx: Path, tmp_path: Path) -> None:
    seg = Segmenter(tiny_onnx)
    classes = list(seg.meta.classes)
    sink = MjpegSink("127.0.0.1", 0, page={"title": "edgeseg test", "classes": classes,
                                           "palette": [list(c) for c in seg.meta.palette], "cameras": ["cam0"]})
    stop = threading.Event()

    def figures(stats) -> None:
        sink.set_stats({"cameras": [{"name": "cam0", "fps": stats.recent_fps, "frames": stats.frames,
                                     "drops": stats.drops, "outage_s": 0.0, "no_signal": False,
                                     "latency_p50_ms": 1.0, "latency_p99_ms": 2.0}]})

    src = open_source("synthetic://?realtime=1&size=240x320&fps=20")
    run = threading.Thread(target=run_pipeline, args=(seg, src, [sink]),
                           kwargs={"hud": True, "stop": stop, "on_progress": figures})
    run.start()
    try:
        deadline = time.monotonic() + 20
        while sink.server.stats_json == b"{}" and time.monotonic() < deadline:
            time.sleep(0.1)
        url = sink.page_url
        first = _dom_with_figures(url)
        shot = tmp_path / "page.png"
        _chromium(url, f"--screenshot={shot}")
        second = _dom_with_figures(url)
    finally:
        stop.set()
        run.join(timeout=20)
        src.close()
    legend = re.findall(r'<span class="swatch"[^>]*></span>([^<]+)</li>', first)
    assert legend == classes
    found = [re.search(FIGURES, dom) for dom in (first, second)]
    assert all(found), (first[-700:], second[-700:])
    frames = [int(m.group(1)) for m in found]
    assert 0 < frames[0] < frames[1]  # the figures are live (fetched from /stats.json)
    img = cv2.imread(str(shot))  # (600, 1000, 3)
    assert img is not None and img.shape[:2] == (600, 1000)
    stream = img[20:400, 20:600]  # the left part of the page: the video
    assert stream.std() > 10 and abs(float(stream.mean()) - 17) > 5  # a picture, not the empty page background


def _status(sock: socket.socket, deadline: float) -> str:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        data = sock.recv(64)
    except OSError:
        return "error"
    return data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed"


def test_half_sent_requests_neither_grow_threads_nor_last(monkeypatch) -> None:
    monkeypatch.setattr(mjpeg, "MAX_HANDLERS", 6)
    monkeypatch.setattr(mjpeg, "REQUEST_DEADLINE_S", 0.6)
    before = threading.active_count()
    with MjpegServer(port=0) as srv:
        srv.publish(np.zeros((16, 16, 3), np.uint8))
        socks = []
        for _ in range(20):  # each sends half a request line and then nothing
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            s.sendall(b"GET /snapshot.jpg HTTP/1.0\r\n")
            socks.append(s)
        time.sleep(0.3)
        assert threading.active_count() <= before + 1 + 6 + 1  # server loop, 6 handlers, and slack
        deadline = time.monotonic() + 3.0
        answers = [_status(s, deadline) for s in socks]
        assert answers.count("HTTP/1.0 503 Service Unavailable") == 14, answers  # refused at once
        assert all(a in ("closed", "error") for a in answers if "503" not in a)  # cut at the deadline
        for s in socks:
            s.close()
        time.sleep(0.3)
        ok = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
        ok.sendall(b"GET /snapshot.jpg HTTP/1.0\r\n\r\n")
        assert _status(ok, time.monotonic() + 3) == "HTTP/1.0 200 OK"  # still serving
        ok.close()


def test_200_concurrent_viewers_are_served_or_refused_cleanly() -> None:
    with MjpegServer(port=0) as srv:
        srv.play([np.zeros((16, 16, 3), np.uint8)], fps=20)
        socks = []
        for _ in range(200):  # all connect before anyone is answered: the listen backlog holds them
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=2)
            s.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
            socks.append(s)
        deadline = time.monotonic() + 10.0
        answers = [_status(s, deadline) for s in socks]
        for s in socks:
            s.close()
    assert answers.count("HTTP/1.0 200 OK") == MAX_CLIENTS
    assert all(a == "HTTP/1.0 200 OK" or a.startswith("HTTP/1.0 503 ") for a in answers), set(answers)
