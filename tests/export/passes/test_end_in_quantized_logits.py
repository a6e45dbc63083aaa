"""The end_in_quantized_logits pass (export/passes/end_in_quantized_logits.py)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto
from testkit.pass_graphs import dq_graph, images, producers, run

from edgeseg.export import quantize_onnx, read_meta
from edgeseg.export.passes import run_pass


def test_ort_int8_outputs_uint8_logits_with_the_same_argmax_and_the_runtime_reads_them(fcn_onnx, tmp_path):
    from edgeseg.runtime import Segmenter

    q8 = quantize_onnx(fcn_onnx, tmp_path / "u.int8.onnx", calib=images(4, (64, 96)), target="ort")
    fl = quantize_onnx(fcn_onnx, tmp_path / "f.int8.onnx", calib=images(4, (64, 96)), target="ort",
                       float_logits=True)
    meta = read_meta(q8.path)
    assert q8.output_quant is not None and meta.output_quant == q8.output_quant and fl.output_quant is None
    assert read_meta(fl.path).output_quant is None
    g = onnx.load(str(q8.path)).graph
    assert g.output[0].name == "logits" and g.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert producers(q8.path)["logits"] not in ("DequantizeLinear", "QuantizeLinear")  # the tail pair went too
    onnx.checker.check_model(onnx.load(str(q8.path)), full_check=True)
    x = np.random.default_rng(7).standard_normal((1, 3, 64, 96)).astype(np.float32)
    u, f = run(q8.path, x), run(fl.path, x)
    assert u.dtype == np.uint8 and f.dtype == np.float32
    assert np.array_equal(meta.float_logits(u), f)  # exactly the dequantized logits
    frame = np.random.default_rng(8).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with Segmenter(q8.path) as a, Segmenter(fl.path) as b:
        assert np.array_equal(a(frame).class_map, b(frame).class_map)
        assert a.info["output_quant"] == list(q8.output_quant)
    trt = quantize_onnx(fcn_onnx, tmp_path / "t.int8.onnx", calib=images(4, (64, 96)), target="tensorrt")
    assert trt.output_quant is None  # TensorRT's S8S8 graph keeps float logits


def test_end_in_quantized_logits_leaves_other_endings():

    per_channel = dq_graph(np.array([0.05, 0.1], np.float32), output_dq=True)
    del per_channel.graph.output[0]  # now the float DequantizeLinear output ends the graph, per channel
    assert run_pass("end_in_quantized_logits", per_channel) == []
    float_end = dq_graph(np.array(0.05, np.float32))  # ends in a Reshape of float data
    assert run_pass("end_in_quantized_logits", float_end) == []
