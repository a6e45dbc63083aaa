"""`edgeseg export` end to end on a short-trained checkpoint: reports, gates, artifacts, bad inputs."""

from __future__ import annotations

import json
import stat

import numpy as np
import onnx
import pytest

from edgeseg.cli import main
from edgeseg.export import pipeline
from edgeseg.export.pipeline import ExportFailed, artifact_path, export_checkpoint, report_path
from edgeseg.runtime.errors import BackendUnavailableError, DatasetError, ModelFormatError, UsageError
from edgeseg.runtime.fileio import FILE_MODE
from edgeseg.runtime.metadata import ModelMeta

FAST = ["--val-images", "6", "--calib-images", "8", "--threads", "1", "--quiet"]


def _props(path) -> ModelMeta:
    return ModelMeta.from_props({p.key: p.value for p in onnx.load(str(path)).metadata_props})


def test_artifact_and_report_names(tmp_path):
    base = tmp_path / "x"
    assert artifact_path(base, "fp32").name == "x.onnx"
    assert artifact_path(base, "fp16").name == "x.fp16.onnx"
    assert artifact_path(base, "int8").name == "x.int8.onnx"
    assert artifact_path(base, "int8", int8_target="tensorrt").name == "x.int8.trt.onnx"
    assert artifact_path(base, "fp16", "engine").name == "x.fp16.engine"
    assert [report_path(tmp_path / n).name for n in ("x.onnx", "x.fp16.onnx", "x.int8.onnx", "x.int8.trt.onnx")] == \
        ["x.fp32.json", "x.fp16.json", "x.int8.json", "x.int8.trt.json"]
    assert pipeline.base_path("runs/best.pt", None).name == "best"
    assert pipeline.base_path("runs/best.pt", "out/model.fp16.onnx").name == "model"


def test_cli_fp32_export_writes_checked_report(trained_checkpoint, tmp_path, capsys):
    out = tmp_path / "m"
    rc = main(["export", str(trained_checkpoint), "--out", str(out), "--json", str(tmp_path / "s.json"), *FAST])
    assert rc == 0
    table = capsys.readouterr().out
    assert "m.onnx" in table and "pytorch (reference)" in table
    report = json.loads((tmp_path / "m.fp32.json").read_text())
    assert report["passed"] and report["parity"]["pixel_agreement"] >= 99.9
    assert report["parity"]["max_abs_logit_diff"] < 1e-3
    assert report["parity"]["images"] == 6 and report["parity"]["latency_ms"] > 0
    assert set(report["parity"]["metrics"]["per_class_iou"]) == set(_props(tmp_path / "m.onnx").classes)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["passed"] and summary["reference"]["miou"] == pytest.approx(
        report["parity"]["metrics"]["miou"], abs=0.5)
    meta = _props(tmp_path / "m.onnx")
    assert meta.precision == "fp32" and meta.model_name == "unet_lite" and len(meta.source_sha256) == 64
    # checked under a private temporary name, published with the usual file mode
    assert stat.S_IMODE((tmp_path / "m.onnx").stat().st_mode) == FILE_MODE


