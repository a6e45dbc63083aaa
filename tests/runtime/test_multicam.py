"""Several cameras: one batched inference per tick, per-camera stats, cameras that fail or die."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from testkit.video import count_frames

from edgeseg.cli import main
from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.mjpeg import MjpegServer, free_port
from edgeseg.runtime.multicam import camera_names, per_camera_path, run_cameras
from edgeseg.runtime.sinks import Sink

pytestmark = pytest.mark.timing  # wall-clock checks


class ListSink(Sink):
    name = "list"

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.stamps: list[float] = []
        self.closed = False

    def write(self, image, frame=None) -> None:
        self.images.append(image.copy())
        self.stamps.append(frame.timestamp)

    def close(self) -> None:
        self.closed = True


class FakeResultSink:
    """The ResultSink protocol: records what it is given."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []
        self.closed = 0

    def write_result(self, camera, index, capture_time, frame_bgr, class_map) -> None:
        self.rows.append((camera, index, capture_time, frame_bgr.copy(), class_map.copy()))

    def close(self) -> None:
        self.closed += 1

    def describe(self) -> dict:
        return {"sink": "fake-results", "frames": len(self.rows)}


class BatchProbe:
    """A real Segmenter that records the batch size of every inference."""

    def __init__(self, seg: Segmenter) -> None:
        self.seg, self.meta, self.fixed_batch, self.path = seg, seg.meta, seg.fixed_batch, seg.path
        self.sizes: list[int] = []

    def new_preprocessor(self):
        return self.seg.new_preprocessor()

    def infer_prepared(self, batch):
        self.sizes.append(len(batch))
        return self.seg.infer_prepared(batch)

    def finish(self, *args, **kw):
        return self.seg.finish(*args, **kw)


def _server(level: int, fps: float = 30.0, port: int = 0) -> MjpegServer:
    srv = MjpegServer(port=port)
    srv.play([np.full((48, 64, 3), level, np.uint8), np.full((48, 64, 3), 255 - level, np.uint8)], fps=fps)
    return srv


OPEN = {"timeout": 2.0, "reconnect": 0}


def test_two_cameras_run_one_batched_inference_per_tick(make_tiny_onnx) -> None:
    seg = Segmenter(make_tiny_onnx(batch=None).path)  # dynamic batch
    assert seg.batch_capacity is None and seg.info["batch"] == "dynamic"
    probe, results = BatchProbe(seg), FakeResultSink()
    sinks = [[ListSink()], [ListSink()]]
    with _server(40) as a, _server(200) as b:
        stats = run_cameras(probe, [a.url, b.url], sinks, result_sinks=[results], max_frames=8, open_kw=OPEN)
    d = stats.to_dict()
    assert [c["frames"] for c in d["cameras"]] == [8, 8] and d["aggregate"]["frames"] == 16
    assert d["aggregate"]["stopped_by"] == "max_frames" and d["aggregate"]["batched"] is True
    assert max(probe.sizes) == 2 and len(probe.sizes) < 16  # both cameras in one inference, most ticks
    assert all(c["capture_to_render_ms"]["p99"] > 0 for c in d["cameras"])
    assert [c["name"] for c in d["cameras"]] == ["cam0", "cam1"]
    # class ids: every camera's frames, in order, equal to the model's own class maps, wall-clock stamped
    for cam in ("cam0", "cam1"):
        rows = [r for r in results.rows if r[0] == cam]
        assert len(rows) == 8 and [r[1] for r in rows] == sorted(r[1] for r in rows)
        for _, _, t, frame, ids in rows:
            assert abs(t - time.time()) < 60
            assert np.array_equal(ids, seg(frame).class_map)
    assert results.closed >= 1 and all(s[0].closed for s in sinks)


def test_a_batch_1_model_runs_the_cameras_in_turn_and_says_so_once(tiny_onnx: Path) -> None:
    events: list[str] = []
    probe = BatchProbe(Segmenter(tiny_onnx))
    assert probe.seg.batch_capacity == 1 == probe.seg.info["batch"]
    with _server(40) as a, _server(200) as b:
        stats = run_cameras(probe, [a.url, b.url], max_frames=5, open_kw=OPEN, on_event=events.append)
    assert [c.stats.frames for c in stats.cameras] == [5, 5] and set(probe.sizes) == {1}
    assert len([e for e in events if "run in turn" in e]) == 1, events
    assert stats.to_dict()["aggregate"]["batched"] is False


