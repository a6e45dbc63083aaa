"""Triton model repository export: config.pbtxt parses into Triton's own ModelConfig and matches the model.

Serving the repository is not tested: Triton's server does not run on these machines.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from edgeseg.cli import main
from edgeseg.export.onnx_export import torch_to_onnx
from edgeseg.export.triton_repo import write_repository
from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.manifest import EngineManifest, Profile, TensorInfo, write_manifest
from edgeseg.runtime.metadata import LAYOUT_UINT8, OUTPUT_CLASS_MAP, ModelMeta, default_palette

from .conftest import CLASSES, SYNTH

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient is not installed (pip install 'tritonclient[grpc]')")
from google.protobuf import text_format  # noqa: E402  (installed with tritonclient)

ORT_TYPES = {"tensor(uint8)": "TYPE_UINT8", "tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16"}


def _config(entry: Path):
    return text_format.Parse((entry / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _type_name(value: int) -> str:
    return model_config_pb2.DataType.Name(value)


def _dims(shape) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def _check_tensors_match(cfg, model: Path) -> None:
    """Every config tensor is the model's tensor of that name, type and shape (read by ONNX Runtime)."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    strip = 1 if cfg.max_batch_size else 0
    for want, got in ((sess.get_inputs(), cfg.input), (sess.get_outputs(), cfg.output)):
        assert [t.name for t in want] == [t.name for t in got]
        for w, g in zip(want, got, strict=True):
            assert ORT_TYPES[w.type] == _type_name(g.data_type)
            assert _dims(w.shape)[strip:] == list(g.dims)
            if strip:
                assert _dims(w.shape)[0] == -1  # batching needs a dynamic batch dimension


def test_fused_dynamic_onnx_gives_a_batching_frame_in_class_map_out_config(tiny_model, tmp_path: Path) -> None:
    model = torch_to_onnx(tiny_model, tmp_path / "road.fp16.onnx", imgsz="32x48", classes=CLASSES, dynamic=True,
                          fuse_preprocess=True, fuse_argmax=True)
    entry = write_repository(model, tmp_path / "repo")
    assert entry == tmp_path / "repo" / "road_fp16"
    cfg = _config(entry)
    assert cfg.name == "road_fp16" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 8 and list(cfg.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert _type_name(cfg.input[0].data_type) == "TYPE_UINT8" and list(cfg.input[0].dims) == [-1, -1, 3]
    assert _type_name(cfg.output[0].data_type) == "TYPE_UINT8" and list(cfg.output[0].dims) == [-1, -1]
    assert cfg.output[0].label_filename == "labels.txt"
    assert (entry / "labels.txt").read_text().splitlines() == CLASSES
    assert (entry / "1" / "model.onnx").read_bytes() == model.read_bytes()
    assert cfg.parameters["edgeseg.input_layout"].string_value == LAYOUT_UINT8
    _check_tensors_match(cfg, entry / "1" / "model.onnx")
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["road_fp16"]  # no temporary folder left


def test_fixed_batch_float_onnx_is_not_batched_by_triton(tiny_model, tmp_path: Path) -> None:
    model = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES, batch=2)
    cfg = _config(write_repository(model, tmp_path / "repo"))
    assert cfg.max_batch_size == 0 and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [2, 3, 32, 48] and _type_name(cfg.input[0].data_type) == "TYPE_FP32"
    assert cfg.output[0].label_filename == ""  # logits are not a classification output
    assert cfg.parameters["edgeseg.mean"].string_value == "0.485,0.456,0.406"  # the client normalises
    _check_tensors_match(cfg, tmp_path / "repo" / "m" / "1" / "model.onnx")


def test_an_existing_entry_is_never_replaced(tiny_model, tmp_path: Path) -> None:
    model = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES)
    entry = write_repository(model, tmp_path / "repo")
    (entry / "config.pbtxt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        write_repository(model, tmp_path / "repo")
    assert (entry / "config.pbtxt").read_text() == "mine"
    assert write_repository(model, tmp_path / "repo", name="m2").name == "m2"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_repository(model, tmp_path / "file")


def test_engine_entry_takes_its_tensors_from_the_manifest(tmp_path: Path) -> None:
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"serialized plan")  # Triton reads it; edgeseg only copies it
    meta = ModelMeta(classes=tuple(CLASSES), palette=tuple(default_palette(len(CLASSES))), input_size=(32, 48),
                     dynamic_batch=True, input_layout=LAYOUT_UINT8, output_kind=OUTPUT_CLASS_MAP, precision="fp16")
    io = (TensorInfo("images", "input", (-1, 32, 48, 3), "uint8"), TensorInfo("class_map", "output", (-1, 32, 48), "uint8"))
    write_manifest(engine, EngineManifest(trt_version="10.13.3.9", gpu_name="NVIDIA H100", compute_capability="9.0",
                                          precision="fp16", io=io, meta=meta,
                                          profiles=(Profile("images", (1, 32, 48, 3), (4, 32, 48, 3), (8, 32, 48, 3)),)))
    entry = write_repository(engine, tmp_path / "repo", max_batch_size=4)
    cfg = _config(entry)
    assert cfg.platform == "tensorrt_plan" and (entry / "1" / "model.plan").read_bytes() == b"serialized plan"
    assert cfg.max_batch_size == 4 and list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("images", [32, 48, 3])]
    assert [(t.name, list(t.dims), t.label_filename) for t in cfg.output] == [("class_map", [32, 48], "labels.txt")]


@pytest.mark.slow  # a full export with its parity and mIoU checks
def test_cli_exports_a_checkpoint_as_a_triton_repository(tmp_path: Path, capsys) -> None:
    from edgeseg.data import build_dataset
    from edgeseg.models import create_model
    from edgeseg.train.checkpoint import Checkpoint, save_checkpoint

    torch.manual_seed(0)
    ds = build_dataset(SYNTH, "val")
    net = create_model("unet_lite", len(ds.classes), base=4).eval()  # untrained: the parity check still holds
    ckpt = Checkpoint(model_name="unet_lite", model_kwargs={"base": 4}, state_dict=net.state_dict(),
                      classes=list(ds.classes), palette=[list(c) for c in ds.palette], ignore_index=ds.ignore_index, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225], input_size=[48, 64],
                      dataset={"layout": "synthetic", "root": SYNTH})
    save_checkpoint(ckpt, tmp_path / "road.pt", with_resume_state=False)
    argv = ["export", str(tmp_path / "road.pt"), "--format", "triton", "--out", str(tmp_path / "repo"),
            "--val-images", "2", "--quiet"]
    assert main(argv) == 0
    entry = tmp_path / "repo" / "road"
    assert f"Triton model repository: {entry}" in capsys.readouterr().out
    cfg = _config(entry)
    assert cfg.max_batch_size == 8 and _type_name(cfg.input[0].data_type) == "TYPE_UINT8"
    _check_tensors_match(cfg, entry / "1" / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "road.pt"]  # the export's work folder is gone
    before = (entry / "1" / "model.onnx").read_bytes()
    assert main(argv) == 2 and "already exists" in capsys.readouterr().err  # refused before exporting again
    assert (entry / "1" / "model.onnx").read_bytes() == before
