"""A generic image/mask folder pair with its class list.

Accepted trees (masks matched to images by file stem)::

    root/images/<split>/*.jpg  + root/masks/<split>/*.png
    root/<split>/images/*.jpg  + root/<split>/masks/*.png
    root/images/*.jpg          + root/masks/*.png          (one split: "train" or "all")

Classes come from ``root/classes.json`` or ``root/classes.txt``. Masks hold class ids
(8-bit grey) or RGB colours that are mapped through the palette; a class named
void/unlabelled/ignore marks the ignore value (and colour), else ignore is 255.
Indexed ("P" mode) PNG masks are id masks: the palette index is the class id (the VOC
convention, 255 = void there), and their palette colours are not matched against the class file.
Masks should be lossless (PNG): JPEG masks load with a warning, since their edges are off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgeseg.runtime.errors import DatasetError
from edgeseg.runtime.metadata import default_palette

from .base import RGB, SegDataset, Transform, is_lossy_label, list_images, match_pairs, read_label
from .camvid import parse_classes_txt

_VOID_WORDS = ("void", "unlabel", "ignore")
FLAT_SPLITS = ("train", "all")  # split names accepted by a tree without split subfolders


def load_class_file(root: Path) -> tuple[list[str], list[RGB], int, RGB | None]:
    """(names, palette, ignore index, ignore colour or None) from classes.json / classes.txt."""
    js, txt = root / "classes.json", root / "classes.txt"
    if js.is_file():
        return _parse_classes_json(js)
    if txt.is_file():
        names, palette, ignore = parse_classes_txt(txt)
        ignore_colour = _void_colour_txt(txt)
        return names, palette, (ignore if ignore is not None else 255), ignore_colour
    raise DatasetError(f"no classes.txt or classes.json in {root}; write one 'id name r,g,b' line per class "
                       "in classes.txt")


def _void_colour_txt(path: Path) -> RGB | None:
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].split()
        if len(line) >= 2 and any(w in line[1].lower() for w in _VOID_WORDS):
            nums = " ".join(line[2:]).replace(",", " ").split()
            if len(nums) >= 3:
                return (int(nums[0]), int(nums[1]), int(nums[2]))
    return None


def _parse_classes_json(path: Path) -> tuple[list[str], list[RGB], int, RGB | None]:
    """``{"classes": [...], "palette": [[r,g,b], ...], "ignore_index": 255, "ignore_color": [0,0,0]}``
    or a list of ``{"name": ..., "color": [r, g, b]}`` entries (a void-named entry sets ignore)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        ignore, ignore_colour = 255, None
        if isinstance(data, dict):
            names = [str(n) for n in data["classes"]]
            palette = [tuple(int(v) for v in c) for c in data.get("palette") or default_palette(len(names))]
            ignore = int(data.get("ignore_index", 255))
            colour = data.get("ignore_color", data.get("ignore_colour"))
            ignore_colour = tuple(int(v) for v in colour) if colour is not None else None
        else:
            names, palette = [], []
            for entry in data:
                name = str(entry["name"])
                colour = entry.get("color", entry.get("colour"))
                if any(w in name.lower() for w in _VOID_WORDS):
                    ignore = int(entry.get("id", 255))
                    ignore_colour = tuple(int(v) for v in colour) if colour is not None else None
                    continue
                names.append(name)
                palette.append(tuple(int(v) for v in colour) if colour is not None else None)
            fallback = default_palette(len(names))
            palette = [c if c is not None else fallback[i] for i, c in enumerate(palette)]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"cannot parse {path} ({type(e).__name__}: {e}); expected "
                           '{"classes": [...], "palette": [[r, g, b], ...]}') from None
    if not names:
        raise DatasetError(f"{path} lists no classes")
    if len(palette) != len(names):
        raise DatasetError(f"{path} has {len(names)} classes but {len(palette)} palette colours")
    return names, palette, ignore, ignore_colour


