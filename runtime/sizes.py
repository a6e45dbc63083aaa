"""Parsing of HxW size strings used across the CLI and APIs."""

from __future__ import annotations

from .errors import UsageError


def parse_hw(value: str | int | tuple[int, int] | list[int], what: str = "--imgsz") -> tuple[int, int]:
    """Parse ``'360x480'``, ``'360,480'``, ``512`` or ``(360, 480)`` into ``(H, W)``."""
    if isinstance(value, int):
        h = w = value
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        h, w = int(value[0]), int(value[1])
    elif isinstance(value, str):
        parts = value.lower().replace(",", "x").replace("*", "x").split("x")
        try:
            nums = [int(p) for p in parts]  # "360x" has an empty part: refused, not read as 360x360
        except ValueError:
            nums = []
        if len(nums) == 1:
            h = w = nums[0]
        elif len(nums) == 2:
            h, w = nums
        else:
            raise UsageError(f"{what} {value!r} is not a size; write HxW, e.g. 360x480")
    else:
        raise UsageError(f"{what} {value!r} is not a size; write HxW, e.g. 360x480")
    if h < 8 or w < 8 or h > 16384 or w > 16384:
        raise UsageError(f"{what} {h}x{w} is out of range; each side must be between 8 and 16384 pixels")
    return h, w


def format_hw(hw: tuple[int, int] | None) -> str:
    return "dynamic" if hw is None else f"{hw[0]}x{hw[1]}"
