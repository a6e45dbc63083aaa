"""The NCHW fence around uint8 nearest x2 Resizes (export/ort_layout.py) for the ONNX Runtime INT8 target."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.export import ImageSet, quantize_onnx, read_meta, torch_to_onnx
from edgeseg.export import quantize as quantize_mod
from edgeseg.export.ort_layout import keep_nearest_resizes_nchw, share_concat_ranges
from edgeseg.models import create_model

CLASSES = ["road", "car", "sky", "tree", "person"]


def _images(n: int, size: tuple[int, int]) -> ImageSet:
    rng = np.random.default_rng(3)
    imgs = tuple(rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n))  # (H, W, 3) RGB
    return ImageSet(source="random:3", ids=tuple(f"img{i}" for i in range(n)), images=imgs, labels=None,
                    classes=tuple(CLASSES))


@pytest.fixture(scope="module")
def unet_onnx(tmp_path_factory):
    """unet_lite (base 8): four nearest x2 Resizes in its decoder; static and dynamic exports."""
    import torch

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()
    d = tmp_path_factory.mktemp("fence")
    static = torch_to_onnx(model, d / "u.onnx", imgsz="64x96", classes=CLASSES)
    dynamic = torch_to_onnx(model, d / "ud.onnx", imgsz="64x96", classes=CLASSES, dynamic=True)
    return static, dynamic


def _run(model, x: np.ndarray) -> np.ndarray:
    """First output of ``model`` (a path or an in-memory ModelProto) on ``x``."""
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _quantize_both(src, tmp_path, monkeypatch) -> tuple:
    """The same calibration quantized with and without the fence."""
    fenced = quantize_onnx(src, tmp_path / "f.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    monkeypatch.setattr(quantize_mod, "keep_nearest_resizes_nchw", lambda proto: [])
    plain = quantize_onnx(src, tmp_path / "p.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    return fenced, plain


def _optimized_resize_scales(path, tmp_path) -> list[list[float]]:
    """Scales of every Resize after ONNX Runtime's graph optimisation (its layout choice)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    g = onnx.load(str(tmp_path / "optimized.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return [inits[n.input[2]].tolist() for n in g.node if n.op_type == "Resize"]


def test_fenced_int8_is_bit_identical_and_runs_resize_in_nchw(unet_onnx, tmp_path, monkeypatch):
    fenced, plain = _quantize_both(unet_onnx[0], tmp_path, monkeypatch)
    assert len(fenced.nchw_resizes) == 4 and plain.nchw_resizes == []
    assert read_meta(fenced.path).extra["nchw_resizes"] == "4"
    onnx.checker.check_model(onnx.load(str(fenced.path)), full_check=True)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 96)).astype(np.float32)
    assert np.array_equal(_run(fenced.path, x), _run(plain.path, x))
    # Without the fence ONNX Runtime moves the Resizes to channels-last (scales 1,2,2,1); with it they stay NCHW.
    assert _optimized_resize_scales(plain.path, tmp_path) == [[1.0, 2.0, 2.0, 1.0]] * 4
    assert _optimized_resize_scales(fenced.path, tmp_path) == [[1.0, 1.0, 2.0, 2.0]] * 4


def test_fence_keeps_dynamic_batch_and_size(unet_onnx, tmp_path, monkeypatch):
    fenced, plain = _quantize_both(unet_onnx[1], tmp_path, monkeypatch)
    assert len(fenced.nchw_resizes) == 4
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 96), (2, 3, 96, 128)]:
        x = rng.standard_normal(shape).astype(np.float32)
        out = _run(fenced.path, x)
        assert out.shape == (shape[0], len(CLASSES), *shape[2:])
        assert np.array_equal(out, _run(plain.path, x))


def test_tensorrt_target_is_not_fenced(unet_onnx, tmp_path):
    res = quantize_onnx(unet_onnx[0], tmp_path / "t.int8.trt.onnx", calib=_images(4, (64, 96)), target="tensorrt")
    assert res.nchw_resizes == [] and read_meta(res.path).extra["nchw_resizes"] == "0"
    assert res.shared_concats == [] and read_meta(res.path).extra["shared_concat_ranges"] == "0"
    assert not [n for n in onnx.load(str(res.path)).graph.node if n.op_type == "Reshape"]