class FolderDataset(SegDataset):
    """Images and masks in parallel folders; masks as class ids or palette colours."""

    name = "folder"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 cache: bool = False, seed: int = 0, classes: Sequence[str] | None = None,
                 palette: Sequence[RGB] | None = None, ignore_index: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"dataset folder {root} does not exist; pass the folder that holds "
                               "images/ and masks/")
        if classes is None:
            names, pal, ignore, self.ignore_colour = load_class_file(root)
        else:
            names, pal, ignore, self.ignore_colour = list(classes), list(palette or default_palette(len(classes))), 255, None
        if ignore_index is not None:
            ignore = ignore_index
        img_dir, mask_dir = self._split_dirs(root, split)
        pairs = match_pairs(list_images(img_dir), list_images(mask_dir), lambda p: p.stem, lambda p: p.stem,
                            where=str(mask_dir))
        # Colour -> class lookup for RGB masks, as 24-bit codes.
        self._codes = np.array([(r << 16) | (g << 8) | b for r, g, b in (tuple(c) for c in pal)], np.int64)
        ic = self.ignore_colour
        self._ignore_code = None if ic is None else (ic[0] << 16) | (ic[1] << 8) | ic[2]
        super().__init__(root, split, names, pal, ignore, pairs, transform=transform, cache=cache, seed=seed)

    @staticmethod
    def _split_dirs(root: Path, split: str) -> tuple[Path, Path]:
        for img_dir, mask_dir in ((root / "images" / split, root / "masks" / split),
                                  (root / split / "images", root / split / "masks")):
            if img_dir.is_dir() and mask_dir.is_dir():
                return img_dir, mask_dir
            if img_dir.is_dir() != mask_dir.is_dir():
                have, lack = (img_dir, mask_dir) if img_dir.is_dir() else (mask_dir, img_dir)
                raise DatasetError(f"{have} exists but {lack} does not; images and masks need the same split "
                                   "folders")
        flat_img, flat_mask = root / "images", root / "masks"
        if flat_img.is_dir() and flat_mask.is_dir() and list_images(flat_img):
            if split in FLAT_SPLITS:
                return flat_img, flat_mask
            raise DatasetError(f"{root} has no split folders, so there is no {split!r} split; make "
                               f"images/{split}/ and masks/{split}/, or use split 'train'")
        for base in (root / "images", root / "masks", root):
            if base.is_dir():
                present = sorted(p.name for p in base.iterdir() if p.is_dir() and p.name not in ("images", "masks"))
                if present and base != root:
                    raise DatasetError(f"split {split!r} not found in {base} (splits present: "
                                       f"{', '.join(present)})")
        raise DatasetError(f"split {split!r} not found in {root}: expected images/{split}/ + masks/{split}/, "
                           f"{split}/images/ + {split}/masks/, or flat images/ + masks/")

    def read_raw_label(self, path: Path) -> np.ndarray:
        return read_label(path, keep_colour=True)

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim == 2:
            return raw
        if np.array_equal(raw[:, :, 0], raw[:, :, 1]) and np.array_equal(raw[:, :, 1], raw[:, :, 2]):
            # Grey saved as RGB: palette colours if every grey is one, else the grey value is the id.
            greys = np.unique(raw[:, :, 0]).astype(np.int64) * 0x010101
            known = set(self._codes.tolist()) | ({self._ignore_code} if self._ignore_code is not None else set())
            if not set(greys.tolist()) <= known:
                return np.ascontiguousarray(raw[:, :, 0])  # (H, W) uint8 ids
        codes = (raw[:, :, 0].astype(np.int64) << 16) | (raw[:, :, 1].astype(np.int64) << 8) | raw[:, :, 2]  # (H, W)
        uniq, inverse = np.unique(codes, return_inverse=True)
        lut = np.full(uniq.size, -1, np.int64)  # class id per distinct colour
        for i, code in enumerate(uniq):
            hit = np.flatnonzero(self._codes == code)
            if hit.size:
                lut[i] = hit[0]
            elif code == self._ignore_code:
                lut[i] = self.ignore_index
        if (lut < 0).any():
            bad = [f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in uniq[lut < 0][:6]]
            if is_lossy_label(path):
                raise DatasetError(f"label {path} has colours {' '.join(bad)} that are not in the palette: it is "
                                   "a JPEG, whose compression changes colours along region edges; save the masks "
                                   "as PNG")
            raise DatasetError(f"label {path} has colours {' '.join(bad)} that are not in the palette; add them "
                               "to classes.txt/classes.json (or name one 'void' to ignore it)")
        return lut[inverse.reshape(raw.shape[:2])].astype(np.uint8)  # (H, W) uint8 class ids
