"""Every bad input gives one DatasetError line that names the file or value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from testkit.data_trees import camvid_tree, cityscapes_tree, image, label, write, write_indexed_png

from edgeseg.data import build_dataset, check_dataset
from edgeseg.runtime.errors import DatasetError, UsageError


def one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as e:
        build_dataset(tmp_path / "nope", "train")
    assert str(tmp_path / "nope") in one_line(e) and "does not exist" in str(e.value)


def test_unknown_layout_folder(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the layout") as e:
        build_dataset(tmp_path, "train")
    assert "layout=" in one_line(e)
    with pytest.raises(UsageError, match="did you mean 'camvid'"):
        build_dataset(tmp_path, "train", layout="camvd")


def test_missing_split(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    with pytest.raises(DatasetError) as e:
        build_dataset(root, "test")
    msg = one_line(e)
    assert str(root / "test") in msg and "train, trainannot, val, valannot" in msg


def test_empty_split(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    (root / "test").mkdir()
    (root / "testannot").mkdir()
    with pytest.raises(DatasetError, match="'test'.*empty") as e:
        build_dataset(root, "test")
    assert str(root) in one_line(e)


def test_image_without_label(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    write(root / "train" / "extra.png", image(9))
    with pytest.raises(DatasetError, match="has no label") as e:
        build_dataset(root, "train")
    assert str(root / "train" / "extra.png") in one_line(e)


def test_label_without_image(tmp_path: Path) -> None:
    root = cityscapes_tree(tmp_path / "cs")
    orphan = write(root / "gtFine" / "train" / "aachen" / "aachen_000000_000099_gtFine_labelIds.png",
                   label([7]))
    with pytest.raises(DatasetError, match="has no image") as e:
        build_dataset(root, "train")
    assert str(orphan) in one_line(e)


def test_two_images_with_one_name(tmp_path: Path) -> None:
    """a.png and a.jpg would both pair with the one label a.png: refused, naming both."""
    root = camvid_tree(tmp_path / "cv")
    write(root / "train" / "f001.jpg", image(7))
    with pytest.raises(DatasetError, match="share the name 'f001'") as e:
        build_dataset(root, "train")
    msg = one_line(e)
    assert str(root / "train" / "f001.jpg") in msg and str(root / "train" / "f001.png") in msg


def test_two_labels_with_one_name(tmp_path: Path) -> None:
    """A second label for the same image was silently dropped: refused, naming both."""
    root = camvid_tree(tmp_path / "cv")
    write(root / "trainannot" / "f002.bmp", label([0, 1]))
    with pytest.raises(DatasetError, match="share the name 'f002'") as e:
        build_dataset(root, "train")
    msg = one_line(e)
    assert str(root / "trainannot" / "f002.bmp") in msg and str(root / "trainannot" / "f002.png") in msg


def test_two_labels_with_one_name_folder_layout(tmp_path: Path) -> None:
    write(tmp_path / "images" / "x.jpg", image(0))
    write(tmp_path / "masks" / "x.png", label([0]))
    write(tmp_path / "masks" / "x.bmp", label([1]))
    (tmp_path / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match="share the name 'x'") as e:
        build_dataset(tmp_path, "train")
    assert str(tmp_path / "masks" / "x.bmp") in one_line(e)


@pytest.mark.parametrize("ignore", [-1, 256, 300])
def test_ignore_index_must_fit_8bit_labels(tmp_path: Path, ignore: int) -> None:
    """-1 made crop padding class 0; 300 was matched as 300 % 256 = 44 in the labels."""
    write(tmp_path / "images" / "x.png", image(0))
    write(tmp_path / "masks" / "x.png", label([0, 1, 2]))
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["a", "b", "c"], "ignore_index": ignore}))
    with pytest.raises(DatasetError, match=f"ignore index {ignore} .*3\\.\\.255") as e:
        build_dataset(tmp_path, "train")
    assert str(tmp_path) in one_line(e)


def test_negative_void_id_in_classes_txt(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv", classes_txt=True)
    (root / "classes.txt").write_text("0 Sky\n1 Road\n-1 void\n")
    with pytest.raises(DatasetError, match="ignore index -1") as e:
        build_dataset(root, "train")
    assert "classes.txt" in one_line(e)


def test_ignore_index_255_and_c_are_the_bounds(tmp_path: Path) -> None:
    write(tmp_path / "images" / "x.png", image(0))
    write(tmp_path / "masks" / "x.png", label([0, 1, 2]))
    for ignore in (3, 255):
        spec = {"classes": ["a", "b", "c"], "ignore_index": ignore}
        (tmp_path / "classes.json").write_text(json.dumps(spec))
        assert build_dataset(tmp_path, "train").ignore_index == ignore


def test_too_many_classes_for_8bit_labels(tmp_path: Path) -> None:
    write(tmp_path / "images" / "x.png", image(0))
    write(tmp_path / "masks" / "x.png", label([0]))
    (tmp_path / "classes.txt").write_text("".join(f"c{i}\n" for i in range(256)))
    with pytest.raises(DatasetError, match="256 classes do not fit 8-bit labels") as e:
        build_dataset(tmp_path, "train")
    one_line(e)


def test_size_mismatch(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    write(root / "trainannot" / "f001.png", label([3], h=10, w=16))
    ds = build_dataset(root, "train")  # construction does not decode
    with pytest.raises(DatasetError, match="16x12.*16x10") as e:
        ds[1]
    assert str(root / "train" / "f001.png") in one_line(e)


def test_label_values_out_of_range(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    write(root / "trainannot" / "f002.png", label([3, 12, 200]))
    ds = build_dataset(root, "train")
    with pytest.raises(DatasetError) as e:
        ds[2]
    msg = one_line(e)
    assert str(root / "trainannot" / "f002.png") in msg and "12, 200" in msg and "void (11)" in msg


def test_cityscapes_label_not_label_ids(tmp_path: Path) -> None:
    root = cityscapes_tree(tmp_path / "cs")
    bad = root / "gtFine" / "train" / "aachen" / "aachen_000000_000000_gtFine_labelIds.png"
    write(bad, label([7, 40]))
    with pytest.raises(DatasetError, match="40") as e:
        build_dataset(root, "train")[0]
    assert str(bad) in one_line(e)


def test_colour_not_in_palette(tmp_path: Path) -> None:
    root = tmp_path / "f"
    write(root / "images" / "x.png", image(0))
    mask = np.zeros((12, 16, 3), np.uint8)
    mask[:, :8] = (10, 20, 30)
    mask[:, 8:] = (1, 2, 3)
    write(root / "masks" / "x.png", mask)
    (root / "classes.txt").write_text("0 a 10,20,30\n")
    with pytest.raises(DatasetError, match=r"\(1,2,3\)") as e:
        build_dataset(root, "train")[0]
    assert str(root / "masks" / "x.png") in one_line(e)


def test_folder_without_classes(tmp_path: Path) -> None:
    write(tmp_path / "images" / "x.png", image(0))
    write(tmp_path / "masks" / "x.png", label([0]))
    with pytest.raises(DatasetError, match="classes.txt") as e:
        build_dataset(tmp_path, "train")
    assert str(tmp_path) in one_line(e)


def test_folder_flat_has_no_val(tmp_path: Path) -> None:
    write(tmp_path / "images" / "x.png", image(0))
    write(tmp_path / "masks" / "x.png", label([0]))
    (tmp_path / "classes.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="no split folders.*'val'"):
        build_dataset(tmp_path, "val")


@pytest.mark.parametrize("content", [b"", b"not a png at all", None])
def test_corrupt_image(tmp_path: Path, content: bytes | None) -> None:
    root = camvid_tree(tmp_path / "cv")
    target = root / "train" / "f000.png"
    if content is None:  # a truncated PNG
        content = target.read_bytes()[:40]
    target.write_bytes(content)
    ds = build_dataset(root, "train")
    with pytest.raises(DatasetError, match="cannot read image") as e:
        ds[0]
    assert str(target) in one_line(e)
    with pytest.raises(DatasetError, match="1 of 3 pairs") as e:
        check_dataset(ds)
    assert str(target) in one_line(e)


def test_corrupt_label(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    target = root / "valannot" / "f001.png"
    target.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="cannot read label") as e:
        build_dataset(root, "val").check()
    assert str(target) in one_line(e)


def test_truncated_indexed_png_label(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    target = write_indexed_png(root / "trainannot" / "f000.png", label([3, 0]), [(0, 0, 0)] * 12)
    target.write_bytes(target.read_bytes()[:60])  # IHDR and PLTE intact, image data cut
    with pytest.raises(DatasetError, match="cannot read label") as e:
        build_dataset(root, "train")[0]
    assert str(target) in one_line(e)


def test_bad_classes_txt(tmp_path: Path) -> None:
    root = camvid_tree(tmp_path / "cv")
    (root / "classes.txt").write_text("0 Sky 1,2,3\n2 Road 4,5,6\n")
    with pytest.raises(DatasetError, match=r"\[0, 2\]") as e:
        build_dataset(root, "train")
    assert str(root / "classes.txt") in one_line(e)


def test_jpeg_masks_warn_once_and_name_the_cause(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """JPEG masks are lossy: ids and colours change along region edges, usually without any error."""
    root = tmp_path / "f"
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[:, 16:] = (200, 40, 90)  # one hard edge: JPEG rings colours around it
    for name in ("a", "b"):
        write(root / "images" / f"{name}.png", image(0, 32, 32))
        write(root / "masks" / f"{name}.jpg", mask)
    (root / "classes.txt").write_text("0 a 0,0,0\n1 b 200,40,90\n")
    with caplog.at_level("WARNING", logger="edgeseg.data"):
        ds = build_dataset(root, "train")
    warnings = [r.getMessage() for r in caplog.records if r.name == "edgeseg.data"]
    assert len(warnings) == 1 and "2 of 2 labels" in warnings[0] and "PNG" in warnings[0]
    assert str(root / "masks" / "a.jpg") in warnings[0]
    with pytest.raises(DatasetError, match="JPEG") as e:
        ds[0]
    assert str(root / "masks" / "a.jpg") in one_line(e)


def test_png_masks_do_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = camvid_tree(tmp_path / "cv")
    with caplog.at_level("WARNING", logger="edgeseg.data"):
        build_dataset(root, "train")
    assert not [r for r in caplog.records if r.name == "edgeseg.data"]
