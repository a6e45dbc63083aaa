"""Graph rewrites that steer ONNX Runtime's CPU kernel and layout choices: mostly of the Q/DQ INT8 graph
of the ``ort`` target, plus the DepthToSpace split every export gets (end of this module).

ONNX Runtime runs a U8S8 Q/DQ network channels-last (NHWC): its layout transformer converts each
QLinearConv and pushes the transposes through the ops in between, a nearest Resize included. A
uint8 nearest x2 Resize in NHWC then takes ONNX Runtime's generic per-element path, while in NCHW
it takes a dedicated x2 kernel. Measured on the 2-core machines (uint8, 96x120x16 -> 192x240x16):
0.93 ms NHWC against 0.04 ms NCHW, and a transpose of that tensor costs ~0.1 ms.

:func:`keep_nearest_resizes_nchw` fences each such Resize between two Reshapes, which a transpose
cannot be pushed through, so ONNX Runtime keeps it in NCHW: (N, C, h, w) -> (N*C, 1, h, w) ->
Resize x2 -> (N*C, 1, 2h, 2w) -> (N, C, 2h, 2w). The folded batch/channel axis is not resized, so
the result is bit-identical; the Reshapes carry the Resize's own Q/DQ parameters so the whole fence
stays integer. On the bundled unet_lite (output stride 2, 360x480) INT8 went 18.6 -> 16.1 ms at
2 threads and 20.5 -> 18.7 ms at 1 thread in one interleaved run (docs/measurements.md).

:func:`sink_dequantize` runs first: it moves per-tensor DequantizeLinear nodes below the data moves
the quantizer left in float (a sub-pixel head's DepthToSpace, the crop after it), so those move
uint8 instead of float32 elements.

:func:`share_concat_ranges` works on the calibration ranges before quantization: it gives each
Concat's inputs and output one range, so ONNX Runtime's QLinearConcat copies bytes instead of
requantizing every input through a lookup table (1.9 -> 0.4 ms of kernels on the bundled
unet_lite, output stride 2, 2 threads).

:func:`split_depth_to_space` (every export) and :func:`channels_last_depth_to_space` (``ort`` INT8) turn
DepthToSpace into transposes ONNX Runtime runs fast; :func:`end_in_quantized_logits` lets an ``ort`` graph
output uint8 logits.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger("edgeseg.export")

NCHW_X2_SCALES = (1.0, 1.0, 2.0, 2.0)
X2_MODES = ("nearest", "floor", "asymmetric")  # PyTorch's nearest export; the form ONNX Runtime's x2 kernel takes
NCHW_RESIZES_KEY = "nchw_resizes"  # ModelMeta.extra: how many Resizes were fenced


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _scales(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float, ...] | None:
    """The Resize's constant scales, or None when it is given sizes or computed scales."""
    if len(node.input) < 3 or node.input[2] not in inits or (len(node.input) > 3 and node.input[3]):
        return None
    return tuple(float(s) for s in numpy_helper.to_array(inits[node.input[2]]).ravel())


