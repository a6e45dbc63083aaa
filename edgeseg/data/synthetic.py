"""Procedural driving scenes as a dataset: ``synthetic://?n=200&size=240x320&seed=0``.

Scenes come from :class:`edgeseg.runtime.synthetic.SceneGenerator`; each split draws
from its own generator seed, so train, val and test never share a scene.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edgeseg.runtime.errors import DatasetError, UsageError
from edgeseg.runtime.sizes import parse_hw
from edgeseg.runtime.synthetic import SYNTHETIC_CLASSES, SYNTHETIC_IGNORE, SYNTHETIC_PALETTE, SceneGenerator

from .base import SPLITS, Pair, SegDataset, Transform

SCHEME = "synthetic://"
DEFAULTS = {"n": 200, "size": (240, 320), "seed": 0}
_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}


def parse_synthetic_uri(uri: str) -> dict[str, Any]:
    """``synthetic://?n=200&size=240x320&seed=0[&val=50&test=50]`` -> options (defaults filled in).

    ``n`` is the train split's size; ``val``/``test`` default to a quarter of it (at least 1).
    """
    parts = urlsplit(uri)
    if parts.scheme != "synthetic":
        raise UsageError(f"{uri!r} is not a synthetic dataset URI; write e.g. synthetic://?n=200&size=240x320")
    opts: dict[str, Any] = dict(DEFAULTS)
    known = {"n", "size", "seed", "val", "test"}
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key not in known:
            raise UsageError(f"unknown option {key!r} in {uri!r}; use n, size, seed, val, test")
        value = values[-1]
        try:
            opts[key] = parse_hw(value, f"size in {uri!r}") if key == "size" else int(value)
        except ValueError:
            raise UsageError(f"{key}={value!r} in {uri!r} is not an integer") from None
    for key in ("val", "test"):
        opts.setdefault(key, max(1, opts["n"] // 4))
    for key in ("n", "val", "test"):
        if not 1 <= opts[key] <= MAX_SCENES:
            raise UsageError(f"{key}={opts[key]} in {uri!r} must be from 1 to {MAX_SCENES:,}")
    h, w = opts["size"]
    if h * w > MAX_SCENE_PIXELS:
        raise UsageError(f"size {h}x{w} in {uri!r} is over the limit of {MAX_SCENE_PIXELS:,} pixels (e.g. 2048x2048)")
    return opts


MAX_SCENES = 1_000_000  # per split: the dataset lists every scene up front
MAX_SCENE_PIXELS = 2048 * 2048  # as for training crops


class SyntheticDataset(SegDataset):
    """N procedural scenes (RGB images, exact labels), deterministic per (seed, split, index)."""

    name = "synthetic"

    def __init__(self, root: str = "synthetic://", split: str = "train", transform: Transform | None = None,
                 cache: bool = False, seed: int = 0, *, n: int | None = None,
                 size: tuple[int, int] | str | None = None) -> None:
        root = root if str(root).startswith(SCHEME) else SCHEME
        opts = parse_synthetic_uri(str(root))
        if split not in _SPLIT_CODE:
            raise DatasetError(f"synthetic dataset has no split {split!r}; choose one of {', '.join(SPLITS)}")
        count = n if n is not None else opts["n" if split == "train" else split]
        self.size = parse_hw(size, "synthetic size") if size is not None else opts["size"]
        # Splits use disjoint generator seeds: 3 * seed + split code is unique per (seed, split).
        self.scene_seed = 3 * int(opts["seed"]) + _SPLIT_CODE[split]
        self.generator = SceneGenerator(self.size, seed=self.scene_seed)
        files = [(f"{root}#{split}/{i}", f"{root}#{split}/{i}") for i in range(int(count))]
        super().__init__(root, split, SYNTHETIC_CLASSES, SYNTHETIC_PALETTE, SYNTHETIC_IGNORE, files,
                         transform=transform, cache=cache, seed=seed)

    def load_pair(self, index: int) -> Pair:
        bgr, label = self.generator.scene(index)  # (H, W, 3) uint8 BGR, (H, W) uint8
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label

    def load_label(self, index: int) -> np.ndarray:
        if self.cached:
            return super().load_label(index)
        return self.generator.scene(index)[1]  # (H, W) uint8

    def preload(self, threads: int = 1) -> None:
        # Scene generation is Python-heavy (GIL-bound): threads would not help.
        super().preload(threads=1)


def scene_pair(size: tuple[int, int] = (240, 320), seed: int = 0, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic (image RGB, label) pair without building a dataset (tests, examples)."""
    bgr, label = SceneGenerator(size, seed=seed).scene(index)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), label
