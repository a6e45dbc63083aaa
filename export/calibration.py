"""Calibration and evaluation images, pre-processed exactly as the runtime does it.

The image source is a dataset (any layout ``edgeseg.data.build_dataset`` knows, including
``synthetic://`` scenes) or a plain folder of images without labels. Pre-processing goes
through the runtime's own :class:`~edgeseg.runtime.preprocess.Preprocessor`, so the
calibration ranges are measured on the very tensors the deployed model will see.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.runtime.errors import DatasetError, UsageError
from edgeseg.runtime.metadata import ModelMeta
from edgeseg.runtime.preprocess import Preprocessor


@dataclass(frozen=True)
class ImageSet:
    """A deterministic selection of images (RGB uint8) with optional labels and stable ids."""

    source: str
    ids: tuple[str, ...]  # names for reports; the calibration provenance hashes the pixels, not these
    images: tuple[np.ndarray, ...]  # (H, W, 3) uint8 RGB each
    labels: tuple[np.ndarray, ...] | None  # (H, W) class ids each, or None for plain folders
    classes: tuple[str, ...] | None = None
    ignore_index: int = 255

    def __len__(self) -> int:
        return len(self.images)


def _spread(total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(total)`` (all of them when n <= 0 or n >= total)."""
    if n <= 0 or n >= total:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / max(n - 1, 1))) for i in range(n)})


def load_images(source: str | os.PathLike, split: str = "train", n: int = 0, *,
                need_labels: bool = False, what: str = "calibration") -> ImageSet:
    """Pick ``n`` images (0 = all) evenly spread over a dataset split or an image folder.

    Evenly spread rather than the first ``n``: datasets such as CamVid are video sequences,
    and the first frames of a sequence look alike.
    """
    src = str(source)
    if "://" not in src and not Path(src).exists():
        raise DatasetError(f"{what} data {src} does not exist; pass a dataset root or an image folder")
    dataset = _try_dataset(src, split)
    if dataset is not None:
        if len(dataset) == 0:
            raise DatasetError(f"{what} data {src} (split {split!r}) has no images")
        picks = _spread(len(dataset), n)
        images, labels, ids = [], [], []
        for i in picks:
            image, label = dataset[i]
            images.append(np.ascontiguousarray(image))
            labels.append(np.asarray(label))
            ids.append(_item_id(dataset, i))
        return ImageSet(source=src, ids=tuple(ids), images=tuple(images), labels=tuple(labels),
                        classes=tuple(dataset.classes), ignore_index=int(dataset.ignore_index))
    if need_labels:
        raise DatasetError(f"{what} data {src} is not a labelled dataset (no {split!r} split found); "
                           "pass a dataset root such as a CamVid folder")
    return _load_folder(Path(src), n, what)


def _try_dataset(src: str, split: str) -> Any:
    try:
        from edgeseg.data import build_dataset
    except ImportError:  # datasets not installed in this build: plain folders still work
        return None
    try:
        return build_dataset(src, split)
    except (DatasetError, UsageError):
        if "://" in src:
            raise
        return None


def _item_id(dataset: Any, i: int) -> str:
    files = getattr(dataset, "files", None)
    if files:
        first = files[i][0] if isinstance(files[i], (tuple, list)) else files[i]
        return Path(first).name if isinstance(first, (str, os.PathLike)) else f"{first}"
    return f"{getattr(dataset, 'name', 'data')}:{getattr(dataset, 'split', '')}:{i}"


def _load_folder(folder: Path, n: int, what: str) -> ImageSet:
    from edgeseg.data.base import IMAGE_SUFFIXES, list_images, read_image

    if not folder.is_dir():
        raise DatasetError(f"{what} data {folder} is neither a dataset nor a folder of images")
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{what} folder {folder} contains no images ({', '.join(IMAGE_SUFFIXES)}); "
                           "point --calib at a folder of camera frames")
    picks = [files[i] for i in _spread(len(files), n)]
    return ImageSet(source=str(folder), ids=tuple(p.name for p in picks),
                    images=tuple(read_image(p) for p in picks), labels=None)


def preprocess(images: Sequence[np.ndarray], meta: ModelMeta, size: tuple[int, int]) -> np.ndarray:
    """RGB uint8 images -> the model's input batch (float32 (N, 3, H, W) or uint8 (N, H, W, 3))."""
    pre = Preprocessor(meta, size, batch=len(images))
    frames = [np.ascontiguousarray(img[..., ::-1]) for img in images]  # (H, W, 3) RGB -> BGR, as from a camera
    return pre(frames).copy()  # the Preprocessor reuses its buffer


def fixed_batch(meta: ModelMeta) -> int:
    """The batch an artifact insists on: ``meta.batch`` for a static export, 1 (any) for a dynamic one."""
    return 1 if meta.dynamic_batch else max(int(meta.batch), 1)


def fill_batch(x: np.ndarray, batch: int) -> np.ndarray:
    """``x`` (n, ...) with its images repeated in turn up to ``batch`` rows; a fixed-batch model takes no fewer.

    One image repeated ``batch`` times gives every activation the same min/max and the same
    histogram shape as the image alone, so calibration ranges do not depend on the batch.
    """
    if len(x) >= batch:
        return x
    return x[np.arange(batch) % len(x)]  # (batch, ...)


class CalibrationReader:
    """Yields pre-processed input batches for calibration; ONNX Runtime's reader interface too.

    Iterating gives arrays in the model's input layout: float32 (N, 3, H, W) for the normal
    layout (what a TensorRT legacy calibrator consumes), uint8 (N, H, W, 3) for models with
    fused pre-processing. ``batch`` images go into each array; a model exported with a fixed
    batch larger than that gets each array filled up to it by repeating its images
    (:func:`fill_batch`). ``get_next()``/``rewind()`` serve ``onnxruntime.quantization``.
    """

    def __init__(self, images: ImageSet | Sequence[np.ndarray], meta: ModelMeta, size: tuple[int, int],
                 batch: int = 1, input_name: str = "images") -> None:
        if batch < 1:
            raise UsageError(f"calibration batch {batch} must be >= 1")
        if fixed_batch(meta) > 1 and batch > fixed_batch(meta):
            raise UsageError(f"calibration batch {batch} does not fit the model's fixed batch {meta.batch}; "
                             f"use a batch of at most {meta.batch}")
        self.images = images.images if isinstance(images, ImageSet) else tuple(images)
        if not self.images:
            raise DatasetError("calibration needs at least one image")
        self.meta, self.size, self.batch, self.input_name = meta, (int(size[0]), int(size[1])), batch, input_name
        self._iter: Iterator[np.ndarray] | None = None

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self.images), self.batch):
            x = preprocess(self.images[start:start + self.batch], self.meta, self.size)
            yield fill_batch(x, fixed_batch(self.meta))

    def chunks(self, per_chunk: int) -> Iterator[CalibrationReader]:
        """Readers over consecutive slices, so histogram calibrators never hold all activations at once."""
        for start in range(0, len(self.images), per_chunk):
            yield CalibrationReader(self.images[start:start + per_chunk], self.meta, self.size, self.batch,
                                    self.input_name)

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """``{input_name: batch}`` dicts, for ORT tools that iterate their reader (qdq_loss_debug)."""
        for x in self:
            yield {self.input_name: x}

    # onnxruntime.quantization.CalibrationDataReader protocol
    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._iter is None:
            self._iter = iter(self)
        x = next(self._iter, None)
        return None if x is None else {self.input_name: x}

    def rewind(self) -> None:
        self._iter = None