def _qdq_resize(mode: str, scales: list[float], per_tensor: bool = True) -> onnx.ModelProto:
    """x (uint8, 1x4x6x8) -> DequantizeLinear -> Resize -> QuantizeLinear -> y."""
    c = 4
    scale = np.array(0.1 if per_tensor else [0.1] * c, np.float32)
    zp = np.array(3 if per_tensor else [3] * c, np.uint8)
    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "z"),
             numpy_helper.from_array(np.array(scales, np.float32), "scales")]
    axis = {} if per_tensor else {"axis": 1}
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dq", **axis),
             helper.make_node("Resize", ["xf", "", "scales"], ["yf"], name="up", mode=mode,
                              coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
             helper.make_node("QuantizeLinear", ["yf", "s", "z"], ["y"], name="q", **axis)]
    out = [int(d * s) for d, s in zip((1, c, 6, 8), scales, strict=True)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, c, 6, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, out)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("mode,scales,per_tensor", [("linear", [1, 1, 2, 2], True), ("nearest", [1, 1, 3, 3], True),
                                                    ("nearest", [1, 2, 2, 2], True), ("nearest", [1, 1, 2, 2], False)])
def test_only_per_tensor_nearest_x2_resizes_are_fenced(mode, scales, per_tensor):
    proto = _qdq_resize(mode, scales, per_tensor)
    before = proto.SerializeToString()
    assert keep_nearest_resizes_nchw(proto) == []
    assert proto.SerializeToString() == before


def test_fence_on_a_bare_graph_is_exact():
    proto = _qdq_resize("nearest", [1, 1, 2, 2])
    x = np.random.default_rng(2).integers(0, 256, (1, 4, 6, 8), dtype=np.uint8)
    want = _run(proto, x)
    assert keep_nearest_resizes_nchw(proto) == ["up"]
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node].count("Reshape") == 2
    assert np.array_equal(_run(proto, x), want)


# -- sink_dequantize: data moves on uint8 instead of float ------------------------------------------
@pytest.fixture(scope="module")
def fcn_onnx(tmp_path_factory):
    """fcn8s_lite exports its transposed convolutions as conv + DepthToSpace, then crops with a Slice."""
    import torch

    torch.manual_seed(0)
    model = create_model("fcn8s_lite", len(CLASSES)).eval()
    return torch_to_onnx(model, tmp_path_factory.mktemp("sink") / "f.onnx", imgsz="64x96", classes=CLASSES)


def _producers(path) -> dict[str, str]:
    return {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}


