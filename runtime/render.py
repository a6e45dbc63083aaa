"""Drawing the pipeline's output: overlay / mask / side, the HUD, "NO SIGNAL" cards and the mosaic.

Every drawer owns its buffers and reuses them frame after frame (one :class:`Renderer` per
camera, since cameras may differ in size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from .stats import PipelineStats
from .visualize import colorize, draw_legend, draw_text_panel, legend_width, overlay, palette_lut

RENDERS = ("overlay", "mask", "side", None)


def hud_lines(stats: PipelineStats) -> list[str]:
    """What the HUD and the status line say: one FPS figure (over the last frames), latency, drops."""
    f = stats.live()
    lines = [f"{f['fps']:.1f} FPS",
             f"infer {f['infer_ms']:.1f} ms" if f["infer_ms"] is not None else "infer -",
             f"latency {f['latency_p50_ms']:.0f} ms (p99 {f['latency_p99_ms']:.0f})"
             if f["latency_p50_ms"] is not None else "latency -"]
    if stats.drops:
        lines.append(f"dropped {stats.drops}")
    if stats.outage_s_total:
        lines.append(f"outage {stats.outage_s_total:.1f} s")
    return lines


class Renderer:
    """Draws one camera's output image into buffers it owns and reuses frame after frame."""

    def __init__(self, mode: str | None, palette: Sequence[Sequence[int]], classes: Sequence[str], alpha: float,
                 ignore: Sequence[int], hud: bool) -> None:
        self.mode, self.alpha, self.ignore, self.hud = mode, alpha, list(ignore), hud
        self.classes, self.palette = list(classes), [tuple(c) for c in palette]
        self.legend_ids = [i for i in range(len(self.classes)) if i not in set(self.ignore)]
        self.lut = palette_lut(palette)  # (256, 1, 3) BGR, built once
        self._color: np.ndarray | None = None  # (H, W, 3) colour mask
        self._canvas: np.ndarray | None = None  # (H, W, 3) or (H, 2W, 3) output
        self.last_shape: tuple[int, ...] | None = None  # the last image's shape (for NO SIGNAL cards)

    def _buf(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = getattr(self, name)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, np.uint8)
            setattr(self, name, buf)
        return buf

    def __call__(self, image: np.ndarray, class_map: np.ndarray, stats: PipelineStats) -> np.ndarray:
        h, w = class_map.shape
        if self.mode is None:
            out = image  # the frame as captured (e.g. to record the raw stream next to stats)
            if self.hud:
                out = self._buf("_canvas", image.shape)
                np.copyto(out, image)  # never draw on the source's buffer
        else:
            color = colorize(class_map, self.lut, out=self._buf("_color", (h, w, 3)))  # (H, W, 3)
            if self.mode == "mask":
                out = color
            elif self.mode == "overlay":
                out = overlay(image, class_map, self.lut, self.alpha, self.ignore, color=color,
                              out=self._buf("_canvas", (h, w, 3)))
            else:  # side: frame | colour mask, in one (H, 2W, 3) buffer
                out = self._buf("_canvas", (h, 2 * w, 3))
                out[:, :w] = image
                out[:, w:] = color
        if self.hud:
            self._draw_hud(out, hud_lines(stats))
        self.last_shape = out.shape
        return out

    def _draw_hud(self, out: np.ndarray, lines: list[str]) -> None:
        # Text scales with the frame so the HUD covers the same share of a 240p or a 1080p frame.
        scale = min(1.0, max(0.3, out.shape[0] / 1200))
        draw_text_panel(out, lines, scale=scale * 1.2)
        legend_x = max(8, out.shape[1] - legend_width(self.classes, self.legend_ids, scale) - 8)
        draw_legend(out, self.classes, self.palette, self.legend_ids, origin=(legend_x, 8), scale=scale)

    def no_signal(self, outage_s: float, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """A dark card saying NO SIGNAL and for how long, at the size of the last image."""
        shape = shape or self.last_shape or (240, 320, 3)
        card = self._buf("_canvas", tuple(shape))
        card[:] = 32
        h, w = card.shape[:2]
        scale = max(0.5, min(2.0, w / 400))
        for k, text in enumerate(("NO SIGNAL", f"{outage_s:.1f} s")):
            size = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)[0]
            org = ((w - size[0]) // 2, h // 2 + int((k - 0.2) * size[1] * 2))
            cv2.putText(card, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 255), 2, cv2.LINE_AA)
        return card


class Mosaic:
    """Tiles several cameras' images into one (for one window or one web stream).

    Cells are as large as the first camera's image (others are resized into theirs); the grid is
    as square as possible: 2 cameras side by side, 3-4 in 2x2, 5-6 in 3x2. With ``names``, each
    cell carries its camera's name in its top-left corner, so tiles can be told apart.
    """

    def __init__(self, cameras: int, names: Sequence[str] = ()) -> None:
        self.names = list(names)
        self.cols = math.ceil(math.sqrt(cameras))
        self.rows = math.ceil(cameras / self.cols)
        self.cell: tuple[int, int] | None = None  # (h, w)
        self._canvas: np.ndarray | None = None

    def __call__(self, images: Sequence[np.ndarray | None]) -> np.ndarray:
        """``images[i]`` is camera i's latest image (None: nothing yet, left black)."""
        if self.cell is None:
            first = next(im for im in images if im is not None)
            self.cell = first.shape[:2]
            self._canvas = np.zeros((self.rows * self.cell[0], self.cols * self.cell[1], 3), np.uint8)
        ch, cw = self.cell
        for i, im in enumerate(images):
            if im is None:
                continue
            r, c = divmod(i, self.cols)
            cell = self._canvas[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw]  # (ch, cw, 3) view
            cell[:] = im if im.shape[:2] == (ch, cw) else cv2.resize(im, (cw, ch), interpolation=cv2.INTER_AREA)
            if i < len(self.names):
                _label(cell, self.names[i])
        return self._canvas


def _label(cell: np.ndarray, text: str) -> None:
    """``text`` in white on a dark box in the top-left corner of ``cell`` (drawn in place)."""
    scale = max(0.4, cell.shape[0] / 720)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    pad = 4
    cell[:h + base + 2 * pad, :w + 2 * pad] //= 3  # darken, not hide: the picture stays readable
    cv2.putText(cell, text, (pad, pad + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
