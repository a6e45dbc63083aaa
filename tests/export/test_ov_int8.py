"""The OpenVINO INT8 flavour: NNCF into IR through the accuracy gate, from a checkpoint and from an ONNX file."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'edgeseg[openvino-export]')")
pytest.importorskip("nncf", reason="NNCF not installed (pip install 'edgeseg[openvino-export]')")

from edgeseg.export.calibration import load_images  # noqa: E402
from edgeseg.export.gate import GateFailed, quantize_with_gate  # noqa: E402
from edgeseg.export.ov_int8 import bin_path, quantize_for_openvino, read_model_meta  # noqa: E402
from edgeseg.export.pipeline import ExportFailed, export_checkpoint  # noqa: E402
from edgeseg.runtime.errors import UsageError  # noqa: E402
from edgeseg.runtime.segmenter import Segmenter  # noqa: E402
from edgeseg.runtime.synthetic import SceneGenerator  # noqa: E402

from .conftest import SYNTH  # noqa: E402


@pytest.fixture(scope="module")
def exported(trained_checkpoint, tmp_path_factory):
    """One OpenVINO INT8 export of the tiny trained checkpoint (4 calibration, 4 validation images)."""
    out = tmp_path_factory.mktemp("ov") / "tiny"
    res = export_checkpoint(trained_checkpoint, precision="int8", int8_target="openvino", calib_images=4,
                            val_images=4, max_miou_drop=5.0, out=out, threads=1, progress=False)
    return out, res


def test_export_writes_ir_with_metadata_report_and_cache(exported):
    out, res = exported
    xml = out.with_name("tiny.int8.ov.xml")
    assert res.passed and res.artifact == xml and xml.is_file() and bin_path(xml).is_file()
    report = json.loads(out.with_name("tiny.int8.ov.json").read_text())
    assert report["passed"] and report["gate"]["passed"] and report["format"] == "openvino-ir"
    assert report["parity"]["pixel_agreement"] > 90 and report["parity"]["metrics"]["miou"] > 0
    q = report["quantization"]
    assert q["target"] == "openvino" and q["calib_images"] == 4 and not q["cache_hit"] and len(q["calib_ids"]) == 4
    assert out.with_name("tiny.ov.calib.json").is_file() and out.with_name("tiny.ov.calib.xml").is_file()
    _, meta = read_model_meta(xml)
    fp32 = Segmenter(out.with_name("tiny.onnx")).meta
    assert (meta.precision, meta.int8_target) == ("int8", "openvino")
    assert meta.classes == fp32.classes and meta.palette == fp32.palette and meta.mean == fp32.mean
    assert meta.source_sha256 == fp32.source_sha256 and meta.extra["calibration"].startswith("nncf")
    frame, _ = SceneGenerator((48, 64), seed=3).scene(0)
    with Segmenter(xml, threads=1) as seg:  # .xml picks OpenVINO by its suffix
        assert seg.info["backend"] == "openvino" and seg(frame).class_map.shape == (48, 64)


def test_onnx_input_reuses_the_cache_and_gate_decides(exported, tmp_path):
    out, _ = exported
    calib = load_images(SYNTH, "train", 4)
    val = load_images(SYNTH, "val", 4, need_labels=True)
    cache = out.with_name("tiny.ov.calib.json")
    res, gate = quantize_for_openvino(out.with_name("tiny.onnx"), tmp_path / "a.int8.ov.xml", calib=calib, val=val,
                                      max_miou_drop=5.0, cache_path=cache, threads=1)
    assert res.cache_hit and gate.passed and (tmp_path / "a.int8.ov.bin").is_file()
    # an impossible FP32 score fails the gate: nothing is published, the message says what to try
    with pytest.raises(GateFailed, match="loses .* mIoU points"):
        quantize_with_gate(out.with_name("tiny.onnx"), tmp_path / "b.int8.ov.xml", calib=calib, val=val,
                           fp32_miou=101.0, max_miou_drop=0.0, target="openvino", cache_path=cache, threads=1)
    assert not (tmp_path / "b.int8.ov.xml").exists() and not (tmp_path / "b.int8.ov.bin").exists()


def test_failed_gate_keeps_the_earlier_artifact(exported, trained_checkpoint, monkeypatch):
    import edgeseg.export.ov_int8 as ov_int8

    out, _ = exported
    xml = out.with_name("tiny.int8.ov.xml")
    before = xml.read_bytes()
    # every INT8 candidate scores 0 mIoU, and accuracy control proposes the all-INT8 model again (its real
    # search takes minutes): the gate must fail and leave the earlier good artifact as it was
    monkeypatch.setattr(ov_int8, "miou", lambda *a: 0.0)
    monkeypatch.setattr(ov_int8, "accuracy_controlled", lambda model, reader, *a: ov_int8.nncf_quantize(model, reader))
    with pytest.raises(ExportFailed, match="after accuracy control"):
        export_checkpoint(trained_checkpoint, precision="int8", int8_target="openvino", calib_images=4,
                          val_images=4, max_miou_drop=5.0, out=out, threads=1, progress=False)
    assert xml.read_bytes() == before
    failed = json.loads(out.with_name("tiny.int8.ov.failed.json").read_text())
    assert not failed["passed"] and failed["previous_kept"] and len(failed["gate"]["steps"]) == 2


def test_engine_format_is_refused_before_any_work(trained_checkpoint, tmp_path):
    with pytest.raises(UsageError, match="OpenVINO IR"):
        export_checkpoint(trained_checkpoint, fmt="engine", precision="int8", int8_target="openvino",
                          out=tmp_path / "x", progress=False)
    with pytest.raises(UsageError, match="NNCF estimates"):
        export_checkpoint(trained_checkpoint, precision="int8", int8_target="openvino", calib_method="entropy",
                          out=tmp_path / "x", progress=False)


def test_an_edgeseg_onnx_alone_gives_the_cut_openvino_flavour(exported, tmp_path, capsys):
    """`edgeseg export x.onnx --int8-target openvino --output-stride 2`: no checkpoint needed, the input kept."""
    from edgeseg.cli import main
    from edgeseg.runtime.fileio import sha256_file

    out, _ = exported
    src = out.with_name("tiny.onnx")
    before = sha256_file(src)
    rc = main(["export", str(src), "--precision", "int8", "--int8-target", "openvino", "--output-stride", "2",
               "--data", SYNTH, "--calib-images", "4", "--val-images", "4", "--max-miou-drop", "5",
               "--out", str(tmp_path / "t"), "--threads", "1", "--json", str(tmp_path / "r.json"), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert sha256_file(src) == before
    report = json.loads((tmp_path / "r.json").read_text())
    names = [row["artifact"] for row in report["artifacts"]]
    assert names == [str(tmp_path / "t.onnx"), str(tmp_path / "t.int8.ov.xml")] and report["passed"]
    gate = report["artifacts"][1]["gate"]
    assert gate["fp32_miou"] == pytest.approx(report["reference"]["miou"])  # judged against the full-size FP32
    _, meta = read_model_meta(tmp_path / "t.int8.ov.xml")
    assert meta.output_stride == 2 and meta.int8_target == "openvino"
    frame, _ = SceneGenerator((48, 64), seed=3).scene(0)
    with Segmenter(tmp_path / "t.int8.ov.xml", threads=1) as seg:
        assert seg(frame).class_map.shape == (48, 64)


@pytest.mark.parametrize("argv, message", [
    (["--precision", "int8"], "export its checkpoint"),
    (["--precision", "fp16"], "export its checkpoint"),
    ([], "already is the FP32 artifact"),
    (["--output-stride", "2", "--fuse-preprocess"], "--fuse-preprocess does not apply"),
    (["--output-stride", "3", "--data", SYNTH], "upsamples x2"),
])
def test_an_edgeseg_onnx_input_refuses_what_needs_the_checkpoint(exported, tmp_path, capsys, argv, message):
    from edgeseg.cli import main

    out, _ = exported
    assert main(["export", str(out.with_name("tiny.onnx")), "--out", str(tmp_path / "t"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not list(tmp_path.iterdir())


def test_the_nncf_cache_is_reused_only_as_it_was_made(exported, tmp_path, caplog):
    import shutil

    from edgeseg.export.ov_int8 import load_cached

    out, _ = exported
    src = out.with_name("tiny.ov.calib.json")
    for suffix in (".json", ".xml", ".bin"):
        shutil.copyfile(src.with_suffix(suffix), tmp_path / f"c{suffix}")
    cache = tmp_path / "c.json"
    data = json.loads(cache.read_text())
    assert load_cached(cache, data["hash"], data["provenance"]) is not None
    with caplog.at_level("WARNING"):
        assert load_cached(cache, "0" * 64, {**data["provenance"], "num_images": 99}) is None
    assert "different num_images" in caplog.text
    weights = bytearray((tmp_path / "c.bin").read_bytes())
    weights[-1] ^= 0xFF
    (tmp_path / "c.bin").write_bytes(bytes(weights))
    with caplog.at_level("WARNING"):
        assert load_cached(cache, data["hash"], data["provenance"]) is None
    assert "was changed" in caplog.text


def test_an_ir_whose_bin_is_not_its_own_is_refused_at_load(exported, tmp_path):
    """The pair is written as two renames: a .bin from another write must not load silently."""
    import shutil

    from edgeseg.runtime.errors import ModelFormatError

    out, _ = exported
    xml = out.with_name("tiny.int8.ov.xml")
    shutil.copyfile(xml, tmp_path / "m.xml")
    weights = bytearray(bin_path(xml).read_bytes())
    weights[len(weights) // 2] ^= 0xFF  # same size, other weights: as a crash between the renames would leave
    (tmp_path / "m.bin").write_bytes(bytes(weights))
    with pytest.raises(ModelFormatError, match="m.bin does not belong to m.xml"):
        Segmenter(tmp_path / "m.xml", threads=1)
    shutil.copyfile(bin_path(xml), tmp_path / "m.bin")
    with Segmenter(tmp_path / "m.xml", threads=1) as seg:  # its own weights load
        assert seg.meta.int8_target == "openvino"
