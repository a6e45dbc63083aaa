"""Tiny dataset trees written into tmp_path by the data tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

H, W = 12, 16


def image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)  # (h, w, 3) uint8


def label(values: list[int], h: int = H, w: int = W) -> np.ndarray:
    """Vertical stripes of the given ids: a label with known per-class pixel counts."""
    lab = np.zeros((h, w), np.uint8)
    cols = np.array_split(np.arange(w), len(values))
    for v, c in zip(values, cols, strict=True):
        lab[:, c] = v
    return lab  # (h, w) uint8


def write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), array)
    return path


def write_indexed_png(path: Path, ids: np.ndarray, palette: list[tuple[int, int, int]], bit_depth: int = 8,
                      transparency: bytes = b"") -> Path:
    """An indexed ("P" mode) PNG storing ``ids`` as palette indices; cv2 cannot write these.

    Rows are packed MSB first at ``bit_depth`` 1/2/4/8, each with filter byte 0; ``transparency``
    (alpha per palette entry) adds a tRNS chunk.
    """
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    h, w = ids.shape
    assert int(ids.max()) < (1 << bit_depth) and len(palette) <= (1 << bit_depth)
    bits = np.unpackbits(ids.astype(np.uint8)[:, :, None], axis=2)[:, :, 8 - bit_depth:]  # (h, w, depth)
    rows = np.packbits(bits.reshape(h, -1), axis=1)  # (h, ceil(w * depth / 8)) packed indices
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, 3, 0, 0, 0))
           + chunk(b"PLTE", bytes(v for c in palette for v in c))
           + (chunk(b"tRNS", transparency) if transparency else b"")
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def camvid_tree(root: Path, splits: dict[str, int] | None = None, classes_txt: bool = False) -> Path:
    for split, n in (splits or {"train": 3, "val": 2}).items():
        for i in range(n):
            write(root / split / f"f{i:03d}.png", image(i))
            write(root / f"{split}annot" / f"f{i:03d}.png", label([3, 0, 8, 11]))
    if classes_txt:
        (root / "classes.txt").write_text("# id name r,g,b\n0 Sky 1,2,3\n1 Road 4,5,6\n2 Car 7,8,9\n"
                                          "3 Unlabelled/void 0,0,0\n")
    return root


def cityscapes_tree(root: Path, split: str = "train", cities: tuple[str, ...] = ("aachen", "bremen")) -> Path:
    for ci, city in enumerate(cities):
        for j in range(2):
            stem = f"{city}_{ci:06d}_{j:06d}"
            write(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image(ci * 10 + j))
            # 7 road -> 0, 26 car -> 13, 1 ego vehicle -> 255, 23 sky -> 10
            write(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label([7, 26, 1, 23]))
            write(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", image(99))
    return root


CAMVID_TRAIN_NAMES = ["0001TP_006690", "0001TP_006720", "0006R0_f01230", "0016E5_00390", "0016E5_00420"]
CAMVID_VAL_NAMES = ["0016E5_07959", "Seq05VD_f00000"]


def camvid_sequence_tree(root: Path, train: list[str] = CAMVID_TRAIN_NAMES,
                         val: list[str] = CAMVID_VAL_NAMES) -> Path:
    """A CamVid tree whose file names carry sequence prefixes (train/ val/ and their annot/)."""
    for split, names in (("train", train), ("val", val)):
        for i, name in enumerate(names):
            write(root / split / f"{name}.png", image(i))
            write(root / f"{split}annot" / f"{name}.png", label([i % 11, 11]))
    return root
