"""convert_fp16 on the tiny model: valid graphs (fused pre-processing included) close to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgeseg.export import convert_fp16, read_meta, torch_to_onnx
from edgeseg.export.onnx_export import run_onnx

CLASSES = ["road", "car", "sky", "tree", "person"]  # matches the tiny_model fixture


@pytest.mark.parametrize("fuse_argmax", [False, True])
def test_fused_preprocess_converts_to_a_valid_fp16_model_close_to_fp32(tiny_model, tmp_path, fuse_argmax):
    fp32 = torch_to_onnx(tiny_model, tmp_path / "f.onnx", imgsz="32x48", classes=CLASSES, fuse_preprocess=True,
                         fuse_argmax=fuse_argmax)
    half = convert_fp16(fp32, tmp_path / "f.fp16.onnx")  # onnx.checker ran inside (full_check)
    onnx.checker.check_model(onnx.load(str(half)), full_check=True)
    g = onnx.load(str(half)).graph
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8  # still reads the camera frame
    assert read_meta(half).precision == "fp16"
    frames = np.random.default_rng(0).integers(0, 256, (1, 32, 48, 3), dtype=np.uint8)  # (N, H, W, 3) BGR
    want, got = run_onnx(fp32, frames), run_onnx(half, frames)
    assert got.dtype == want.dtype and got.shape == want.shape
    if fuse_argmax:
        assert (got == want).mean() > 0.99  # class maps: near-ties may flip
    else:
        assert np.abs(got - want).max() < 0.05 * max(1.0, float(np.abs(want).max()))
        assert (got.argmax(1) == want.argmax(1)).mean() > 0.99
