"""The pad_input_channels pass (export/passes/pad_input_channels.py)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper
from testkit.pass_graphs import CLASSES, frames, images, qdq_two_stems, run

from edgeseg.export import quantize_onnx, read_meta, torch_to_onnx
from edgeseg.export.passes import pass_counts, run_pass
from edgeseg.models import create_model


@pytest.mark.parametrize("fused", [False, True])
def test_image_input_conv_gets_a_zero_fourth_channel_bit_identically(tiny_model, tmp_path, fused):
    kw = {"fuse_preprocess": True} if fused else {}
    src = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES, **kw)
    res = quantize_onnx(src, tmp_path / "m.int8.onnx", calib=images(4, (32, 48)), target="ort")
    g = onnx.load(str(res.path)).graph
    first = next(n for n in g.node if n.op_type == "Conv")
    assert res.changed("pad_input_channels") == [first.name] and pass_counts(read_meta(res.path).extra)["pad_input_channels"] == 1
    assert {"name": "pad_input_channels", "count": 1} in [{k: p[k] for k in ("name", "count")} for p in res.to_dict()["passes"]]
    producer = {o: n for n in g.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    weight = inits[producer[first.input[1]].input[0]]
    assert weight.shape[1] == 4 and not weight[:, 3].any()  # a zero fourth input channel
    dq = producer[first.input[0]]
    unflat = producer[dq.input[0]]
    pad = producer[unflat.input[0]]
    assert (unflat.op_type, pad.op_type, producer[pad.input[0]].op_type) == ("Reshape", "Pad", "Reshape")
    # the padded channel holds the zero point: it dequantizes to 0
    assert int(inits[pad.input[2]]) == int(inits[dq.input[2]])
    plain = quantize_onnx(src, tmp_path / "p.int8.onnx", calib=images(4, (32, 48)), target="ort",
                          skip_passes=["pad_input_channels"])
    assert plain.changed("pad_input_channels") == []
    x = frames(1) if fused else np.random.default_rng(5).standard_normal((1, 3, 32, 48)).astype(np.float32)
    np.testing.assert_array_equal(run(res.path, x), run(plain.path, x))


def test_padded_input_channels_work_at_any_size_and_stay_planar_in_onnx_runtime(tmp_path):
    import torch

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()
    src = torch_to_onnx(model, tmp_path / "d.onnx", imgsz="64x96", classes=CLASSES, dynamic=True)
    res = quantize_onnx(src, tmp_path / "d.int8.onnx", calib=images(4, (64, 96)), target="ort")
    assert len(res.changed("pad_input_channels")) == 1
    plain = quantize_onnx(src, tmp_path / "dp.int8.onnx", calib=images(4, (64, 96)), target="ort",
                          skip_passes=["pad_input_channels"])
    for h, w in ((64, 96), (96, 128)):  # Reshape's 0s copy each dimension: no size is baked in
        x = np.random.default_rng(h).standard_normal((1, 3, h, w)).astype(np.float32)
        np.testing.assert_array_equal(run(res.path, x), run(plain.path, x))
    # ONNX Runtime keeps the Pad on the 5-D view (channels planar): its transpose optimizer cannot move a
    # channels-last transpose through the Reshapes, where padding would copy 3 bytes per pixel
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(res.path), opts, providers=["CPUExecutionProvider"])
    og = onnx.load(str(tmp_path / "optimized.onnx")).graph
    producer = {o: n for n in og.node for o in n.output}
    pads = [n for n in og.node if n.op_type == "Pad" and n.name.endswith("_pad_channels")]
    assert len(pads) == 1 and producer[pads[0].input[0]].op_type == "Reshape"


def test_tensorrt_target_and_wide_inputs_are_not_padded(tiny_model, tmp_path):

    src = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES)
    trt = quantize_onnx(src, tmp_path / "m.trt.onnx", calib=images(4, (32, 48)), target="tensorrt")
    assert trt.changed("pad_input_channels") == [] and not any(n.op_type == "Pad" for n in onnx.load(str(trt.path)).graph.node)
    # only convs on fewer than 4 channels: a second pass finds nothing left to pad
    res = quantize_onnx(src, tmp_path / "m.int8.onnx", calib=images(4, (32, 48)), target="ort")
    proto = onnx.load(str(res.path))
    before = proto.SerializeToString()
    assert run_pass("pad_input_channels", proto) == [] and proto.SerializeToString() == before


def test_convs_reading_one_image_share_one_padded_copy():

    proto = qdq_two_stems()
    x = np.random.default_rng(8).standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = run(proto, x)
    assert run_pass("pad_input_channels", proto) == ["conv_a", "conv_b"]
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Pad") == 1 and "dq" not in {n.name for n in proto.graph.node}  # the unpadded DQ is gone
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs[0].input[0] == convs[1].input[0]
    np.testing.assert_array_equal(run(proto, x), want)
