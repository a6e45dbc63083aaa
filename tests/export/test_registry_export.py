"""Every registered model exports to ONNX and matches PyTorch (small sizes; the VGG FCNs at one size)."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgeseg.export import read_meta, torch_to_onnx
from edgeseg.models import create_model, list_models

VGG = {"fcn8s", "fcn16s", "fcn32s"}  # 134 M parameters each: one static size, simplification off
# fcn8s covers every code path of fcn16s/fcn32s (it adds the pool3 skip to fcn16s' pool4 skip);
# the other two take ~12 s each here, so they run when EDGESEG_SLOW=1.
SLOW_VGG = {"fcn16s", "fcn32s"}
CLASSES = [f"c{i}" for i in range(6)]


def _params(name: str) -> list:
    marks = [pytest.mark.slow]
    if name in SLOW_VGG:
        marks.append(pytest.mark.skipif(not os.environ.get("EDGESEG_SLOW"),
                                        reason="VGG FCN variant of fcn8s; set EDGESEG_SLOW=1 to export it too"))
    return pytest.param(name, marks=marks) if name in VGG else name


@pytest.mark.parametrize("name", [_params(n) for n in list_models()])
def test_registry_model_exports_and_matches_pytorch(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, len(CLASSES)).eval()
    big = name in VGG
    h, w = (64, 64) if big else (64, 96)
    out = torch_to_onnx(model, tmp_path / f"{name}.onnx", imgsz=(h, w), classes=CLASSES, simplify=not big)
    assert read_meta(out).extra["exporter"] == "dynamo"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, h, w)  # (1, 3, H, W)
    with torch.inference_mode():
        want = model(x).numpy()  # (1, C, H, W)
    got = sess.run(None, {"images": x.numpy()})[0]
    assert got.shape == (1, len(CLASSES), h, w)
    scale = max(1.0, float(np.abs(want).max()))
    assert np.abs(got - want).max() / scale < 1e-4
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.999


@pytest.mark.parametrize("name", ["unet_lite", "fcn8s_lite"])
def test_dynamic_registry_export_runs_at_two_sizes(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, len(CLASSES)).eval()
    out = torch_to_onnx(model, tmp_path / "d.onnx", imgsz="64x96", dynamic=True, classes=CLASSES)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert read_meta(out).extra["exporter"] == "dynamo"
    for n, h, w in [(2, 64, 96), (1, 24, 40)]:  # 24x40: below the 32-pixel pad-to-stride branch
        x = torch.randn(n, 3, h, w)  # (N, 3, H, W)
        with torch.inference_mode():
            want = model(x).numpy()
        got = sess.run(None, {"images": x.numpy()})[0]
        assert got.shape == (n, len(CLASSES), h, w)
        assert np.abs(got - want).max() < 1e-3
