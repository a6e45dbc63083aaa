"""Class-id PNG folders: lossless round trip, sidecar and classes.json, refusals."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import EdgesegError, SourceError, UsageError
from edgeseg.runtime.id_sink import ClassIdFolderSink
from edgeseg.runtime.result_sinks import ResultSink, open_result_sink

T0 = 1_764_979_200.0  # a capture time (seconds since the Unix epoch)


def png_header(path: Path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from the PNG's IHDR chunk, read without a decoder."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR", f"{path} is not a PNG"
    w, h, depth, colour = struct.unpack(">IIBB", raw[16:26])
    return w, h, depth, colour


def table(n: int = 4) -> dict:
    return {"classes": [f"c{i}" for i in range(n)], "palette": [[i, 255 - i, (7 * i) % 256] for i in range(n)],
            "ignore_index": 255}


def test_class_maps_of_a_model_read_back_bit_for_bit(tmp_path: Path, tiny_onnx: Path) -> None:
    seg = Segmenter(tiny_onnx, threads=1)
    meta = seg.meta
    rng = np.random.default_rng(0)
    out = tmp_path / "ids"
    sink = open_result_sink(out, classes=meta.classes, palette=meta.palette, ignore_index=meta.ignore_index)
    assert isinstance(sink, ClassIdFolderSink) and isinstance(sink, ResultSink)
    expected = {}
    for i in range(3):
        for cam, (h, w) in (("cam0", (45, 70)), ("front_left", (33, 20))):
            frame = rng.integers(0, 256, (h, w, 3), np.uint8)  # (H, W, 3) uint8
            class_map = seg(frame).class_map  # (H, W) uint8
            assert len(np.unique(class_map)) > 1  # a real map, not a constant
            sink.write_result(cam, 10 + i, T0 + i / 25, frame, class_map)
            expected[f"{cam}/{10 + i:06d}.png"] = class_map
    sink.close()
    sink.close()  # idempotent
    for rel, class_map in expected.items():
        path = out / rel
        w, h, depth, colour = png_header(path)
        assert (w, h, depth, colour) == (class_map.shape[1], class_map.shape[0], 8, 0)  # 8-bit greyscale
        back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint8 and back.shape == class_map.shape
        assert np.array_equal(back, class_map)
    assert sink.describe()["frames"] == 6 and sink.describe()["cameras"] == {"cam0": 3, "front_left": 3}


def test_every_8_bit_id_survives(tmp_path: Path) -> None:
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)  # (16, 16) every value once
    ids = np.ascontiguousarray(np.rot90(ids))  # not a ramp a filter could hide
    with ClassIdFolderSink(tmp_path / "ids", **table(255)) as sink:  # 255 = ignore (void) value
        sink.write_result("cam0", 0, T0, np.zeros((16, 16, 3), np.uint8), ids)
    assert np.array_equal(cv2.imread(str(tmp_path / "ids/cam0/000000.png"), cv2.IMREAD_UNCHANGED), ids)


def test_sidecar_and_classes_json(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    t = table(3)
    with ClassIdFolderSink(out, t["classes"], t["palette"], 11) as sink:
        for i, cam in enumerate(["cam0", "cam1", "cam0"]):
            sink.write_result(cam, i, T0 + i * 0.04, np.zeros((5, 6, 3), np.uint8), np.full((5, 6), i % 3, np.uint8))
    classes = json.loads((out / "classes.json").read_text())
    assert classes["classes"] == ["c0", "c1", "c2"]
    assert classes["palette"] == t["palette"] and classes["palette_order"] == "RGB"
    assert classes["ignore_index"] == 11
    lines = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    assert lines == [
        {"camera": "cam0", "index": 0, "file": "cam0/000000.png", "capture_time": T0, "width": 6, "height": 5},
        {"camera": "cam1", "index": 1, "file": "cam1/000001.png", "capture_time": T0 + 0.04, "width": 6, "height": 5},
        {"camera": "cam0", "index": 2, "file": "cam0/000002.png", "capture_time": T0 + 0.08, "width": 6, "height": 5},
    ]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == [
        "000000.png", "000001.png", "000002.png", "classes.json", "frames.jsonl"]  # no temporary files left


def test_non_empty_folder_is_refused_unless_exist_ok_and_files_are_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    frame, ids = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8)
    with ClassIdFolderSink(out, **table()) as sink:
        sink.write_result("cam0", 0, T0, frame, ids)
    before = (out / "cam0/000000.png").read_bytes()
    with pytest.raises(UsageError, match="not empty.*--exist-ok"):
        ClassIdFolderSink(out, **table())
    with ClassIdFolderSink(out, **table(), exist_ok=True) as sink:
        sink.write_result("cam0", 1, T0 + 1, frame, ids)  # a new file: added
        with pytest.raises(SourceError, match="000000.png already exists"):
            sink.write_result("cam0", 0, T0 + 2, frame, np.zeros((4, 4), np.uint8))
    assert (out / "cam0/000000.png").read_bytes() == before
    assert [json.loads(x)["index"] for x in (out / "frames.jsonl").read_text().splitlines()] == [0, 1]
    with pytest.raises(UsageError, match="other classes"):
        ClassIdFolderSink(out, **table(5), exist_ok=True)


def test_a_folder_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(EdgesegError, match="file.txt is a file") as e:
        ClassIdFolderSink(blocker / "ids", **table())
    assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="is a file; give a folder"):
        ClassIdFolderSink(blocker, **table())


@pytest.mark.parametrize("camera, frame, ids, match", [
    ("cam0", np.zeros((4, 5, 3), np.uint8), np.zeros((4, 4), np.uint8), r"class map must be uint8 \(4, 5\)"),
    ("cam0", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.int64), "class map must be uint8"),
    ("cam0", np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), r"frame must be a uint8 BGR \(H, W, 3\)"),
    ("cam0", np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 7, np.uint8), "holds id 7, but the model has 4"),
    ("../up", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), "cannot name a ROS topic or file"),
])
def test_bad_results_are_refused(tmp_path: Path, camera, frame, ids, match) -> None:
    with ClassIdFolderSink(tmp_path / "ids", **table()) as sink:
        with pytest.raises(UsageError, match=match):
            sink.write_result(camera, 0, T0, frame, ids)
        sink.write_result("cam0", 0, T0, np.zeros((4, 4, 3), np.uint8), np.full((4, 4), 255, np.uint8))  # ignore id ok
    assert not (tmp_path / "up").exists()


def test_bad_class_tables_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="one \\[R, G, B\\] colour"):
        ClassIdFolderSink(tmp_path / "a", ["x", "y"], [[0, 0, 0]], 255)
    with pytest.raises(UsageError, match="ignore index must be an integer 0-255"):
        ClassIdFolderSink(tmp_path / "b", ["x"], [[0, 0, 0]], 300)
    with pytest.raises(UsageError, match="1 to 256 classes"):
        ClassIdFolderSink(tmp_path / "c", [f"c{i}" for i in range(257)], [[0, 0, 0]] * 257, 255)


def test_result_sinks_import_neither_torch_nor_the_ros_extra() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeseg.runtime import bag_sink, id_sink, result_sinks, ros2_messages\n"
            "print(sorted(m for m in ('torch', 'mcap', 'rosbags', 'rclpy') if sys.modules.get(m)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_a_write_that_fails_midway_is_one_line_and_earlier_files_stay(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    out.mkdir()
    (out / "cam1").write_text("not a folder")  # cam1's PNGs cannot be created
    (out / "frames.jsonl").write_text('{"camera": "cam0", "index": 7, "fi')  # a line a killed run cut short
    frame, ids = np.zeros((4, 4, 3), np.uint8), np.ones((4, 4), np.uint8)
    with ClassIdFolderSink(out, **table(), exist_ok=True) as sink:
        sink.write_result("cam0", 0, T0, frame, ids)
        with pytest.raises(SourceError, match="cannot write .*cam1/000000.png") as e:
            sink.write_result("cam1", 0, T0, frame, ids)
        assert "\n" not in str(e.value)
    lines = (out / "frames.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["file"] == "cam0/000000.png"  # on a line of its own
    assert np.array_equal(cv2.imread(str(out / "cam0/000000.png"), cv2.IMREAD_UNCHANGED), ids)
