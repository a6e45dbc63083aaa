"""Move per-tensor DequantizeLinear nodes below the pure data moves after them, so those move uint8.

The quantizer leaves ops it does not know (a sub-pixel head's DepthToSpace, the crop after it) in float,
so they move 4-byte elements that were 1 byte just before; below them the DequantizeLinear runs once at
the end. Bit-identical (docs/benchmarks.md#graph-passes).
"""

from __future__ import annotations

import onnx

from .base import GraphIndex, PassContext, attr, is_per_tensor

NAME = "sink_dequantize"
# Ops that only move or select elements: dequantizing before or after them gives the same numbers
# when the DequantizeLinear has one scale and zero point for the whole tensor.
DATA_MOVES = ("DepthToSpace", "SpaceToDepth", "Slice", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze")
COPYING_PADS = ("edge", "reflect", "wrap")  # Pad modes that only repeat input elements (constant mode adds a value)


def _moves_data(node: onnx.NodeProto) -> bool:
    return node.op_type in DATA_MOVES or (node.op_type == "Pad" and attr(node, "mode", "constant") in COPYING_PADS)


class SinkDequantize:
    name = NAME
    doc = "move per-tensor DequantizeLinear below pure data moves (DepthToSpace, Slice, ...) so they run on uint8"

    def applies(self, index: GraphIndex) -> bool:
        return "DequantizeLinear" in index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        g, inits = index.graph, index.inits
        moved: list[str] = []
        gone: set[str] = set()
        while True:
            consumers = index.consumers
            step = next(((dq, users[0]) for dq in g.node if dq.op_type == "DequantizeLinear"
                         and is_per_tensor(dq, inits) and dq.output[0] not in index.outputs
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
            index.refresh()
        if moved:
            index.forget(gone)
            index.sort()
        return moved
