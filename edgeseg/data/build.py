"""``build_dataset(root, split)``: pick the layout from what the folder holds, or by name."""

from __future__ import annotations

import os
from pathlib import Path

from edgeseg.runtime.errors import DatasetError, unknown_name

from .base import SegDataset, Transform
from .camvid import CamVidDataset
from .cityscapes import CityscapesDataset
from .folder import FolderDataset
from .synthetic import SCHEME, SyntheticDataset

LAYOUTS: dict[str, type[SegDataset]] = {
    "camvid": CamVidDataset,
    "cityscapes": CityscapesDataset,
    "folder": FolderDataset,
    "synthetic": SyntheticDataset,
}


def register_layout(name: str, cls: type[SegDataset]) -> None:
    """Add a dataset layout (``cls(root, split, transform=, cache=, seed=)``) to ``build_dataset``."""
    LAYOUTS[name] = cls


def detect_layout(root: str | os.PathLike) -> str:
    """The layout name for ``root``: a ``synthetic://`` URI, or what the folder contains."""
    text = os.fspath(root)
    if text.startswith(SCHEME) or text == "synthetic":
        return "synthetic"
    path = Path(text)
    if not path.exists():
        raise DatasetError(f"dataset folder {path} does not exist; check the path "
                           "(or use synthetic://?n=200 for procedural scenes)")
    if not path.is_dir():
        raise DatasetError(f"dataset path {path} is a file; pass the folder that holds the images and labels")
    names = {p.name for p in path.iterdir() if p.is_dir()}
    if {"leftImg8bit", "gtFine"} <= names:
        return "cityscapes"
    if {"images", "masks"} <= names or any((path / n / "images").is_dir() and (path / n / "masks").is_dir()
                                          for n in names):
        return "folder"
    if any(n.endswith("annot") and n[: -len("annot")] in names for n in names):
        return "camvid"
    raise DatasetError(f"cannot tell the layout of {path}: expected train/ + trainannot/ (CamVid), "
                       "leftImg8bit/ + gtFine/ (Cityscapes) or images/ + masks/ (folder); "
                       "or pass layout= explicitly")


def build_dataset(root: str | os.PathLike, split: str = "train", layout: str = "auto",
                  transform: Transform | None = None, cache: bool = False, seed: int = 0) -> SegDataset:
    """Open split ``split`` of the dataset at ``root`` (layout detected unless given).

    ``cache=True`` decodes everything into RAM up front; ``seed`` seeds the per-item augmentation
    generators once :meth:`SegDataset.set_epoch` is called.
    """
    if layout in ("auto", "", None):
        layout = detect_layout(root)
    if layout not in LAYOUTS:
        raise unknown_name("dataset layout", layout, ["auto", *LAYOUTS])
    if layout != "synthetic" and not Path(root).is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; check the path")
    return LAYOUTS[layout](root, split, transform=transform, cache=cache, seed=seed)
