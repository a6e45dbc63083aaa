"""Datasets by layout (CamVid, Cityscapes, image/mask folders, procedural scenes) and augmentations.

Torch-free: every dataset returns ``(image RGB uint8 (H, W, 3), label uint8 (H, W))`` and carries
``classes``, ``palette``, ``ignore_index``, ``name``, ``root``, ``split`` and ``files``.
"""

from .base import SegDataset, check_dataset, read_image, read_label
from .build import LAYOUTS, build_dataset, detect_layout, register_layout
from .camvid import CAMVID_CLASSES, CAMVID_IGNORE, CAMVID_PALETTE, CamVidDataset
from .synthetic import SyntheticDataset, parse_synthetic_uri
from .transforms import (
    Compose,
    HorizontalFlip,
    Identity,
    PhotometricJitter,
    RandomCrop,
    RandomScale,
    Resize,
    Transform,
    eval_transform,
    train_transform,
)

__all__ = [
    "CAMVID_CLASSES", "CAMVID_IGNORE", "CAMVID_PALETTE", "LAYOUTS",
    "CamVidDataset", "Compose", "HorizontalFlip", "Identity", "PhotometricJitter", "RandomCrop",
    "RandomScale", "Resize", "SegDataset", "SyntheticDataset", "Transform",
    "build_dataset", "check_dataset", "detect_layout", "eval_transform", "parse_synthetic_uri",
    "read_image", "read_label", "register_layout", "train_transform",
]
