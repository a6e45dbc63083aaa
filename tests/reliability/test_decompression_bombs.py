"""Images and checkpoints that declare far more than they hold are refused before decoding."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zipfile
import zlib

import cv2
import numpy as np
import pytest

from edgeseg.runtime import jpeg
from edgeseg.runtime.image_size import image_size


def _png_header(w: int, h: int) -> bytes:
    """A PNG that declares w x h pixels and holds almost nothing (a bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    idat = zlib.compress(b"\x00" * (w + 1) * 4)  # a few rows; the decoder would allocate all of them first
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".jpg"])
def test_header_sizes_match_what_opencv_writes(ext) -> None:
    img = np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8)
    if ext == ".pgm":
        img = img[:, :, 0]
    ok, data = cv2.imencode(ext, img)
    assert ok
    assert image_size(data.tobytes()) == (37, 53)


def test_png_bomb_is_skipped_without_decoding(monkeypatch, tmp_path) -> None:
    bomb = _png_header(20_000, 20_000)  # 400 M pixels from a few hundred bytes
    assert image_size(bomb) == (20_000, 20_000)
    decoded = []
    monkeypatch.setattr(jpeg.cv2, "imdecode", lambda *a: decoded.append(a))
    (tmp_path / "bomb.png").write_bytes(bomb)
    assert jpeg.read_image_file(tmp_path / "bomb.png") is None
    assert not decoded


def test_dataset_and_calibration_images_name_the_bomb(tmp_path) -> None:
    from edgeseg.data.base import read_image, read_label
    from edgeseg.runtime.errors import DatasetError

    (tmp_path / "bomb.png").write_bytes(_png_header(20_000, 20_000))
    for read, what in ((read_image, "image"), (read_label, "label")):
        with pytest.raises(DatasetError, match=f"{what} .*bomb.png declares 20000x20000 pixels"):
            read(tmp_path / "bomb.png")


def test_predict_skips_a_bomb_in_a_folder(tmp_path, capsys) -> None:
    from edgeseg.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bomb.png").write_bytes(_png_header(20_000, 20_000))
    rc = main(["predict", "--source", str(tmp_path / "in"), "--save", str(tmp_path / "out") + "/"])
    err = capsys.readouterr().err
    assert rc == 1 and "no frame of" in err and "bomb.png" in err


def test_opencv_limit_covers_the_formats_not_parsed_here(tmp_path) -> None:
    """OpenCV reads OPENCV_IO_MAX_IMAGE_PIXELS when cv2 is imported: importing edgeseg first sets it."""
    code = ("import edgeseg, cv2, numpy as np, sys\n"
            f"data = np.frombuffer(open({str(tmp_path / 'b.png')!r}, 'rb').read(), np.uint8)\n"
            "try:\n    cv2.imdecode(data, cv2.IMREAD_COLOR)\nexcept cv2.error as e:\n"
            "    sys.exit(0 if 'CV_IO_MAX_IMAGE_PIXELS' in str(e) else 3)\nsys.exit(4)\n")
    (tmp_path / "b.png").write_bytes(_png_header(12_000, 12_000))  # 144 M: above ours, below OpenCV's 1 G
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


def test_zip_bomb_checkpoint_is_refused_before_torch_load(tmp_path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from edgeseg.runtime.errors import CheckpointError
    from edgeseg.train import checkpoint

    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", b"\x00" * (64 << 20))  # 64 MB of zeros in ~64 KB
    assert path.stat().st_size < 1 << 20
    monkeypatch.setattr(checkpoint.torch, "load", lambda *a, **k: pytest.fail("torch.load ran"))
    with pytest.raises(CheckpointError, match="refused as corrupt or hostile"):
        checkpoint.load_checkpoint(path)