def test_sunk_dequantize_runs_the_split_head_and_crop_on_uint8_bit_identically(fcn_onnx, tmp_path, monkeypatch):
    sunk = quantize_onnx(fcn_onnx, tmp_path / "s.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    monkeypatch.setattr(quantize_mod, "sink_dequantize", lambda proto: [])
    plain = quantize_onnx(fcn_onnx, tmp_path / "p.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    assert sunk.sunk_dequantize and plain.sunk_dequantize == []
    assert read_meta(sunk.path).extra["sunk_dequantize"] == str(len(sunk.sunk_dequantize))
    # the split x8 head (ort_layout.split_depth_to_space) moves quantized tensors end to end
    g = onnx.load(str(sunk.path)).graph
    head = [n for n in g.node if n.name.startswith("node_pixel_shuffle_2_split") and n.op_type in ("Transpose", "Reshape")]
    assert len(head) == 6 and sorted(n.name for n in head) == sorted(
        m for m in sunk.sunk_dequantize if m.startswith("node_pixel_shuffle_2_split"))
    made_by = _producers(sunk.path)
    assert all(made_by[n.input[0]] != "DequantizeLinear" for n in head)
    onnx.checker.check_model(onnx.load(str(sunk.path)), full_check=True)
    x = np.random.default_rng(4).standard_normal((1, 3, 64, 96)).astype(np.float32)
    assert np.array_equal(_run(sunk.path, x), _run(plain.path, x))
    trt = quantize_onnx(fcn_onnx, tmp_path / "t.int8.onnx", calib=_images(4, (64, 96)), target="tensorrt")
    assert trt.sunk_dequantize == []  # TensorRT places its Q/DQ itself


def _dq_graph(scale: np.ndarray, extra_use: bool = False, output_dq: bool = False) -> onnx.ModelProto:
    """uint8 x -> DequantizeLinear -> Transpose -> Reshape -> y, with the variations the pass must refuse."""
    nodes = [helper.make_node("DequantizeLinear", ["x", "s", "z"], ["xf"], name="dq", axis=1),
             helper.make_node("Transpose", ["xf"], ["t"], name="tr", perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["y"], name="rs")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24])]
    if extra_use:
        nodes.append(helper.make_node("Relu", ["xf"], ["r"], name="relu"))
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 2, 3, 4]))
    if output_dq:
        outputs.append(helper.make_tensor_value_info("xf", TensorProto.FLOAT, [1, 2, 3, 4]))
    zero = np.full(scale.shape, 7, np.uint8)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 3, 4])],
                              outputs, initializer=[numpy_helper.from_array(scale, "s"),
                                                    numpy_helper.from_array(zero, "z"),
                                                    numpy_helper.from_array(np.array([1, -1], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("case, expected", [
    ({"scale": np.array(0.05, np.float32)}, ["tr", "rs"]),  # per-tensor: both moves go below
    ({"scale": np.array([0.05, 0.1], np.float32)}, []),  # per-channel: the axis moves, so it stays
    ({"scale": np.array(0.05, np.float32), "extra_use": True}, []),  # another op needs the float tensor
    ({"scale": np.array(0.05, np.float32), "output_dq": True}, []),  # the float tensor is a graph output
])
def test_sink_dequantize_moves_only_what_stays_exact(case, expected):
    from edgeseg.export.ort_layout import sink_dequantize

    model = _dq_graph(**case)
    x = np.random.default_rng(5).integers(0, 256, (1, 2, 3, 4), dtype=np.uint8)
    before = _run(model, x)
    assert sink_dequantize(model) == expected
    onnx.checker.check_model(model, full_check=True)
    assert np.array_equal(_run(model, x), before)
    if expected:
        assert [n.op_type for n in model.graph.node] == ["Transpose", "Reshape", "DequantizeLinear"]


# -- share_concat_ranges: one range per Concat, so QLinearConcat copies -----------------------------
def _concat_params(path) -> list[set[tuple[float, int]]]:
    """Per Concat in a Q/DQ model: the distinct (scale, zero point) pairs of its inputs and its output."""
    g = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    made_by = {o: n for n in g.node for o in n.output}
    used_by = {i: n for n in g.node for i in n.input}

    def params(node: onnx.NodeProto) -> tuple[float, int]:
        return float(inits[node.input[1]]), int(inits[node.input[2]])

    return [{params(made_by[i]) for i in n.input} | {params(used_by[n.output[0]])}
            for n in g.node if n.op_type == "Concat"]


def test_concat_ranges_are_shared_for_onnx_runtime(unet_onnx, tmp_path, monkeypatch):
    calib = _images(4, (64, 96))
    shared = quantize_onnx(unet_onnx[0], tmp_path / "s.int8.onnx", calib=calib, target="ort",
                           cache_path=tmp_path / "c.calib.json")
    monkeypatch.setattr(quantize_mod, "share_concat_ranges", lambda proto, ranges: [])
    plain = quantize_onnx(unet_onnx[0], tmp_path / "p.int8.onnx", calib=calib, target="ort",
                          cache_path=tmp_path / "c.calib.json")
    assert plain.cache_hit  # same calibration: the cache holds the calibrated ranges, not the shared ones
    assert len(shared.shared_concats) == 4 and read_meta(shared.path).extra["shared_concat_ranges"] == "4"
    assert [len(p) for p in _concat_params(shared.path)] == [1, 1, 1, 1]
    assert max(len(p) for p in _concat_params(plain.path)) > 1
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 96)).astype(np.float32)
    a, b = (read_meta(r.path).float_logits(_run(r.path, x)) for r in (shared, plain))  # uint8 logits, dequantized
    assert np.abs(a - b).max() < 0.25 * np.abs(b).max()  # the same model, a little less precise on some inputs


def _concat_graph() -> onnx.ModelProto:
    """a, b, c -> Relu each; cat1 = Concat(Resize(Relu a), Relu b); cat2 = Concat(cat1, MaxPool-free Relu c)."""
    up = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [helper.make_node("Relu", [n], [f"r{n}"], name=f"relu_{n}") for n in "abc"]
    nodes += [helper.make_node("Resize", ["ra", "", "scales"], ["ua"], name="up", mode="nearest"),
              helper.make_node("Concat", ["ua", "rb"], ["cat1"], name="cat1", axis=1),
              helper.make_node("Concat", ["cat1", "rc"], ["cat2"], name="cat2", axis=1)]
    shapes = {"a": [1, 1, 2, 2], "b": [1, 1, 4, 4], "c": [1, 2, 4, 4]}
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in shapes.items()],
                          [helper.make_tensor_value_info("cat2", TensorProto.FLOAT, [1, 4, 4, 4])], [up])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _ranges(**spans: tuple[float, float]) -> dict:
    return {"CLS": "TensorsData", "data": {k: {"lowest": lo, "highest": {"data": hi, "dtype": "float32"}}
                                           for k, (lo, hi) in spans.items()}}


