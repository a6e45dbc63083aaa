"""A full disk: the output is checked before it replaces anything, and the error says "disk full"."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from edgeseg.runtime import fileio, sinks
from edgeseg.runtime.errors import DiskFullError, SourceError
from edgeseg.runtime.sinks import VideoSink


def _noise(n: int, hw=(96, 128)):
    rng = np.random.default_rng(0)
    for _ in range(n):
        yield rng.integers(0, 256, (*hw, 3), dtype=np.uint8)  # (H, W, 3): incompressible


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only); skipped where mounting is not permitted."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'not permitted'})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(folder: Path, leave: int) -> None:
    st = os.statvfs(folder)
    with open(folder / "ballast", "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


@pytest.mark.parametrize("periodic", [True, False], ids=["free-space-check", "file-check-at-close"])
def test_video_on_a_full_tmpfs_keeps_the_earlier_file(small_disk, monkeypatch, periodic) -> None:
    if not periodic:  # only the re-opened file's frame count can tell
        monkeypatch.setattr(sinks, "SPACE_CHECK_EVERY", 10**9)
        monkeypatch.setattr(sinks.VideoSink, "_check_space", lambda self, landing=None: None)
    out = small_disk / "out.mp4"
    good = VideoSink(out, fps=10)
    for img in _noise(3):
        good.write(img)
    good.close()
    before = out.read_bytes()
    _fill(small_disk, leave=1_500_000)
    sink = VideoSink(out, fps=10)
    with pytest.raises((DiskFullError, SourceError), match="disk full"):
        for img in _noise(300, (240, 320)):
            sink.write(img)
        sink.close()
    sink.close()
    assert out.read_bytes() == before
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", "out.mp4"]  # no temporary left


def test_checkpoint_like_writes_on_a_full_tmpfs_say_disk_full(small_disk) -> None:
    target = small_disk / "m.onnx"
    target.write_bytes(b"good")
    _fill(small_disk, leave=200_000)
    with pytest.raises(DiskFullError, match=r"disk full: .*m.onnx .*the earlier m.onnx was kept"):
        with fileio.atomic_open(target, "wb") as f:
            f.write(os.urandom(1_000_000))
    assert target.read_bytes() == b"good"


def test_a_short_video_is_not_published(tmp_path, monkeypatch) -> None:
    """Unit-level fake: the encoder silently drops frames (as VideoWriter does on ENOSPC)."""
    out = tmp_path / "out.mp4"
    out.write_bytes(b"earlier")
    sink = VideoSink(out, fps=10)
    frames = list(_noise(12, (64, 64)))
    sink.write(frames[0])
    real = sink._writer
    monkeypatch.setattr(sink, "_writer", type("Dropping", (), {"write": lambda self, img: None,
                                                               "release": lambda self: real.release()})())
    for img in frames[1:]:
        sink.write(img)
    with pytest.raises(SourceError, match=r"incomplete \(1 of 12 frames\); nothing was replaced"):
        sink.close()
    assert out.read_bytes() == b"earlier"
    # ... and with the disk (reported) full, the same says "disk full".
    sink = VideoSink(out, fps=10)
    sink.write(frames[0])
    monkeypatch.setattr(sinks, "free_bytes", lambda _p: 0)
    with pytest.raises(DiskFullError, match="disk full"):
        for img in frames:
            sink.write(img)
    assert out.read_bytes() == b"earlier"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_enospc_from_any_writer_is_one_disk_full_line(tmp_path) -> None:
    target = tmp_path / f"{uuid.uuid4().hex}.pt"
    with pytest.raises(DiskFullError, match="nothing was written"):
        with fileio.atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    with contextlib.suppress(ValueError), fileio.atomic_path(target):
        raise ValueError("not about space")  # other failures pass through unchanged
    assert not target.exists()


def test_training_metrics_on_a_full_disk_say_disk_full(small_disk) -> None:
    pytest.importorskip("torch")
    from edgeseg.train.trainer import _append_metrics

    _fill(small_disk, leave=0)
    with pytest.raises(DiskFullError, match="disk full"):
        for _ in range(2000):  # the first rows may still fit in a partly used block
            _append_metrics(small_disk / "metrics.csv", {"epoch": 1, "miou": 0.5})


def test_images_on_a_full_tmpfs_say_disk_full(small_disk) -> None:
    from edgeseg.runtime.sinks import ImageFolderSink

    _fill(small_disk, leave=0)
    sink = ImageFolderSink(small_disk / "frames")
    with pytest.raises(DiskFullError, match="disk full"):
        for img in _noise(50, (240, 320)):
            sink.write(img)
