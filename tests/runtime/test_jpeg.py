"""JPEG decoding: the fast path gives OpenCV's pixels, and OpenCV still decides what is acceptable."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime import jpeg
from edgeseg.runtime.sources import FrameStatus, _BufferPool, open_source

needs_turbo = pytest.mark.skipif(not jpeg.turbo_available(), reason="simplejpeg is not installed")


def _picture(hw: tuple[int, int] = (37, 53)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return cv2.GaussianBlur(rng.integers(0, 256, (*hw, 3), dtype=np.uint8), (5, 5), 0)  # (H, W, 3) BGR


def _encode(img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, list(params))
    assert ok
    return buf.tobytes()


def _opencv(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _with_orientation(data: bytes, orientation: int) -> bytes:
    """``data`` with an EXIF block (APP1) whose orientation tag says ``orientation``."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    body = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + data[2:]


@needs_turbo
@pytest.mark.parametrize("params", [
    (cv2.IMWRITE_JPEG_QUALITY, 90),
    (cv2.IMWRITE_JPEG_PROGRESSIVE, 1),
    (cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444),
], ids=["baseline-420", "progressive", "444"])
def test_fast_decode_gives_opencvs_pixels(params: tuple[int, int]) -> None:
    data = _encode(_picture(), *params)
    fast = jpeg.decode_jpeg(data)
    assert fast is not None and fast.dtype == np.uint8 and fast.shape == (37, 53, 3)
    np.testing.assert_array_equal(fast, _opencv(data))


def test_grey_jpeg_comes_out_as_three_channel_bgr() -> None:
    data = _encode(_picture()[:, :, 1])
    out = jpeg.decode_jpeg(data)
    assert out is not None and out.shape == (37, 53, 3)
    np.testing.assert_array_equal(out, _opencv(data))