def _is_per_tensor(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
    """A Q/DQ node with a constant scalar scale (and zero point), as the fence reuses them."""
    return all(name in inits and numpy_helper.to_array(inits[name]).size == 1 for name in node.input[1:3])


def _per_tensor_params(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[float, int, int] | None:
    """(scale, zero point, zero point's ONNX type) of a per-tensor Q/DQ node that names its zero point."""
    if len(node.input) < 3 or not _is_per_tensor(node, inits):
        return None
    scale, zero = (numpy_helper.to_array(inits[n]).ravel()[0] for n in node.input[1:3])
    return float(scale), int(zero), inits[node.input[2]].data_type


def _consumers(g: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it (once per input slot)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    return users


def _drop_value_info(g: onnx.GraphProto, names: set[str]) -> None:
    """Forget the shape annotations of ``names`` (tensors a rewrite removed or reshaped)."""
    keep = [v for v in g.value_info if v.name not in names]
    del g.value_info[:]
    g.value_info.extend(keep)


def _drop_initializers(g: onnx.GraphProto, names: set[str]) -> None:
    """Remove the initializers among ``names`` that no node reads any more (a rewrite replaced their readers)."""
    used = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name in names and t.name not in used]:
        g.initializer.remove(t)


def _rewritten(proto: onnx.ModelProto, op_type: str, suffix: str) -> list[str]:
    """Names, less ``suffix``, of the ``op_type`` nodes a rewrite marked with that suffix."""
    return [n.name[: -len(suffix)] for n in proto.graph.node if n.op_type == op_type and n.name.endswith(suffix)]


def keep_nearest_resizes_nchw(proto: onnx.ModelProto) -> list[str]:
    """Fence every uint8-eligible nearest x2 Resize (``DequantizeLinear -> Resize -> QuantizeLinear``
    with per-tensor parameters and constant scales (1, 1, 2, 2)) so ONNX Runtime runs it in NCHW.

    Edits ``proto`` in place and returns the names of the fenced Resize nodes (empty: unchanged).
    Resizes whose channel count is unknown after shape inference are left as they are.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = _consumers(g)
    inferred = onnx.shape_inference.infer_shapes(proto)
    dims = {v.name: v.type.tensor_type.shape.dim for v in list(inferred.graph.value_info)}

    fenced: list[str] = []
    added: list[onnx.NodeProto] = []
    reshaped: set[str] = set()  # Resize outputs whose shape the fence changes
    for node in g.node:
        if node.op_type != "Resize" or (_attr(node, "mode", "nearest"), _attr(node, "nearest_mode", "round_prefer_floor"),
                                         _attr(node, "coordinate_transformation_mode", "half_pixel")) != X2_MODES:
            continue
        if _scales(node, inits) != NCHW_X2_SCALES:
            continue
        dq, users = producer.get(node.input[0]), consumers.get(node.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1:
            continue
        q = users[0]
        if q.op_type != "QuantizeLinear" or not (_is_per_tensor(dq, inits) and _is_per_tensor(q, inits)):
            continue
        shape = dims.get(node.input[0])
        if shape is None or len(shape) != 4 or not shape[1].HasField("dim_value"):
            continue
        channels = shape[1].dim_value
        k = node.name or node.output[0]
        fold, unfold = f"{k}_fold_shape", f"{k}_unfold_shape"
        # Reshape's 0 copies that input dim (h, w or 2h, 2w), -1 absorbs the batch: dynamic sizes work.
        g.initializer.extend([numpy_helper.from_array(np.array([-1, 1, 0, 0], np.int64), fold),
                              numpy_helper.from_array(np.array([-1, channels, 0, 0], np.int64), unfold)])
        folded, folded_q, folded_dq = f"{k}_folded", f"{k}_folded_q", f"{k}_folded_dq"
        added += [helper.make_node("Reshape", [node.input[0], fold], [folded], name=f"{k}_fold"),
                  helper.make_node("QuantizeLinear", [folded, *dq.input[1:3]], [folded_q], name=f"{k}_fold_q"),
                  helper.make_node("DequantizeLinear", [folded_q, *dq.input[1:3]], [folded_dq], name=f"{k}_fold_dq")]
        node.input[0] = folded_dq
        out_q = q.output[0]  # the consumers keep reading this name, now from the unfolded copy
        inner_q, inner_dq, unfolded = f"{k}_x2_q", f"{k}_x2_dq", f"{k}_unfolded"
        q.output[0] = inner_q
        added += [helper.make_node("DequantizeLinear", [inner_q, *q.input[1:3]], [inner_dq], name=f"{k}_x2_dq"),
                  helper.make_node("Reshape", [inner_dq, unfold], [unfolded], name=f"{k}_unfold"),
                  helper.make_node("QuantizeLinear", [unfolded, *q.input[1:3]], [out_q], name=f"{k}_unfold_q")]
        fenced.append(k)
        reshaped.add(node.output[0])

    if fenced:
        # A fenced Resize's output now has the folded shape: drop stale shape annotations of it.
        _drop_value_info(g, reshaped)
        g.node.extend(added)
        _topological_sort(g)
    return fenced


# Ops that only move or select elements: dequantizing before or after them gives the same numbers
# when the DequantizeLinear has one scale and zero point for the whole tensor.
DATA_MOVES = ("DepthToSpace", "SpaceToDepth", "Slice", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
COPYING_PADS = ("edge", "reflect", "wrap")  # Pad modes that only repeat input elements (constant mode adds a value)
SUNK_KEY = "sunk_dequantize"  # ModelMeta.extra: how many data moves now run on uint8


def _moves_data(node: onnx.NodeProto) -> bool:
    return node.op_type in DATA_MOVES or (node.op_type == "Pad" and _attr(node, "mode", "constant") in COPYING_PADS)


def sink_dequantize(proto: onnx.ModelProto) -> list[str]:
    """Move per-tensor ``DequantizeLinear`` nodes below the pure data moves that follow them.

    The quantizer leaves ops it does not know (e.g. a sub-pixel head's ``DepthToSpace`` and the crop
    after it) in float, so they move 4-byte elements that were 1 byte just before. Moved below them,
    the DequantizeLinear runs once at the end and the moves run on uint8: bit-identical results. On
    fcn8s_lite 360x480 INT8 (uint8 DepthToSpace x8 + Slice, then one dequantize) 28.4 -> 25.9 ms at
    1 thread and 20.0 -> 19.1 ms at 2 threads, one interleaved run. Edits ``proto`` in place and
    returns the names of the ops that now run on the quantized tensor.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    graph_outputs = {o.name for o in g.output}
    moved: list[str] = []
    gone: set[str] = set()
    while True:
        consumers = _consumers(g)
        step = next(((dq, users[0]) for dq in g.node if dq.op_type == "DequantizeLinear"
                     and _is_per_tensor(dq, inits) and dq.output[0] not in graph_outputs
                     and len(users := consumers.get(dq.output[0], [])) == 1
                     and _moves_data(users[0]) and list(users[0].input).count(dq.output[0]) == 1
                     and users[0].input[0] == dq.output[0]), None)
        if step is None:
            break
        dq, move = step
        gone.add(dq.output[0])  # the float tensor between them no longer exists
        float_out = move.output[0]  # its consumers keep reading this name, now from the DequantizeLinear
        quantized = f"{move.name or float_out}_quantized"
        move.input[0], move.output[0] = dq.input[0], quantized
        dq.input[0], dq.output[0] = quantized, float_out
        moved.append(move.name or float_out)
    if moved:
        _drop_value_info(g, gone)
        _topological_sort(g)
    return moved


def _topological_sort(g: onnx.GraphProto) -> None:
    """Reorder ``g.node`` so every node follows its inputs' producers (ONNX requires it)."""
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending: list[onnx.NodeProto] = list(g.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        waiting = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                waiting.append(n)
        if len(waiting) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {waiting[0].name!r}")
        pending = waiting
    del g.node[:]
    g.node.extend(ordered)


# Ops whose output ONNX Runtime's QDQ quantizer quantizes with its input's parameters
# (QDQDirect8BitOp and its MaxPool/Resize subclasses): their own calibrated range is never used.
PARAMS_FROM_INPUT = ("AveragePool", "Flatten", "MaxPool", "Reshape", "Resize", "Slice", "Squeeze", "Transpose",
                     "Unsqueeze")
SHARED_KEY = "shared_concat_ranges"  # ModelMeta.extra: how many Concats got one range for inputs and output
# A shared range spanning more than this many times an input's own range costs that input more than
# 2 of its 8 bits; such Concats keep their separate ranges (and their requantizing QLinearConcat).
MAX_SPAN_RATIO = 4.0


def _range_value(v: Any) -> float | None:
    """A bound from ORT's calibration JSON (a number, or ``{"data": x or [x], ...}``); None if not one number."""
    values = np.asarray(v["data"] if isinstance(v, dict) else v, dtype=np.float64).ravel()
    return float(values[0]) if values.size == 1 else None


def share_concat_ranges(proto: onnx.ModelProto, ranges: dict[str, Any],
                        max_span_ratio: float = MAX_SPAN_RATIO) -> list[str]:
    """Widen the calibration ranges of each Concat's inputs and output to their union.

    With one scale and zero point on all its inputs and its output, ONNX Runtime's QLinearConcat
    copies its inputs (its "same as output" path) instead of requantizing each element through a
    per-input lookup table. A U-Net's decoder concatenates an upsampled decoder map with an encoder
    skip, both ReLU outputs with similar ranges (within 1.5x on the bundled unet_lite), so the cost in
    precision is small: CamVid val mIoU 67.33 -> 67.31 on the bundled stride-2 unet_lite, with its
    INT8 inference 1.3-1.9 ms faster at 2 threads (docs/measurements.md, session 7).

    ``proto`` is the float graph the ranges were calibrated on; ``ranges`` is ORT's calibration dict
    (``{"data": {tensor: {"lowest": .., "highest": ..}}}``), edited in place. An input produced by an op
    that takes its input's parameters (a nearest Resize, a MaxPool) is followed back to the tensor
    whose range counts. Concats sharing a tensor are widened together. A group is left alone when a
    member's span is under ``1 / max_span_ratio`` of the union's. Returns the names of the Concats
    whose ranges are now shared.
    """
    data = ranges.get("data", {})
    producer = {out: n for n in proto.graph.node for out in n.output}
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    concats: dict[str, list[str]] = {}  # concat name -> the tensors whose ranges count for it
    for node in proto.graph.node:
        if node.op_type != "Concat":
            continue
        members = [node.output[0]]
        for name in node.input:
            members.append(name)
            source = producer.get(name)
            while source is not None and source.op_type in PARAMS_FROM_INPUT and source.input:
                name = source.input[0]
                members.append(name)
                source = producer.get(name)
        if not all(m in data for m in members):
            continue  # an input left in float or a constant: nothing to share
        concats[node.name or node.output[0]] = members
        for m in members[1:]:
            parent[root(m)] = root(members[0])

    groups: dict[str, list[str]] = {}
    for name, members in concats.items():
        groups.setdefault(root(members[0]), []).append(name)
    shared: list[str] = []
    for names in groups.values():
        members = list(dict.fromkeys(m for n in names for m in concats[n]))
        bounds = [(_range_value(data[m]["lowest"]), _range_value(data[m]["highest"])) for m in members]
        if any(lw is None or h is None for lw, h in bounds):
            continue  # not per-tensor ranges
        lo, hi = min(lw for lw, _ in bounds), max(h for _, h in bounds)
        narrowest = min(h - lw for lw, h in bounds)
        if narrowest <= 0 or (hi - lo) / narrowest > max_span_ratio:
            log.debug("Concats %s keep separate ranges (spans differ more than %gx)", names, max_span_ratio)
            continue
        for m in members:
            data[m]["lowest"] = {"data": lo, "dtype": "float32", "CLS": "numpy.array"}
            data[m]["highest"] = {"data": hi, "dtype": "float32", "CLS": "numpy.array"}
        shared.extend(names)
    return shared


# -- DepthToSpace as reshapes and two cheap transposes ------------------------------------------------
SPLIT_D2S_KEY = "split_depth_to_space"  # ModelMeta.extra: how many DepthToSpace nodes became transposes
CHANNELS_LAST_KEY = "channels_last_depth_to_space"  # ModelMeta.extra: split heads that read channels-last
TO_NHWC = "_to_nhwc"  # name suffix of the Transpose each channels-last head starts with


def _static_shapes(proto: onnx.ModelProto) -> dict[str, list[int]]:
    """Tensor name -> its shape, for every tensor shape inference gives fully static dims."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    g = inferred.graph
    shapes: dict[str, list[int]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        dims = v.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            shapes[v.name] = [d.dim_value for d in dims]
    return shapes


def _int64(g: onnx.GraphProto, name: str, values: list[int]) -> str:
    g.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
    return name


def split_depth_to_space(proto: onnx.ModelProto) -> list[str]:
    """Replace each ``DepthToSpace`` (CRD mode, static input shape) by the same permutation done as
    Reshape -> 3-D Transpose -> Reshape -> 4-D Transpose -> Reshape.

    ONNX Runtime's CPU DepthToSpace permutes all six axes element by element; a sub-pixel head's
    x8 one (12 classes, 48x60 -> 384x480) took 3.1 ms at 1 thread on uint8 and 3.4 ms on float32.
    Split into a transpose of (s, H*W) blocks and one of whole (W*s) rows, the same bytes move in
    0.6 ms (uint8) and 2.8 ms of float32 kernels in the whole fcn8s_lite model against 5.0 ms
    (docs/measurements.md, session 8). Exact: only elements move. Edits ``proto`` in place and
    returns the names of the replaced nodes; DCR mode and dynamic shapes are left as they are.

    With x = (N, C*s*s, H, W) and output (N, C, H*s, W*s), channel c*s*s + a*s + b going to
    (c, h*s + a, w*s + b):
      (N*C*s, s, H*W) --[0,2,1]--> (N*C*s, H*W, s) = (N*C, s, H, W*s) --[0,2,1,3]--> (N*C, H, s, W*s)
    """
    g = proto.graph
    shapes = _static_shapes(proto)
    replaced: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    for node in g.node:
        shape = shapes.get(node.input[0]) if node.op_type == "DepthToSpace" else None
        if shape is None or len(shape) != 4 or _attr(node, "mode", "DCR") != "CRD":
            new_nodes.append(node)
            continue
        s = int(_attr(node, "blocksize", 0))
        n, k, h, w = shape
        if s < 2 or k % (s * s):
            new_nodes.append(node)
            continue
        c = k // (s * s)
        key = node.name or node.output[0]
        out = node.output[0]  # tensor names are unique in a graph, node names need not be
        names = [f"{out}_split{i}" for i in range(4)]
        new_nodes += [
            helper.make_node("Reshape", [node.input[0], _int64(g, f"{out}_split_shape0", [n * c * s, s, h * w])],
                             [names[0]], name=f"{key}_split_phase_rows"),
            helper.make_node("Transpose", [names[0]], [names[1]], name=f"{key}_split_phase_last", perm=[0, 2, 1]),
            helper.make_node("Reshape", [names[1], _int64(g, f"{out}_split_shape1", [n * c, s, h, w * s])],
                             [names[2]], name=f"{key}_split_rows"),
            helper.make_node("Transpose", [names[2]], [names[3]], name=f"{key}_split_interleave_rows",
                             perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [names[3], _int64(g, f"{out}_split_shape2", [n, c, h * s, w * s])],
                             [node.output[0]], name=f"{key}_split_out"),
        ]
        replaced.append(key)
    if replaced:
        del g.node[:]
        g.node.extend(new_nodes)
    return replaced


def channels_last_depth_to_space(proto: onnx.ModelProto) -> list[str]:
    """Make each split DepthToSpace (:func:`split_depth_to_space`) start from a channels-last tensor.

    ONNX Runtime runs a U8S8 Q/DQ graph channels-last, so before the split's first Reshape it
    transposes the producing convolution's NHWC output back to NCHW (1.0 ms on fcn8s_lite's x8 head,
    uint8, 1 thread). Starting the split with an explicit NCHW -> NHWC Transpose lets ONNX Runtime
    cancel the two, and the (s, H*W) block transpose becomes an (H*W, M) one of s-byte elements:
      (N, M*s, H, W) -> (N, H, W, M*s) = (N, H*W, M, s) --> (N, M, H*W, s)  [N = 1: 3-D, (H*W, M, s)]
    which is the first Transpose's (N*M, H*W, s) in the same memory order. Float32 graphs should keep
    the NCHW form: there the first Transpose is real, and ONNX Runtime's float (H*W, M, s) transpose is
    slow (6 ms on that head). Matches Reshape(x -> (N*M, s, H*W)) -> Transpose([0, 2, 1]) on a static
    4-D x, whatever made it; edits ``proto`` in place and returns the names of the Transposes replaced.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    shapes = _static_shapes(proto)
    consumers = _consumers(g)
    graph_outputs = {o.name for o in g.output}
    swapped: list[str] = []
    drop: set[str] = set()  # outputs of the replaced Reshapes (their Transposes read them)
    old_shapes: set[str] = set()
    added: list[onnx.NodeProto] = []
    changed_shape: set[str] = set()
    for reshape in g.node:
        if reshape.op_type != "Reshape" or len(reshape.input) < 2 or reshape.input[1] not in inits:
            continue
        x_shape = shapes.get(reshape.input[0])
        users = consumers.get(reshape.output[0], [])
        if x_shape is None or len(x_shape) != 4 or len(users) != 1 or reshape.output[0] in graph_outputs:
            continue
        tr = users[0]
        if tr.op_type != "Transpose" or list(_attr(tr, "perm", [])) != [0, 2, 1]:
            continue
        target = [int(v) for v in numpy_helper.to_array(inits[reshape.input[1]]).ravel()]
        n, k, h, w = x_shape
        if len(target) != 3 or target[2] != h * w or target[1] < 2 or k % target[1] or target[0] != n * (k // target[1]):
            continue
        s, m = target[1], k // target[1]
        key = tr.name or tr.output[0]
        nhwc, rows = f"{tr.output[0]}_nhwc", f"{tr.output[0]}_nhwc_rows"
        if n == 1:  # a leading unit axis sends ONNX Runtime's Transpose to its slow general path
            rows_shape, perm = [h * w, m, s], [1, 0, 2]
        else:
            rows_shape, perm = [n, h * w, m, s], [0, 2, 1, 3]
            changed_shape.add(tr.output[0])
        added += [helper.make_node("Transpose", [reshape.input[0]], [nhwc], name=key + TO_NHWC, perm=[0, 2, 3, 1]),
                  helper.make_node("Reshape", [nhwc, _int64(g, f"{tr.output[0]}_nhwc_shape", rows_shape)], [rows],
                                   name=f"{key}_nhwc_rows"),
                  helper.make_node("Transpose", [rows], [tr.output[0]], name=key, perm=perm)]
        drop.add(reshape.output[0])
        old_shapes.add(reshape.input[1])
        swapped.append(key)
    if swapped:
        # the new Transpose writes the old one's output name: drop the old pair by the Reshape's output
        keep = [n for n in g.node if n.output[0] not in drop and not (n.op_type == "Transpose" and n.input[0] in drop)]
        del g.node[:]
        g.node.extend([*keep, *added])
        _drop_initializers(g, old_shapes)
        _drop_value_info(g, changed_shape)
        _topological_sort(g)
    return swapped


def channels_last_heads(proto: onnx.ModelProto) -> list[str]:
    """Names of the heads :func:`channels_last_depth_to_space` rewrote in ``proto`` (or its Q/DQ model)."""
    return _rewritten(proto, "Transpose", TO_NHWC)


# -- uint8 logits out of the graph ---------------------------------------------------------------------
def end_in_quantized_logits(proto: onnx.ModelProto) -> tuple[float, int] | None:
    """Drop the DequantizeLinear that ends a U8S8 graph, so it outputs uint8 logits.

    The argmax of the quantized logits is the argmax of the dequantized ones (one scale for the
    whole tensor, ties included), and the runtime's argmax reads a quarter of the bytes. On
    fcn8s_lite at 360x480 the full-resolution DequantizeLinear alone took ~1 ms, single-threaded
    (docs/measurements.md, session 8). A Quantize/Dequantize pair with equal parameters just before it
    (a tensor re-quantized to itself) goes too. Edits ``proto`` in place; returns (scale, zero point)
    for the metadata, or None (unchanged) when the output is not made by a per-tensor uint8 dequantize.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = g.output[0]
    dq = producer.get(out.name)
    params = _per_tensor_params(dq, inits) if dq is not None and dq.op_type == "DequantizeLinear" else None
    if params is None or params[2] != onnx.TensorProto.UINT8:
        return None
    drop = [dq]
    tail = dq.input[0]
    uses = {name: len(readers) for name, readers in _consumers(g).items()}
    while (q := producer.get(tail)) is not None and q.op_type == "QuantizeLinear" and uses.get(tail) == 1:
        dq_in = producer.get(q.input[0])
        if (dq_in is None or dq_in.op_type != "DequantizeLinear" or uses.get(q.input[0]) != 1
                or _per_tensor_params(q, inits) != params or _per_tensor_params(dq_in, inits) != params):
            break
        drop += [q, dq_in]
        tail = dq_in.input[0]
    gone = {n.output[0] for n in drop}
    keep = [n for n in g.node if n.output[0] not in gone]
    for n in keep:  # the uint8 tensor takes the output's name
        n.output[:] = [out.name if o == tail else o for o in n.output]
        n.input[:] = [out.name if i == tail else i for i in n.input]
    del g.node[:]
    g.node.extend(keep)
    _drop_value_info(g, {tail, out.name, *(o for n in drop for o in n.output)})
    out.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return params[0], params[1]


# -- the classifier's bilinear x2 upsampling as a sub-pixel convolution ----------------------------------
SUBPIXEL_BILINEAR_KEY = "subpixel_bilinear_head"  # ModelMeta.extra: classifier + bilinear x2 heads folded
BILINEAR_X2 = "_bilinear_x2"  # name suffix of the folded convolution
HALF_PIXEL = ("half_pixel", "pytorch_half_pixel")  # the same coordinates for an x2 upsampling
# Bilinear x2 with half-pixel centres: output row 2j-1 = 0.75 in[j-1] + 0.25 in[j], row 2j = 0.25 in[j-1]
# + 0.75 in[j]. Indexed [phase][tap] over the two input rows j-1, j.
X2_TAPS = np.array([[0.75, 0.25], [0.25, 0.75]], np.float64)


def _slice_window(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto],
                  dims: tuple[int, int]) -> tuple[list[int], list[int]] | None:
    """(starts, ends) of a constant step-1 Slice over axes 2 and 3 of an (N, C, H, W) tensor of spatial
    size ``dims``, normalised to 0 <= start < end <= dim; None for any other Slice."""
    if len(node.input) < 3 or any(i not in inits for i in node.input[1:] if i):
        return None
    vals = [[int(v) for v in numpy_helper.to_array(inits[i]).ravel()] if i else None for i in node.input[1:5]]
    starts, ends = vals[0], vals[1]
    axes = vals[2] if len(vals) > 2 and vals[2] is not None else list(range(len(starts)))
    steps = vals[3] if len(vals) > 3 and vals[3] is not None else [1] * len(starts)
    window = [[0, dims[0]], [0, dims[1]]]
    for a, s, e, step in zip(axes, starts, ends, steps, strict=True):
        a = a + 4 if a < 0 else a
        if a not in (2, 3) or step != 1:
            return None
        d = dims[a - 2]
        s, e = (max(0, min(d, v + d if v < 0 else v)) for v in (s, e))
        if e <= s:
            return None
        window[a - 2] = [s, e]
    return [w[0] for w in window], [w[1] for w in window]


def _x2_resize_input(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto],
                     shapes: dict[str, list[int]]) -> list[int] | None:
    """The static (N, C, H, W) input shape of a bilinear, half-pixel, x2 spatial Resize; else None."""
    if (node.op_type != "Resize" or _attr(node, "mode", "nearest") != "linear" or _attr(node, "antialias", 0)
            or _attr(node, "coordinate_transformation_mode", "half_pixel") not in HALF_PIXEL
            or _attr(node, "axes", None) is not None):
        return None
    shape = shapes.get(node.input[0])
    if shape is None or len(shape) != 4:
        return None
    n, c, h, w = shape
    if _scales(node, inits) == NCHW_X2_SCALES:
        return shape
    sizes = node.input[3] if len(node.input) > 3 else ""
    if sizes in inits and [int(v) for v in numpy_helper.to_array(inits[sizes]).ravel()] == [n, c, 2 * h, 2 * w]:
        return shape
    return None


def _pointwise_conv(node: onnx.NodeProto | None, inits: dict[str, onnx.TensorProto]) -> bool:
    """A plain 1x1 Conv with constant weights (and bias): stride 1, no padding, one group."""
    if node is None or node.op_type != "Conv" or node.input[1] not in inits:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False
    return (tuple(inits[node.input[1]].dims[2:]) == (1, 1) and _attr(node, "group", 1) == 1
            and _attr(node, "auto_pad", "NOTSET") == "NOTSET" and not any(_attr(node, "pads", []))
            and set(_attr(node, "strides", [1])) == {1} and set(_attr(node, "dilations", [1])) == {1})


def subpixel_bilinear_head(proto: onnx.ModelProto) -> list[str]:
    """Fold a 1x1 classifier Conv and the bilinear x2 Resize after it (and the crop after that) into
    Slice -> Pad(edge) -> 2x2 Conv to the four output phases -> DepthToSpace -> Slice.

    The quantizer leaves a bilinear Resize in float, and so the classifier in front of it (the
    ``float_head`` of :func:`export.quantize.quantize_onnx`); ONNX Runtime's uint8 bilinear Resize is
    slower still (``/tmp`` microbenchmark, 12x192x240, 1 thread: 9.9 ms NCHW, 5.4 ms NHWC, float 4.3 ms).
    A bilinear x2 with half-pixel centres mixes, for each output pixel, the 2x2 input pixels around it
    with weights 0.75/0.25 per axis, so with the 1x1 classifier folded in it is one 2x2 convolution
    producing 4 phases per class (channel ``c * 4 + row_phase * 2 + col_phase``, CRD order), read with
    a one-pixel shift: phase conv position j covers output rows 2j - 1 and 2j. The input's edges are
    repeated (``Pad`` edge) as the Resize clamps its source coordinates, the first Slice drops the
    feature rows the final crop never reads, and the last Slice undoes the shift and crops. Equal to the
    original up to float rounding; the new Conv quantizes, and ONNX Runtime runs the Pad and the
    (split) DepthToSpace on uint8. Meant for the ``ort`` INT8 flavour only: the float graph runs the
    original head faster (unet_lite 360x480, FP32: 34 ms against 38 ms, 2 threads). Needs static
    shapes; edits ``proto`` in place and returns the names of the folded Convs.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = _consumers(g)
    graph_outputs = {o.name for o in g.output}
    shapes = _static_shapes(proto)
    gone: set[int] = set()  # id() of the nodes replaced
    stale: set[str] = set()  # tensors that no longer exist
    released: set[str] = set()  # inputs of the replaced nodes: their initializers may go
    added: list[onnx.NodeProto] = []
    folded: list[str] = []
    for resize in g.node:
        shape = _x2_resize_input(resize, inits, shapes)
        conv = producer.get(resize.input[0]) if shape is not None else None
        if not _pointwise_conv(conv, inits) or conv.output[0] in graph_outputs \
                or len(consumers.get(conv.output[0], [])) != 1:
            continue
        n, c, h, w = shape
        users = consumers.get(resize.output[0], [])
        crop = users[0] if len(users) == 1 and users[0].op_type == "Slice" and resize.output[0] not in graph_outputs \
            else None
        window = _slice_window(crop, inits, (2 * h, 2 * w)) if crop is not None else None
        if window is None:
            crop = None
            window = ([0, 0], [2 * h, 2 * w])
        key = conv.name or conv.output[0]
        t = f"{resize.output[0]}_bx2"  # prefix of the new tensor names (tensor names are unique)
        # Per axis: phase positions j0..j1 cover output rows r0..r1-1; they read input rows j0-1..j1.
        feat_lo, feat_hi, pad_lo, pad_hi, out_lo, out_hi = [], [], [], [], [], []
        for (r0, r1), d in zip(zip(*window, strict=True), (h, w), strict=True):
            j0, j1 = (r0 + 1) // 2, r1 // 2
            feat_lo.append(max(j0 - 1, 0))
            feat_hi.append(min(j1, d - 1) + 1)
            pad_lo.append(int(j0 - 1 < 0))
            pad_hi.append(int(j1 > d - 1))
            out_lo.append(r0 + 1 - 2 * j0)
            out_hi.append(r1 + 1 - 2 * j0)
        x = conv.input[0]
        if feat_lo != [0, 0] or feat_hi != [h, w]:
            added.append(helper.make_node("Slice", [x, _int64(g, f"{t}_rows_starts", feat_lo),
                                                    _int64(g, f"{t}_rows_ends", feat_hi), _int64(g, f"{t}_axes", [2, 3])],
                                          [f"{t}_rows"], name=f"{key}_bilinear_rows"))
            x = f"{t}_rows"
        if any(pad_lo + pad_hi):
            added.append(helper.make_node("Pad", [x, _int64(g, f"{t}_pads", [0, 0, *pad_lo, 0, 0, *pad_hi])],
                                          [f"{t}_padded"], name=f"{key}_bilinear_pad", mode="edge"))
            x = f"{t}_padded"
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)[:, :, 0, 0]  # (C, K)
        phases = np.einsum("ay,bx,ck->cabkyx", X2_TAPS, X2_TAPS, weight).reshape(c * 4, weight.shape[1], 2, 2)
        g.initializer.append(numpy_helper.from_array(phases.astype(np.float32), f"{t}_weight"))
        conv_in = [x, f"{t}_weight"]
        if len(conv.input) > 2 and conv.input[2]:  # the taps of each phase sum to 1: the bias carries over
            bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32)
            g.initializer.append(numpy_helper.from_array(np.repeat(bias, 4), f"{t}_bias"))
            conv_in.append(f"{t}_bias")
        added += [helper.make_node("Conv", conv_in, [f"{t}_phases"], name=key + BILINEAR_X2, kernel_shape=[2, 2]),
                  helper.make_node("DepthToSpace", [f"{t}_phases"], [f"{t}_up"], name=f"{key}_bilinear_d2s",
                                   blocksize=2, mode="CRD")]
        final = crop.output[0] if crop is not None else resize.output[0]
        # each axis: (rows read + padding - 1) conv positions, 2 output rows each
        span = [2 * (hi - lo + plo + phi - 1) for lo, hi, plo, phi in zip(feat_lo, feat_hi, pad_lo, pad_hi,
                                                                          strict=True)]
        if out_lo == [0, 0] and out_hi == span:
            added[-1].output[0] = final
        else:
            added.append(helper.make_node("Slice", [f"{t}_up", _int64(g, f"{t}_crop_starts", out_lo),
                                                    _int64(g, f"{t}_crop_ends", out_hi), _int64(g, f"{t}_crop_axes", [2, 3])],
                                          [final], name=f"{key}_bilinear_crop"))
        for nd in (conv, resize, crop):
            if nd is not None:
                gone.add(id(nd))
                released.update(nd.input)
        stale.update({conv.output[0], resize.output[0]} - {final})
        folded.append(key)
    if folded:
        keep = [nd for nd in g.node if id(nd) not in gone]
        del g.node[:]
        g.node.extend([*keep, *added])
        _drop_initializers(g, released)  # the old classifier's weights, the Resize's scales, the old crop's
        _drop_value_info(g, stale)
        _topological_sort(g)
    return folded


def subpixel_bilinear_heads(proto: onnx.ModelProto) -> list[str]:
    """Names of the heads :func:`subpixel_bilinear_head` folded in ``proto`` (or its Q/DQ model)."""
    return _rewritten(proto, "Conv", BILINEAR_X2)


# -- the uint8 frame straight into the first convolution (fused pre-processing) -------------------------
RAW_INPUT_KEY = "raw_uint8_input"  # ModelMeta.extra: the first conv reads the uint8 frame (name of that conv)
RAW_BORDER = "_raw_border"  # name suffix of the Concats that pad the uint8 frame
RAW_CAST = "_raw_cast"  # name suffix of the Cast of the frame that feeds the folded conv


def input_normalizer(proto: onnx.ModelProto) -> onnx.NodeProto | None:
    """The normalising 1x1 Conv of a fused-preprocessing graph (uint8 input -> Transpose -> Cast -> Conv,
    :class:`export.onnx_export.FusedPreprocess`), or None when the graph does not start that way."""
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _consumers(g)
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        return None
    chain: list[onnx.NodeProto] = []
    tensor = inputs[0].name
    for op in ("Transpose", "Cast", "Conv"):
        users = [u for u in consumers.get(tensor, []) if u.op_type != "Shape"]  # dynamic sizes read the frame too
        if len(users) != 1 or users[0].op_type != op:
            return None
        chain.append(users[0])
        tensor = users[0].output[0]
    transpose, cast, conv = chain
    if list(_attr(transpose, "perm", [])) != [0, 3, 1, 2] or _attr(cast, "to", 0) != onnx.TensorProto.FLOAT:
        return None
    if not _pointwise_conv(conv, inits) or tuple(inits[conv.input[1]].dims) != (3, 3, 1, 1):
        return None
    return conv


def _conv_weights(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, np.ndarray]:
    """A Conv's constant weight (O, I, kh, kw) and bias (O,; zeros when it has none), as float64."""
    weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
    has_bias = len(node.input) > 2 and node.input[2]
    return weight, (numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if has_bias
                    else np.zeros(weight.shape[0]))


def fold_input_normalization(proto: onnx.ModelProto) -> str | None:
    """Fold the normalising 1x1 Conv of a fused-preprocessing graph (:func:`input_normalizer`) into the
    convolution after it, which then reads the uint8 frame itself (cast to float, 0..255).

    Meant for the ``ort`` INT8 flavour: ONNX Runtime ran that 3 -> 3 Conv at 3.8 ms quantized and 3.4 ms
    in float (with its layout conversion) per 360x480 frame, 1 thread, while a first convolution on the
    raw frame costs what it cost before. The quantizer gives the frame scale 1 and zero point 0, which hold
    every uint8 value exactly (:func:`raw_uint8_input` then drops the Cast/QuantizeLinear pair).

    The border: the first convolution zero-pads the *normalised* image; the raw value that normalises to 0
    is ``255 * mean`` per channel, which a uint8 cannot hold. So the padding moves in front of the Cast as
    constant strips of ``round(255 * mean)`` concatenated around the frame, and the folded convolution gets
    no padding of its own. Padded taps then differ from the original by at most 0.5 / 255 / std per channel
    (0.009 for ImageNet statistics), less than the input's quantization step without the fold (~0.018);
    everywhere else the result is equal up to float rounding. Needs a static input shape and a plain
    (group 1, explicit pads) first convolution; edits ``proto`` in place and returns the folded conv's name,
    or None (unchanged).
    """
    norm = input_normalizer(proto)
    if norm is None:
        return None
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _consumers(g)
    producer = {o: n for n in g.node for o in n.output}
    users = consumers.get(norm.output[0], [])
    first = users[0] if len(users) == 1 and users[0].op_type == "Conv" else None
    graph_outputs = {o.name for o in g.output}
    if first is None or norm.output[0] in graph_outputs or first.input[1] not in inits \
            or (len(first.input) > 2 and first.input[2] and first.input[2] not in inits) \
            or _attr(first, "group", 1) != 1 or _attr(first, "auto_pad", "NOTSET") not in ("NOTSET", ""):
        return None
    cast = producer[norm.input[0]]
    transpose = producer[cast.input[0]]
    shape = _static_shapes(proto).get(transpose.output[0])  # (N, 3, H, W)
    if shape is None:
        return None
    w_norm, b_norm = _conv_weights(norm, inits)
    w_norm = w_norm[:, :, 0, 0]  # (3 out, 3 in)
    if abs(np.linalg.det(w_norm)) < 1e-12:
        return None
    border = np.linalg.solve(w_norm, -b_norm)  # the raw pixel that normalises to 0, per input channel
    if border.min() < -0.5 or border.max() > 255.5:
        return None
    w_first, b_first = _conv_weights(first, inits)  # (O, 3, kh, kw), (O,)
    w_raw = np.einsum("okyx,ki->oiyx", w_first, w_norm)
    b_raw = b_first + np.einsum("okyx,k->o", w_first, b_norm)
    key = first.name or first.output[0]
    t = f"{first.output[0]}_raw"  # prefix of the new tensor names

    pads = [int(p) for p in _attr(first, "pads", [0, 0, 0, 0])]  # top, left, bottom, right
    x = transpose.output[0]
    n, c, h, w = shape
    fill = np.clip(np.round(border), 0, 255).astype(np.uint8).reshape(1, 3, 1, 1)
    for axis, (lo, hi) in ((2, (pads[0], pads[2])), (3, (pads[1], pads[3]))):
        if not lo and not hi:
            continue
        parts = []
        for side, size in (("lo", lo), ("hi", hi)):
            if size:
                strip = [n, c, size, w] if axis == 2 else [n, c, h, size]
                name = f"{t}_border{axis}{side}"
                g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(np.broadcast_to(fill, strip)), name))
                parts.append(name)
        inputs = [parts[0], x, *parts[1:]] if lo else [x, *parts]
        g.node.append(helper.make_node("Concat", inputs, [f"{t}_padded{axis}"], name=f"{key}{RAW_BORDER}{axis}",
                                       axis=axis))
        x = f"{t}_padded{axis}"
        h = h + lo + hi if axis == 2 else h
    cast.input[0] = x
    cast.name = key + RAW_CAST
    released = {*norm.input, *first.input[1:]}
    g.initializer.extend([numpy_helper.from_array(w_raw.astype(np.float32), f"{t}_weight"),
                          numpy_helper.from_array(b_raw.astype(np.float32), f"{t}_bias")])
    first.input[:] = [cast.output[0], f"{t}_weight", f"{t}_bias"]
    for a in [a for a in first.attribute if a.name == "pads"]:
        first.attribute.remove(a)  # the border Concats pad now
    g.node.remove(norm)
    _drop_initializers(g, released)
    _drop_value_info(g, {norm.output[0], cast.output[0], transpose.output[0]})
    _topological_sort(g)
    return key


