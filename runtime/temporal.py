"""Temporal stability on video: a flicker metric and an optional temporal filter.

Flicker is the share of pixels whose class changes between consecutive frames. On a moving
camera part of that is real (edges move), so :class:`FlickerMeter` can first warp the previous
class map along the dense optical flow between the two frames (``compensate=True``): what still
changes is the model changing its mind about the same surface.

:class:`TemporalFilter` smooths the per-class probabilities over time with an exponential
average (``state = alpha * p_now + (1 - alpha) * state``) and takes the class map from that; a
scene cut (a large jump in a thumbnail of the frame) or a change of frame size starts afresh, so
a new shot never inherits the last one's classes. :class:`FilteredSegmenter` puts one in front of
a Segmenter for the video pipeline (``predict``/``demo --temporal-filter``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from .confidence import softmax
from .errors import UsageError
from .preprocess import Postprocessor, resize_nearest

FLOW_WIDTH = 320  # optical flow runs on frames scaled to this width: a few ms, enough for a global motion field


def changed_share(prev: np.ndarray, cur: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Share of pixels (where ``valid``, a bool mask) whose class differs between two (H, W) maps."""
    if prev.shape != cur.shape:
        raise UsageError(f"class maps of {prev.shape} and {cur.shape} cannot be compared; "
                         "flicker needs frames of one size")
    diff = prev != cur  # (H, W) bool
    if valid is None:
        return float(np.count_nonzero(diff)) / max(1, diff.size)
    n = int(np.count_nonzero(valid))
    return float(np.count_nonzero(diff & valid)) / n if n else 0.0


def _small_grey(frame: np.ndarray, width: int) -> np.ndarray:
    h, w = frame.shape[:2]
    size = (width, max(1, round(h * width / w))) if w > width else (w, h)
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)  # (h', w') uint8


