"""Segmentation metrics in numpy only, shared by training, export reports and runtime ``val``.

Convention: pixels whose ground truth is ``ignore_index`` (e.g. CamVid void) are left
out entirely, both as ground truth and as predictions (the "strict" convention; see
docs/training.md#evaluation for how published CamVid figures differ). mIoU averages over classes that
occur in the ground truth or the predictions; classes absent from both are NaN and
skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class ConfusionMatrix:
    """Accumulates a (C, C) matrix: rows = ground truth, columns = prediction."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.mat = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        pred = np.asarray(pred)
        target = np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {pred.shape} does not match label shape {target.shape}")
        t = target.reshape(-1).astype(np.int64)
        p = pred.reshape(-1).astype(np.int64)
        keep = (t >= 0) & (t < self.num_classes)  # drops ignore_index and any out-of-range value
        if self.ignore_index is not None:
            keep &= t != self.ignore_index
        t, p = t[keep], p[keep]
        if p.size and (p.min() < 0 or p.max() >= self.num_classes):
            raise ValueError(f"prediction has class ids outside 0..{self.num_classes - 1}")
        self.mat += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes)

    def merge(self, other: ConfusionMatrix) -> None:
        self.mat += other.mat

    def reset(self) -> None:
        self.mat[:] = 0

    def iou(self) -> np.ndarray:
        tp = np.diag(self.mat).astype(np.float64)
        denom = self.mat.sum(0) + self.mat.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.mat.sum()
        return float(np.diag(self.mat).sum() / total) if total else float("nan")

    def mean_class_accuracy(self) -> float:
        gt = self.mat.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.where(gt > 0, np.diag(self.mat) / np.maximum(gt, 1), np.nan)
        return float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan")

    def summary(self, class_names: Sequence[str] | None = None) -> SegMetrics:
        names = list(class_names) if class_names is not None else [str(i) for i in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"{len(names)} class names for a {self.num_classes}-class confusion matrix")
        iou = self.iou()
        return SegMetrics(
            miou=100.0 * self.miou(),
            pixel_accuracy=100.0 * self.pixel_accuracy(),
            mean_class_accuracy=100.0 * self.mean_class_accuracy(),
            per_class_iou={n: (None if np.isnan(v) else 100.0 * float(v)) for n, v in zip(names, iou, strict=True)},
            pixels=int(self.mat.sum()),
        )


@dataclass(frozen=True)
class SegMetrics:
    """Percentages (0-100). ``per_class_iou`` maps class name -> IoU, None where undefined."""

    miou: float
    pixel_accuracy: float
    mean_class_accuracy: float
    per_class_iou: dict[str, float | None]
    pixels: int

    def to_dict(self) -> dict:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy,
                "mean_class_accuracy": self.mean_class_accuracy,
                "per_class_iou": dict(self.per_class_iou), "pixels": self.pixels}

    def table(self) -> str:
        width = max([len(n) for n in self.per_class_iou] + [9])
        lines = [f"{'class':<{width}}  IoU %"]
        for name, v in self.per_class_iou.items():
            lines.append(f"{name:<{width}}  {'-' if v is None else f'{v:6.2f}'}")
        lines.append(f"{'mIoU':<{width}}  {self.miou:6.2f}")
        lines.append(f"{'pixel acc':<{width}}  {self.pixel_accuracy:6.2f}")
        return "\n".join(lines)


def pixel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction (0-1) of pixels where two class maps agree."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"class maps differ in shape: {a.shape} vs {b.shape}")
    return float((a == b).mean()) if a.size else 1.0
