"""Drawing class maps: colour masks, overlays, side-by-side views, legends and text panels.

Palettes are RGB (as in the metadata); every image here is BGR uint8 (as OpenCV and the
sources/sinks use). Colouring goes through a 256-entry lookup table so it costs one
table look-up per pixel; blending is OpenCV's ``addWeighted``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import cv2
import numpy as np

from .errors import UsageError

Palette = Sequence[Sequence[int]]


def palette_lut(palette: Palette) -> np.ndarray:
    """RGB palette -> (256, 1, 3) uint8 BGR lookup table; ids beyond the palette are black."""
    if len(palette) > 256:
        raise UsageError(f"palette has {len(palette)} colours; class maps are uint8, so at most 256")
    lut = np.zeros((256, 1, 3), np.uint8)
    if len(palette):
        try:
            colors = np.asarray(palette, np.int64)  # (n, 3)
        except (TypeError, ValueError):
            colors = None
        if colors is None or colors.ndim != 2 or colors.shape[1] != 3 or colors.min() < 0 or colors.max() > 255:
            raise UsageError("a palette is a list of [R, G, B] colours with values 0-255, e.g. [[128, 64, 128], ...]")
        lut[: len(palette), 0, :] = colors[:, ::-1]  # RGB -> BGR
    return lut


def describe_array(x: object) -> str:
    """``"uint8 (4, 4, 2)"`` for an array, the type's name otherwise (for "got ..." in errors)."""
    return f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__


def _check_map(class_map: np.ndarray) -> np.ndarray:
    if not isinstance(class_map, np.ndarray) or class_map.ndim != 2 or class_map.dtype != np.uint8:
        raise UsageError(f"class map must be a uint8 (H, W) array, got {describe_array(class_map)}")
    return class_map


