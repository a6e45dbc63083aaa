"""Engine manifest: naming, round trip, malformed files, and the GPU/TensorRT check."""

from __future__ import annotations

import json
import re

import pytest

from edgeseg.runtime.errors import EngineMismatchError, ModelFormatError
from edgeseg.runtime.manifest import (
    EngineManifest,
    Profile,
    TensorInfo,
    TrtVersion,
    check_manifest,
    format_compute_capability,
    manifest_path,
    read_manifest,
    rebuild_command,
    write_manifest,
)
from edgeseg.runtime.metadata import ModelMeta

META = ModelMeta(classes=("road", "car", "sky"), palette=((128, 64, 128), (0, 0, 142), (70, 130, 180)),
                 input_size=(360, 480), precision="fp16")


def make_manifest(**changes) -> EngineManifest:
    fields = dict(
        trt_version="10.3.0.30", gpu_name="NVIDIA Jetson AGX Orin", compute_capability="8.7", precision="fp16",
        profiles=(Profile("input", (1, 3, 180, 240), (1, 3, 360, 480), (4, 3, 720, 960)),),
        io=(TensorInfo("input", "input", (-1, 3, -1, -1), "float32"),
            TensorInfo("logits", "output", (-1, 3, -1, -1), "float32")),
        meta=META, source_onnx="models/x.fp16.onnx", source_checkpoint="runs/x.pt", source_onnx_sha256="a" * 64,
        engine_sha256="b" * 64,
        built_at="2025-01-01T00:00:00+00:00", edgeseg_version="0.1.0", build={"workspace_gb": 4.0},
    )
    fields.update(changes)
    return EngineManifest(**fields)


def test_manifest_name_sits_beside_the_engine(tmp_path):
    assert manifest_path(tmp_path / "x.fp16.engine") == tmp_path / "x.fp16.engine.json"
    assert manifest_path("a/x.plan").as_posix() == "a/x.plan.json"


def test_round_trip(tmp_path):
    engine = tmp_path / "x.fp16.engine"
    m = make_manifest()
    path = write_manifest(engine, m)
    assert path == tmp_path / "x.fp16.engine.json"
    back = read_manifest(engine)
    assert back == m
    assert back.inputs[0].name == "input" and back.outputs[0].name == "logits"
    assert back.profile_for("input").opt == (1, 3, 360, 480)
    data = json.loads(path.read_text())
    for key in ("tensorrt_version", "gpu_name", "compute_capability", "profiles", "io", "meta",
                "source_onnx_sha256", "engine_sha256", "built_at", "edgeseg_version"):
        assert key in data
    assert data["meta"]["classes"] == ["road", "car", "sky"]


def test_missing_manifest_says_how_to_rebuild(tmp_path):
    engine = tmp_path / "x.int8.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelFormatError, match=r"no manifest x\.int8\.engine\.json.*edgeseg export CHECKPOINT "
                                               r"--format engine --precision int8 .*the \.pt that x\.onnx was"):
        read_manifest(engine)
    (tmp_path / "x.pt").write_bytes(b"ckpt")  # the checkpoint beside the engine is the one to rebuild from
    with pytest.raises(ModelFormatError, match=rf"edgeseg export {tmp_path / 'x.pt'} --format engine --precision int8"):
        read_manifest(engine)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", json.dumps({"manifest_version": 99}),
                                  json.dumps({"manifest_version": 1, "precision": "fp16"})])
def test_malformed_manifest_is_a_clear_error(tmp_path, text):
    engine = tmp_path / "x.fp16.engine"
    manifest_path(engine).write_text(text)
    with pytest.raises(ModelFormatError, match="rebuild"):
        read_manifest(engine)


def test_version_and_compute_capability_helpers():
    assert TrtVersion.parse("10.3.0").same_release(TrtVersion.parse("10.3.0.30"))
    assert not TrtVersion.parse("10.3.0.30").same_release(TrtVersion.parse("10.3.0.26"))
    assert not TrtVersion.parse("10.3.0").same_release(TrtVersion.parse("10.4.0"))
    assert format_compute_capability((8, 7)) == "8.7"
    assert format_compute_capability("sm_87") == "8.7"
    assert format_compute_capability("12.0") == "12.0"
    assert format_compute_capability("100") == "10.0"