@pytest.mark.parametrize("fast", [True, False], ids=["turbo", "opencv-only"])
def test_broken_data_decodes_to_none_on_either_path(fast: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if fast and not jpeg.turbo_available():
        pytest.skip("simplejpeg is not installed")
    if not fast:
        monkeypatch.setattr(jpeg, "simplejpeg", None)
    data = _encode(_picture((64, 96)))
    assert jpeg.decode_jpeg(b"this is not a JPEG") is None
    assert jpeg.decode_jpeg(b"") is None
    # Cut in half: OpenCV refuses it, and so must the fast path (it would otherwise fill in grey).
    assert _opencv(data[: len(data) // 2]) is None
    assert jpeg.decode_jpeg(data[: len(data) // 2]) is None
    np.testing.assert_array_equal(jpeg.decode_jpeg(data), _opencv(data))


def _declaring(data: bytes, h: int, w: int) -> bytes:
    """``data`` with its frame header (SOF0) patched to declare ``h`` x ``w`` pixels."""
    at = data.index(b"\xff\xc0")
    return data[:at + 5] + struct.pack(">HH", h, w) + data[at + 9:]


@pytest.mark.parametrize("fast", [True, False], ids=["turbo", "opencv-only"])
def test_a_tiny_jpeg_declaring_huge_dimensions_is_not_decoded(fast: bool, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A few hundred bytes can ask for 12000x12000 pixels (430 MB and seconds of decoding)."""
    if fast and not jpeg.turbo_available():
        pytest.skip("simplejpeg is not installed")
    if not fast:
        monkeypatch.setattr(jpeg, "simplejpeg", None)
    monkeypatch.setattr(jpeg, "_warned_sizes", set())
    data = _encode(_picture((16, 16)))
    assert jpeg.jpeg_size(data) == (16, 16) and jpeg.jpeg_size(_with_orientation(data, 6)) == (16, 16)
    bomb = _declaring(data, 12000, 12000)
    assert len(bomb) < 1000 and jpeg.jpeg_size(bomb) == (12000, 12000)
    with caplog.at_level("WARNING", logger=jpeg.__name__):
        assert jpeg.decode_jpeg(bomb) is None
        assert jpeg.decode_jpeg(bomb, max_pixels=jpeg.MAX_FRAME_PIXELS) is None
    assert [r.getMessage() for r in caplog.records].count(
        "skipped a JPEG of 12000x12000 pixels (WxH): more than the limit of 134217728") == 1
    assert jpeg.decode_jpeg(data, max_pixels=16 * 16) is not None  # the limit itself is allowed
    assert jpeg.decode_jpeg(data, max_pixels=16 * 16 - 1) is None


def test_exif_orientation_is_honoured_like_opencv() -> None:
    data = _with_orientation(_encode(_picture()), 6)  # 6: turn 90 degrees clockwise to view
    assert jpeg.has_exif(data) and not jpeg.has_exif(_encode(_picture()))
    out = jpeg.decode_jpeg(data)
    assert out is not None and out.shape == (53, 37, 3)  # upright, as OpenCV shows it
    np.testing.assert_array_equal(out, _opencv(data))


def test_has_exif_stops_at_the_first_image_segment() -> None:
    plain = _encode(_picture())
    assert not jpeg.has_exif(b"")
    assert not jpeg.has_exif(b"\xff\xd8\xff\xe1\x00")  # cut inside a segment header
    assert not jpeg.has_exif(b"\xff\xd8\xff\xe1\x00\x00Exif\x00\x00")  # a length that would not advance
    # "Exif" inside the picture data (after the metadata segments) is not an EXIF block.
    assert not jpeg.has_exif(plain + b"\xff\xe1\x00\x08Exif\x00\x00")


@needs_turbo
def test_decodes_into_a_pooled_buffer() -> None:
    data = _encode(_picture())
    pool = _BufferPool()
    buf = np.zeros((37, 53, 3), np.uint8)
    pool.put(buf)
    out = jpeg.decode_jpeg(data, pool)
    assert out is not None and np.shares_memory(out, buf)
    np.testing.assert_array_equal(out, _opencv(data))


def test_jpeg_files_in_a_folder_decode_like_opencv_and_bad_ones_are_skipped(tmp_path: Path) -> None:
    pic = _picture((40, 64))
    (tmp_path / "a.jpg").write_bytes(_encode(pic))
    (tmp_path / "b.JPEG").write_bytes(_with_orientation(_encode(pic), 6))
    (tmp_path / "c.jpg").write_bytes(_encode(pic)[:300])  # truncated
    with open_source(tmp_path) as src:
        frames = [src.read() for _ in range(3)]
        assert [f.name for f in frames[:2]] == ["a.jpg", "b.JPEG"] and frames[2].status is FrameStatus.EOS
        np.testing.assert_array_equal(frames[0].image, cv2.imread(str(tmp_path / "a.jpg")))
        assert frames[1].image.shape == (64, 40, 3)  # turned upright by its EXIF tag
        assert src.corrupt == 1 and src.unreadable == [str(tmp_path / "c.jpg")]


@needs_turbo
def test_jpeg_folder_frames_reuse_released_buffers(tmp_path: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(_encode(_picture((40, 64))))
    with open_source(tmp_path) as src:
        first = src.read()
        buf = first.image
        first.release()
        second = src.read()
        assert second.ok and np.shares_memory(second.image, buf)  # decoded into the released buffer


@pytest.mark.parametrize("fast", [True, False], ids=["turbo", "opencv-only"])
def test_training_reader_decodes_jpeg_straight_to_rgb(fast: bool, monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from edgeseg.data.base import read_image
    from edgeseg.runtime.errors import DatasetError

    if fast and not jpeg.turbo_available():
        pytest.skip("simplejpeg is not installed")
    if not fast:
        monkeypatch.setattr(jpeg, "simplejpeg", None)
    data = _encode(_picture(), cv2.IMWRITE_JPEG_QUALITY, 90)
    (tmp_path / "a.JPG").write_bytes(data)
    rgb = read_image(tmp_path / "a.JPG")
    np.testing.assert_array_equal(rgb, _opencv(data)[:, :, ::-1])  # OpenCV's pixels, channels reversed
    (tmp_path / "b.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="b.jpg"):
        read_image(tmp_path / "b.jpg")