def colorize(class_map: np.ndarray, palette: Palette | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 BGR colour mask.

    ``palette`` is an RGB palette or a LUT from :func:`palette_lut` (pass the LUT when calling
    per frame, to build it once). ``out`` is an optional (H, W, 3) uint8 buffer to fill.
    """
    _check_map(class_map)
    lut = palette if isinstance(palette, np.ndarray) and palette.shape == (256, 1, 3) else palette_lut(palette)
    if out is not None and (not isinstance(out, np.ndarray) or out.shape != (*class_map.shape, 3)
                            or out.dtype != np.uint8):
        raise UsageError(f"colorize out buffer must be uint8 {(*class_map.shape, 3)}, got {describe_array(out)}")
    # applyColorMap with a user table maps 1 channel -> 3 in one pass: faster than merging to
    # 3 channels + cv2.LUT, or numpy fancy indexing.
    return cv2.applyColorMap(class_map, lut, dst=out)  # (H, W, 3) uint8 BGR


def ignore_mask(class_map: np.ndarray, ignore: Iterable[int]) -> np.ndarray | None:
    """(H, W) uint8 mask, 255 where the class is in ``ignore``; None when nothing is ignored."""
    ids = [int(i) for i in ignore]
    if not ids:
        return None
    table = np.zeros(256, np.uint8)
    for i in ids:
        if not 0 <= i < 256:
            raise UsageError(f"ignored class id {i} is out of range 0..255")
        table[i] = 255
    return cv2.LUT(class_map, table)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Raise UsageError unless ``alpha`` is a number from 0 to 1 (an opacity); ``name``: what the
    message calls it (the CLI says ``--alpha``)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) or not 0.0 <= alpha <= 1.0:
        raise UsageError(f"{name} {alpha!r} must be a number between 0 and 1")
    return float(alpha)


def overlay(frame: np.ndarray, class_map: np.ndarray, palette: Palette | np.ndarray, alpha: float = 0.5,
            ignore: Iterable[int] = (), color: np.ndarray | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
    """Blend the colour mask over the frame: ``frame * (1 - alpha) + colour * alpha``.

    Pixels of classes in ``ignore`` (e.g. road, sky) keep the plain frame. ``color`` is a
    precomputed :func:`colorize` result to reuse; ``out`` an optional output buffer.
    """
    _check_map(class_map)
    if frame.shape[:2] != class_map.shape or frame.ndim != 3 or frame.dtype != np.uint8:
        raise UsageError(f"frame {frame.dtype} {frame.shape} and class map {class_map.shape} must match "
                         "in size; the frame must be uint8 (H, W, 3) BGR")
    check_alpha(alpha)
    if color is None:
        color = colorize(class_map, palette)
    blended = cv2.addWeighted(frame, 1.0 - alpha, color, alpha, 0.0, dst=out)  # (H, W, 3) uint8
    mask = ignore_mask(class_map, ignore)
    if mask is not None:
        cv2.copyTo(frame, mask, blended)  # ignored classes show the frame unchanged
    return blended


def side_by_side(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two BGR (or gray) images next to each other; ``b`` is scaled to ``a``'s height."""
    a, b = _bgr(a), _bgr(b)
    if b.shape[0] != a.shape[0]:
        w = max(1, round(b.shape[1] * a.shape[0] / b.shape[0]))
        b = cv2.resize(b, (w, a.shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.hstack((a, b))  # (H, Wa + Wb, 3)


def _bgr(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8:
        return img
    raise UsageError(f"image must be uint8 (H, W, 3) BGR or (H, W) gray, got {img.dtype} {img.shape}")


def _text_color(bgr: Sequence[int]) -> tuple[int, int, int]:
    # Black text on light swatches, white on dark (ITU-R BT.601 luma).
    luma = 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def draw_legend(img: np.ndarray, classes: Sequence[str], palette: Palette, classes_shown: Iterable[int] | None = None,
                origin: tuple[int, int] = (8, 8), scale: float = 0.45) -> np.ndarray:
    """Draw a column of colour swatches with class names onto ``img`` (in place); returns ``img``.

    ``classes_shown`` limits the legend to some ids (e.g. the classes present in the frame).
    """
    _bgr(img)
    ids = list(range(len(classes))) if classes_shown is None else [int(i) for i in classes_shown]
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), _ = cv2.getTextSize("Ag", font, scale, 1)
    row = th + 8
    x, y = origin
    width = legend_width(classes, ids, scale)
    for k, i in enumerate(ids):
        if not 0 <= i < len(classes):
            continue
        top = y + k * row
        if top + row > img.shape[0]:
            break  # no room left: a partial legend beats drawing off the image
        r, g, b = (int(v) for v in palette[i])
        cv2.rectangle(img, (x, top), (x + width, top + row - 1), (b, g, r), thickness=-1)
        cv2.putText(img, classes[i], (x + 6, top + row - 5), font, scale, _text_color((b, g, r)), 1, cv2.LINE_AA)
    return img


def legend_width(classes: Sequence[str], classes_shown: Iterable[int] | None = None, scale: float = 0.45) -> int:
    """Pixel width of the legend :func:`draw_legend` draws (to right-align it)."""
    ids = range(len(classes)) if classes_shown is None else classes_shown
    font = cv2.FONT_HERSHEY_SIMPLEX
    return max((cv2.getTextSize(classes[i], font, scale, 1)[0][0] for i in ids if 0 <= i < len(classes)),
               default=0) + 12


def draw_text_panel(img: np.ndarray, lines: Sequence[str], origin: tuple[int, int] = (8, 8),
                    scale: float = 0.5, alpha: float = 0.6) -> np.ndarray:
    """Draw ``lines`` (e.g. FPS, latency) on a darkened box onto ``img`` (in place); returns ``img``."""
    _bgr(img)
    check_alpha(alpha)
    if not lines:
        return img
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(s, font, scale, 1)[0] for s in lines]
    row = max(h for _, h in sizes) + 8
    x0, y0 = int(origin[0]), int(origin[1])
    x1 = min(img.shape[1], x0 + max(w for w, _ in sizes) + 12)
    y1 = min(img.shape[0], y0 + row * len(lines) + 4)
    bx, by = max(0, x0), max(0, y0)  # clipped: a negative index would wrap to the far side
    if x1 > bx and y1 > by:
        box = img[by:y1, bx:x1]  # (h, w, 3) view: darken only the panel area, in place
        np.multiply(box, 1.0 - alpha, out=box, casting="unsafe")
    for k, s in enumerate(lines):
        cv2.putText(img, s, (x0 + 6, y0 + (k + 1) * row - 2), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img
