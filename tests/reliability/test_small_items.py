"""Smaller reliability fixes: earlier numbered frames, truncated clips, libjpeg's stderr lines."""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest

from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.jpeg import decode_jpeg
from edgeseg.runtime.native_stderr import quiet_libjpeg
from edgeseg.runtime.sinks import ImageFolderSink
from edgeseg.runtime.sources import Frame, FrameStatus, open_source


def test_numbered_frames_never_replace_an_earlier_run(tmp_path) -> None:
    (tmp_path / "000000.jpg").write_bytes(b"earlier")
    sink = ImageFolderSink(tmp_path)
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(UsageError, match="already holds numbered frames"):
        sink.write(img, Frame(FrameStatus.OK, img, 0.0, 0))
    assert (tmp_path / "000000.jpg").read_bytes() == b"earlier"
    ImageFolderSink(tmp_path, exist_ok=True).write(img, Frame(FrameStatus.OK, img, 0.0, 0))
    assert (tmp_path / "000000.jpg").read_bytes() != b"earlier"
    named = ImageFolderSink(tmp_path / "named")  # kept input names are predict's own outputs: rewritten
    named.write(img, Frame(FrameStatus.OK, img, 0.0, 0, "a.png"))
    named.write(img, Frame(FrameStatus.OK, img, 0.0, 1, "a.png"))


def test_a_truncated_clip_warns_with_both_counts(tmp_path, caplog) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    rng = np.random.default_rng(0)
    for _ in range(40):
        writer.write(rng.integers(0, 255, (48, 64, 3), np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])  # the header still says 40 frames
    frames = 0
    with caplog.at_level(logging.WARNING), open_source(path) as src:
        while (f := src.read()).ok:
            frames += 1
            f.release()
        assert src.truncated == (frames, 40)
    assert 0 < frames < 40
    assert f"clip.avi ended after {frames} of the 40 frames its header declares" in caplog.text


def _damaged_jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    data = buf.tobytes()
    sos = data.find(b"\xff\xda")
    return data[:sos] + b"junk" + data[sos:]  # libjpeg: "Corrupt JPEG data: 4 extraneous bytes"


@pytest.mark.skipif(os.name != "posix", reason="fd redirection is POSIX-only")
def test_libjpeg_warnings_stay_off_stderr_and_other_output_passes(capfd, monkeypatch) -> None:
    import edgeseg.runtime.jpeg as jpeg

    monkeypatch.setattr(jpeg, "simplejpeg", None)  # OpenCV's libjpeg is the one that prints
    monkeypatch.delenv("EDGESEG_VERBOSE", raising=False)
    assert decode_jpeg(_damaged_jpeg()) is not None
    assert "Corrupt JPEG" not in capfd.readouterr().err
    with quiet_libjpeg():
        os.write(2, b"Corrupt JPEG data: 1 extraneous bytes before marker 0xd9\n")
        os.write(2, b"a line of our own\n")
    err = capfd.readouterr().err
    assert err == "a line of our own\n"
