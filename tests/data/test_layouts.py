"""Each dataset layout loads, and the layout is detected from the folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from testkit.data_trees import camvid_tree, cityscapes_tree, image, label, write, write_indexed_png

from edgeseg.data import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    CITYSCAPES_CLASSES,
    CamVidDataset,
    CityscapesDataset,
    FolderDataset,
    build_dataset,
    check_dataset,
    detect_layout,
    read_label,
    train_transform,
)
from edgeseg.runtime.errors import DatasetError


def test_camvid_real(camvid_root: Path) -> None:
    ds = build_dataset(camvid_root, "val")
    assert isinstance(ds, CamVidDataset) and ds.name == "camvid" and ds.split == "val"
    assert len(ds) == 101 and ds.classes == CAMVID_CLASSES and ds.ignore_index == 11
    assert ds.palette[3] == (128, 64, 128)  # Road, from classes.txt
    img, lab = ds[0]
    assert img.shape == (360, 480, 3) and img.dtype == np.uint8
    assert lab.shape == (360, 480) and lab.dtype == np.uint8
    assert set(np.unique(lab)) <= set(range(12))
    img_path, lab_path = ds.files[0]
    assert img_path.name == lab_path.name and lab_path.parent.name == "valannot"
    report = check_dataset(ds, limit=5)
    assert report["pairs"] == 5 and report["sizes"] == {"360x480": 5}


def test_camvid_tree_and_cache(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    assert detect_layout(root) == "camvid"
    ds = build_dataset(root, "train")
    assert len(ds) == 3 and ds.classes == CAMVID_CLASSES and ds.ignore_index == 11
    img, lab = ds[1]
    np.testing.assert_array_equal(img, image(1))
    np.testing.assert_array_equal(lab, label([3, 0, 8, 11]))
    cached = build_dataset(root, "train", cache=True)
    assert cached.cached
    img[:] = 0  # callers may scribble on what they get; the cache must not change
    np.testing.assert_array_equal(cached[1][0], image(1))
    np.testing.assert_array_equal(cached[1][0], ds[1][0])
    assert ds.check()["classes_seen"] == ["Sky", "Road", "Car"]


def test_camvid_classes_txt(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv", classes_txt=True)
    for i in range(3):  # labels must fit the 3-class list: ids 0..2, void 3
        write(root / "trainannot" / f"f{i:03d}.png", label([0, 1, 2, 3]))
    ds = build_dataset(root, "train")
    assert ds.classes == ["Sky", "Road", "Car"] and ds.palette == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    assert ds.ignore_index == 3
    assert ds.check()["pairs"] == 3


def test_cityscapes_tree(tmp_path: Path) -> None:
    root = cityscapes_tree(tmp_path / "cs")
    assert detect_layout(root) == "cityscapes"
    ds = build_dataset(root, "train")
    assert isinstance(ds, CityscapesDataset) and len(ds) == 4
    assert ds.classes == CITYSCAPES_CLASSES and len(ds.palette) == 19 and ds.ignore_index == 255
    _, lab = ds[0]
    np.testing.assert_array_equal(lab, label([0, 13, 255, 10]))  # road, car, ego vehicle, sky
    assert ds.files[0][1].name.endswith("_gtFine_labelIds.png")


@pytest.mark.parametrize("tree", ["images/split", "split/images"])
def test_folder_ids_with_splits(tmp_path: Path, tree: str) -> None:
    root = tmp_path / "f"
    for split in ("train", "val"):
        for i in range(2):
            sub = (f"images/{split}", f"masks/{split}") if tree == "images/split" else (
                f"{split}/images", f"{split}/masks")
            write(root / sub[0] / f"a{i}.jpg", image(i))
            write(root / sub[1] / f"a{i}.png", label([0, 1, 255]))
    (root / "classes.txt").write_text("road\nsky\n")
    assert detect_layout(root) == "folder"
    ds = build_dataset(root, "val")
    assert isinstance(ds, FolderDataset) and len(ds) == 2 and ds.split == "val"
    assert ds.classes == ["road", "sky"] and ds.ignore_index == 255
    np.testing.assert_array_equal(ds[0][1], label([0, 1, 255]))
    assert ds[0][0].shape == (12, 16, 3)


def test_folder_colour_masks_flat(tmp_path: Path) -> None:
    root = tmp_path / "f"
    palette = [(128, 64, 128), (70, 130, 180), (128, 128, 128)]
    (root).mkdir()
    (root / "classes.json").write_text(json.dumps(
        [{"name": n, "color": c} for n, c in zip(["road", "sky", "grey"], palette, strict=True)]
        + [{"name": "void", "id": 255, "color": [0, 0, 0]}]))
    ids = label([0, 1, 2, 255])
    lut = np.array(palette + [(0, 0, 0)] * 253, np.uint8)  # id -> colour, void black
    write(root / "images" / "x.png", image(0))
    write(root / "masks" / "x.png", lut[ids])
    ds = build_dataset(root, "train")
    assert ds.classes == ["road", "sky", "grey"] and ds.palette == palette and ds.ignore_index == 255
    np.testing.assert_array_equal(ds[0][1], ids)


def test_folder_grey_rgb_masks_are_ids(tmp_path: Path) -> None:
    root = tmp_path / "f"
    write(root / "images" / "x.png", image(0))
    ids = label([0, 1, 2])
    write(root / "masks" / "x.png", np.stack([ids] * 3, -1))  # ids saved as a 3-channel grey PNG
    (root / "classes.txt").write_text("0 a 10,20,30\n1 b 40,50,60\n2 c 70,80,90\n")
    np.testing.assert_array_equal(build_dataset(root, "train")[0][1], ids)


# Indexed ("P" mode) PNG masks: OpenCV expands them to colours; the stored indices are the ids.
VOC_LIKE = [((i * 37) % 256, (i * 91) % 256, (i * 53) % 256) for i in range(256)]


@pytest.mark.parametrize("bit_depth", [1, 2, 4, 8])
def test_indexed_png_gives_indices_even_with_shared_colours(tmp_path: Path, bit_depth: int) -> None:
    """Every entry black and transparent: only the indices tell the classes apart."""
    n = 1 << bit_depth
    ids = np.random.default_rng(bit_depth).integers(0, n, (13, 17)).astype(np.uint8)  # odd width: packed rows
    path = write_indexed_png(tmp_path / "m.png", ids, [(0, 0, 0)] * n, bit_depth, transparency=bytes(n))
    for keep_colour in (False, True):
        lab = read_label(path, keep_colour=keep_colour)
        assert lab.dtype == np.uint8
        np.testing.assert_array_equal(lab, ids)


def test_camvid_indexed_png_masks(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    for i in range(3):  # CamVid colours + black void, as CamVid copies store them
        write_indexed_png(root / "trainannot" / f"f{i:03d}.png", label([3, 0, 8, 11]),
                          [*CAMVID_PALETTE, (0, 0, 0)])
    ds = build_dataset(root, "train")
    np.testing.assert_array_equal(ds[1][1], label([3, 0, 8, 11]))
    assert ds.check()["classes_seen"] == ["Sky", "Road", "Car"]
    # the indices then pass the usual checks: 12 is neither a class nor void
    bad = write_indexed_png(root / "trainannot" / "f002.png", label([3, 12]), [(0, 0, 0)] * 13)
    with pytest.raises(DatasetError, match="values 12 ") as e:
        ds[2]
    assert str(bad) in str(e.value)


def test_folder_indexed_png_indices_are_class_ids(tmp_path: Path) -> None:
    """VOC convention: index = class id, 255 = void; palette colours are not matched to the class file."""
    root = tmp_path / "f"
    ids = label([0, 1, 2, 255])
    write(root / "images" / "x.png", image(0))
    write_indexed_png(root / "masks" / "x.png", ids, VOC_LIKE)
    # colours that VOC_LIKE does not hold: they must not matter
    (root / "classes.txt").write_text("0 road 1,2,3\n1 car 4,5,6\n2 sky 7,8,9\n")
    ds = build_dataset(root, "train")
    assert ds.ignore_index == 255
    np.testing.assert_array_equal(ds[0][1], ids)


def test_cityscapes_indexed_png_label_ids(tmp_path: Path) -> None:
    root = cityscapes_tree(tmp_path / "cs")
    lab = root / "gtFine" / "train" / "aachen" / "aachen_000000_000000_gtFine_labelIds.png"
    write_indexed_png(lab, label([7, 26, 1, 23]), VOC_LIKE[:34])
    np.testing.assert_array_equal(build_dataset(root, "train")[0][1], label([0, 13, 255, 10]))


def test_layout_argument_overrides_detection(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    ds = build_dataset(root, "train", layout="camvid")
    assert ds.name == "camvid"
    with pytest.raises(DatasetError, match="leftImg8bit"):
        build_dataset(root, "train", layout="cityscapes")


def test_transform_is_applied_and_reproducible(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    ds = build_dataset(root, "train", transform=train_transform((8, 8), ignore_index=11), seed=5)
    ds.set_epoch(0)
    a = ds[0]
    b = ds[0]
    assert a[0].shape == (8, 8, 3) and a[1].shape == (8, 8)
    np.testing.assert_array_equal(a[0], b[0])  # same (seed, epoch, index) -> same draw
    ds.set_epoch(1)
    assert not np.array_equal(ds[0][0], a[0])  # a new epoch draws new augmentations

    def plain(img: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return img[:4], lab[:4]

    ds.transform = plain  # two-argument callables work too
    assert ds[0][1].shape == (4, 16)
