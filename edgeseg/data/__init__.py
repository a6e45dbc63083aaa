"""Datasets by layout (CamVid, Cityscapes, image/mask folders, procedural scenes) and augmentations.

Torch-free: every dataset returns ``(image RGB uint8 (H, W, 3), label uint8 (H, W))`` and carries
``classes``, ``palette``, ``ignore_index``, ``name``, ``root``, ``split`` and ``files``.
"""

from .base import SegDataset, check_dataset, read_image, read_label
from .build import LAYOUTS, build_dataset, detect_layout, register_layout
from .camvid import CAMVID_CLASSES, CAMVID_IGNORE, CAMVID_PALETTE, CamVidDataset, parse_classes_txt
from .cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_IGNORE, CITYSCAPES_PALETTE, CityscapesDataset
from .folder import FolderDataset, load_class_file
from .stats import WEIGHT_METHODS, ClassStats, class_frequencies, class_stats, class_weights
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
    "CAMVID_CLASSES", "CAMVID_IGNORE", "CAMVID_PALETTE", "CITYSCAPES_CLASSES", "CITYSCAPES_IGNORE",
    "CITYSCAPES_PALETTE", "LAYOUTS", "WEIGHT_METHODS",
    "CamVidDataset", "CityscapesDataset", "ClassStats", "FolderDataset", "Compose", "HorizontalFlip", "Identity", "PhotometricJitter", "RandomCrop",
    "RandomScale", "Resize", "SegDataset", "SyntheticDataset", "Transform",
    "build_dataset", "check_dataset", "class_frequencies", "class_stats", "class_weights", "detect_layout", "eval_transform", "load_class_file", "parse_classes_txt",
    "parse_synthetic_uri",
    "read_image", "read_label", "register_layout", "train_transform",
]
