"""edgeseg demo: live loopback stream in, recorded video and MJPEG out, clean failures."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.video import count_frames, make_video, run_until_writing_then_signal

from edgeseg.cli import main
from edgeseg.runtime.mjpeg import MjpegServer
from edgeseg.runtime.sinks import gui_problem

pytestmark = pytest.mark.timing  # wall-clock checks: 'make test' runs them apart from the parallel rest


def stream_frames(n: int = 6, hw: tuple[int, int] = (72, 96)) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]  # (h, w, 3) each


def test_demo_on_loopback_stream_records_and_serves(tiny_onnx: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "demo.mp4", tmp_path / "demo.json"
    with MjpegServer(port=0) as cam:
        cam.play(stream_frames(), fps=60)
        snapshot: list[bytes] = []

        def grab_snapshot() -> None:
            # The demo serves on a port we pick free just before; poll its snapshot while it runs.
            deadline = time.perf_counter() + 10
            while time.perf_counter() < deadline and not snapshot:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", serve_port, timeout=1)
                    conn.request("GET", "/snapshot.jpg")
                    resp = conn.getresponse()
                    if resp.status == 200:
                        snapshot.append(resp.read())
                except OSError:
                    time.sleep(0.05)

        from edgeseg.runtime.mjpeg import free_port

        serve_port = free_port()
        t = threading.Thread(target=grab_snapshot, daemon=True)
        t.start()
        rc = main(["demo", str(tiny_onnx), "--source", cam.url, "--save", str(out), "--json", str(report),
                   "--serve", f"127.0.0.1:{serve_port}", "--max-frames", "40", "--ignore-class", "class1"])
        t.join(timeout=5)
    assert rc == 0
    d = json.loads(report.read_text())
    assert d["frames"] == 40 and d["stopped_by"] == "max_frames" and d["source"]["live"] is True
    assert d["capture_to_render_ms"]["p99"] is not None
    video = next(x for x in d["sinks"] if x["sink"] == "video")
    # paced by capture time: every rendered frame is in the file once, plus the copies that keep real
    # time, less those that fell on a video frame already written
    assert video["paced"] and count_frames(out) == (video["frames"], 30.0)
    assert video["frames"] - video["repeats"] + video["skipped"] == 40
    assert snapshot and cv2.imdecode(np.frombuffer(snapshot[0], np.uint8), cv2.IMREAD_COLOR).shape == (72, 96, 3)


def test_stream_killed_mid_run_exits_1_with_clear_error_and_valid_video(tiny_onnx: Path, tmp_path: Path,
                                                                        capsys) -> None:
    out, report = tmp_path / "live.mp4", tmp_path / "live.json"
    cam = MjpegServer(port=0)
    cam.play(stream_frames(), fps=30)
    killer = threading.Timer(1.0, cam.stop)
    killer.start()
    try:
        rc = main(["demo", str(tiny_onnx), "--source", cam.url, "--save", str(out), "--json", str(report),
                   "--timeout", "1", "--reconnect", "1"])
    finally:
        killer.cancel()
        cam.stop()
    assert rc == 1
    err = capsys.readouterr().err
    error_lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(error_lines) == 1 and "did not come back after 1 reconnect attempts" in error_lines[0]
    assert "Traceback" not in err
    d = json.loads(report.read_text())
    assert d["stopped_by"] == "error" and d["frames"] > 0
    video = next(x for x in d["sinks"] if x["sink"] == "video")
    # every frame written, and the NO SIGNAL cards of the outage (the recording shows the gap)
    assert count_frames(out)[0] == video["frames"] == (d["frames"] + d["no_signal_cards"] + video["repeats"]
                                                       - video["skipped"])
    assert d["no_signal_cards"] >= 1 and d["outage_s"] > 0
    assert "lost, reconnecting (attempt 1/1)" in err  # said at once, before the error line


@pytest.mark.skipif(gui_problem() is None, reason="this machine can open windows")
def test_show_on_headless_says_so_once_and_serves_the_web_view(tiny_onnx: Path, capsys) -> None:
    assert main(["demo", str(tiny_onnx), "--source", "synthetic://?frames=2", "--show",
                 "--serve", "127.0.0.1:0"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("edgeseg: cannot open a window") and err[0].endswith("showing the web view instead")
    assert err[1].startswith("serving the demo at http://127.0.0.1:")


@pytest.mark.parametrize("extra, words", [
    ([], "nowhere to put its output"),
    (["--json", "x.json", "--ignore-class", "clas1"], "unknown class 'clas1'; did you mean 'class1'"),
    (["--json", "x.json", "--duration", "0"], "--duration 0.0 must be positive"),
    (["--serve", "127.0.0.1:notaport"], "no valid port"),
])
def test_bad_demo_arguments(tiny_onnx: Path, tmp_path: Path, capsys, extra: list[str], words: str) -> None:
    extra = [str(tmp_path / a) if a.endswith(".json") else a for a in extra]
    assert main(["demo", str(tiny_onnx), "--source", "synthetic://?size=32x32&frames=2", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1


def test_demo_save_never_overwrites_its_input_video(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    clip = tmp_path / "in.mp4"
    make_video(clip, 5)
    before = clip.read_bytes()
    assert main(["demo", str(tiny_onnx), "--source", str(clip), "--save", str(clip), "--no-hud"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--save would overwrite the input" in err and len(err.splitlines()) == 1
    assert clip.read_bytes() == before


def test_sigterm_on_realtime_synthetic_finalises_the_recording(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "rec.mp4"
    cmd = [sys.executable, "-m", "edgeseg", "demo", str(tiny_onnx), "--source",
           "synthetic://?size=48x64&fps=30&frames=0&realtime=1", "--save", str(out)]
    res = run_until_writing_then_signal(cmd, out, signal.SIGINT)
    assert res.returncode == 128 + signal.SIGINT, res.stderr
    n, fps = count_frames(out)
    assert n > 3 and fps == pytest.approx(30.0)