def test_check_accepts_a_match():
    check_manifest(make_manifest(), "10.3.0.30", "NVIDIA  jetson AGX Orin", (8, 7))


@pytest.mark.parametrize("trt, gpu, cc, what", [
    ("10.7.0", "NVIDIA Jetson AGX Orin", "8.7", "TensorRT 10.3.0.30"),
    ("11.0.0", "NVIDIA Jetson AGX Orin", "8.7", "TensorRT 10.3.0.30"),
    ("10.3.0.30", "NVIDIA GeForce RTX 4090", "8.9", "compute capability 8.7"),
    ("10.3.0.30", "NVIDIA Jetson Orin Nano", "8.7", "GPU 'NVIDIA Jetson AGX Orin'"),
])
def test_check_refuses_a_mismatch_with_a_rebuild_command(tmp_path, trt, gpu, cc, what):
    engine = tmp_path / "x.fp16.engine"
    with pytest.raises(EngineMismatchError) as err:
        check_manifest(make_manifest(), trt, gpu, cc, engine_path=engine)
    msg = str(err.value)
    assert what in msg
    assert "edgeseg export runs/x.pt --format engine --precision fp16 --imgsz 360x480 --dynamic" in msg
    assert f"--out {engine}" in msg
    assert "\n" not in msg


def test_other_gpu_of_same_capability_allowed_when_not_strict():
    check_manifest(make_manifest(), "10.3.0.30", "NVIDIA Jetson Orin Nano", "8.7", strict_gpu_name=False)
    with pytest.raises(EngineMismatchError):
        check_manifest(make_manifest(), "10.3.0.30", "RTX 4090", "8.9", strict_gpu_name=False)


def test_rebuild_command_finds_the_checkpoint_or_says_which(tmp_path):
    m = make_manifest(source_checkpoint="", profiles=(Profile("input", (2, 3, 64, 64), (2, 3, 64, 64), (2, 3, 64, 64)),))
    cmd = rebuild_command(m, tmp_path / "x.fp16.engine")
    assert cmd.startswith("edgeseg export CHECKPOINT --format engine --precision fp16 --imgsz 64x64 --batch 2")
    assert "--dynamic" not in cmd and cmd.endswith("(CHECKPOINT: the .pt that x.fp16.onnx was exported from)")
    (tmp_path / "x.pt").write_bytes(b"ckpt")
    cmd = rebuild_command(m, tmp_path / "x.fp16.engine")
    assert cmd == (f"edgeseg export {tmp_path / 'x.pt'} --format engine --precision fp16 --imgsz 64x64 --batch 2 "
                   f"--out {tmp_path / 'x.fp16.engine'}")
    fused = make_manifest(meta=META.with_(input_layout="NHWC_BGR_U8", output_kind="class_map"),
                          profiles=(Profile("frame", (1, 360, 480, 3), (1, 360, 480, 3), (1, 360, 480, 3)),))
    assert "--imgsz 360x480 --fuse-preprocess --fuse-argmax" in rebuild_command(fused)


def test_rebuild_command_keeps_the_output_stride():
    coarse = make_manifest(meta=META.with_(output_stride=2))
    assert "--imgsz 360x480 --dynamic --output-stride 2" in rebuild_command(coarse)
    assert "--output-stride" not in rebuild_command(make_manifest())


@pytest.mark.parametrize("stem", ["model_v1.5", "model.best"])
def test_rebuild_command_finds_a_checkpoint_with_dots_in_its_name(tmp_path, stem):
    engine = tmp_path / f"{stem}.fp16.engine"
    (tmp_path / f"{stem}.pt").write_bytes(b"ckpt")
    (tmp_path / "model_v1.pt").write_bytes(b"another model")  # what with_suffix(".pt") would pick
    (tmp_path / "model.pt").write_bytes(b"another model")
    assert rebuild_command(make_manifest(source_checkpoint=""), engine).startswith(
        f"edgeseg export {tmp_path / (stem + '.pt')} --format engine")
    with pytest.raises(ModelFormatError, match=re.escape(f"edgeseg export {tmp_path / (stem + '.pt')} --format")):
        read_manifest(engine)  # no manifest: the command comes from the engine's name alone


def test_profile_validation():
    with pytest.raises(ValueError):
        Profile("input", (1, 3, 64, 64), (1, 3, 32, 64), (1, 3, 64, 64))
