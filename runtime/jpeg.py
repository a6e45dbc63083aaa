"""JPEG bytes -> BGR frames (RGB for training data), through libjpeg-turbo's SIMD decoder where available.

libjpeg-turbo's SIMD decoder (through simplejpeg) gives the same pixels as OpenCV's ``imdecode`` for
about half its CPU time (docs/runtime.md#decoding). simplejpeg is optional: without it OpenCV decodes.

JPEGs that carry EXIF metadata go to OpenCV, which turns the picture upright as the orientation
tag says; simplejpeg would ignore the tag. Camera streams rarely carry it."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import cv2
import numpy as np

try:  # optional speed-up, see the module docstring
    import simplejpeg
except ImportError:  # pragma: no cover - depends on the installation
    simplejpeg = None

JPEG_SUFFIXES = (".jpg", ".jpeg")  # file names this decoder is tried on
# A few hundred bytes of JPEG can declare 65535x65535 pixels: sizes are checked before decoding.
MAX_IMAGE_PIXELS = 1 << 27  # image files: 134 M pixels (e.g. 16384x8192), 400 MB decoded
MAX_FRAME_PIXELS = 1 << 25  # stream frames: 33.5 M pixels, just above 8K UHD (7680x4320)

log = logging.getLogger(__name__)
_warned_sizes: set[tuple[int, int]] = set()

_SOI = b"\xff\xd8"
_APP1 = 0xE1
_SOF_MARKERS = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_EXIF = b"Exif\x00\x00"


def _scan_header(data: bytes) -> tuple[bool, tuple[int, int] | None]:
    """One walk over the JPEG's leading segments -> (EXIF among the leading APPn/COM ones, (H, W) or None).

    The size comes from the frame header (SOFn); None when there is none to read (not a JPEG,
    malformed, or a height given later by a DNL marker, which is left to the decoder).
    """
    exif, leading = False, True  # EXIF counts only among the metadata segments that open the file
    if not data.startswith(_SOI):
        return exif, None
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return exif, None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF_MARKERS:
            if pos + 9 > n:
                return exif, None
            h, w = int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 7:pos + 9], "big")
            return exif, ((h, w) if h and w else None)
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return exif, None
        length = int.from_bytes(data[pos + 2:pos + 4], "big")  # includes its own two bytes
        if length < 2:
            return exif, None  # malformed: the decoder will say so
        leading = leading and (0xE0 <= marker <= 0xEF or marker == 0xFE)
        if leading and marker == _APP1 and length >= 2 + len(_EXIF) and data[pos + 4:pos + 10] == _EXIF:
            exif = True
        pos += 2 + length
    return exif, None


def has_exif(data: bytes) -> bool:
    """Whether the JPEG ``data`` has an EXIF block among its leading APPn/COM segments."""
    return _scan_header(data)[0]


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from the JPEG's frame header, or None when there is none to read."""
    return _scan_header(data)[1]


def _too_large(size: tuple[int, int] | None, max_pixels: int) -> bool:
    """Whether a JPEG of ``size`` has more than ``max_pixels`` pixels (a warning the first time per size)."""
    if size is None or size[0] * size[1] <= max_pixels:
        return False
    if size not in _warned_sizes:  # a hostile stream may send one per frame: say it once
        _warned_sizes.add(size)
        log.warning("skipped a JPEG of %dx%d pixels (WxH): more than the limit of %d", size[1], size[0], max_pixels)
    return True


def turbo_available() -> bool:
    """Whether the fast decoder (simplejpeg) is installed."""
    return simplejpeg is not None


def decode_jpeg(data: bytes, buffers: object | None = None, *, rgb: bool = False,
                max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray | None:
    """JPEG bytes -> (H, W, 3) uint8 BGR (RGB with ``rgb``), or None when they do not decode.

    ``buffers``: an object with ``get(shape) -> ndarray`` (a frame-buffer pool) to decode into
    reused memory; each call then returns one of its buffers. ``rgb`` has libjpeg-turbo write
    the channels in RGB order, so a training loader needs no colour conversion afterwards.
    A JPEG that declares more than ``max_pixels`` pixels is not decoded (None, with a warning).
    """
    exif, size = _scan_header(data)  # one walk, per frame on a live stream
    if _too_large(size, max_pixels):
        return None
    if simplejpeg is not None and not exif:
        try:
            out = None
            if buffers is not None:  # the frame header gives the size of the pooled buffer to decode into
                h, w = size if size is not None else simplejpeg.decode_jpeg_header(data)[:2]
                out = buffers.get((h, w, 3))
            # strict: any warning (a truncated frame, stray bytes) raises, and OpenCV then decides,
            # so what is accepted stays exactly what OpenCV accepts.
            return simplejpeg.decode_jpeg(data, colorspace="RGB" if rgb else "BGR", buffer=out,
                                          strict=True)  # (H, W, 3)
        except ValueError:
            pass  # a warning, or something libjpeg-turbo does not take (e.g. CMYK): OpenCV decides
    return _decode_opencv(data, rgb, max_pixels, size_checked=size is not None)


def read_image_file(path: Path, buffers: object | None = None, *, rgb: bool = False) -> np.ndarray | None:
    """An image file -> (H, W, 3) uint8 BGR (RGB with ``rgb``), or None when it cannot be read or decoded.

    JPEGs go through :func:`decode_jpeg` (into ``buffers`` when given), other formats through OpenCV.
    The file is read as bytes, since ``cv2.imread`` cannot open non-ASCII paths on some platforms.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if path.suffix.lower() in JPEG_SUFFIXES:
        return decode_jpeg(data, buffers, rgb=rgb)
    return _decode_opencv(data, rgb)


def _decode_opencv(data: bytes, rgb: bool, max_pixels: int = MAX_IMAGE_PIXELS,
                   size_checked: bool = False) -> np.ndarray | None:
    """Encoded image bytes -> (H, W, 3) uint8 BGR (RGB with ``rgb``) by OpenCV, or None (also
    when the header declares more than ``max_pixels`` pixels: checked before decoding, unless
    the caller already read the size from the header, ``size_checked``)."""
    from .image_size import too_many_pixels

    if not data or (not size_checked and too_many_pixels(data, max_pixels)):
        return None
    from .native_stderr import quiet_libjpeg

    quiet = quiet_libjpeg() if data[:2] == _SOI else contextlib.nullcontext()
    try:
        with quiet:  # a damaged JPEG is counted as corrupt; libjpeg's own stderr lines are dropped
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # (H, W, 3) uint8 or None
    except cv2.error:
        return None
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb else img