def _span(ranges: dict, name: str) -> tuple[float, float]:
    d = ranges["data"][name]
    return tuple(float(v["data"] if isinstance(v, dict) else v) for v in (d["lowest"], d["highest"]))


def test_share_concat_ranges_follows_resizes_back_and_merges_chained_concats():
    ranges = _ranges(ra=(0, 4), ua=(0, 3.9), rb=(0, 6), cat1=(0, 6), rc=(-1, 5), cat2=(-1, 6))
    assert share_concat_ranges(_concat_graph(), ranges) == ["cat1", "cat2"]
    # The Resize takes its input's parameters, so ra (not only ua) must carry the shared range.
    assert {_span(ranges, k) for k in ("ra", "ua", "rb", "cat1", "rc", "cat2")} == {(-1.0, 6.0)}


def test_share_concat_ranges_leaves_far_apart_ranges_and_unquantized_inputs_alone():
    ranges = _ranges(ra=(0, 1), ua=(0, 1), rb=(0, 6), cat1=(0, 6), rc=(0, 6), cat2=(0, 6))
    before = json.dumps(ranges, sort_keys=True)
    assert share_concat_ranges(_concat_graph(), ranges) == []  # ra's span is 1/6 of the union's
    assert json.dumps(ranges, sort_keys=True) == before
    ranges = _ranges(ra=(0, 4), ua=(0, 4), cat1=(0, 6), rc=(-1, 5), cat2=(0, 6))  # rb left in float
    assert share_concat_ranges(_concat_graph(), ranges) == ["cat2"]  # cat1 cannot share; cat2 still can
    assert _span(ranges, "ra") == (0.0, 4.0) and _span(ranges, "rc") == (-1.0, 6.0)


# -- split_depth_to_space / channels_last_depth_to_space: the same permutation, cheaper --------------
def _d2s_graph(n: int, c: int, s: int, h: int, w: int, mode: str = "CRD", dynamic: bool = False) -> onnx.ModelProto:
    shape = ["N", c * s * s, "H", "W"] if dynamic else [n, c * s * s, h, w]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("DepthToSpace", ["r"], ["y"], name="d2s", blocksize=s, mode=mode)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, "Hs", "Ws"] if dynamic else [n, c, h * s, w * s])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("n, c, s, h, w", [(1, 3, 2, 5, 7), (2, 4, 3, 4, 6), (1, 12, 8, 3, 5)])
def test_split_depth_to_space_is_bit_identical_and_channels_last_too(n, c, s, h, w):
    from edgeseg.export.ort_layout import (
        channels_last_depth_to_space,
        channels_last_heads,
        split_depth_to_space,
    )

    model = _d2s_graph(n, c, s, h, w)
    x = np.random.default_rng(6).standard_normal((n, c * s * s, h, w)).astype(np.float32)
    before = _run(model, x)
    assert split_depth_to_space(model) == ["d2s"]
    onnx.checker.check_model(model, full_check=True)
    assert "DepthToSpace" not in {nd.op_type for nd in model.graph.node}
    assert np.array_equal(_run(model, x), before)
    swapped = channels_last_depth_to_space(model)
    assert len(swapped) == 1 and channels_last_heads(model) == swapped
    onnx.checker.check_model(model, full_check=True)
    assert np.array_equal(_run(model, x), before)
    first = next(nd for nd in model.graph.node if nd.input[0] == "r")
    assert first.op_type == "Transpose" and list(first.attribute[0].ints) == [0, 2, 3, 1]  # reads NHWC
    used = {i for nd in model.graph.node for i in nd.input}
    assert all(t.name in used for t in model.graph.initializer)  # the replaced Reshape's shape is gone
    assert channels_last_depth_to_space(model) == []  # nothing left to match


@pytest.mark.parametrize("kw", [{"mode": "DCR"}, {"dynamic": True}])
def test_split_depth_to_space_leaves_dcr_and_dynamic_shapes(kw):
    from edgeseg.export.ort_layout import split_depth_to_space

    model = _d2s_graph(1, 3, 2, 4, 4, **kw)
    assert split_depth_to_space(model) == []
    assert [nd.op_type for nd in model.graph.node] == ["Relu", "DepthToSpace"]


