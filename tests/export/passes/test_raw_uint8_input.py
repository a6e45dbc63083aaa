"""The raw_uint8_input pass (export/passes/raw_uint8_input.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from testkit.pass_graphs import frames, fused, images, run

from edgeseg.export import quantize_onnx, read_meta
from edgeseg.export.passes import pass_counts


def test_ort_int8_feeds_the_uint8_frame_to_the_first_conv_and_tensorrt_keeps_the_normaliser_float(
        tiny_model, tmp_path):
    src = fused(tiny_model, tmp_path)
    res = quantize_onnx(src, tmp_path / "f.int8.onnx", calib=images(4, (32, 48)), target="ort")
    assert res.changed("raw_uint8_input") and pass_counts(read_meta(res.path).extra)["raw_uint8_input"] == len(res.changed("raw_uint8_input"))
    g = onnx.load(str(res.path)).graph
    assert not any(n.op_type in ("Cast", "Mul", "Add") for n in g.node)
    consumers = {i: n for n in g.node for i in n.input}
    chain = [consumers[g.input[0].name]]
    while chain[-1].op_type in ("Transpose", "Concat", "Reshape", "Pad"):
        chain.append(consumers[chain[-1].output[0]])
    dq = chain[-1]
    # border strips, then a zero fourth channel (pad_input_channels), then the frame's bytes dequantized
    assert [n.op_type for n in chain] == ["Transpose", "Concat", "Concat", "Reshape", "Pad", "Reshape",
                                          "DequantizeLinear"]
    assert dq.op_type == "DequantizeLinear"  # the frame's own bytes, scale 1, zero point 0
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    assert float(inits[dq.input[1]]) == 1.0 and int(inits[dq.input[2]]) == 0
    # as close to FP32 as the same quantization without the fold (which quantizes the normalised image)
    unfolded = quantize_onnx(src, tmp_path / "u.int8.onnx", calib=images(4, (32, 48)), target="ort",
                             skip_passes=["fold_input_normalization"])
    assert not unfolded.changed("raw_uint8_input")
    x = frames(1)
    want = run(src, x)
    got, ref = ((run(r.path, x).astype(np.float32) - r.output_quant[1]) * r.output_quant[0] for r in (res, unfolded))
    assert np.abs(got - want).mean() < 1.05 * np.abs(ref - want).mean()
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.95

    trt = quantize_onnx(src, tmp_path / "f.trt.onnx", calib=images(4, (32, 48)), target="tensorrt")
    assert not trt.changed("raw_uint8_input")
    g = onnx.load(str(trt.path)).graph
    norm = next(n for n in g.node if n.op_type == "Conv")  # the first Conv: float weights, no Q/DQ
    assert {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT} >= {norm.input[1]}
    assert not any(n.op_type == "DequantizeLinear" and n.output[0] == norm.input[1] for n in g.node)
