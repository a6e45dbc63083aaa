"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with ``gtFine/.../*_gtFine_labelIds.png``.

Label ids (0..33) are mapped to the 19 official train ids; everything else becomes 255 (ignore).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeseg.runtime.errors import DatasetError

from .base import RGB, SegDataset, Transform, match_pairs, split_folder

CITYSCAPES_CLASSES = ["road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle"]
CITYSCAPES_PALETTE: list[RGB] = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                                 (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                                 (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
                                 (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]
CITYSCAPES_IGNORE = 255
# labelId -> trainId for the ids that are evaluated (cityscapesScripts labels.py); others are ignored.
_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
              26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
MAX_LABEL_ID = 33
LABEL_TO_TRAIN = np.full(256, CITYSCAPES_IGNORE, np.uint8)  # (256,) lookup table
for _lid, _tid in _TRAIN_IDS.items():
    LABEL_TO_TRAIN[_lid] = _tid

_IMG_SUFFIX = "_leftImg8bit.png"
_LAB_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataset(SegDataset):
    """Cityscapes fine annotations, 19 train-id classes, ignore 255."""

    name = "cityscapes"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None,
                 cache: bool = False, seed: int = 0) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"Cityscapes folder {root} does not exist; pass the folder that holds "
                               "leftImg8bit/ and gtFine/")
        img_dir = split_folder(root, ["leftImg8bit", split], split, "Cityscapes")
        lab_dir = split_folder(root, ["gtFine", split], split, "Cityscapes label")
        images = sorted(p for p in img_dir.rglob("*" + _IMG_SUFFIX) if p.is_file())
        labels = sorted(p for p in lab_dir.rglob("*" + _LAB_SUFFIX) if p.is_file())

        def img_key(p: Path) -> str:
            return p.relative_to(img_dir).as_posix()[: -len(_IMG_SUFFIX)]

        def lab_key(p: Path) -> str:
            return p.relative_to(lab_dir).as_posix()[: -len(_LAB_SUFFIX)]

        pairs = match_pairs(images, labels, img_key, lab_key, where=str(lab_dir))
        super().__init__(root, split, CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CITYSCAPES_IGNORE, pairs,
                         transform=transform, cache=cache, seed=seed)

    def convert_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim != 2:
            raise DatasetError(f"label {path} is a colour image; Cityscapes needs the *_gtFine_labelIds.png "
                               "masks (8-bit label ids)")
        top = int(raw.max()) if raw.size else 0
        if top > MAX_LABEL_ID:
            bad = np.unique(raw[raw > MAX_LABEL_ID])
            shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if bad.size > 8 else "")
            raise DatasetError(f"label {path} has values {shown}; Cityscapes label ids run 0..{MAX_LABEL_ID} "
                               "(is this a labelIds mask?)")
        return LABEL_TO_TRAIN[raw]  # (H, W) uint8 train ids, 255 = ignore
