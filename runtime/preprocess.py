"""Frame -> model input, and model output -> class map, with buffers reused across frames.

Pre-processing follows the metadata convention ``x = (rgb / 255 - mean) / std`` in NCHW
float32, folded into one multiply-add per channel (``x = u8 * scale + bias``). Models with
fused pre-processing (``NHWC_BGR_U8``) get the resized BGR frame as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .errors import UsageError
from .metadata import LAYOUT_UINT8, ModelMeta


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Accept a uint8 (H, W, 3) BGR frame; refuse anything else with a line saying what came."""
    if not isinstance(frame, np.ndarray):
        raise UsageError(f"frame must be a numpy uint8 array (H, W, 3) in BGR order, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise UsageError(f"frame must be uint8 (H, W, 3) BGR, got {frame.dtype} {frame.shape}; "
                         "convert with cv2.cvtColor (gray/BGRA -> BGR) and .astype(np.uint8)")
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise UsageError(f"frame is empty ({frame.shape})")
    return frame


FITS = ("stretch", "letterbox")


def content_box(frame_hw: tuple[int, int], input_hw: tuple[int, int], fit: str) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the frame's picture inside the model input.

    ``stretch`` fills the whole input; ``letterbox`` keeps the aspect ratio and centres the picture
    (a 16:9 dashcam frame in a 4:3 CamVid model keeps its shapes instead of being squeezed).
    """
    h, w = input_hw
    if fit == "stretch":
        return 0, 0, h, w
    fh, fw = frame_hw
    scale = min(h / fh, w / fw)
    ch, cw = max(1, min(h, round(fh * scale))), max(1, min(w, round(fw * scale)))
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def check_fit(fit: str) -> str:
    if fit not in FITS:
        raise UsageError(f"unknown fit {fit!r}; choose stretch or letterbox")
    return fit


class Preprocessor:
    """Turns BGR frames into a batch laid out as ``meta.input_layout`` says, at ``size`` (H, W).

    The returned batch is a buffer owned by this object and overwritten by the next call.
    ``fit="letterbox"`` keeps each frame's aspect ratio; the border is the mean colour (zero after
    normalisation), and :func:`content_box` says where the picture is.
    """

    def __init__(self, meta: ModelMeta, size: tuple[int, int], batch: int = 1, fit: str = "stretch") -> None:
        self.size = (int(size[0]), int(size[1]))
        self.fit = check_fit(fit)
        self.fused = meta.input_layout == LAYOUT_UINT8
        # Border for letterboxing: the mean colour, so the model sees "nothing" there.
        self._fill_bgr = tuple(int(round(255 * m)) for m in reversed(meta.mean))
        h, w = self.size
        mean = np.asarray(meta.mean, np.float64)  # RGB
        std = np.asarray(meta.std, np.float64)
        # (u8 / 255 - mean) / std == u8 * scale + bias, per RGB channel.
        self.scale = (1.0 / (255.0 * std)).tolist()
        self.bias = (-mean / std).tolist()
        self._resized = np.empty((h, w, 3), np.uint8)  # (H, W, 3) BGR, reused
        self._planes = [np.empty((h, w), np.uint8) for _ in range(3)]  # B, G, R planes
        self._batch: np.ndarray = np.empty(0)
        self.reserve(batch)

    def reserve(self, n: int) -> np.ndarray:
        """The batch buffer sized for ``n`` frames (reallocated only when ``n`` changes)."""
        h, w = self.size
        shape = (n, h, w, 3) if self.fused else (n, 3, h, w)
        if self._batch.shape != shape:
            self._batch = np.empty(shape, np.uint8 if self.fused else np.float32)
        return self._batch

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """``frames``: uint8 (H_i, W_i, 3) BGR each -> (N, 3, h, w) float32 or (N, h, w, 3) uint8."""
        batch = self.reserve(len(frames))
        for i, frame in enumerate(frames):
            self.one(frame, i)
        return batch

    def one(self, frame: np.ndarray, index: int = 0) -> None:
        """Write one frame into slot ``index`` of the batch buffer."""
        top, left, ch, cw = content_box(frame.shape[:2], self.size, self.fit)
        boxed = (ch, cw) != self.size
        # The BGR picture at input size: the batch slot itself for fused models, else a scratch.
        bgr = self._batch[index] if self.fused else self._resized  # (h, w, 3) uint8
        if boxed:
            bgr[:] = self._fill_bgr
            cv2.resize(frame, (cw, ch), dst=bgr[top:top + ch, left:left + cw], interpolation=cv2.INTER_LINEAR)
        elif frame.shape[:2] != self.size:
            cv2.resize(frame, self.size[::-1], dst=bgr, interpolation=cv2.INTER_LINEAR)
        elif self.fused:
            np.copyto(bgr, frame)
        else:
            bgr = frame  # already the right size: normalise it directly
        if self.fused:
            return
        cv2.split(bgr, self._planes)  # contiguous B, G, R planes (h, w) uint8
        out = self._batch[index]  # (3, h, w) float32 view, RGB order
        for c in range(3):
            # RGB channel c comes from BGR plane 2 - c; addWeighted with beta=0 is u8 * scale + bias
            # written straight into the float32 plane (one pass, no temporaries).
            src = self._planes[2 - c]
            cv2.addWeighted(src, self.scale[c], src, 0.0, self.bias[c], dst=out[c], dtype=cv2.CV_32F)
        if boxed:  # the border exactly the normalised mean (the rounded fill colour is off by < 1/255)
            out[:, :top] = 0.0
            out[:, top + ch:] = 0.0
            out[:, :, :left] = 0.0
            out[:, :, left + cw:] = 0.0


class Postprocessor:
    """Model output -> low-resolution uint8 class map, with the scratch buffers reused."""

    def __init__(self) -> None:
        self._best = np.empty(0, np.float32)  # (h, w) running maximum
        self._mask = np.empty(0, np.uint8)  # (h, w) 255 where a channel beats the running maximum
        self._ids: list[np.ndarray] = []  # (h, w) uint8 planes filled with k, copied in under the mask

    def _buffers(self, c: int, h: int, w: int, dtype: np.dtype) -> None:
        if self._best.shape != (h, w) or self._best.dtype != dtype:
            self._best = np.empty((h, w), dtype)
            self._mask = np.empty((h, w), np.uint8)
            self._ids = []
        while len(self._ids) < c:
            self._ids.append(np.full((h, w), len(self._ids), np.uint8))

    def argmax(self, logits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(C, h, w) float32 or uint8 (quantized) logits -> (h, w) uint8 ids (first maximum wins, as np.argmax).

        A running maximum over the channel planes with OpenCV's compare/max/masked copy reads
        each plane once in memory order, several times faster than ``np.argmax(axis=0)``, which
        walks the strided channel axis.
        """
        c, h, w = logits.shape
        if c > 256:
            raise UsageError(f"model has {c} classes; class maps are uint8, so at most 256 are supported")
        if logits.dtype not in (np.float32, np.uint8):
            logits = logits.astype(np.float32)
        if out is None or out.shape != (h, w):
            out = np.empty((h, w), np.uint8)
        out.fill(0)
        self._buffers(c, h, w, logits.dtype)
        best, mask = self._best, self._mask
        np.copyto(best, logits[0])
        for k in range(1, c):
            cv2.compare(logits[k], best, cv2.CMP_GT, dst=mask)  # strictly greater: ties keep the lower id
            cv2.max(best, logits[k], dst=best)
            cv2.copyTo(self._ids[k], mask, out)  # out[mask] = k, in place
        return out


def resize_nearest(class_map: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8 -> (H, W) uint8, nearest neighbour on pixel centres (a fresh array)."""
    h, w = size_hw
    if class_map.shape == (h, w):
        return class_map.copy()
    # INTER_NEAREST_EXACT samples at pixel centres; plain INTER_NEAREST shifts by half a pixel.
    return cv2.resize(class_map, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)
