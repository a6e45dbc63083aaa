"""The subpixel_bilinear_head pass (export/passes/subpixel_bilinear_head.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from testkit.pass_graphs import CLASSES, bilinear_head_graph, images, run

from edgeseg.export import quantize_onnx, read_meta, torch_to_onnx
from edgeseg.export.passes import pass_counts, run_pass, with_role
from edgeseg.models import create_model


@pytest.mark.parametrize("kw", [
    {},  # no crop: pads on all four sides
    {"crop": ([0], [9], [2])},  # rows 0..8 of 12 (a U-Net's padded rows): no bottom pad, fewer rows computed
    {"crop": ([1, 3], [11, -2], [-2, -1])},  # odd starts, negative end and axes
    {"crop": ([2], [2 ** 62], [3]), "n": 2, "bias": False},  # an INT64-max style end, batch 2, no bias
    {"sizes": True, "ctm": "pytorch_half_pixel"},  # given as output sizes; PyTorch's coordinate mode
])
def test_subpixel_bilinear_head_equals_conv_then_resize(kw):

    model = bilinear_head_graph(**kw)
    x = np.random.default_rng(12).standard_normal((kw.get("n", 1), 5, 6, 7)).astype(np.float32)
    before = run(model, x)
    assert run_pass("subpixel_bilinear_head", model) == ["classifier"] and [n.name.removesuffix("_bilinear_x2") for n in with_role(model, "bilinear_x2")] == ["classifier"]
    ops = [nd.op_type for nd in model.graph.node]
    assert "Resize" not in ops and ops.count("Conv") == 1 and "DepthToSpace" in ops
    onnx.checker.check_model(model, full_check=True)
    after = run(model, x)
    assert after.shape == before.shape and np.abs(after - before).max() < 1e-5
    used = {i for nd in model.graph.node for i in nd.input}
    assert all(t.name in used for t in model.graph.initializer)  # the Resize scales, old weights, old crop gone
    assert run_pass("split_depth_to_space", model) and np.abs(run(model, x) - before).max() < 1e-5


@pytest.mark.parametrize("kw", [{"mode": "nearest"}, {"ctm": "align_corners"}, {"factor": 4.0}, {"kernel": 3},
                                {"dynamic": True}])
def test_subpixel_bilinear_head_leaves_other_heads(kw):

    model = bilinear_head_graph(**kw)
    assert run_pass("subpixel_bilinear_head", model) == []
    assert [nd.op_type for nd in model.graph.node] == ["Relu", "Conv", "Resize"]


def test_full_resolution_unet_quantizes_its_head_for_onnx_runtime(tmp_path):
    """unet_lite's classifier + bilinear x2 (+ the crop of its padded rows) become a quantized sub-pixel
    conv in the ``ort`` INT8 file: no float conv, no Resize in float, uint8 logits; TensorRT's keeps them."""
    import torch

    from edgeseg.export.quantize import preprocess_for_quant

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()
    src = torch_to_onnx(model, tmp_path / "u.onnx", imgsz="50x96", classes=CLASSES)  # padded to 64 rows, cropped
    x = np.random.default_rng(14).standard_normal((1, 3, 50, 96)).astype(np.float32)
    pre = preprocess_for_quant(src, tmp_path / "pre.onnx", target="ort")
    assert np.abs(run(pre, x) - run(src, x)).max() < 1e-4  # the float rewrite changes nothing
    res = quantize_onnx(src, tmp_path / "u.int8.onnx", calib=images(4, (50, 96)), target="ort")
    assert len(res.changed("subpixel_bilinear_head")) == 1 and res.head_in_float == [] and res.output_quant is not None
    assert pass_counts(read_meta(res.path).extra)["subpixel_bilinear_head"] == 1
    g = onnx.load(str(res.path)).graph
    producer = {o: nd for nd in g.node for o in nd.output}
    convs = [nd for nd in g.node if nd.op_type == "Conv"]
    assert all(producer[nd.input[1]].op_type == "DequantizeLinear" for nd in convs)  # every conv int8
    pads = [nd for nd in g.node if nd.op_type == "Pad"]
    assert pads and all(producer[nd.input[0]].op_type != "DequantizeLinear" for nd in pads)  # Pad moves uint8
    assert run(res.path, x).shape == (1, len(CLASSES), 50, 96)
    trt = quantize_onnx(src, tmp_path / "t.int8.onnx", calib=images(4, (50, 96)), target="tensorrt")
    assert trt.changed("subpixel_bilinear_head") == [] and "Resize" in {nd.op_type for nd in onnx.load(str(trt.path)).graph.node}
    asked = quantize_onnx(src, tmp_path / "f.int8.onnx", calib=images(4, (50, 96)), target="ort", float_head=True)
    assert asked.changed("subpixel_bilinear_head") == [] and asked.head_in_float  # float_head=True: the original head, in float
    assert "Resize" in {nd.op_type for nd in onnx.load(str(asked.path)).graph.node}
