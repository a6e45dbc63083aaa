"""Small ONNX graphs, calibration images and runs shared by the graph-pass tests (tests/export/passes/)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeseg.export import ImageSet, quantize_onnx, torch_to_onnx

CLASSES = ["road", "car", "sky", "tree", "person"]


def images(n: int, size: tuple[int, int]) -> ImageSet:
    rng = np.random.default_rng(3)
    imgs = tuple(rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n))  # (H, W, 3) RGB
    return ImageSet(source="random:3", ids=tuple(f"img{i}" for i in range(n)), images=imgs, labels=None,
                    classes=tuple(CLASSES))


def run(model, x: np.ndarray) -> np.ndarray:
    """First output of ``model`` (a path or an in-memory ModelProto) on ``x``."""
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def quantize_both(src, tmp_path) -> tuple:
    """The same calibration quantized with and without the fence."""
    fenced = quantize_onnx(src, tmp_path / "f.int8.onnx", calib=images(4, (64, 96)), target="ort")
    plain = quantize_onnx(src, tmp_path / "p.int8.onnx", calib=images(4, (64, 96)), target="ort",
                          skip_passes=["keep_nearest_resizes_nchw"])
    return fenced, plain


def optimized_resize_scales(path, tmp_path) -> list[list[float]]:
    """Scales of every Resize after ONNX Runtime's graph optimisation (its layout choice)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    g = onnx.load(str(tmp_path / "optimized.onnx")).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    return [inits[n.input[2]].tolist() for n in g.node if n.op_type == "Resize"]


def qdq_resize(mode: str, scales: list[float], per_tensor: bool = True) -> onnx.ModelProto:
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


def producers(path) -> dict[str, str]:
    return {o: n.op_type for n in onnx.load(str(path)).graph.node for o in n.output}


def dq_graph(scale: np.ndarray, extra_use: bool = False, output_dq: bool = False) -> onnx.ModelProto:
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


def concat_params(path) -> list[set[tuple[float, int]]]:
    """Per Concat in a Q/DQ model: the distinct (scale, zero point) pairs of its inputs and its output."""
    g = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    made_by = {o: n for n in g.node for o in n.output}
    used_by = {i: n for n in g.node for i in n.input}

    def params(node: onnx.NodeProto) -> tuple[float, int]:
        return float(inits[node.input[1]]), int(inits[node.input[2]])

    return [{params(made_by[i]) for i in n.input} | {params(used_by[n.output[0]])}
            for n in g.node if n.op_type == "Concat"]


def concat_graph() -> onnx.ModelProto:
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


def calib_ranges(**spans: tuple[float, float]) -> dict:
    return {"CLS": "TensorsData", "data": {k: {"lowest": lo, "highest": {"data": hi, "dtype": "float32"}}
                                           for k, (lo, hi) in spans.items()}}


def span(ranges: dict, name: str) -> tuple[float, float]:
    d = ranges["data"][name]
    return tuple(float(v["data"] if isinstance(v, dict) else v) for v in (d["lowest"], d["highest"]))


def d2s_graph(n: int, c: int, s: int, h: int, w: int, mode: str = "CRD", dynamic: bool = False) -> onnx.ModelProto:
    shape = ["N", c * s * s, "H", "W"] if dynamic else [n, c * s * s, h, w]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("DepthToSpace", ["r"], ["y"], name="d2s", blocksize=s, mode=mode)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", c, "Hs", "Ws"] if dynamic else [n, c, h * s, w * s])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def bilinear_head_graph(n: int = 1, h: int = 6, w: int = 7, crop: tuple | None = None, bias: bool = True,
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


def fused(tiny_model, tmp_path, name: str = "f.onnx", **kw):
    return torch_to_onnx(tiny_model, tmp_path / name, imgsz="32x48", classes=CLASSES, fuse_preprocess=True, **kw)


def frames(n: int = 2, seed: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 48, 3), dtype=np.uint8)  # (N, H, W, 3) BGR


def qdq_two_stems() -> onnx.ModelProto:
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
