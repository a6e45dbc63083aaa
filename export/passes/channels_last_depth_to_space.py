"""Start each split DepthToSpace (split_depth_to_space) from a channels-last tensor (``ort`` INT8).

ONNX Runtime runs a U8S8 Q/DQ graph channels-last, so before the split's first Reshape it transposes the
producing convolution's NHWC output back to NCHW. An explicit NCHW -> NHWC Transpose first lets ONNX
Runtime cancel the two, and the (s, H*W) block transpose becomes an (H*W, M) one of s-byte elements:
  (N, M*s, H, W) -> (N, H, W, M*s) = (N, H*W, M, s) --> (N, M, H*W, s)  [N = 1: 3-D, (H*W, M, s)]
which is the first Transpose's (N*M, H*W, s) in the same memory order. Float graphs keep the NCHW form
(there the first Transpose is real and ONNX Runtime's float (H*W, M, s) transpose is slow).
"""

from __future__ import annotations

import onnx
from onnx import numpy_helper

from .base import GraphIndex, PassContext, attr, make_node

NAME = "channels_last_depth_to_space"
ROLE_TO_NHWC = "to_nhwc"  # the Transpose each channels-last head starts with


class ChannelsLastDepthToSpace:
    name = NAME
    doc = "split DepthToSpace heads read the convolution's channels-last output directly (ort INT8)"

    def applies(self, index: GraphIndex) -> bool:
        return {"Reshape", "Transpose"} <= index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Matches Reshape(x -> (N*M, s, H*W)) -> Transpose([0, 2, 1]) on a static 4-D x, whatever made it;
        returns the names of the Transposes replaced."""
        g, inits = index.graph, index.inits
        swapped: list[str] = []
        drop: set[str] = set()  # outputs of the replaced Reshapes (their Transposes read them)
        old_shapes: set[str] = set()
        added: list[onnx.NodeProto] = []
        changed_shape: set[str] = set()
        for reshape in g.node:
            if reshape.op_type != "Reshape" or len(reshape.input) < 2 or reshape.input[1] not in inits:
                continue
            x_shape = index.static_shape(reshape.input[0])
            users = index.consumers.get(reshape.output[0], [])
            if x_shape is None or len(x_shape) != 4 or len(users) != 1 or reshape.output[0] in index.outputs:
                continue
            tr = users[0]
            if tr.op_type != "Transpose" or list(attr(tr, "perm", [])) != [0, 2, 1]:
                continue
            target = [int(v) for v in numpy_helper.to_array(inits[reshape.input[1]]).ravel()]
            n, k, h, w = x_shape
            if len(target) != 3 or target[2] != h * w or target[1] < 2 or k % target[1] \
                    or target[0] != n * (k // target[1]):
                continue
            s, m = target[1], k // target[1]
            key = tr.name or tr.output[0]
            nhwc, rows = f"{tr.output[0]}_nhwc", f"{tr.output[0]}_nhwc_rows"
            if n == 1:  # a leading unit axis sends ONNX Runtime's Transpose to its slow general path
                rows_shape, perm = [h * w, m, s], [1, 0, 2]
            else:
                rows_shape, perm = [n, h * w, m, s], [0, 2, 1, 3]
                changed_shape.add(tr.output[0])
            added += [make_node(NAME, "Transpose", [reshape.input[0]], [nhwc], name=f"{key}_to_nhwc", role=ROLE_TO_NHWC,
                                perm=[0, 2, 3, 1]),
                      make_node(NAME, "Reshape", [nhwc, index.int64(f"{tr.output[0]}_nhwc_shape", rows_shape)], [rows],
                                name=f"{key}_nhwc_rows"),
                      make_node(NAME, "Transpose", [rows], [tr.output[0]], name=key, perm=perm)]
            drop.add(reshape.output[0])
            old_shapes.add(reshape.input[1])
            swapped.append(key)
        if swapped:
            # the new Transpose writes the old one's output name: drop the old pair by the Reshape's output
            keep = [n for n in g.node if n.output[0] not in drop and not (n.op_type == "Transpose" and n.input[0] in drop)]
            index.set_nodes([*keep, *added])
            index.drop_initializers(old_shapes)
            index.forget(changed_shape)
            index.sort()
        return swapped
