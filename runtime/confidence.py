"""Per-pixel confidence from a model's logits, and a frame score from it.

Two measures, both in [0, 1] and both from the softmax of the logits:

* ``"max_softmax"``: the probability of the winning class, ``1 / sum_k exp(l_k - l_max)``;
  at least ``1 / C``.
* ``"margin"``: the winner's lead over the runner-up, ``p1 - p2``; near 0 where two classes tie
  (class boundaries, things the model cannot tell apart).

Quantized uint8 logits (``ModelMeta.output_quant`` = (scale, zero point)) need no full
dequantization: the softmax depends on logit differences only, where the zero point cancels,
so each plane is just ``q * scale``. The work runs plane by plane with OpenCV (two passes over
the C planes, one ``exp`` per element), the memory order the logits are stored in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import UsageError

KINDS = ("max_softmax", "margin")
LOW_CONFIDENCE = 0.5  # default threshold of FrameConfidence.low_share


def _planes(logits: np.ndarray, scale: float | None) -> Iterator[np.ndarray]:
    """(C, h, w) logits -> C float32 (h, w) planes (uint8 planes times ``scale``)."""
    for plane in logits:
        if plane.dtype == np.float32 and scale is None:
            yield plane
        else:
            yield plane.astype(np.float32) * np.float32(1.0 if scale is None else scale)  # (h, w)


def _check(logits: np.ndarray) -> None:
    if logits.ndim != 3 or logits.shape[0] < 2:
        raise UsageError(f"confidence needs (C, h, w) logits with C >= 2, got shape {logits.shape}")


def softmax_top2(logits: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(C, h, w) logits -> (p1, p2): the two largest softmax probabilities, float32 (h, w) each.

    ``scale``: the quantization scale of uint8 logits (None for float logits).
    """
    _check(logits)
    planes = _planes(logits, scale)
    top1 = next(planes).copy()  # (h, w) running maximum
    top2 = np.full_like(top1, -np.inf)  # (h, w) running second maximum
    low = np.empty_like(top1)
    for plane in planes:
        cv2.min(top1, plane, dst=low)  # the loser of (best so far, this plane) may be the new second
        cv2.max(top2, low, dst=top2)
        cv2.max(top1, plane, dst=top1)
    total = np.zeros_like(top1)  # (h, w) sum_k exp(l_k - l_max) >= 1
    shifted = np.empty_like(top1)
    for plane in _planes(logits, scale):
        cv2.subtract(plane, top1, dst=shifted)
        cv2.exp(shifted, dst=shifted)
        cv2.add(total, shifted, dst=total)
    p1 = 1.0 / total  # (h, w) float32
    cv2.subtract(top2, top1, dst=shifted)
    cv2.exp(shifted, dst=shifted)
    return p1, shifted * p1  # p2 = exp(l2 - l1) * p1


def softmax(logits: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(C, h, w) logits -> (C, h, w) float32 class probabilities (a new array)."""
    _check(logits)
    top = None
    for plane in _planes(logits, scale):
        top = plane.copy() if top is None else cv2.max(top, plane, dst=top)  # (h, w) running maximum
    probs = np.empty(logits.shape, np.float32)  # (C, h, w)
    total = np.zeros_like(top)
    for k, plane in enumerate(_planes(logits, scale)):
        cv2.subtract(plane, top, dst=probs[k])
        cv2.exp(probs[k], dst=probs[k])
        cv2.add(total, probs[k], dst=total)
    cv2.divide(1.0, total, dst=total)
    for k in range(len(probs)):
        cv2.multiply(probs[k], total, dst=probs[k])
    return probs


def confidence_map(logits: np.ndarray, kind: str = "max_softmax", scale: float | None = None) -> np.ndarray:
    """(C, h, w) logits -> (h, w) float32 confidence in [0, 1] (see the module docstring)."""
    if kind not in KINDS:
        from .errors import unknown_name

        raise unknown_name("confidence kind", kind, KINDS)
    p1, p2 = softmax_top2(logits, scale)
    return p1 if kind == "max_softmax" else p1 - p2


@dataclass(frozen=True)
class FrameConfidence:
    """How sure the model is about one frame: ``mean`` confidence and the ``low_share`` of pixels
    below ``threshold`` (what a monitor would alarm on: a dark tunnel, fog, an unseen scene)."""

    mean: float
    low_share: float
    threshold: float
    kind: str

    def to_dict(self) -> dict[str, float | str]:
        return {"mean": self.mean, "low_share": self.low_share, "threshold": self.threshold, "kind": self.kind}


def frame_confidence(conf: np.ndarray, threshold: float = LOW_CONFIDENCE, kind: str = "max_softmax"
                     ) -> FrameConfidence:
    """A (h, w) confidence map -> :class:`FrameConfidence`."""
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"confidence threshold {threshold} must be in [0, 1]")
    n = max(1, conf.size)
    return FrameConfidence(mean=float(conf.mean()) if conf.size else 0.0,
                           low_share=float(np.count_nonzero(conf < threshold)) / n,
                           threshold=float(threshold), kind=kind)


def shade_uncertain(image: np.ndarray, conf: np.ndarray, threshold: float = LOW_CONFIDENCE,
                    strength: float = 0.6) -> np.ndarray:
    """A copy of ``image`` (H, W, 3) uint8 with the pixels whose ``conf`` (H, W) is below
    ``threshold`` washed towards dark grey by ``strength``: where not to trust the mask."""
    if image.shape[:2] != conf.shape:
        raise UsageError(f"image {image.shape[:2]} and confidence {conf.shape} differ in size")
    if not 0.0 <= strength <= 1.0:
        raise UsageError(f"shading strength {strength} must be in [0, 1]")
    out = image.copy()
    low = conf < threshold  # (H, W) bool
    if low.any():
        grey = np.full_like(out[low], 64)  # (n, 3) uint8 dark grey
        out[low] = cv2.addWeighted(out[low], 1.0 - strength, grey, strength, 0.0)
    return out