def warp_previous(prev_map: np.ndarray, prev_frame: np.ndarray, cur_frame: np.ndarray,
                  width: int = FLOW_WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Move ``prev_map`` to where its pixels are in ``cur_frame`` (dense Farneback flow).

    Works at the flow resolution (frames scaled to ``width``): returns the warped previous map
    (h', w') uint8 and a (h', w') bool mask of pixels whose source lies inside the previous frame.
    """
    prev_g = _small_grey(prev_frame, width)
    cur_g = _small_grey(cur_frame, width)
    h, w = cur_g.shape
    # flow from the current frame back to the previous one: where each current pixel was before
    flow = cv2.calcOpticalFlowFarneback(cur_g, prev_g, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # (h', w', 2)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))  # (h', w') each
    map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
    small_prev = cv2.resize(prev_map, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)  # (h', w') uint8
    warped = cv2.remap(small_prev, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)  # (h', w') uint8
    valid = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)  # (h', w') bool
    return warped, valid


class FlickerMeter:
    """Feed class maps in frame order; ``summary()`` gives the flicker statistics.

    ``compensate=True`` needs the frames too (``update(map, frame)``) and measures at the optical
    flow's resolution (``FLOW_WIDTH`` wide); otherwise the maps are compared at full size.
    """

    def __init__(self, compensate: bool = False, width: int = FLOW_WIDTH) -> None:
        self.compensate, self.width = compensate, width
        self.values: list[float] = []
        self._prev: tuple[np.ndarray, np.ndarray | None] | None = None

    def update(self, class_map: np.ndarray, frame: np.ndarray | None = None) -> float | None:
        """The flicker between this map and the previous one (None for the first frame)."""
        if self.compensate and frame is None:
            raise UsageError("motion-compensated flicker needs each frame: update(class_map, frame)")
        value = None
        if self._prev is not None:
            prev_map, prev_frame = self._prev
            if prev_map.shape != class_map.shape:
                value = None  # a new size is a new stream: nothing to compare
            elif self.compensate:
                warped, valid = warp_previous(prev_map, prev_frame, frame, self.width)
                h, w = warped.shape
                cur = cv2.resize(class_map, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)  # (h', w')
                value = changed_share(warped, cur, valid)
            else:
                value = changed_share(prev_map, class_map)
        if value is not None:
            self.values.append(value)
        self._prev = (class_map.copy(), None if frame is None else frame.copy())
        return value

    def summary(self) -> dict[str, Any]:
        v = self.values
        if not v:
            return {"pairs": 0, "mean": None, "median": None, "p90": None, "compensated": self.compensate}
        return {"pairs": len(v), "mean": statistics.fmean(v), "median": statistics.median(v),
                "p90": float(np.percentile(v, 90)), "compensated": self.compensate}


class TemporalFilter:
    """Exponential average of per-class scores over frames, reset on scene cuts.

    ``alpha``: weight of the newest frame (1 = no smoothing). ``cut_threshold``: mean absolute
    grey-level change of a 32x18 thumbnail above which a frame starts a new scene. ``space``:
    ``"probability"`` averages softmax probabilities; ``"logit"`` averages the raw logits, which
    for the class map is averaging log-probabilities (the per-pixel softmax normaliser is the same
    for every class, so it never changes the argmax) and skips the softmax: cheaper, and a very
    sure frame weighs more. Feed it results in frame order: ``class_map = filt.update(result)``.
    """

    SPACES = ("probability", "logit")

    def __init__(self, alpha: float = 0.5, cut_threshold: float = 40.0, space: str = "probability") -> None:
        if not 0.0 < alpha <= 1.0:
            raise UsageError(f"temporal filter alpha {alpha} must be in (0, 1] (1 = no smoothing)")
        if not cut_threshold > 0:
            raise UsageError(f"scene-cut threshold {cut_threshold} must be > 0 grey levels")
        if space not in self.SPACES:
            from .errors import unknown_name

            raise unknown_name("temporal filter space", space, self.SPACES)
        self.alpha, self.cut_threshold, self.space = float(alpha), float(cut_threshold), space
        self.cuts = 0  # scene cuts seen (resets after the first frame)
        self.last_ms = 0.0
        self._state: np.ndarray | None = None  # (C, h, w) float32 smoothed probabilities
        self._thumb: np.ndarray | None = None
        self._post = Postprocessor()

    def reset(self) -> None:
        self._state, self._thumb = None, None

    def _is_cut(self, frame: np.ndarray) -> bool:
        thumb = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame, (32, 18),
                           interpolation=cv2.INTER_AREA).astype(np.float32)  # (18, 32)
        cut = self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) > self.cut_threshold
        self._thumb = thumb
        return cut

    def update(self, result: Any) -> np.ndarray:
        """The filtered (H, W) uint8 class map for ``result`` (a Segmenter Result with logits)."""
        t = time.perf_counter()
        logits = getattr(result, "_logits", None)
        if logits is None:
            raise UsageError("the temporal filter needs the model's logits: use an export without --fuse-argmax, "
                             "and set the Segmenter's keep_logits to True")
        if self.space == "probability":
            scores = softmax(logits, result._scale)  # (C, h, w) float32
        else:  # uint8 logits: q alone ranks like (q - zero) * scale, as scale > 0
            scores = logits if logits.dtype == np.float32 else logits.astype(np.float32)  # (C, h, w)
        if result._box is not None:
            top, left, ch, cw = result._box
            scores = scores[:, top:top + ch, left:left + cw]
        if self._is_cut(result.frame) and self._state is not None:
            self.cuts += 1
            self._state = None
        if self._state is None or self._state.shape != scores.shape:
            self._state = np.array(scores, np.float32, order="C", copy=True)  # never the result's own logits
        else:
            cv2.addWeighted(scores.reshape(scores.shape[0], -1), self.alpha,
                            self._state.reshape(scores.shape[0], -1), 1.0 - self.alpha, 0.0,
                            dst=self._state.reshape(scores.shape[0], -1))
        lowres = self._post.argmax(self._state)  # (h, w) uint8
        out = resize_nearest(lowres, result.class_map.shape)  # (H, W) uint8
        self.last_ms = (time.perf_counter() - t) * 1e3
        return out


class FilteredSegmenter:
    """A Segmenter whose results' class maps come from a :class:`TemporalFilter`.

    Frames must reach the filter in order: it offers the plain call and the pipeline's stages
    with one inference at a time (``concurrent_infer`` is False), and :meth:`finish`, which the
    pipeline calls in frame order, applies the filter. Everything else (``meta``, ``info``,
    ``close`` ...) is the Segmenter's.
    """

    concurrent_infer = False  # one inference at a time: results come back in frame order

    def __init__(self, segmenter: Any, temporal_filter: TemporalFilter) -> None:
        self.segmenter, self.filter = segmenter, temporal_filter
        segmenter.keep_logits = True  # the filter reads every result's logits (a copy only on TensorRT)

    def _filtered(self, res: Any) -> Any:
        res.class_map = self.filter.update(res)
        res.timings["postprocess_ms"] += self.filter.last_ms  # the filter is post-processing
        if "total_ms" in res.timings:
            res.timings["total_ms"] += self.filter.last_ms
        return res

    def __call__(self, frame: np.ndarray) -> Any:
        return self._filtered(self.segmenter(frame))

    def new_preprocessor(self) -> Any:
        return self.segmenter.new_preprocessor()

    def infer_prepared(self, batch: np.ndarray) -> np.ndarray:
        return self.segmenter.infer_prepared(batch)

    def finish(self, frame: np.ndarray, out: np.ndarray, index: int = 0, preprocess_ms: float = 0.0,
               infer_ms: float = 0.0) -> Any:
        return self._filtered(self.segmenter.finish(frame, out, index, preprocess_ms, infer_ms))

    def __getattr__(self, name: str) -> Any:
        # "segmenter" and "filter" are only missing before __init__ (e.g. copy/pickle): no recursion then.
        if name in ("segmenter", "filter", "batch"):  # no batches: one filter sees one camera's frames
            raise AttributeError(name)
        return getattr(self.segmenter, name)

    def __enter__(self) -> FilteredSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.segmenter.close()


def measure_flicker(segmenter: Any, frames: Iterable[np.ndarray], temporal_filter: TemporalFilter | None = None,
                    compensate: bool = True) -> dict[str, Any]:
    """Run ``segmenter`` over ``frames`` (BGR, in order) and measure flicker, plain and (when
    ``compensate``) motion-compensated, of its class maps or of ``temporal_filter``'s."""
    plain = FlickerMeter()
    moved = FlickerMeter(compensate=True) if compensate else None
    n = 0
    for frame in frames:
        res = segmenter(frame)
        class_map = temporal_filter.update(res) if temporal_filter is not None else res.class_map
        plain.update(class_map)
        if moved is not None:
            moved.update(class_map, frame)
        n += 1
    out: dict[str, Any] = {"frames": n, "flicker": plain.summary()}
    if moved is not None:
        out["flicker_compensated"] = moved.summary()
    return out