def raw_input_casts(proto: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The Casts of the uint8 frame that :func:`fold_input_normalization` left in front of a folded conv."""
    return [n for n in proto.graph.node if n.op_type == "Cast" and n.name.endswith(RAW_CAST)]


def raw_uint8_input(proto: onnx.ModelProto) -> list[str]:
    """In a Q/DQ graph: drop the ``Cast -> QuantizeLinear`` pair in front of each folded conv (see
    :func:`fold_input_normalization`) when it turns uint8 into the same uint8 (scale 1, zero point 0), so
    the convolution reads the frame's bytes directly. Edits ``proto`` in place; returns the folded convs'
    names whose input is now the uint8 frame."""
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    consumers = _consumers(g)
    done: list[str] = []
    for cast in raw_input_casts(proto):
        users = consumers.get(cast.output[0], [])
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" \
                or _per_tensor_params(users[0], inits) != (1.0, 0, onnx.TensorProto.UINT8):
            continue
        q = users[0]
        for n in consumers.get(q.output[0], []):
            n.input[:] = [cast.input[0] if i == q.output[0] else i for i in n.input]
        g.node.remove(cast)
        g.node.remove(q)
        _drop_initializers(g, set(q.input[1:]))
        _drop_value_info(g, {cast.output[0], q.output[0]})
        done.append(cast.name[: -len(RAW_CAST)])
    return done


# -- few-channel input convolutions onto ONNX Runtime's indirect int8 kernels ---------------------------
PADDED_INPUT_KEY = "padded_input_channels"  # ModelMeta.extra: convs whose image input got zero channels
CHANNEL_ALIGN = 4  # MLAS's symmetric (indirect) int8 convolution wants input channels in multiples of 4
PAD_CHANNELS = "_pad_channels"  # name suffix of the Pad each padded conv's input goes through


def pad_input_channels(proto: onnx.ModelProto) -> list[str]:
    """In a Q/DQ graph (``ort`` target): give each quantized convolution that reads fewer than 4 channels
    (an image: RGB, grayscale) extra input channels of zeros so ONNX Runtime runs it on MLAS's indirect
    int8 kernel, which wants input channels in multiples of 4; with 3 it takes the im2col GEMM path.
    The bundled unet_lite's stem (3 -> 16, 3x3 stride 2, 360x480): 2.95 -> 1.70 ms of kernels at
    1 thread, 27.1 -> 25.5 ms for the whole float-input INT8 graph, one interleaved profile.

    The uint8 input is padded with its zero point (so it dequantizes to 0) and the weights with zero
    channels: the result is bit-identical. The Pad runs on a 5-D view, (N, C, H, W, 1), which ONNX
    Runtime's transpose optimizer cannot move into its channels-last layout, where padding the
    innermost axis would copy 3 bytes at a time (3.8 ms instead of ~0.15 ms for a 360x480 frame).
    Reshape's 0 copies each dimension, so dynamic sizes work. Edits ``proto`` in place and returns the
    names of the padded convolutions.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = _consumers(g)
    padded: list[str] = []
    made: dict[str, str] = {}  # DequantizeLinear output -> its padded twin (convs reading one input share it)
    for conv in [n for n in g.node if n.op_type == "Conv" and _attr(n, "group", 1) == 1]:
        dq, wdq = producer.get(conv.input[0]), producer.get(conv.input[1])
        if dq is None or wdq is None or dq.op_type != "DequantizeLinear" or wdq.op_type != "DequantizeLinear":
            continue
        params = _per_tensor_params(dq, inits)
        weight = inits.get(wdq.input[0])
        if params is None or params[2] != onnx.TensorProto.UINT8 or weight is None or len(weight.dims) != 4:
            continue
        channels = weight.dims[1]
        if channels >= CHANNEL_ALIGN or len(consumers.get(wdq.output[0], [])) != 1 \
                or len(consumers.get(wdq.input[0], [])) != 1:
            continue
        extra = CHANNEL_ALIGN - channels
        key = conv.name or conv.output[0]
        w = numpy_helper.to_array(weight)
        zeros = np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)
        weight.CopyFrom(numpy_helper.from_array(np.concatenate([w, zeros], axis=1), weight.name))
        _drop_value_info(g, {wdq.output[0]})
        if dq.output[0] not in made:
            t = f"{dq.output[0]}{PAD_CHANNELS}"  # one twin per DequantizeLinear: its own scale and zero point
            fill = numpy_helper.from_array(np.array(params[1], np.uint8), f"{t}_value")
            g.initializer.append(fill)
            g.node.extend([
                helper.make_node("Reshape", [dq.input[0], _int64(g, f"{t}_5d_shape", [0, 0, 0, 0, 1])], [f"{t}_5d"],
                                 name=f"{key}{PAD_CHANNELS}_5d"),
                helper.make_node("Pad", [f"{t}_5d", _int64(g, f"{t}_pads", [0, 0, 0, 0, 0, 0, extra, 0, 0, 0]),
                                         fill.name], [f"{t}_padded5d"], name=f"{key}{PAD_CHANNELS}", mode="constant"),
                helper.make_node("Reshape", [f"{t}_padded5d", _int64(g, f"{t}_4d_shape", [0, 0, 0, 0])], [t],
                                 name=f"{key}{PAD_CHANNELS}_4d"),
                helper.make_node("DequantizeLinear", [t, *dq.input[1:3]], [f"{t}_dq"],
                                 name=f"{key}{PAD_CHANNELS}_dq"),
            ])
            made[dq.output[0]] = f"{t}_dq"
        conv.input[0] = made[dq.output[0]]
        padded.append(key)
    if padded:
        read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
        for dq in [producer[d] for d in made if d not in read]:  # the padded twin replaced it everywhere
            g.node.remove(dq)
            _drop_value_info(g, {dq.output[0]})
        _topological_sort(g)
    return padded