def test_cli_out_folder_gets_the_artifacts_inside(trained_checkpoint, tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    assert main(["export", str(trained_checkpoint), "--out", f"{tmp_path / 'imgs'}/", *FAST]) == 0
    assert (tmp_path / "imgs" / "tiny.onnx").is_file() and (tmp_path / "imgs" / "tiny.fp32.json").is_file()
    assert not (tmp_path / "imgs.onnx").exists()  # not beside the folder, named after it


def test_out_base_of_folders_and_names(tmp_path):
    from edgeseg.cli.export_cmd import _out_base

    (tmp_path / "models").mkdir()
    assert _out_base("runs/best.pt", str(tmp_path / "models")) == str(tmp_path / "models" / "best")  # no slash
    assert _out_base("runs/best.pt", f"{tmp_path / 'new'}/") == str(tmp_path / "new" / "best")  # not there yet
    assert _out_base("runs/best.pt", str(tmp_path / "m")) == str(tmp_path / "m")  # a base name stays one
    assert _out_base("runs/best.pt", None) is None


def test_cli_negative_val_images_is_refused_up_front(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), "--val-images", "-1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--val-images -1 must be at least 0" in err[0]


@pytest.mark.parametrize("kwargs, message", [({"val_images": -1}, "--val-images -1 must be at least 0"),
                                             ({"threads": -1}, "--threads -1 must be at least 0")])
def test_api_negative_counts_are_refused_before_loading(tmp_path, kwargs, message):
    from edgeseg.export import export_checkpoint
    from edgeseg.runtime.errors import UsageError

    with pytest.raises(UsageError, match=message):
        export_checkpoint(tmp_path / "missing.pt", **kwargs)  # refused before the missing file is noticed


def test_plain_onnx_message_names_only_what_exists():
    with pytest.raises(ModelFormatError) as e:
        ModelMeta.from_props({}, "plain.onnx")
    msg = str(e.value)
    assert msg.startswith("plain.onnx has no edgeseg metadata") and "\n" not in msg
    assert "edgeseg export" in msg and "torch_to_onnx(..., classes=" in msg and "Segmenter(..., classes=" in msg
    assert "--classes" not in msg  # no command has that option


def test_int8_ort_export_has_qdq_and_passes_gate(trained_checkpoint, tmp_path):
    res = export_checkpoint(trained_checkpoint, precision="int8", out=tmp_path / "m", val_images=6,
                            calib_images=8, progress=False, threads=1)
    path = tmp_path / "m.int8.onnx"
    assert res.artifact == path and res.passed
    q = onnx.load(str(path))
    ops = [n.op_type for n in q.graph.node]
    assert ops.count("QuantizeLinear") > 5 and ops.count("DequantizeLinear") > 5
    # ORT CPU target: uint8 activations (fused into integer kernels on x86), int8 weights.
    zp_types = {i.data_type for i in q.graph.initializer if "zero_point" in i.name} - {onnx.TensorProto.INT32}
    assert zp_types == {onnx.TensorProto.UINT8, onnx.TensorProto.INT8}
    meta = _props(path)
    assert meta.precision == "int8" and meta.int8_target == "ort_cpu"
    report = json.loads((tmp_path / "m.int8.json").read_text())
    assert report["gate"]["passed"] and report["gate"]["miou_drop"] <= 1.0
    assert report["quantization"]["target"] == "ort" and (tmp_path / "m.calib.json").is_file()
    # A second export reuses the calibration cache.
    again = export_checkpoint(trained_checkpoint, precision="int8", out=tmp_path / "m", val_images=6,
                              calib_images=8, progress=False, threads=1)
    assert again.rows[-1]["quantization"]["cache_hit"]


def test_fp16_export_keeps_float32_io(trained_checkpoint, tmp_path):
    res = export_checkpoint(trained_checkpoint, precision="fp16", out=tmp_path / "m", val_images=6, progress=False, threads=1)
    path = tmp_path / "m.fp16.onnx"
    assert res.artifact == path
    q = onnx.load(str(path))
    assert q.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert q.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in q.graph.initializer)
    row = res.rows[-1]
    assert row["precision"] == "fp16" and row["parity"]["pixel_agreement"] > 99.0


def test_fused_export_through_pipeline(trained_checkpoint, tmp_path):
    res = export_checkpoint(trained_checkpoint, out=tmp_path / "f", val_images=6, fuse_preprocess=True,
                            fuse_argmax=True, progress=False, threads=1)
    row = res.rows[-1]
    assert row["input_layout"] == "NHWC_BGR_U8" and row["output_kind"] == "class_map"
    assert row["parity"]["max_abs_logit_diff"] is None and row["parity"]["pixel_agreement"] >= 99.9


def test_failed_gate_removes_artifact_unless_kept(trained_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "MIN_FP32_AGREEMENT", 100.1)  # an unreachable bar: the gate must fail
    rc = main(["export", str(trained_checkpoint), "--out", str(tmp_path / "a"), *FAST])
    assert rc == 1
    err = capsys.readouterr().err
    assert "error:" in err and "agrees with PyTorch" in err
    assert not (tmp_path / "a.onnx").exists()
    report = json.loads((tmp_path / "a.fp32.json").read_text())
    assert report["status"] == "FAILED" and report["removed"]
    with pytest.raises(ExportFailed):
        export_checkpoint(trained_checkpoint, out=tmp_path / "b", val_images=6, keep_failed=True, progress=False, threads=1)
    assert (tmp_path / "b.onnx").exists()


