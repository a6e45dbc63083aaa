"""Replace each CRD DepthToSpace with a static input shape by Reshape -> 3-D Transpose -> Reshape ->
4-D Transpose -> Reshape: the same permutation, which ONNX Runtime runs much faster than its element-wise
six-axis DepthToSpace (docs/benchmarks.md#graph-passes). Exact: only elements move. DCR mode and dynamic shapes
are left as they are.

With x = (N, C*s*s, H, W) and output (N, C, H*s, W*s), channel c*s*s + a*s + b going to
(c, h*s + a, w*s + b):
  (N*C*s, s, H*W) --[0,2,1]--> (N*C*s, H*W, s) = (N*C, s, H, W*s) --[0,2,1,3]--> (N*C, H, s, W*s)
"""

from __future__ import annotations

import onnx

from .base import GraphIndex, PassContext, attr, make_node

NAME = "split_depth_to_space"


class SplitDepthToSpace:
    name = NAME
    doc = "DepthToSpace (CRD, static shape) as reshapes and two cheap transposes; exact"

    def applies(self, index: GraphIndex) -> bool:
        return "DepthToSpace" in index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        g = index.graph
        replaced: list[str] = []
        new_nodes: list[onnx.NodeProto] = []
        for node in g.node:
            shape = index.static_shape(node.input[0]) if node.op_type == "DepthToSpace" else None
            if shape is None or len(shape) != 4 or attr(node, "mode", "DCR") != "CRD":
                new_nodes.append(node)
                continue
            s = int(attr(node, "blocksize", 0))
            n, k, h, w = shape
            if s < 2 or k % (s * s):
                new_nodes.append(node)
                continue
            c = k // (s * s)
            key = node.name or node.output[0]
            out = node.output[0]  # tensor names are unique in a graph, node names need not be
            names = [f"{out}_split{i}" for i in range(4)]
            new_nodes += [
                make_node(NAME, "Reshape", [node.input[0], index.int64(f"{out}_split_shape0", [n * c * s, s, h * w])],
                          [names[0]], name=f"{key}_split_phase_rows"),
                make_node(NAME, "Transpose", [names[0]], [names[1]], name=f"{key}_split_phase_last", perm=[0, 2, 1]),
                make_node(NAME, "Reshape", [names[1], index.int64(f"{out}_split_shape1", [n * c, s, h, w * s])],
                          [names[2]], name=f"{key}_split_rows"),
                make_node(NAME, "Transpose", [names[2]], [names[3]], name=f"{key}_split_interleave_rows",
                          perm=[0, 2, 1, 3]),
                make_node(NAME, "Reshape", [names[3], index.int64(f"{out}_split_shape2", [n, c, h * s, w * s])],
                          [node.output[0]], name=f"{key}_split_out"),
            ]
            for name, dims in zip(names, ([n * c * s, s, h * w], [n * c * s, h * w, s], [n * c, s, h, w * s],
                                          [n * c, h, s, w * s]), strict=True):
                index.set_shape(name, dims)
            replaced.append(key)
        if replaced:
            index.set_nodes(new_nodes)
        return replaced
