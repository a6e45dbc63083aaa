"""--save-ids / --save out.mcap / --bag-images reach the result sinks: every frame, in order per camera."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.runtime import Segmenter
from edgeseg.runtime.pipeline import run_pipeline
from edgeseg.runtime.sources import open_source


class FakeResultSink:
    """The ResultSink protocol; remembers what it got and how it was opened."""

    def __init__(self, spec: str, **kw) -> None:
        self.spec, self.kw = spec, kw
        self.rows: list[tuple] = []
        self.closed = 0

    def write_result(self, camera, index, capture_time, frame_bgr, class_map) -> None:
        assert frame_bgr.dtype == np.uint8 and class_map.shape == frame_bgr.shape[:2]
        self.rows.append((camera, index, capture_time, frame_bgr.copy(), class_map.copy()))

    def close(self) -> None:
        self.closed += 1

    def describe(self) -> dict:
        return {"sink": "fake", "path": self.spec, "frames": len(self.rows)}


@pytest.fixture
def opened(monkeypatch) -> list[FakeResultSink]:
    """Replace the result-sink factory (whatever this install has) with one that makes fakes."""
    made: list[FakeResultSink] = []

    def open_result_sink(spec, **kw):
        made.append(FakeResultSink(str(spec), **kw))
        return made[-1]

    monkeypatch.setitem(sys.modules, "edgeseg.runtime.result_sinks",
                        types.SimpleNamespace(open_result_sink=open_result_sink))
    return made


def _frames(folder: Path, n: int) -> list[np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(n)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:02d}.png"), f)
    return frames


def test_predict_save_ids_gets_every_frame_in_order(tiny_onnx: Path, tmp_path: Path, opened) -> None:
    frames = _frames(tmp_path / "in", 7)
    rc = main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out") + "/",
               "--save-ids", str(tmp_path / "ids"), "--workers", "2", "--threads", "1"])
    assert rc == 0
    (sink,) = opened
    assert sink.spec == str(tmp_path / "ids") and sink.kw["images"] is False and sink.kw["exist_ok"] is False
    assert sink.kw["classes"] and sink.kw["ignore_index"] is not None and sink.closed >= 1
    seg = Segmenter(tiny_onnx)
    assert [r[0] for r in sink.rows] == ["cam0"] * 7 and [r[1] for r in sink.rows] == list(range(7))
    for (_, _, _, frame, ids), want in zip(sink.rows, frames, strict=True):
        assert np.array_equal(frame, want) and np.array_equal(ids, seg(want).class_map)
    assert len(list((tmp_path / "out").iterdir())) == 7  # the pictures too


def test_predict_save_mcap_is_a_bag_not_a_video(tiny_onnx: Path, tmp_path: Path, opened) -> None:
    _frames(tmp_path / "in", 3)
    bag = tmp_path / "run.mcap"
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(bag),
                 "--bag-images", "--exist-ok"]) == 0
    (sink,) = opened
    assert sink.spec == str(bag) and sink.kw["images"] is True and sink.kw["exist_ok"] is True
    assert len(sink.rows) == 3 and not (Path("runs") / "predict" / "in").exists()


@pytest.mark.parametrize("extra, words", [
    (["--bag-images"], "--bag-images records frames into a ROS 2 bag; add --save out.mcap"),
    (["--save-ids", "x.mcap"], "--save-ids takes a folder"),
])
def test_result_option_mistakes_are_one_line(tiny_onnx: Path, tmp_path: Path, opened, capsys, extra, words) -> None:
    _frames(tmp_path / "in", 1)
    assert main(["predict", str(tiny_onnx), "--source", str(tmp_path / "in"), "--save", str(tmp_path / "o") + "/",
                 *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_demo_save_ids_with_two_cameras_names_each(tiny_onnx: Path, tmp_path: Path, opened) -> None:
    src = "synthetic://?size=48x64&frames=4"
    assert main(["demo", str(tiny_onnx), "--source", f"front={src}", "--source", f"rear={src}",
                 "--save-ids", str(tmp_path / "ids")]) == 0
    (sink,) = opened
    for cam in ("front", "rear"):
        idx = [r[1] for r in sink.rows if r[0] == cam]
        assert idx == sorted(idx) and len(idx) == 4


def test_run_pipeline_feeds_result_sinks_under_the_camera_name(tiny_onnx: Path, tmp_path: Path) -> None:
    _frames(tmp_path / "in", 4)
    sink = FakeResultSink("x")
    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(Segmenter(tiny_onnx), src, [], result_sinks=[sink], camera="left")
    assert [r[0] for r in sink.rows] == ["left"] * 4 and sink.closed == 1
    assert stats.sinks == [sink.describe()]
