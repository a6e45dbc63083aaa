"""Segmentation losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class SegmentationLoss(torch.nn.Module):
    """Cross-entropy with ignore index, optional class weights, label smoothing and OHEM.

    OHEM keeps the hardest ``ohem_fraction`` of labelled pixels (at least ``min_kept``),
    which helps thin rare classes (pole, sign, pedestrian) without re-weighting everything.
    """

    def __init__(self, ignore_index: int, weight: torch.Tensor | None = None,
                 ohem_fraction: float = 0.0, min_kept: int = 10_000, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer("weight", weight if weight is not None else None, persistent=False)
        self.ohem_fraction = ohem_fraction
        self.min_kept = min_kept
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # logits (N, C, H, W) float, target (N, H, W) int64
        pixel_loss = F.cross_entropy(logits.float(), target, weight=self.weight, ignore_index=self.ignore_index,
                                     reduction="none", label_smoothing=self.label_smoothing)  # (N, H, W)
        valid = target != self.ignore_index
        if not valid.any():
            return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
        losses = pixel_loss[valid]
        if self.ohem_fraction > 0:
            k = max(int(losses.numel() * self.ohem_fraction), min(self.min_kept, losses.numel()))
            losses = losses.topk(k, sorted=False).values
            return losses.mean()
        if self.weight is not None:
            # Weighted mean, like F.cross_entropy(reduction="mean") does.
            w = self.weight[target[valid]]
            return losses.sum() / w.sum().clamp_min(1e-12)
        return losses.mean()
