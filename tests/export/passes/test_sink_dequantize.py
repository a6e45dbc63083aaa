"""The sink_dequantize pass (export/passes/sink_dequantize.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from testkit.pass_graphs import dq_graph, images, producers, run

from edgeseg.export import quantize_onnx, read_meta
from edgeseg.export.passes import pass_counts, run_pass


def test_sunk_dequantize_runs_the_split_head_and_crop_on_uint8_bit_identically(fcn_onnx, tmp_path):
    sunk = quantize_onnx(fcn_onnx, tmp_path / "s.int8.onnx", calib=images(4, (64, 96)), target="ort")
    plain = quantize_onnx(fcn_onnx, tmp_path / "p.int8.onnx", calib=images(4, (64, 96)), target="ort",
                          skip_passes=["sink_dequantize"])
    assert sunk.changed("sink_dequantize") and plain.changed("sink_dequantize") == []
    assert pass_counts(read_meta(sunk.path).extra)["sink_dequantize"] == len(sunk.changed("sink_dequantize"))
    # the split x8 head (the split_depth_to_space pass) moves quantized tensors end to end
    g = onnx.load(str(sunk.path)).graph
    head = [n for n in g.node if n.name.startswith("node_pixel_shuffle_2_split") and n.op_type in ("Transpose", "Reshape")]
    assert len(head) == 6 and sorted(n.name for n in head) == sorted(
        m for m in sunk.changed("sink_dequantize") if m.startswith("node_pixel_shuffle_2_split"))
    made_by = producers(sunk.path)
    assert all(made_by[n.input[0]] != "DequantizeLinear" for n in head)
    onnx.checker.check_model(onnx.load(str(sunk.path)), full_check=True)
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 96)).astype(np.float32)
    assert np.array_equal(run(sunk.path, x), run(plain.path, x))
    trt = quantize_onnx(fcn_onnx, tmp_path / "t.int8.onnx", calib=images(4, (64, 96)), target="tensorrt")
    assert trt.changed("sink_dequantize") == []  # TensorRT places its Q/DQ itself


@pytest.mark.parametrize("case, expected", [
    ({"scale": np.array(0.05, np.float32)}, ["tr", "rs"]),  # per-tensor: both moves go below
    ({"scale": np.array([0.05, 0.1], np.float32)}, []),  # per-channel: the axis moves, so it stays
    ({"scale": np.array(0.05, np.float32), "extra_use": True}, []),  # another op needs the float tensor
    ({"scale": np.array(0.05, np.float32), "output_dq": True}, []),  # the float tensor is a graph output
])
def test_sink_dequantize_moves_only_what_stays_exact(case, expected):

    model = dq_graph(**case)
    x = np.random.default_rng(5).integers(0, 256, (1, 2, 3, 4), dtype=np.uint8)
    before = run(model, x)
    assert run_pass("sink_dequantize", model) == expected
    onnx.checker.check_model(model, full_check=True)
    assert np.array_equal(run(model, x), before)
    if expected:
        assert [n.op_type for n in model.graph.node] == ["Transpose", "Reshape", "DequantizeLinear"]


def test_sink_dequantize_moves_edge_pads_but_not_constant_ones():

    for mode, moved in (("edge", ["pad"]), ("reflect", ["pad"]), ("constant", [])):
        nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dq"),
                 helper.make_node("Pad", ["xf", "pads"], ["y"], name="pad", mode=mode)]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 3, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 6])],
                                  initializer=[numpy_helper.from_array(np.array(0.05, np.float32), "s"),
                                               numpy_helper.from_array(np.array(7, np.uint8), "z"),
                                               numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
                                                                       "pads")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
        model.ir_version = 9
        x = np.random.default_rng(13).integers(0, 256, (1, 2, 3, 4), dtype=np.uint8)
        before = run(model, x)
        assert run_pass("sink_dequantize", model) == moved, mode
        assert np.array_equal(run(model, x), before)
