"""The keep_nearest_resizes_nchw pass (export/passes/keep_nearest_resizes_nchw.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from testkit.pass_graphs import CLASSES, images, optimized_resize_scales, qdq_resize, quantize_both, run

from edgeseg.export import quantize_onnx, read_meta
from edgeseg.export.passes import pass_counts, run_pass


def test_fenced_int8_is_bit_identical_and_runs_resize_in_nchw(unet_onnx, tmp_path):
    fenced, plain = quantize_both(unet_onnx[0], tmp_path)
    assert len(fenced.changed("keep_nearest_resizes_nchw")) == 4 and plain.changed("keep_nearest_resizes_nchw") == []
    assert pass_counts(read_meta(fenced.path).extra)["keep_nearest_resizes_nchw"] == 4
    onnx.checker.check_model(onnx.load(str(fenced.path)), full_check=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    assert np.array_equal(run(fenced.path, x), run(plain.path, x))
    # Without the fence ONNX Runtime moves the Resizes to channels-last (scales 1,2,2,1); with it they stay NCHW.
    assert optimized_resize_scales(plain.path, tmp_path) == [[1.0, 2.0, 2.0, 1.0]] * 4
    assert optimized_resize_scales(fenced.path, tmp_path) == [[1.0, 1.0, 2.0, 2.0]] * 4


def test_fence_keeps_dynamic_batch_and_size(unet_onnx, tmp_path):
    fenced, plain = quantize_both(unet_onnx[1], tmp_path)
    assert len(fenced.changed("keep_nearest_resizes_nchw")) == 4
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 96), (2, 3, 96, 128)]:
        x = rng.standard_normal(shape).astype(np.float32)
        out = run(fenced.path, x)
        assert out.shape == (shape[0], len(CLASSES), *shape[2:])
        assert np.array_equal(out, run(plain.path, x))


def test_tensorrt_target_is_not_fenced(unet_onnx, tmp_path):
    res = quantize_onnx(unet_onnx[0], tmp_path / "t.int8.trt.onnx", calib=images(4, (64, 96)), target="tensorrt")
    assert res.changed("keep_nearest_resizes_nchw") == [] and pass_counts(read_meta(res.path).extra).get("keep_nearest_resizes_nchw", 0) == 0
    assert res.changed("share_concat_ranges") == [] and pass_counts(read_meta(res.path).extra).get("share_concat_ranges", 0) == 0
    assert not [n for n in onnx.load(str(res.path)).graph.node if n.op_type == "Reshape"]


@pytest.mark.parametrize("mode,scales,per_tensor", [("linear", [1, 1, 2, 2], True), ("nearest", [1, 1, 3, 3], True),
                                                    ("nearest", [1, 2, 2, 2], True), ("nearest", [1, 1, 2, 2], False)])
def test_only_per_tensor_nearest_x2_resizes_are_fenced(mode, scales, per_tensor):
    proto = qdq_resize(mode, scales, per_tensor)
    before = proto.SerializeToString()
    assert run_pass("keep_nearest_resizes_nchw", proto) == []
    assert proto.SerializeToString() == before


def test_fence_on_a_bare_graph_is_exact():
    proto = qdq_resize("nearest", [1, 1, 2, 2])
    x = np.random.default_rng(2).integers(0, 256, (1, 4, 6, 8), dtype=np.uint8)
    want = run(proto, x)
    assert run_pass("keep_nearest_resizes_nchw", proto) == ["up"]
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node].count("Reshape") == 2
    assert np.array_equal(run(proto, x), want)
