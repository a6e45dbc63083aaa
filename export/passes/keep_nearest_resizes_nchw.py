"""Fence uint8 nearest x2 Resizes between Reshapes so ONNX Runtime runs them in NCHW.

ONNX Runtime runs a U8S8 Q/DQ network channels-last: its layout transformer pushes transposes through the
ops between QLinearConvs, a nearest Resize included, and a uint8 nearest x2 Resize in NHWC takes a generic
per-element path while in NCHW it takes a dedicated x2 kernel (docs/benchmarks.md#graph-passes). A transpose
cannot be pushed through a Reshape, so (N, C, h, w) -> (N*C, 1, h, w) -> Resize x2 -> (N, C, 2h, 2w) keeps
the Resize in NCHW; the folded axis is not resized, so the result is bit-identical.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .base import GraphIndex, PassContext, attr, const_scales, is_per_tensor, make_node

NAME = "keep_nearest_resizes_nchw"
NCHW_X2_SCALES = (1.0, 1.0, 2.0, 2.0)
X2_MODES = ("nearest", "floor", "asymmetric")  # PyTorch's nearest export; the form ONNX Runtime's x2 kernel takes


class KeepNearestResizesNchw:
    name = NAME
    doc = "fence uint8 nearest x2 Resizes with Reshapes so ONNX Runtime keeps them on its NCHW x2 kernel"

    def applies(self, index: GraphIndex) -> bool:
        return "Resize" in index.op_types and "DequantizeLinear" in index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Fence every ``DequantizeLinear -> Resize -> QuantizeLinear`` with per-tensor parameters and
        constant scales (1, 1, 2, 2); Resizes whose channel count is unknown are left as they are."""
        g, inits = index.graph, index.inits
        fenced: list[str] = []
        added: list[onnx.NodeProto] = []
        reshaped: set[str] = set()  # Resize outputs whose shape the fence changes
        for node in g.node:
            if node.op_type != "Resize" or (attr(node, "mode", "nearest"), attr(node, "nearest_mode", "round_prefer_floor"),
                                             attr(node, "coordinate_transformation_mode", "half_pixel")) != X2_MODES:
                continue
            if const_scales(node, inits) != NCHW_X2_SCALES:
                continue
            dq, users = index.producer.get(node.input[0]), index.consumers.get(node.output[0], [])
            if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1:
                continue
            q = users[0]
            if q.op_type != "QuantizeLinear" or not (is_per_tensor(dq, inits) and is_per_tensor(q, inits)):
                continue
            shape = index.dims.get(node.input[0])
            if shape is None or len(shape) != 4 or shape[1] is None:
                continue
            channels = shape[1]
            k = node.name or node.output[0]
            fold, unfold = f"{k}_fold_shape", f"{k}_unfold_shape"
            # Reshape's 0 copies that input dim (h, w or 2h, 2w), -1 absorbs the batch: dynamic sizes work.
            g.initializer.extend([numpy_helper.from_array(np.array([-1, 1, 0, 0], np.int64), fold),
                                  numpy_helper.from_array(np.array([-1, channels, 0, 0], np.int64), unfold)])
            folded, folded_q, folded_dq = f"{k}_folded", f"{k}_folded_q", f"{k}_folded_dq"
            added += [make_node(NAME, "Reshape", [node.input[0], fold], [folded], name=f"{k}_fold"),
                      make_node(NAME, "QuantizeLinear", [folded, *dq.input[1:3]], [folded_q], name=f"{k}_fold_q"),
                      make_node(NAME, "DequantizeLinear", [folded_q, *dq.input[1:3]], [folded_dq], name=f"{k}_fold_dq")]
            node.input[0] = folded_dq
            out_q = q.output[0]  # the consumers keep reading this name, now from the unfolded copy
            inner_q, inner_dq, unfolded = f"{k}_x2_q", f"{k}_x2_dq", f"{k}_unfolded"
            q.output[0] = inner_q
            added += [make_node(NAME, "DequantizeLinear", [inner_q, *q.input[1:3]], [inner_dq], name=f"{k}_x2_dq"),
                      make_node(NAME, "Reshape", [inner_dq, unfold], [unfolded], name=f"{k}_unfold"),
                      make_node(NAME, "QuantizeLinear", [unfolded, *q.input[1:3]], [out_q], name=f"{k}_unfold_q")]
            fenced.append(k)
            reshaped.add(node.output[0])
        if fenced:
            index.forget(reshaped)  # a fenced Resize's output now has the folded shape
            g.node.extend(added)
            index.sort()
        return fenced