def _dir_names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failed_fp32_reexport_leaves_the_earlier_artifact_byte_identical(trained_checkpoint, tmp_path, monkeypatch):
    earlier = tmp_path / "m.onnx"
    earlier.write_bytes(b"the good model from an earlier export")  # never read: only its bytes matter
    (tmp_path / "m.fp32.json").write_text('{"status": "ok"}')  # and the report that describes it
    checked = []

    def interrupted(path, *a, **kw):  # a Ctrl-C (or kill) while the new model is being checked
        checked.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "check_parity", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_checkpoint(trained_checkpoint, out=tmp_path / "m", val_images=2, progress=False, threads=1)
    assert checked and checked[0] != earlier
    assert earlier.read_bytes() == b"the good model from an earlier export"
    assert _dir_names(tmp_path) == ["m.fp32.json", "m.onnx"]  # the unchecked candidate is gone too
    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "MIN_FP32_AGREEMENT", 100.1)  # an unreachable bar: the gate must fail
    with pytest.raises(ExportFailed):
        export_checkpoint(trained_checkpoint, out=tmp_path / "m", val_images=2, progress=False, threads=1)
    assert earlier.read_bytes() == b"the good model from an earlier export"
    assert json.loads((tmp_path / "m.fp32.json").read_text()) == {"status": "ok"}  # still the good one's
    report = json.loads((tmp_path / "m.fp32.failed.json").read_text())
    assert report["status"] == "FAILED" and report["removed"] and report["previous_kept"]
    assert _dir_names(tmp_path) == ["m.fp32.failed.json", "m.fp32.json", "m.onnx"]


def test_failed_int8_reexport_leaves_the_earlier_artifact_byte_identical(trained_checkpoint, tmp_path, monkeypatch):
    earlier = tmp_path / "m.int8.onnx"
    earlier.write_bytes(b"the good INT8 model from an earlier export")
    real_gate = pipeline.quantize_with_gate

    def failing_gate(*a, **kw):  # a limit no quantized model meets: attempts, node ranking, then failure
        return real_gate(*a, **{**kw, "max_miou_drop": -1000.0, "max_float_nodes": 1})

    monkeypatch.setattr(pipeline, "quantize_with_gate", failing_gate)
    with pytest.raises(ExportFailed, match="m.int8.onnx loses"):
        export_checkpoint(trained_checkpoint, precision="int8", out=tmp_path / "m", val_images=2, calib_images=4,
                          progress=False, threads=1)
    assert earlier.read_bytes() == b"the good INT8 model from an earlier export"
    report = json.loads((tmp_path / "m.int8.failed.json").read_text())  # m.int8.json describes the kept model
    assert report["status"] == "FAILED" and report["previous_kept"] and report["artifact"] == str(earlier)
    assert report["quantization"]["path"] == str(earlier) and report["gate"]["steps"]
    assert not any(name.startswith(".") for name in _dir_names(tmp_path))


def test_cli_unsupported_opset_is_refused_up_front(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), "--opset", "99", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--opset 99 is not supported: choose 17 to" in err[0]


def test_not_a_checkpoint_is_one_line_error(tmp_path, capsys):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"definitely not a torch file")
    assert main(["export", str(bogus), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.pt" in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize(("flag", "value", "hint"), [
    ("--precision", "fp61", "fp16"), ("--calib-method", "entropi", "entropy"),
    ("--format", "engin", "engine"), ("--int8-target", "tensorrtt", "tensorrt")])
def test_unknown_names_suggest_close_matches(trained_checkpoint, flag, value, hint, capsys):
    assert main(["export", str(trained_checkpoint), flag, value, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert value in err and f"did you mean '{hint}'" in err


def test_calibration_folder_missing_or_empty(trained_checkpoint, tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        export_checkpoint(trained_checkpoint, precision="int8", calib=str(tmp_path / "nope"), out=tmp_path / "m",
                          val_images=2, progress=False, threads=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match="contains no images"):
        export_checkpoint(trained_checkpoint, precision="int8", calib=str(empty), out=tmp_path / "m",
                          val_images=2, progress=False, threads=1)


def test_engine_without_tensorrt_says_what_to_install(trained_checkpoint, tmp_path):
    pytest.importorskip("numpy")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    with pytest.raises(BackendUnavailableError, match="TensorRT.*GPU"):
        export_checkpoint(trained_checkpoint, fmt="engine", precision="fp16", out=tmp_path / "m", progress=False, threads=1)
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_bad_numbers_are_usage_errors(trained_checkpoint, tmp_path):
    with pytest.raises(UsageError, match="max-miou-drop"):
        export_checkpoint(trained_checkpoint, max_miou_drop=-1, out=tmp_path / "m", progress=False, threads=1)
    with pytest.raises(UsageError, match="--imgsz"):
        export_checkpoint(trained_checkpoint, imgsz="4x4", out=tmp_path / "m", progress=False, threads=1)
    assert np.all([not p.name.endswith(".onnx") for p in tmp_path.iterdir()])