def test_exports_split_the_sub_pixel_heads_and_only_ort_int8_reads_them_channels_last(fcn_onnx, tmp_path):
    fp32 = onnx.load(str(fcn_onnx))
    assert "DepthToSpace" not in {nd.op_type for nd in fp32.graph.node}
    assert read_meta(fcn_onnx).extra["split_depth_to_space"] == "3"  # two x2 skip upsamplings and the x8 head
    ort_q = quantize_onnx(fcn_onnx, tmp_path / "o.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    assert len(ort_q.channels_last_d2s) == 3 and read_meta(ort_q.path).extra["channels_last_depth_to_space"] == "3"
    trt_q = quantize_onnx(fcn_onnx, tmp_path / "t.int8.onnx", calib=_images(4, (64, 96)), target="tensorrt")
    assert trt_q.channels_last_d2s == [] and read_meta(trt_q.path).extra["channels_last_depth_to_space"] == "0"


# -- end_in_quantized_logits: the ONNX Runtime INT8 graph outputs uint8 logits ------------------------
def test_ort_int8_outputs_uint8_logits_with_the_same_argmax_and_the_runtime_reads_them(fcn_onnx, tmp_path):
    from edgeseg.runtime import Segmenter

    q8 = quantize_onnx(fcn_onnx, tmp_path / "u.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    fl = quantize_onnx(fcn_onnx, tmp_path / "f.int8.onnx", calib=_images(4, (64, 96)), target="ort",
                       float_logits=True)
    meta = read_meta(q8.path)
    assert q8.output_quant is not None and meta.output_quant == q8.output_quant and fl.output_quant is None
    assert read_meta(fl.path).output_quant is None
    g = onnx.load(str(q8.path)).graph
    assert g.output[0].name == "logits" and g.output[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert _producers(q8.path)["logits"] not in ("DequantizeLinear", "QuantizeLinear")  # the tail pair went too
    onnx.checker.check_model(onnx.load(str(q8.path)), full_check=True)
    x = np.random.default_rng(7).standard_normal((1, 3, 64, 96)).astype(np.float32)
    u, f = _run(q8.path, x), _run(fl.path, x)
    assert u.dtype == np.uint8 and f.dtype == np.float32
    assert np.array_equal(meta.float_logits(u), f)  # exactly the dequantized logits
    frame = np.random.default_rng(8).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    with Segmenter(q8.path) as a, Segmenter(fl.path) as b:
        assert np.array_equal(a(frame).class_map, b(frame).class_map)
        assert a.info["output_quant"] == list(q8.output_quant)
    trt = quantize_onnx(fcn_onnx, tmp_path / "t.int8.onnx", calib=_images(4, (64, 96)), target="tensorrt")
    assert trt.output_quant is None  # TensorRT's S8S8 graph keeps float logits


def test_end_in_quantized_logits_leaves_other_endings():
    from edgeseg.export.ort_layout import end_in_quantized_logits

    per_channel = _dq_graph(np.array([0.05, 0.1], np.float32), output_dq=True)
    del per_channel.graph.output[0]  # now the float DequantizeLinear output ends the graph, per channel
    assert end_in_quantized_logits(per_channel) is None
    float_end = _dq_graph(np.array(0.05, np.float32))  # ends in a Reshape of float data
    assert end_in_quantized_logits(float_end) is None


# -- subpixel_bilinear_head: classifier + bilinear x2 as one quantizable conv ------------------------
def _bilinear_head_graph(n: int = 1, h: int = 6, w: int = 7, crop: tuple | None = None, bias: bool = True,
                         kernel: int = 1, mode: str = "linear", ctm: str = "half_pixel", factor: float = 2.0,
                         sizes: bool = False, dynamic: bool = False) -> onnx.ModelProto:
    """x (N, 5, h, w) -> Relu -> Conv kxk to 3 classes -> Resize -> optional Slice ``crop`` = (starts, ends, axes)."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 5, kernel, kernel)).astype(np.float32), "cw")]
    conv_in = ["r", "cw"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "cb"))
        conv_in.append("cb")
    out_h, out_w = int(h * factor), int(w * factor)
    if sizes:
        inits.append(numpy_helper.from_array(np.array([n, 3, out_h, out_w], np.int64), "sizes"))
        resize_in = ["logits_small", "", "", "sizes"]
    else:
        inits.append(numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales"))
        resize_in = ["logits_small", "", "scales"]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Conv", conv_in, ["logits_small"], name="classifier", pads=[kernel // 2] * 4),
             helper.make_node("Resize", resize_in, ["up"], name="resize", mode=mode,
                              coordinate_transformation_mode=ctm)]
    out = "up"
    if crop is not None:
        for name, vals in zip(("cs", "ce", "ca"), crop, strict=True):
            inits.append(numpy_helper.from_array(np.array(vals, np.int64), name))
        nodes.append(helper.make_node("Slice", ["up", "cs", "ce", "ca"], ["y"], name="crop"))
        out = "y"
    x_shape = ["N", 5, "H", "W"] if dynamic else [n, 5, h, w]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None] * 4)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("kw", [
    {},  # no crop: pads on all four sides
    {"crop": ([0], [9], [2])},  # rows 0..8 of 12 (a U-Net's padded rows): no bottom pad, fewer rows computed
    {"crop": ([1, 3], [11, -2], [-2, -1])},  # odd starts, negative end and axes
    {"crop": ([2], [2 ** 62], [3]), "n": 2, "bias": False},  # an INT64-max style end, batch 2, no bias
    {"sizes": True, "ctm": "pytorch_half_pixel"},  # given as output sizes; PyTorch's coordinate mode
])
def test_subpixel_bilinear_head_equals_conv_then_resize(kw):
    from edgeseg.export.ort_layout import (
        split_depth_to_space,
        subpixel_bilinear_head,
        subpixel_bilinear_heads,
    )

    model = _bilinear_head_graph(**kw)
    x = np.random.default_rng(12).standard_normal((kw.get("n", 1), 5, 6, 7)).astype(np.float32)
    before = _run(model, x)
    assert subpixel_bilinear_head(model) == ["classifier"] and subpixel_bilinear_heads(model) == ["classifier"]
    ops = [nd.op_type for nd in model.graph.node]
    assert "Resize" not in ops and ops.count("Conv") == 1 and "DepthToSpace" in ops
    onnx.checker.check_model(model, full_check=True)
    after = _run(model, x)
    assert after.shape == before.shape and np.abs(after - before).max() < 1e-5
    used = {i for nd in model.graph.node for i in nd.input}
    assert all(t.name in used for t in model.graph.initializer)  # the Resize scales, old weights, old crop gone
    assert split_depth_to_space(model) and np.abs(_run(model, x) - before).max() < 1e-5


@pytest.mark.parametrize("kw", [{"mode": "nearest"}, {"ctm": "align_corners"}, {"factor": 4.0}, {"kernel": 3},
                                {"dynamic": True}])
def test_subpixel_bilinear_head_leaves_other_heads(kw):
    from edgeseg.export.ort_layout import subpixel_bilinear_head

    model = _bilinear_head_graph(**kw)
    assert subpixel_bilinear_head(model) == []
    assert [nd.op_type for nd in model.graph.node] == ["Relu", "Conv", "Resize"]


def test_sink_dequantize_moves_edge_pads_but_not_constant_ones():
    from edgeseg.export.ort_layout import sink_dequantize

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
        before = _run(model, x)
        assert sink_dequantize(model) == moved, mode
        assert np.array_equal(_run(model, x), before)


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
    assert np.abs(_run(pre, x) - _run(src, x)).max() < 1e-4  # the float rewrite changes nothing
    res = quantize_onnx(src, tmp_path / "u.int8.onnx", calib=_images(4, (50, 96)), target="ort")
    assert len(res.subpixel_bilinear) == 1 and res.head_in_float == [] and res.output_quant is not None
    assert read_meta(res.path).extra["subpixel_bilinear_head"] == "1"
    g = onnx.load(str(res.path)).graph
    producer = {o: nd for nd in g.node for o in nd.output}
    convs = [nd for nd in g.node if nd.op_type == "Conv"]
    assert all(producer[nd.input[1]].op_type == "DequantizeLinear" for nd in convs)  # every conv int8
    pads = [nd for nd in g.node if nd.op_type == "Pad"]
    assert pads and all(producer[nd.input[0]].op_type != "DequantizeLinear" for nd in pads)  # Pad moves uint8
    assert _run(res.path, x).shape == (1, len(CLASSES), 50, 96)
    trt = quantize_onnx(src, tmp_path / "t.int8.onnx", calib=_images(4, (50, 96)), target="tensorrt")
    assert trt.subpixel_bilinear == [] and "Resize" in {nd.op_type for nd in onnx.load(str(trt.path)).graph.node}
    asked = quantize_onnx(src, tmp_path / "f.int8.onnx", calib=_images(4, (50, 96)), target="ort", float_head=True)
    assert asked.subpixel_bilinear == [] and asked.head_in_float  # float_head=True: the original head, in float
    assert "Resize" in {nd.op_type for nd in onnx.load(str(asked.path)).graph.node}
    assert res.to_dict()["subpixel_bilinear"] == res.subpixel_bilinear


# -- fused pre-processing: the uint8 frame straight into the first convolution -------------------------

def _fused(tiny_model, tmp_path, name: str = "f.onnx", **kw):
    return torch_to_onnx(tiny_model, tmp_path / name, imgsz="32x48", classes=CLASSES, fuse_preprocess=True, **kw)


def _frames(n: int = 2, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 48, 3), dtype=np.uint8)  # (N, H, W, 3) BGR


@pytest.mark.parametrize("mean, tol", [((0.4, 0.6, 0.2), 1e-4), ((0.485, 0.456, 0.406), 0.05)])
def test_folded_normalisation_reads_the_frame_with_the_mean_colour_as_border(tiny_model, tmp_path, mean, tol):
    from edgeseg.export.ort_layout import fold_input_normalization, input_normalizer

    src = _fused(tiny_model, tmp_path, batch=2, mean=mean, std=(0.229, 0.224, 0.225))
    proto = onnx.load(str(src))
    norm = input_normalizer(proto)
    assert norm is not None  # FusedPreprocess exports Transpose -> Cast -> 1x1 Conv
    folded = fold_input_normalization(proto)
    assert folded and input_normalizer(proto) is None
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node[:4]] == ["Transpose", "Concat", "Concat", "Cast"]
    first = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert first.name == folded and not any(a.name == "pads" for a in first.attribute)
    x = _frames()
    want, got = _run(src, x), _run(proto, x)
    # 255 * mean whole (first case): exact up to float rounding everywhere. ImageNet means: the border
    # strips hold round(255 * mean), off by < 0.5 / 255 / std per padded tap; the interior is exact.
    assert np.abs(got - want).max() < tol
    np.testing.assert_allclose(got[:, :, 4:-4, 4:-4], want[:, :, 4:-4, 4:-4], atol=1e-4)


def test_fold_needs_a_static_frame_and_leaves_unfused_graphs_alone(tiny_model, tmp_path):
    from edgeseg.export.ort_layout import fold_input_normalization, input_normalizer

    dynamic = onnx.load(str(_fused(tiny_model, tmp_path, dynamic=True)))
    assert input_normalizer(dynamic) is not None and fold_input_normalization(dynamic) is None
    plain = onnx.load(str(torch_to_onnx(tiny_model, tmp_path / "p.onnx", imgsz="32x48", classes=CLASSES)))
    before = plain.SerializeToString()
    assert input_normalizer(plain) is None and fold_input_normalization(plain) is None
    assert plain.SerializeToString() == before


def test_ort_int8_feeds_the_uint8_frame_to_the_first_conv_and_tensorrt_keeps_the_normaliser_float(
        tiny_model, tmp_path, monkeypatch):
    src = _fused(tiny_model, tmp_path)
    res = quantize_onnx(src, tmp_path / "f.int8.onnx", calib=_images(4, (32, 48)), target="ort")
    assert res.raw_input and read_meta(res.path).extra["raw_uint8_input"] == ",".join(res.raw_input)
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
    monkeypatch.setattr(quantize_mod, "fold_input_normalization", lambda proto: None)
    unfolded = quantize_onnx(src, tmp_path / "u.int8.onnx", calib=_images(4, (32, 48)), target="ort")
    assert not unfolded.raw_input
    x = _frames(1)
    want = _run(src, x)
    got, ref = ((_run(r.path, x).astype(np.float32) - r.output_quant[1]) * r.output_quant[0] for r in (res, unfolded))
    assert np.abs(got - want).mean() < 1.05 * np.abs(ref - want).mean()
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.95

    trt = quantize_onnx(src, tmp_path / "f.trt.onnx", calib=_images(4, (32, 48)), target="tensorrt")
    assert not trt.raw_input
    g = onnx.load(str(trt.path)).graph
    norm = next(n for n in g.node if n.op_type == "Conv")  # the first Conv: float weights, no Q/DQ
    assert {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT} >= {norm.input[1]}
    assert not any(n.op_type == "DequantizeLinear" and n.output[0] == norm.input[1] for n in g.node)


def _no_padding(monkeypatch) -> None:
    monkeypatch.setattr(quantize_mod, "pad_input_channels", lambda proto: [])


@pytest.mark.parametrize("fused", [False, True])
def test_image_input_conv_gets_a_zero_fourth_channel_bit_identically(tiny_model, tmp_path, monkeypatch, fused):
    kw = {"fuse_preprocess": True} if fused else {}
    src = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES, **kw)
    res = quantize_onnx(src, tmp_path / "m.int8.onnx", calib=_images(4, (32, 48)), target="ort")
    g = onnx.load(str(res.path)).graph
    first = next(n for n in g.node if n.op_type == "Conv")
    assert res.padded_inputs == [first.name] and read_meta(res.path).extra["padded_input_channels"] == first.name
    assert res.to_dict()["padded_inputs"] == res.padded_inputs
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
    _no_padding(monkeypatch)
    plain = quantize_onnx(src, tmp_path / "p.int8.onnx", calib=_images(4, (32, 48)), target="ort")
    assert plain.padded_inputs == []
    x = _frames(1) if fused else np.random.default_rng(5).standard_normal((1, 3, 32, 48)).astype(np.float32)
    np.testing.assert_array_equal(_run(res.path, x), _run(plain.path, x))


def test_padded_input_channels_work_at_any_size_and_stay_planar_in_onnx_runtime(tmp_path, monkeypatch):
    import torch

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()
    src = torch_to_onnx(model, tmp_path / "d.onnx", imgsz="64x96", classes=CLASSES, dynamic=True)
    res = quantize_onnx(src, tmp_path / "d.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    assert len(res.padded_inputs) == 1
    _no_padding(monkeypatch)
    plain = quantize_onnx(src, tmp_path / "dp.int8.onnx", calib=_images(4, (64, 96)), target="ort")
    for h, w in ((64, 96), (96, 128)):  # Reshape's 0s copy each dimension: no size is baked in
        x = np.random.default_rng(h).standard_normal((1, 3, h, w)).astype(np.float32)
        np.testing.assert_array_equal(_run(res.path, x), _run(plain.path, x))
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
    from edgeseg.export.ort_layout import pad_input_channels

    src = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES)
    trt = quantize_onnx(src, tmp_path / "m.trt.onnx", calib=_images(4, (32, 48)), target="tensorrt")
    assert trt.padded_inputs == [] and not any(n.op_type == "Pad" for n in onnx.load(str(trt.path)).graph.node)
    # only convs on fewer than 4 channels: a second pass finds nothing left to pad
    res = quantize_onnx(src, tmp_path / "m.int8.onnx", calib=_images(4, (32, 48)), target="ort")
    proto = onnx.load(str(res.path))
    before = proto.SerializeToString()
    assert pad_input_channels(proto) == [] and proto.SerializeToString() == before


def _qdq_two_stems() -> onnx.ModelProto:
    """Float (1, 3, 8, 8) -> Q -> DQ read by two 3-channel convs (summed), each with int8 per-channel weights."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "x_scale"),
             numpy_helper.from_array(np.array(113, np.uint8), "x_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xdq"], name="dq")]
    for k in ("a", "b"):
        inits += [numpy_helper.from_array(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), f"w{k}"),
                  numpy_helper.from_array(np.full(4, 0.01, np.float32), f"w{k}_scale"),
                  numpy_helper.from_array(np.zeros(4, np.int8), f"w{k}_zero")]
        nodes += [helper.make_node("DequantizeLinear", [f"w{k}", f"w{k}_scale", f"w{k}_zero"], [f"w{k}_dq"], axis=0),
                  helper.make_node("Conv", ["xdq", f"w{k}_dq"], [f"y{k}"], name=f"conv_{k}", pads=[1, 1, 1, 1])]
    nodes.append(helper.make_node("Add", ["ya", "yb"], ["y"]))
    graph = helper.make_graph(nodes, "two_stems", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_convs_reading_one_image_share_one_padded_copy():
    from edgeseg.export.ort_layout import pad_input_channels

    proto = _qdq_two_stems()
    x = np.random.default_rng(8).standard_normal((1, 3, 8, 8)).astype(np.float32)
    want = _run(proto, x)
    assert pad_input_channels(proto) == ["conv_a", "conv_b"]
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Pad") == 1 and "dq" not in {n.name for n in proto.graph.node}  # the unpadded DQ is gone
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert convs[0].input[0] == convs[1].input[0]
    np.testing.assert_array_equal(_run(proto, x), want)
