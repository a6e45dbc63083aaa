"""Fold the normalising 1x1 Conv of a fused-preprocessing graph (uint8 frame -> Transpose -> Cast -> Conv)
into the convolution after it, which then reads the uint8 frame (cast to float, 0..255) (``ort`` INT8).

ONNX Runtime runs that 3 -> 3 Conv at about the cost of a whole layer, quantized or not, while the first
real convolution costs the same on the raw frame (docs/benchmarks.md#graph-passes). The quantizer gives the frame
scale 1 and zero point 0, which hold every uint8 value exactly (raw_uint8_input then drops the Cast).

The border: the first convolution zero-pads the *normalised* image; the raw value that normalises to 0 is
``255 * mean`` per channel, which a uint8 cannot hold exactly. So the padding moves in front of the Cast as
constant strips of ``round(255 * mean)`` concatenated around the frame, and the folded convolution gets no
padding of its own. Padded taps then differ from the original by at most 0.5 / 255 / std per channel, less
than the input's quantization step without the fold; everywhere else the result is equal up to float
rounding. Needs a static input shape and a plain (group 1, explicit pads) first convolution.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .base import GraphIndex, PassContext, attr, make_node, mark, pointwise_conv

NAME = "fold_input_normalization"
ROLE_RAW_CAST = "raw_cast"  # the Cast of the (padded) uint8 frame that feeds the folded conv


def input_normalizer(proto: onnx.ModelProto, index: GraphIndex | None = None) -> onnx.NodeProto | None:
    """The normalising 1x1 Conv of a fused-preprocessing graph (uint8 input -> Transpose -> Cast -> Conv,
    as edgeseg's ``--fuse-preprocess`` exports it), or None when the graph does not start that way."""
    index = index or GraphIndex(proto)
    g, inits = proto.graph, index.inits
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8:
        return None
    chain: list[onnx.NodeProto] = []
    tensor = inputs[0].name
    for op in ("Transpose", "Cast", "Conv"):
        users = [u for u in index.consumers.get(tensor, []) if u.op_type != "Shape"]  # dynamic sizes read the frame
        if len(users) != 1 or users[0].op_type != op:
            return None
        chain.append(users[0])
        tensor = users[0].output[0]
    transpose, cast, conv = chain
    if list(attr(transpose, "perm", [])) != [0, 3, 1, 2] or attr(cast, "to", 0) != onnx.TensorProto.FLOAT:
        return None
    if not pointwise_conv(conv, inits) or tuple(inits[conv.input[1]].dims) != (3, 3, 1, 1):
        return None
    return conv


def _conv_weights(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple[np.ndarray, np.ndarray]:
    """A Conv's constant weight (O, I, kh, kw) and bias (O,; zeros when it has none), as float64."""
    weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
    has_bias = len(node.input) > 2 and node.input[2]
    return weight, (numpy_helper.to_array(inits[node.input[2]]).astype(np.float64) if has_bias
                    else np.zeros(weight.shape[0]))


class FoldInputNormalization:
    name = NAME
    doc = "fold the in-graph normalising 1x1 conv into the first convolution, which reads the uint8 frame (ort INT8)"

    def applies(self, index: GraphIndex) -> bool:
        return input_normalizer(index.proto, index) is not None

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Returns [the folded conv's name] or [] (unchanged)."""
        norm = input_normalizer(index.proto, index)
        if norm is None:
            return []
        g, inits = index.graph, index.inits
        users = index.consumers.get(norm.output[0], [])
        first = users[0] if len(users) == 1 and users[0].op_type == "Conv" else None
        if first is None or norm.output[0] in index.outputs or first.input[1] not in inits \
                or (len(first.input) > 2 and first.input[2] and first.input[2] not in inits) \
                or attr(first, "group", 1) != 1 or attr(first, "auto_pad", "NOTSET") not in ("NOTSET", ""):
            return []
        cast = index.producer[norm.input[0]]
        transpose = index.producer[cast.input[0]]
        shape = index.static_shape(transpose.output[0])  # (N, 3, H, W)
        if shape is None:
            return []
        w_norm, b_norm = _conv_weights(norm, inits)
        w_norm = w_norm[:, :, 0, 0]  # (3 out, 3 in)
        if abs(np.linalg.det(w_norm)) < 1e-12:
            return []
        border = np.linalg.solve(w_norm, -b_norm)  # the raw pixel that normalises to 0, per input channel
        if border.min() < -0.5 or border.max() > 255.5:
            return []
        w_first, b_first = _conv_weights(first, inits)  # (O, 3, kh, kw), (O,)
        w_raw = np.einsum("okyx,ki->oiyx", w_first, w_norm)
        b_raw = b_first + np.einsum("okyx,k->o", w_first, b_norm)
        key = first.name or first.output[0]
        t = f"{first.output[0]}_raw"  # prefix of the new tensor names

        pads = [int(p) for p in attr(first, "pads", [0, 0, 0, 0])]  # top, left, bottom, right
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
                    g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(np.broadcast_to(fill, strip)),
                                                                 name))
                    parts.append(name)
            inputs = [parts[0], x, *parts[1:]] if lo else [x, *parts]
            g.node.append(make_node(NAME, "Concat", inputs, [f"{t}_padded{axis}"], name=f"{key}_raw_border{axis}",
                                    axis=axis))
            x = f"{t}_padded{axis}"
            h = h + lo + hi if axis == 2 else h
        cast.input[0] = x
        cast.name = f"{key}_raw_cast"
        mark(cast, NAME, ROLE_RAW_CAST)
        released = {*norm.input, *first.input[1:]}
        g.initializer.extend([numpy_helper.from_array(w_raw.astype(np.float32), f"{t}_weight"),
                              numpy_helper.from_array(b_raw.astype(np.float32), f"{t}_bias")])
        first.input[:] = [cast.output[0], f"{t}_weight", f"{t}_bias"]
        for a in [a for a in first.attribute if a.name == "pads"]:
            first.attribute.remove(a)  # the border Concats pad now
        g.node.remove(norm)
        index.drop_initializers(released)
        index.forget({norm.output[0], cast.output[0], transpose.output[0]})
        index.sort()
        return [key]