def test_a_camera_that_never_opens_does_not_stop_the_others(tiny_onnx: Path) -> None:
    events: list[str] = []
    dead = f"http://127.0.0.1:{free_port()}/stream"
    with _server(40) as a:
        stats = run_cameras(Segmenter(tiny_onnx), [a.url, dead], max_frames=6, open_kw=OPEN, on_event=events.append)
    assert stats.cameras[0].stats.frames == 6 and stats.cameras[1].stats.frames == 0
    assert any(e.startswith("camera cam1: cannot open") and "reconnecting (attempt 2" in e for e in events), events
    assert stats.cameras[1].state in ("opening", "lost")


def test_a_camera_that_dies_comes_back_and_its_recording_shows_the_gap(tiny_onnx: Path) -> None:
    events: list[str] = []
    port = free_port()
    first, steady = _server(40, port=port), _server(200)
    sinks = [[ListSink()], [ListSink()]]
    stop = threading.Event()
    restarted: list[MjpegServer] = []

    def outage() -> None:
        time.sleep(0.8)
        first.stop()  # camera 0 dies ...
        time.sleep(1.2)  # reopened with backoff: attempts 0.5 s and 1.5 s after the loss
        restarted.append(_server(40, port=port))  # ... and comes back on the same address
        time.sleep(1.5)
        stop.set()

    t = threading.Thread(target=outage)
    t.start()
    try:
        stats = run_cameras(Segmenter(tiny_onnx), [first.url, steady.url], sinks, stop=stop, hud=True,
                            open_kw=OPEN, on_event=events.append)
    finally:
        t.join()
        steady.stop()
        for s in restarted:
            s.stop()
    cam0, cam1 = stats.cameras
    assert cam0.stats.reconnects == 1 and cam0.state == "live", events
    assert 0.8 < cam0.stats.outage_s_total < 3.5
    assert any("stream lost, reconnecting (attempt 1)" in e for e in events)
    assert any(e.startswith("camera cam0 is back after") for e in events)
    # the recording shows the gap: dark NO SIGNAL cards with red text between the live frames
    cards = [im for im in sinks[0][0].images if (im == 32).all(axis=2).mean() > 0.5 and (im[:, :, 2] > 200).any()]
    assert len(cards) >= 3
    # the other camera went on during the outage
    assert cam1.stats.frames > cam0.stats.frames and cam1.stats.reconnects == 0
    assert stats.to_dict()["cameras"][0]["outage_s"] > 0.8


def test_names_and_per_camera_paths() -> None:
    assert camera_names(["a", "b"]) == ["cam0", "cam1"]
    assert camera_names(["a", "b"], ["front", None]) == ["front", "cam1"]
    with pytest.raises(UsageError, match="must start with a letter"):
        camera_names(["a"], ["1st"])
    with pytest.raises(UsageError, match="must differ"):
        camera_names(["a", "b"], ["x", "x"])
    assert per_camera_path("cam{i}.mp4", 1, "rear", 2) == "cam1.mp4"
    assert per_camera_path("{name}.mp4", 1, "rear", 2) == "rear.mp4"
    assert per_camera_path("out.mp4", 0, "cam0", 1) == "out.mp4"
    with pytest.raises(UsageError, match=r"put \{i\} or \{name\} in it"):
        per_camera_path("out.mp4", 0, "cam0", 2)


def test_demo_with_two_sources_saves_one_video_each_and_reports_per_camera(tiny_onnx: Path, tmp_path: Path,
                                                                          capsys) -> None:
    src = "synthetic://?size=48x64&frames=6"
    rc = main(["demo", str(tiny_onnx), "--source", src, "--source", f"rear={src}", "--save",
               str(tmp_path / "{name}.mp4"), "--json", str(tmp_path / "r.json")])
    assert rc == 0, capsys.readouterr().err
    d = json.loads((tmp_path / "r.json").read_text())
    assert [c["name"] for c in d["cameras"]] == ["cam0", "rear"] and d["aggregate"]["stopped_by"] == "eos"
    assert [c["frames"] for c in d["cameras"]] == [6, 6]
    for name in ("cam0", "rear"):
        assert count_frames(tmp_path / f"{name}.mp4")[0] >= 6


