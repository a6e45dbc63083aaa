"""--output-stride: graphs that end before the head's upsampling, and the runtime that finishes them."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeseg.cli import main
from edgeseg.export import read_meta, torch_to_onnx
from edgeseg.export.pipeline import export_checkpoint
from edgeseg.models import create_model
from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import ModelFormatError, UsageError
from edgeseg.runtime.metadata import ModelMeta
from edgeseg.runtime.preprocess import resize_nearest

CLASSES = ["road", "car", "sky", "tree", "person"]


def _unet_lite() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("unet_lite", len(CLASSES), base=8).eval()


def _run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_models_know_their_head_stride():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 61, 90)
    for name, stride in [("unet_lite", 2), ("fcn8s_lite", 8)]:
        model = create_model(name, 4).eval()
        assert model.head_stride == stride
        with torch.no_grad():
            coarse = model.forward_coarse(x)
        assert coarse.shape == (1, 4, -(-61 // stride), -(-90 // stride))
    assert create_model("unet", 4, base=4).head_stride == 1  # the paper's U-Net has no head upsampling


@pytest.mark.parametrize("dynamic", [False, True])
def test_stride2_export_matches_the_coarse_pytorch_logits(tmp_path, dynamic):
    model = _unet_lite()
    out = torch_to_onnx(model, tmp_path / "s2.onnx", imgsz="64x96", classes=CLASSES, output_stride=2,
                        dynamic=dynamic)
    meta = read_meta(out)
    assert meta.output_stride == 2 and meta.input_size == (64, 96)
    for h, w in [(64, 96)] + ([(50, 70)] if dynamic else []):
        x = np.random.default_rng(h).standard_normal((1, 3, h, w)).astype(np.float32)
        got = _run(out, x)
        with torch.no_grad():
            want = model.forward_coarse(torch.from_numpy(x)).numpy()
        assert got.shape == (1, len(CLASSES), -(-h // 2), -(-w // 2))
        assert np.abs(got - want).max() < 1e-4


def test_stride2_fused_argmax_is_the_coarse_argmax(tmp_path):
    model = _unet_lite()
    plain = torch_to_onnx(model, tmp_path / "p.onnx", imgsz="64x96", classes=CLASSES, output_stride=2)
    fused = torch_to_onnx(model, tmp_path / "f.onnx", imgsz="64x96", classes=CLASSES, output_stride=2,
                          fuse_argmax=True)
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 96)).astype(np.float32)
    cmap = _run(fused, x)
    assert cmap.shape == (1, 32, 48)
    np.testing.assert_array_equal(cmap, _run(plain, x).argmax(1).astype(np.uint8))


def test_segmenter_upsamples_a_stride2_class_map_to_the_frame(tmp_path):
    model = _unet_lite()
    path = torch_to_onnx(model, tmp_path / "s2.onnx", imgsz="64x96", classes=CLASSES, output_stride=2)
    frame = np.random.default_rng(2).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    with Segmenter(path, threads=1) as seg:
        res = seg(frame)
        assert seg.info["output_stride"] == 2
        x = seg.new_preprocessor()([frame]).copy()  # the exact (1, 3, 64, 96) input the model saw
    assert res.class_map.shape == (120, 200)
    coarse = _run(path, x)[0].argmax(0).astype(np.uint8)  # (32, 48)
    np.testing.assert_array_equal(res.class_map, resize_nearest(coarse, (120, 200)))


@pytest.mark.parametrize("name,stride,hint", [
    ("unet", 2, "use --output-stride 1"),
    ("fcn8s_lite", 4, "use --output-stride 1 or 8"),
])
def test_a_stride_the_head_does_not_have_is_refused(tmp_path, name, stride, hint):
    model = create_model(name, len(CLASSES), **({"base": 4} if name == "unet" else {})).eval()
    with pytest.raises(UsageError, match=hint):
        torch_to_onnx(model, tmp_path / "x.onnx", imgsz="64x96", classes=CLASSES, output_stride=stride)
    assert not (tmp_path / "x.onnx").exists()


def test_byo_model_supports_only_stride1(tiny_model, tmp_path):
    with pytest.raises(UsageError, match="supports only --output-stride 1"):
        torch_to_onnx(tiny_model, tmp_path / "x.onnx", imgsz="64x96", classes=CLASSES, output_stride=2)
    with pytest.raises(UsageError, match="must be >= 1"):
        torch_to_onnx(_unet_lite(), tmp_path / "x.onnx", imgsz="64x96", classes=CLASSES, output_stride=0)


def test_metadata_rejects_a_bad_stride():
    with pytest.raises(ModelFormatError, match="output stride"):
        ModelMeta(classes=("a",), palette=((0, 0, 0),), output_stride=0)
    old = ModelMeta(classes=("a",), palette=((0, 0, 0),)).to_dict()
    del old["output_stride"]  # artifacts from before the key existed are full resolution
    assert ModelMeta.from_dict(old).output_stride == 1


def test_int8_export_at_stride2_through_the_cli(trained_checkpoint, tmp_path):
    out = tmp_path / "m"
    rc = main(["export", str(trained_checkpoint), "--precision", "int8", "--output-stride", "2", "--out", str(out),
               "--val-images", "6", "--calib-images", "8", "--threads", "1", "--quiet"])
    assert rc == 0
    for name, precision in [("m.fp32.json", "fp32"), ("m.int8.json", "int8")]:
        report = json.loads((tmp_path / name).read_text())
        assert report["metadata"]["output_stride"] == 2 and report["precision"] == precision
    fp32 = json.loads((tmp_path / "m.fp32.json").read_text())
    # parity is against the PyTorch model cut the same way, so it stays exact
    assert fp32["parity"]["pixel_agreement"] >= 99.9 and fp32["parity"]["max_abs_logit_diff"] < 1e-3
    assert read_meta(tmp_path / "m.int8.onnx").output_stride == 2


def test_stride_on_a_stride1_checkpoint_is_one_line_error(trained_checkpoint, tmp_path, capsys):
    rc = main(["export", str(trained_checkpoint), "--output-stride", "4", "--out", str(tmp_path / "m"),
               "--val-images", "2", "--quiet"])
    assert rc != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") and "--output-stride 1 or 2" in err[-1]
    assert not list(tmp_path.glob("m*.onnx"))


def test_export_pipeline_reference_is_the_coarse_model(trained_checkpoint, tmp_path):
    full = export_checkpoint(trained_checkpoint, out=tmp_path / "a", val_images=6, progress=False, threads=1)
    coarse = export_checkpoint(trained_checkpoint, out=tmp_path / "b", val_images=6, progress=False, threads=1,
                               output_stride=2)
    # both score on the labels at full size; the coarse one is close but computed differently
    a, b = full.reference["miou"], coarse.reference["miou"]
    assert a != b and abs(a - b) < 10
