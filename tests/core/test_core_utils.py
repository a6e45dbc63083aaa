import os

import pytest

from edgeseg.runtime.errors import UsageError, unknown_name
from edgeseg.runtime.fileio import atomic_open, atomic_path, sha256_file, write_json
from edgeseg.runtime.sizes import parse_hw


@pytest.mark.parametrize("text,expected", [("360x480", (360, 480)), ("360,480", (360, 480)), ("512", (512, 512)),
                                           (256, (256, 256)), ((375, 500), (375, 500))])
def test_parse_hw(text, expected):
    assert parse_hw(text) == expected


@pytest.mark.parametrize("bad", ["abc", "360x", "1x2x3", "4x4", "0x480"])
def test_parse_hw_rejects_with_example(bad):
    with pytest.raises(UsageError, match="--imgsz"):
        parse_hw(bad)


def test_unknown_name_suggests_close_matches():
    err = unknown_name("model", "unet_lit", ["unet", "unet_lite", "fcn8s"])
    assert "did you mean 'unet_lite'" in str(err)
    err = unknown_name("model", "zzz", ["unet", "fcn8s"])
    assert "choose one of: fcn8s, unet" in str(err)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write('{"v": 2')
        raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith('{\n  "v": 1')
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


def test_atomic_path_renames_only_on_success(tmp_path):
    target = tmp_path / "model.onnx"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".onnx" and tmp.parent == tmp_path and not target.exists()
        tmp.write_bytes(b"abc")
    assert target.read_bytes() == b"abc"
    assert sha256_file(target) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert len(os.listdir(tmp_path)) == 1
    assert target.stat().st_mode & 0o044  # readable by others like any file, not mkstemp's 0600
