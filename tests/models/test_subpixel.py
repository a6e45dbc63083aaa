"""Transposed convolutions as sub-pixel convolutions: exact, only where it applies, and in the export."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeseg.export.passes import pass_counts
from edgeseg.models import create_model
from edgeseg.models.blocks import BilinearUp
from edgeseg.models.subpixel import SubPixelConv, can_rewrite, with_subpixel_upsampling


@pytest.mark.parametrize("k,s,p,bias", [(16, 8, 4, False), (4, 2, 1, True), (8, 4, 2, True), (5, 3, 1, False),
                                        (6, 2, 2, True)])
def test_sub_pixel_conv_equals_the_transposed_conv(k, s, p, bias):
    torch.manual_seed(k + s)
    ct = nn.ConvTranspose2d(5, 7, k, stride=s, padding=p, bias=bias)
    x = torch.randn(2, 5, 9, 11)
    assert can_rewrite(ct)
    with torch.no_grad():
        want, got = ct(x), SubPixelConv(ct)(x)
    assert got.shape == want.shape == (2, 7, 9 * s, 11 * s)
    assert (got - want).abs().max() < 1e-5


@pytest.mark.parametrize("layer", [
    nn.ConvTranspose2d(4, 4, 2, stride=2),  # k == s: no overlap, ORT's own kernel is a plain GEMM
    nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1),  # output 2n - 1: not a whole number of phases
    nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, output_padding=1),
    nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, groups=2),
    nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1, dilation=2),
    nn.Conv2d(4, 4, 3),
])
def test_layers_it_cannot_rewrite_exactly_are_left_alone(layer):
    assert not can_rewrite(layer)
    model = nn.Sequential(layer)
    same, n = with_subpixel_upsampling(model)
    assert same is model and n == 0


def test_fcn_rewrite_is_a_copy_with_equal_logits():
    torch.manual_seed(0)
    model = create_model("fcn8s_lite", 5).eval()
    with torch.no_grad():  # learned upsampling away from its bilinear start, as after training
        for m in model.modules():
            if isinstance(m, BilinearUp):
                m.weight.add_(0.05 * torch.randn_like(m.weight))
    fast, n = with_subpixel_upsampling(model)
    assert n == 3 and not any(isinstance(m, SubPixelConv) for m in model.modules())  # original untouched
    assert fast.head_stride == 8 and not fast.training
    x = torch.randn(1, 3, 75, 101)
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < 1e-4
        assert (fast.forward_coarse(x) - model.forward_coarse(x)).abs().max() < 1e-4


def test_export_writes_conv_and_split_depth_to_space_not_conv_transpose(tmp_path):
    from edgeseg.export import read_meta, torch_to_onnx

    torch.manual_seed(1)
    model = create_model("fcn8s_lite", 4).eval()
    path = torch_to_onnx(model, tmp_path / "f.onnx", imgsz="64x96", classes=list("abcd"))
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "ConvTranspose" not in ops and "DepthToSpace" not in ops  # static: split into transposes
    assert read_meta(path).extra["subpixel_upsampling"] == "3" and pass_counts(read_meta(path).extra).get("split_depth_to_space") == 3
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4
    dynamic = torch_to_onnx(model, tmp_path / "d.onnx", imgsz="64x96", classes=list("abcd"), dynamic=True)
    assert "DepthToSpace" in {n.op_type for n in onnx.load(str(dynamic)).graph.node}  # no static shape to split
    x2 = np.random.default_rng(1).standard_normal((2, 3, 96, 64)).astype(np.float32)
    got = ort.InferenceSession(str(dynamic), providers=["CPUExecutionProvider"]).run(None, {"images": x2})[0]
    with torch.no_grad():
        assert np.abs(got - model(torch.from_numpy(x2)).numpy()).max() < 1e-4
    plain = torch_to_onnx(model, tmp_path / "p.onnx", imgsz="64x96", classes=list("abcd"), subpixel=False)
    assert "ConvTranspose" in {n.op_type for n in onnx.load(str(plain)).graph.node}
