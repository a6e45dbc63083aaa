"""``edgeseg info``: metadata, IO and environment, text and JSON, one-line errors."""

from __future__ import annotations

import json

import pytest

from edgeseg.cli import main


def test_info_prints_metadata_and_io(tiny_onnx, capsys):
    assert main(["info", str(tiny_onnx)]) == 0
    out = capsys.readouterr().out
    assert "48x64 (fixed), layout NCHW_RGB_F32" in out
    assert "images float [1x3x48x64]" in out and "logits float [1x4x48x64]" in out
    assert "class0, class1, class2, class3" in out and "CPUExecutionProvider" in out
    assert "tensorrt" in out and "torch" in out
    assert "jpeg decoder" in out


def test_info_names_the_jpeg_decoder_and_how_to_get_the_fast_one(make_tiny_onnx, capsys, monkeypatch):
    from edgeseg.runtime import jpeg

    model = make_tiny_onnx()
    monkeypatch.setattr(jpeg, "simplejpeg", None)
    assert main(["info", str(model.path)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("jpeg decoder"))
    assert "opencv" in line and "pip install simplejpeg" in line
    monkeypatch.setattr(jpeg, "simplejpeg", object())  # stands in for the installed module
    assert main(["info", str(model.path), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["environment"]["jpeg_decoder"] == "libjpeg-turbo (simplejpeg)"


def test_info_json(make_tiny_onnx, tmp_path, capsys):
    model = make_tiny_onnx(input_layout="NHWC_BGR_U8", output_kind="class_map", hw=None, batch=None,
                           preferred_hw=(36, 48))
    out_path = tmp_path / "info.json"
    assert main(["info", str(model.path), "--json", str(out_path)]) == 0
    d = json.loads(out_path.read_text())
    assert d["metadata"]["input_layout"] == "NHWC_BGR_U8" and d["metadata"]["output_kind"] == "class_map"
    assert d["runtime"]["input_size"] == [36, 48] and d["runtime"]["batch"] == "dynamic"
    assert d["io"]["inputs"][0] == {"name": "frames", "shape": ["batch", "height", "width", 3], "dtype": "uint8"}
    assert d["environment"]["onnxruntime_providers"] and len(d["sha256"]) == 64
    capsys.readouterr()
    assert main(["info", str(model.path), "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == str(model.path)


def test_info_errors_are_one_line(tmp_path, make_tiny_onnx, capsys):
    assert main(["info", str(tmp_path / "missing.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: model file {tmp_path / 'missing.onnx'} does not exist"]
    plain = make_tiny_onnx(with_meta=False)
    assert main(["info", str(plain.path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no edgeseg metadata" in err[0]


def test_info_counts_an_openvino_irs_weights():
    pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'edgeseg[openvino]')")
    from edgeseg.cli.info_cmd import describe
    from edgeseg.runtime import zoo

    if "camvid-unet-lite-s2.int8.ov" not in zoo.list_models():
        pytest.skip("the OpenVINO INT8 flavour is not bundled")
    xml = zoo.resolve("camvid-unet-lite-s2.int8.ov")
    d = describe(str(xml))
    assert d["size_bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert len(d["weights_sha256"]) == 64