def test_demo_with_two_sources_and_one_save_path_is_one_clear_error(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    src = "synthetic://?size=48x64&frames=6"
    assert main(["demo", str(tiny_onnx), "--source", src, "--source", src, "--save", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "put {i} or {name} in it" in err
    assert not list(tmp_path.iterdir())


def test_cameras_of_different_sizes_share_one_mosaic(tiny_onnx: Path) -> None:
    mosaic = ListSink()
    stats = run_cameras(Segmenter(tiny_onnx), ["synthetic://?size=48x64&frames=5&fps=10",
                                               "synthetic://?size=90x120&frames=5&fps=25",
                                               "synthetic://?size=60x60&frames=5"], mosaic_sinks=[mosaic])
    assert [c.stats.frames for c in stats.cameras] == [5, 5, 5] and stats.stopped_by == "eos"
    assert mosaic.images and all(im.shape == (96, 128, 3) for im in mosaic.images)  # 2x2 cells of the first size
    # each camera is charged the CPU time of its own frames' pre-processing, as a single camera is
    assert all(c.stats.cpu_ms_per_frame()["preprocess"] > 0 for c in stats.cameras)


@pytest.mark.parametrize("bad, words", [("missing.mp4", "source missing.mp4 does not exist"),
                                        ("synthetic://?size=bad", "is not a size")])
def test_a_missing_file_among_cameras_is_one_clear_error(tiny_onnx: Path, tmp_path: Path, capsys, bad, words) -> None:
    out = tmp_path / "cam{i}.mp4"
    rc = main(["demo", str(tiny_onnx), "--source", "synthetic://?size=48x64&frames=50&realtime=1", "--source", bad,
               "--save", str(out)])
    err = capsys.readouterr().err
    assert rc in (1, 2) and [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        next(ln for ln in err.splitlines() if ln.startswith("error:"))] and words in err
    assert "Traceback" not in err


def test_when_no_camera_opens_the_run_ends_with_one_error(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    dead = [f"http://127.0.0.1:{free_port()}/stream" for _ in range(2)]
    rc = main(["demo", str(tiny_onnx), "--source", dead[0], "--source", dead[1], "--json", str(tmp_path / "r.json"),
               "--timeout", "1"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 1 and [ln for ln in err if ln.startswith("error:")] == [
        "error: none of the 2 cameras could be opened; check the --source values (each camera's error is above)"]
    assert sum("cannot open" in ln for ln in err) == 2


def test_realtime_clips_that_end_end_the_run_instead_of_reopening(tiny_onnx: Path, tmp_path: Path) -> None:
    # A finite clip that plays in real time is live but ends with EOS: the end of it, not a lost stream.
    cmd = [sys.executable, "-m", "edgeseg", "demo", str(tiny_onnx), "--source",
           "synthetic://?realtime=1&fps=50&frames=10&size=48x64", "--source",
           "rear=synthetic://?realtime=1&fps=50&frames=10&size=48x64&seed=2", "--json", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-1500:]
    cams = json.loads((tmp_path / "r.json").read_text())["cameras"]
    # Live: the newest frame wins, so a busy machine may skip a frame; never more than the clip holds.
    assert all(0 < c["frames"] <= 10 and c["reconnects"] == 0 for c in cams), cams


def test_mosaic_tiles_carry_their_camera_names() -> None:
    from edgeseg.runtime.render import Mosaic

    grey = np.full((120, 160, 3), 128, np.uint8)
    named = Mosaic(2, ["front", "rear"])([grey, grey]).copy()
    plain = Mosaic(2)([grey, grey])
    assert named.shape == plain.shape == (120, 320, 3)
    for x in (0, 160):  # each cell's top-left corner is labelled; the rest of the picture is untouched
        assert (named[:20, x:x + 40] != 128).any() and (plain[:20, x:x + 40] == 128).all()
    assert (named[60:, :] == 128).all()
