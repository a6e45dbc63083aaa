"""An image's declared size from its header, before anything is decoded.

A few hundred bytes of PNG (or BMP, WebP, TIFF, ...) can declare 65535x65535 pixels, and a 124 KB
PNG of zeros inflates to gigabytes: every file is checked against a pixel limit from its header
first. Formats not parsed here fall back on OpenCV's own limit (``OPENCV_IO_MAX_IMAGE_PIXELS``,
set in ``edgeseg.runtime`` before cv2 is imported).
"""

from __future__ import annotations

import logging
import re

log = logging.getLogger(__name__)
_warned: set[tuple[int, int]] = set()

_PPM = re.compile(rb"\AP[1-6](?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")


def image_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(height, width) declared by an encoded image's header, or None when the format is not one
    parsed here or the header is malformed (the decoder then decides)."""
    head = bytes(data[:65536])
    if head.startswith(b"\xff\xd8"):
        from .jpeg import jpeg_size

        return jpeg_size(bytes(data))
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")
    if head.startswith(b"BM") and len(head) >= 26:
        w = int.from_bytes(head[18:22], "little", signed=True)
        h = int.from_bytes(head[22:26], "little", signed=True)  # negative: stored top-down
        return abs(h), abs(w)
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return _webp_size(head)
    if head[:2] in (b"II", b"MM"):
        return _tiff_size(head)
    if head.startswith((b"GIF87a", b"GIF89a")) and len(head) >= 10:
        return int.from_bytes(head[8:10], "little"), int.from_bytes(head[6:8], "little")
    m = _PPM.match(head)
    if m:
        return int(m.group(2)), int(m.group(1))
    return None


def too_many_pixels(data: bytes | memoryview, max_pixels: int, name: str = "an image") -> bool:
    """Whether ``data`` declares more than ``max_pixels`` pixels (a warning once per size)."""
    size = image_size(data)
    if size is None or size[0] * size[1] <= max_pixels:
        return False
    if size not in _warned:
        _warned.add(size)
        log.warning("skipped %s of %dx%d pixels (WxH): more than the limit of %d", name, size[1], size[0], max_pixels)
    return True


def _webp_size(head: bytes) -> tuple[int, int] | None:
    kind = head[12:16]
    if kind == b"VP8X" and len(head) >= 30:
        return 1 + int.from_bytes(head[27:30], "little"), 1 + int.from_bytes(head[24:27], "little")
    if kind == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return 1 + ((bits >> 14) & 0x3FFF), 1 + (bits & 0x3FFF)
    if kind == b"VP8 " and len(head) >= 30:
        return int.from_bytes(head[28:30], "little") & 0x3FFF, int.from_bytes(head[26:28], "little") & 0x3FFF
    return None


def _tiff_size(head: bytes) -> tuple[int, int] | None:
    """Width and length tags of the first image directory (classic TIFF; BigTIFF is left to OpenCV)."""
    order = "little" if head[:2] == b"II" else "big"
    if len(head) < 8 or int.from_bytes(head[2:4], order) != 42:
        return None
    ifd = int.from_bytes(head[4:8], order)
    if ifd + 2 > len(head):
        return None
    count = int.from_bytes(head[ifd:ifd + 2], order)
    size: dict[int, int] = {}
    for i in range(min(count, 512)):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(head):
            break
        tag, kind = int.from_bytes(head[entry:entry + 2], order), int.from_bytes(head[entry + 2:entry + 4], order)
        if tag in (256, 257):
            width = 2 if kind == 3 else 4  # SHORT or LONG
            size[tag] = int.from_bytes(head[entry + 8:entry + 8 + width], order)
    return (size[257], size[256]) if len(size) == 2 else None
