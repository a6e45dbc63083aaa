"""The channels_last_depth_to_space pass (export/passes/channels_last_depth_to_space.py)."""

from __future__ import annotations

import onnx
from testkit.pass_graphs import images

from edgeseg.export import quantize_onnx, read_meta
from edgeseg.export.passes import pass_counts


def test_exports_split_the_sub_pixel_heads_and_only_ort_int8_reads_them_channels_last(fcn_onnx, tmp_path):
    fp32 = onnx.load(str(fcn_onnx))
    assert "DepthToSpace" not in {nd.op_type for nd in fp32.graph.node}
    assert pass_counts(read_meta(fcn_onnx).extra)["split_depth_to_space"] == 3  # two x2 skip upsamplings and the x8 head
    ort_q = quantize_onnx(fcn_onnx, tmp_path / "o.int8.onnx", calib=images(4, (64, 96)), target="ort")
    assert len(ort_q.changed("channels_last_depth_to_space")) == 3 and pass_counts(read_meta(ort_q.path).extra)["channels_last_depth_to_space"] == 3
    trt_q = quantize_onnx(fcn_onnx, tmp_path / "t.int8.onnx", calib=images(4, (64, 96)), target="tensorrt")
    assert trt_q.changed("channels_last_depth_to_space") == [] and pass_counts(read_meta(trt_q.path).extra).get("channels_last_depth_to_space", 0) == 0
