"""Sinks: atomic, playable video files; image folders; window on headless; bad specs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime.errors import SourceError, UsageError
from edgeseg.runtime.sinks import (
    ImageFileSink,
    ImageFolderSink,
    MjpegSink,
    VideoSink,
    WindowSink,
    gui_problem,
    open_sink,
)
from edgeseg.runtime.sources import Frame, FrameStatus


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.isOpened(), f"{path} is not a playable video"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_video_sink_writes_under_temp_name_until_closed(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.mp4"
    sink = open_sink(out, fps=10)
    assert isinstance(sink, VideoSink)
    for i in range(7):
        sink.write(np.full((40, 56, 3), 30 * i, np.uint8))
    assert not out.exists()  # still being written: only a hidden temp file
    hidden = [p for p in out.parent.iterdir() if p.name.startswith(".out.")]
    assert len(hidden) == 1
    sink.close()
    sink.close()  # twice is fine
    assert out.exists() and not any(p.name.startswith(".out.") for p in out.parent.iterdir())
    assert count_frames(out) == 7
    assert sink.describe()["frames"] == 7 and sink.fourcc == "mp4v"


def test_paced_video_places_frames_by_capture_time(tmp_path: Path) -> None:
    """A live demo renders at the model's rate, not the file's: the recording must still play in real time."""
    out = tmp_path / "live.mp4"
    sink = open_sink(out, fps=10, pace=True)
    levels = []
    # capture times (s): on time, on time, a late one (it also fills the video frame before it), one in
    # the slot just written (left out), on time, then after a 60 s stall (a jump, not 600 copies)
    for i, t in enumerate((100.0, 100.1, 100.33, 100.34, 100.4, 160.4)):
        image = np.full((40, 56, 3), 40 * i, np.uint8)
        sink.write(image, Frame(FrameStatus.OK, image, t, i))
        levels.append(40 * i)
    sink.close()
    assert sink.describe() | {"path": ""} == {"sink": "video", "path": "", "frames": 7, "fourcc": "mp4v",
                                                "fps": 10.0, "paced": True, "repeats": 2, "skipped": 1}
    cap = cv2.VideoCapture(str(out), cv2.CAP_FFMPEG)
    shown = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        shown.append(int(img.mean().round(-1)))
    cap.release()
    assert shown == [0, 40, 80, 80, 160, 200, 200]


def test_video_sink_resizes_odd_frames_and_avi(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "o.avi", fps=5)
    sink.write(np.zeros((32, 48, 3), np.uint8))
    sink.write(np.zeros((64, 96, 3), np.uint8))  # another size: scaled to the first
    sink.close()
    assert count_frames(tmp_path / "o.avi") == 2


def test_video_sink_converts_gray_and_bgra_and_refuses_the_rest(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "g.avi", fps=5)
    sink.write(np.zeros((32, 48, 3), np.uint8))
    sink.write(np.full((32, 48), 200, np.uint8))  # gray: OpenCV's writer alone would skip it silently
    sink.write(np.zeros((32, 48, 4), np.uint8))  # BGRA
    for bad in (np.zeros((32, 48, 3), np.float32), np.zeros((32, 48, 2), np.uint8)):
        with pytest.raises(UsageError, match=r"video .*g\.avi takes uint8 BGR"):
            sink.write(bad)
    sink.close()
    assert sink.describe()["frames"] == 3 and count_frames(tmp_path / "g.avi") == 3  # the count is what is in the file


def test_image_sink_refuses_an_unencodable_image(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write x.png: images must be BGR"):
        ImageFileSink(tmp_path / "x.png").write(np.zeros((8, 8, 2), np.uint8))
    assert not (tmp_path / "x.png").exists()


def test_video_sink_without_frames_leaves_nothing(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "none.mp4")
    sink.close()
    assert list(tmp_path.iterdir()) == []


def test_video_gets_the_usual_file_mode(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    sink = open_sink(tmp_path / "v.mp4", fps=5)
    sink.write(np.zeros((16, 16, 3), np.uint8))
    sink.close()
    open_sink(tmp_path / "i.png").write(np.zeros((16, 16, 3), np.uint8))
    mode = stat.S_IMODE((tmp_path / "v.mp4").stat().st_mode)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600
    assert mode == stat.S_IMODE((tmp_path / "i.png").stat().st_mode)  # same as the images beside it


@pytest.mark.parametrize("suffix, hw", [(".mp4", (1, 1)), (".mp4", (1, 40)), (".mp4", (40, 1)),
                                        (".avi", (4, 4)), (".avi", (5, 4)), (".mkv", (7, 100))])
def test_video_sink_names_a_frame_size_too_small_to_encode(tmp_path: Path, suffix: str, hw: tuple[int, int]) -> None:
    # A 4x4 or 4x5 frame reaching OpenCV's MJPG writer kills the process, so the sink refuses it first.
    sink = open_sink(tmp_path / f"tiny{suffix}")
    with pytest.raises(SourceError) as e:
        sink.write(np.zeros((*hw, 3), np.uint8))
    msg = str(e.value)
    assert f"cannot encode {hw[1]}x{hw[0]} frames as {suffix}" in msg and "--save out/" in msg and "\n" not in msg
    assert "no encoder" not in msg
    sink.close()
    assert list(tmp_path.iterdir()) == []  # the hidden temp file is gone too
    sink = open_sink(tmp_path / "small.mp4")  # 8x8 is fine
    sink.write(np.zeros((8, 8, 3), np.uint8))
    sink.close()
    assert count_frames(tmp_path / "small.mp4") == 1


def test_image_folder_keeps_names_or_numbers(tmp_path: Path) -> None:
    sink = open_sink(str(tmp_path / "imgs") + "/")
    assert isinstance(sink, ImageFolderSink)
    img = np.full((10, 12, 3), 77, np.uint8)
    sink.write(img, Frame(FrameStatus.OK, img, index=0, name="a.png"))
    sink.write(img, Frame(FrameStatus.OK, img, index=5))
    sink.write(img)
    sink.close()
    names = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    assert names == ["000002.jpg", "000005.jpg", "a.png"]  # by frame index, else by count written
    assert np.array_equal(cv2.imread(str(tmp_path / "imgs" / "a.png")), img)  # lossless where asked


def test_single_image_sink_refuses_a_second_frame(tmp_path: Path) -> None:
    sink = open_sink(tmp_path / "one.png")
    assert isinstance(sink, ImageFileSink)
    sink.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UsageError, match="single image"):
        sink.write(np.zeros((8, 8, 3), np.uint8))
    assert (tmp_path / "one.png").is_file()


@pytest.mark.skipif(gui_problem() is None, reason="this machine can open windows")
def test_window_on_headless_is_one_clear_line() -> None:
    with pytest.raises(SourceError) as e:
        open_sink("window")
    assert "cannot open a window" in str(e.value) and "--serve" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SourceError):
        WindowSink()


def test_mjpeg_sink_serves_on_loopback() -> None:
    sink = open_sink("http://127.0.0.1:0")
    assert isinstance(sink, MjpegSink) and sink.url.startswith("http://127.0.0.1:")
    sink.write(np.zeros((8, 8, 3), np.uint8))
    sink.close()


@pytest.mark.parametrize("spec, words", [
    ("", "empty output"), ("ftp://x/y", "unsupported output"), ("out.xyz", "unknown suffix"),
    ("out\n.mp4", "control characters"),
])
def test_bad_sink_specs(spec: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        open_sink(spec)


def test_video_sink_on_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").mkdir()
    with pytest.raises(UsageError, match="existing folder"):
        VideoSink(tmp_path / "x.mp4")
