"""Zoo: short names resolve to bundled files; unknown names get suggestions."""

from __future__ import annotations

import importlib.util

import pytest

from edgeseg.runtime import Segmenter, zoo
from edgeseg.runtime.errors import ModelFormatError, UsageError


@pytest.fixture
def fake_zoo(tmp_path, tiny_onnx):
    for name in ("camvid-unet-lite.onnx", "camvid-unet-lite.int8.onnx", "cityscapes-fcn8s-lite.onnx"):
        (tmp_path / name).write_bytes(tiny_onnx.read_bytes())
    (tmp_path / "README.md").write_text("not a model")
    return tmp_path


def test_list_and_resolve(fake_zoo):
    assert zoo.list_models(fake_zoo) == ["camvid-unet-lite", "camvid-unet-lite.int8", "cityscapes-fcn8s-lite"]
    assert zoo.resolve("camvid-unet-lite", fake_zoo) == fake_zoo / "camvid-unet-lite.onnx"
    assert zoo.resolve("camvid-unet-lite.int8.onnx", fake_zoo) == fake_zoo / "camvid-unet-lite.int8.onnx"


def test_unknown_name_suggests_close_matches(fake_zoo):
    with pytest.raises(UsageError, match="unknown model 'camvid-unet'; did you mean 'camvid-unet-lite'"):
        zoo.resolve("camvid-unet", fake_zoo)
    with pytest.raises(UsageError, match="choose one of: camvid-unet-lite, .*path to a .onnx"):
        zoo.resolve("zzz", fake_zoo)


def test_empty_zoo_says_to_give_a_path(tmp_path):
    with pytest.raises(ModelFormatError, match="neither an existing file nor a bundled model"):
        zoo.resolve("camvid-unet-lite", tmp_path)


def test_segmenter_resolves_short_names(fake_zoo, monkeypatch):
    monkeypatch.setattr(zoo, "ZOO_DIR", fake_zoo)
    seg = Segmenter("camvid-unet-lite.int8")
    assert seg.path == fake_zoo / "camvid-unet-lite.int8.onnx"
    with pytest.raises(UsageError, match="did you mean"):
        Segmenter("camvid-unet-lit")
    with pytest.raises(ModelFormatError, match="does not exist"):
        Segmenter("models/camvid-unet-lite.onnx")  # looks like a path: no zoo lookup
    assert Segmenter("camvid-unet-lite.int8.onnx").path == fake_zoo / "camvid-unet-lite.int8.onnx"  # its file name
    with pytest.raises(ModelFormatError, match="model file mine.onnx does not exist"):
        Segmenter("mine.onnx")  # neither a file here nor bundled: said as a missing file


def test_bundled_models_load_when_present():
    names = zoo.list_models()
    if not names:
        pytest.skip("no bundled models in runtime/zoo yet")
    has_openvino = importlib.util.find_spec("openvino") is not None
    for name in names:
        if zoo.resolve(name).suffix == ".xml" and not has_openvino:
            continue  # an OpenVINO IR: test_bundled_openvino_flavour
        seg = Segmenter(name)
        assert seg.classes, name
        if seg.meta.int8_target == "ort_cpu":  # exported with the NCHW fence for the decoder's nearest upsamplings
            assert seg.meta.extra.get("nchw_resizes") == "4", name


def test_bundled_stride2_twin_upsamples_to_the_frame():
    if "camvid-unet-lite-s2.int8" not in zoo.list_models():
        pytest.skip("the stride-2 twin is not bundled")
    import numpy as np

    frame = np.zeros((540, 960, 3), np.uint8)
    with Segmenter("camvid-unet-lite-s2.int8", threads=1) as s2, Segmenter("camvid-unet-lite.int8", threads=1) as full:
        assert s2.info["output_stride"] == 2 and full.info["output_stride"] == 1
        assert s2.meta.source_sha256 == full.meta.source_sha256  # the same weights, cut differently
        assert s2(frame).class_map.shape == full(frame).class_map.shape == (540, 960)


def test_an_ir_is_listed_with_its_weights_only(fake_zoo):
    (fake_zoo / "m.int8.ov.xml").write_text("<net/>")
    assert "m.int8.ov" not in zoo.list_models(fake_zoo)  # no .bin beside it: not a model
    (fake_zoo / "m.int8.ov.bin").write_bytes(b"")
    assert "m.int8.ov" in zoo.list_models(fake_zoo)
    assert zoo.resolve("m.int8.ov", fake_zoo) == zoo.resolve("m.int8.ov.xml", fake_zoo) == fake_zoo / "m.int8.ov.xml"


def test_bundled_openvino_flavour(monkeypatch):
    if "camvid-unet-lite-s2.int8.ov" not in zoo.list_models():
        pytest.skip("the OpenVINO INT8 flavour is not bundled")
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # `edgeseg models` reads an IR's metadata without OpenVINO
    row = next(r for r in zoo.describe_models() if r["name"] == "camvid-unet-lite-s2.int8.ov")
    assert (row["precision"], row["int8_target"], row["output_stride"], row["classes"]) == ("int8", "openvino", 2, 11)
    assert row["size_mb"] > 1 and row["miou"] is not None
    monkeypatch.undo()
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'edgeseg[openvino]')")
    import numpy as np

    frame = np.zeros((540, 960, 3), np.uint8)
    with Segmenter("camvid-unet-lite-s2.int8.ov", threads=1) as seg:  # an .xml runs on OpenVINO
        assert seg.info["backend"] == "openvino" and seg(frame).class_map.shape == (540, 960)
        assert seg.meta.source_sha256 == Segmenter("camvid-unet-lite").meta.source_sha256
