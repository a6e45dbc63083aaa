"""Visualisation: colour values, blending, ignored classes, side-by-side, legend and text panel."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.visualize import (
    colorize,
    draw_legend,
    draw_text_panel,
    ignore_mask,
    overlay,
    palette_lut,
    side_by_side,
)

PALETTE = [(255, 0, 0), (0, 255, 0), (10, 20, 30)]  # RGB


def _map() -> np.ndarray:
    return np.array([[0, 1, 2], [2, 1, 0]], np.uint8)  # (2, 3)


def test_colorize_is_bgr_palette_lookup():
    color = colorize(_map(), PALETTE)
    assert color.shape == (2, 3, 3) and color.dtype == np.uint8
    assert color[0, 0].tolist() == [0, 0, 255]  # red in BGR
    assert color[0, 1].tolist() == [0, 255, 0]
    assert color[0, 2].tolist() == [30, 20, 10]
    np.testing.assert_array_equal(colorize(_map(), palette_lut(PALETTE)), color)  # LUT form, same result
    beyond = colorize(np.array([[7]], np.uint8), PALETTE)
    assert beyond.tolist() == [[[0, 0, 0]]]  # ids past the palette are black


def test_overlay_blends_and_keeps_ignored_classes():
    frame = np.full((2, 3, 3), 100, np.uint8)
    out = overlay(frame, _map(), PALETTE, alpha=0.25)
    # 100 * 0.75 + 255 * 0.25 = 138.75 -> 139 for the red channel of class 0 (BGR index 2)
    assert out[0, 0].tolist() == [75, 75, 139]
    kept = overlay(frame, _map(), PALETTE, alpha=0.25, ignore=[1])
    assert kept[0, 1].tolist() == [100, 100, 100] and kept[1, 1].tolist() == [100, 100, 100]
    np.testing.assert_array_equal(kept[0, 0], out[0, 0])
    np.testing.assert_array_equal(frame, np.full((2, 3, 3), 100, np.uint8))  # input untouched
    assert ignore_mask(_map(), []) is None
    assert ignore_mask(_map(), [2]).tolist() == [[0, 0, 255], [255, 0, 0]]


def test_overlay_refuses_bad_inputs():
    frame = np.zeros((2, 3, 3), np.uint8)
    with pytest.raises(UsageError, match="must match"):
        overlay(np.zeros((4, 4, 3), np.uint8), _map(), PALETTE)
    with pytest.raises(UsageError, match="alpha 1.5"):
        overlay(frame, _map(), PALETTE, alpha=1.5)
    with pytest.raises(UsageError, match="class map must be a uint8"):
        colorize(_map().astype(np.int64), PALETTE)
    with pytest.raises(UsageError, match="out of range"):
        overlay(frame, _map(), PALETTE, ignore=[300])
    with pytest.raises(UsageError, match="at most 256"):
        palette_lut([(0, 0, 0)] * 257)
    for bad in ([(0, 0)] * 3, [(300, 0, 0)], [(-1, 0, 0)], [("a", 0, 0)]):
        with pytest.raises(UsageError, match=r"list of \[R, G, B\] colours with values 0-255"):
            palette_lut(bad)
    for alpha in (None, "0.5", float("nan"), -0.1):
        with pytest.raises(UsageError, match="must be a number between 0 and 1"):
            overlay(frame, _map(), PALETTE, alpha=alpha)
    with pytest.raises(UsageError, match=r"out buffer must be uint8 \(2, 3, 3\)"):
        colorize(_map(), PALETTE, out=np.zeros((3, 2, 3), np.uint8))


def test_side_by_side_scales_the_second_image():
    a = np.zeros((40, 60, 3), np.uint8)
    b = np.full((20, 10), 200, np.uint8)  # gray, half height
    out = side_by_side(a, b)
    assert out.shape == (40, 80, 3) and out[:, 60:].min() == 200
    with pytest.raises(UsageError, match="uint8"):
        side_by_side(a, np.zeros((4, 4, 2), np.uint8))


def test_legend_and_text_panel_draw_in_place():
    img = np.zeros((120, 200, 3), np.uint8)
    out = draw_legend(img, ["road", "car", "sky"], PALETTE)
    assert out is img
    assert (img == [0, 0, 255]).all(-1).any() and (img == [30, 20, 10]).all(-1).any()  # swatches drawn
    small = np.zeros((20, 100, 3), np.uint8)
    draw_legend(small, ["road", "car", "sky"], PALETTE)  # no room for all rows: clipped, no error
    panel = np.full((60, 200, 3), 200, np.uint8)
    draw_text_panel(panel, ["FPS 30.0", "infer 20 ms"])
    assert panel[2, 2].tolist() == [200, 200, 200]  # outside the box
    assert panel[10, 10].max() < 200  # inside the box: darkened
    assert (panel == 255).all(-1).any()  # white text


def test_text_panel_clips_to_the_image_and_checks_alpha():
    img = np.full((100, 200, 3), 200, np.uint8)
    draw_text_panel(img, ["fps 30"], origin=(-100, -60))  # wholly off the image: nothing wraps round
    assert (img == 200).all()
    draw_text_panel(img, ["fps 30"], origin=(-5, -5))  # partly off: only the visible corner darkens
    assert img[0, 0].max() < 200 and img[60, 150].tolist() == [200, 200, 200]
    for alpha in (1.5, -1):
        with pytest.raises(UsageError, match=f"alpha {alpha} must be a number between 0 and 1"):
            draw_text_panel(img, ["x"], alpha=alpha)
