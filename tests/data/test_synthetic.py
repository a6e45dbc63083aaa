"""The procedural scene generator (runtime/synthetic.py) and the synthetic dataset."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import SyntheticDataset, build_dataset, parse_synthetic_uri
from edgeseg.runtime.errors import DatasetError, UsageError
from edgeseg.runtime.synthetic import (
    CAR,
    ROAD,
    SKY,
    SYNTHETIC_CLASSES,
    SYNTHETIC_IGNORE,
    SYNTHETIC_PALETTE,
    SceneGenerator,
)

SIZE = (120, 160)


def test_constants_follow_camvid_order() -> None:
    from edgeseg.data import CAMVID_CLASSES, CAMVID_PALETTE

    n = len(SYNTHETIC_CLASSES)
    assert list(SYNTHETIC_CLASSES) == CAMVID_CLASSES[:n]
    assert list(SYNTHETIC_PALETTE) == CAMVID_PALETTE[:n]
    assert SYNTHETIC_IGNORE >= n


def test_scene_is_deterministic_per_seed_and_index() -> None:
    a_img, a_lab = SceneGenerator(SIZE, seed=3).scene(5)
    b_img, b_lab = SceneGenerator(SIZE, seed=3).scene(5)
    assert a_img.shape == (*SIZE, 3) and a_img.dtype == np.uint8
    assert a_lab.shape == SIZE and a_lab.dtype == np.uint8
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = SceneGenerator(SIZE, seed=4).scene(5)
    d_img, _ = SceneGenerator(SIZE, seed=3).scene(6)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)
    assert not np.array_equal(a_img, d_img)


def test_labels_are_classes_and_geometrically_plausible() -> None:
    gen = SceneGenerator(SIZE, seed=0)
    seen = np.zeros(len(SYNTHETIC_CLASSES), bool)
    for i in range(12):
        img, lab = gen.scene(i)
        assert lab.max() < len(SYNTHETIC_CLASSES)
        seen[np.unique(lab)] = True
        rows = np.arange(SIZE[0])[:, None].repeat(SIZE[1], 1)
        # Sky sits above the road; the bottom centre of the frame is road (or a car on it).
        assert rows[lab == SKY].mean() < rows[lab == ROAD].mean()
        assert lab[-1, SIZE[1] // 2] in (ROAD, CAR)
        # Distinct classes look different: road and sky differ in mean colour.
        assert np.abs(img[lab == ROAD].mean(0) - img[lab == SKY].mean(0)).sum() > 20
    assert seen.all(), f"classes never drawn in 12 scenes: {np.array(SYNTHETIC_CLASSES)[~seen]}"


def test_clip_moves_smoothly() -> None:
    gen = SceneGenerator(SIZE, seed=1)
    frames = [gen.clip_frame(t) for t in range(4)]
    for (_, lab0), (_, lab1) in zip(frames[:-1], frames[1:], strict=True):
        assert not np.array_equal(lab0, lab1)  # the camera moves forward
        assert (lab0 == lab1).mean() > 0.8  # ... but only a little per frame
    again = SceneGenerator(SIZE, seed=1).clip_frame(2)
    np.testing.assert_array_equal(again[0], frames[2][0])
    assert sum(1 for _ in gen.frames(3, start=10)) == 3


def test_bad_generator_arguments() -> None:
    with pytest.raises(UsageError, match="size"):
        SceneGenerator("big")
    with pytest.raises(UsageError, match="-1"):
        SceneGenerator(SIZE).scene(-1)


def test_uri_options() -> None:
    opts = parse_synthetic_uri("synthetic://?n=40&size=64x96&seed=2")
    assert opts == {"n": 40, "size": (64, 96), "seed": 2, "val": 10, "test": 10}
    with pytest.raises(UsageError, match="colour"):
        parse_synthetic_uri("synthetic://?colour=red")
    with pytest.raises(UsageError, match="n='x'"):
        parse_synthetic_uri("synthetic://?n=x")


def test_synthetic_dataset_splits_are_disjoint_and_cacheable() -> None:
    uri = "synthetic://?n=4&size=64x96&seed=0&val=3"
    train = build_dataset(uri, "train")
    val = build_dataset(uri, "val", cache=True)
    assert isinstance(train, SyntheticDataset) and train.name == "synthetic"
    assert (len(train), len(val)) == (4, 3)
    assert train.classes == list(SYNTHETIC_CLASSES) and train.ignore_index == SYNTHETIC_IGNORE
    img, lab = train[0]
    assert img.shape == (64, 96, 3) and lab.shape == (64, 96)
    assert not np.array_equal(img, val[0][0])
    fresh = build_dataset(uri, "val")
    np.testing.assert_array_equal(val[2][0], fresh[2][0])  # cached == generated
    np.testing.assert_array_equal(val.load_label(1), fresh.load_label(1))
    with pytest.raises(DatasetError, match="holdout"):
        build_dataset(uri, "holdout")


def test_data_side_imports_no_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, edgeseg.data, edgeseg.runtime.synthetic; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "edgeseg.data imported torch"
