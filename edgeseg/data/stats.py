"""Class pixel statistics and loss weights (void/ignore pixels never count).

Median-frequency balancing (Eigen & Fergus 2015, as used by SegNet): the frequency of
class c is its pixel count divided by the pixel count of the images in which c occurs,
and ``weight_c = median(freq) / freq_c``. On CamVid the plain weights (capped at 10) made
a U-Net over-predict rare classes; the square root, or a cap near 3, is softer and worked
better (docs/training.md#recipe-notes-camvid-edge-models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgeseg.runtime.errors import UsageError

from .base import SegDataset

WEIGHT_METHODS = ("median", "sqrt_median", "none")


@dataclass(frozen=True)
class ClassStats:
    counts: np.ndarray  # (C,) int64: labelled pixels of each class
    present_pixels: np.ndarray  # (C,) int64: all labelled pixels of the images that contain the class
    total: int  # labelled (non-ignore) pixels in the dataset
    images: int

    def frequencies(self, mode: str = "presence") -> np.ndarray:
        """(C,) float64: ``"presence"`` (median-frequency definition) or ``"global"`` (share of all pixels)."""
        if mode == "global":
            return self.counts / max(self.total, 1)
        if mode == "presence":
            return np.divide(self.counts, self.present_pixels, out=np.zeros(len(self.counts)),
                             where=self.present_pixels > 0)
        raise UsageError(f"frequency mode {mode!r} is unknown; use 'presence' or 'global'")


def class_stats(dataset: SegDataset, limit: int | None = None,
                progress: Callable[[int], None] | None = None) -> ClassStats:
    """Count class pixels over the raw labels of ``dataset`` (no transform; ignore left out)."""
    c = dataset.num_classes
    counts = np.zeros(c, np.int64)
    present = np.zeros(c, np.int64)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        label = dataset.load_label(i)  # (H, W) uint8
        hist = np.bincount(label.reshape(-1), minlength=256)[:c]  # (C,) ignore index (>= C) dropped
        counts += hist
        present += np.where(hist > 0, hist.sum(), 0)
        if progress is not None:
            progress(1)
    return ClassStats(counts, present, int(counts.sum()), n)


def class_frequencies(dataset: SegDataset, mode: str = "presence", limit: int | None = None) -> np.ndarray:
    """(C,) class frequencies of ``dataset`` (see :meth:`ClassStats.frequencies`)."""
    return class_stats(dataset, limit=limit).frequencies(mode)


def class_weights(freqs: np.ndarray, method: str = "sqrt_median", cap: float | None = None) -> np.ndarray:
    """(C,) float32 loss weights from class frequencies.

    ``median``: median(freq) / freq; ``sqrt_median``: its square root; ``none``: all ones.
    Classes that never occur get weight 1 (the loss never sees them). ``cap`` clips from above.
    """
    freqs = np.asarray(freqs, np.float64)
    if method not in WEIGHT_METHODS:
        raise UsageError(f"class weight method {method!r} is unknown; use one of {', '.join(WEIGHT_METHODS)}")
    if cap is not None and cap <= 0:
        raise UsageError(f"class weight cap {cap} must be positive")
    weights = np.ones_like(freqs)
    seen = freqs > 0
    if method != "none" and seen.any():
        weights[seen] = np.median(freqs[seen]) / freqs[seen]
        if method == "sqrt_median":
            weights[seen] = np.sqrt(weights[seen])
    if cap is not None:
        weights = np.minimum(weights, cap)
    return weights.astype(np.float32)
