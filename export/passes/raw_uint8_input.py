"""In a Q/DQ graph: drop the ``Cast -> QuantizeLinear`` pair in front of each conv that
fold_input_normalization made read the frame, when it turns uint8 into the same uint8 (scale 1, zero
point 0), so the convolution reads the frame's bytes directly (``ort`` INT8)."""

from __future__ import annotations

import onnx

from .base import GraphIndex, PassContext, per_tensor_params, role_of
from .fold_input_normalization import ROLE_RAW_CAST

NAME = "raw_uint8_input"


class RawUint8Input:
    name = NAME
    doc = "the folded first convolution reads the uint8 frame's bytes (its Cast/QuantizeLinear pair goes)"

    def applies(self, index: GraphIndex) -> bool:
        return any(role_of(n) == ROLE_RAW_CAST for n in index.graph.node if n.op_type == "Cast")

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Returns the folded convs' names whose input is now the uint8 frame."""
        g, inits = index.graph, index.inits
        done: list[str] = []
        casts = [n for n in g.node if n.op_type == "Cast" and role_of(n) == ROLE_RAW_CAST]
        for cast in casts:
            users = index.consumers.get(cast.output[0], [])
            if len(users) != 1 or users[0].op_type != "QuantizeLinear" \
                    or per_tensor_params(users[0], inits) != (1.0, 0, onnx.TensorProto.UINT8):
                continue
            q = users[0]
            for n in index.consumers.get(q.output[0], []):
                n.input[:] = [cast.input[0] if i == q.output[0] else i for i in n.input]
            g.node.remove(cast)
            g.node.remove(q)
            index.drop_initializers(set(q.input[1:]))
            index.forget({cast.output[0], q.output[0]})
            done.append(cast.name.removesuffix("_raw_cast"))
        return done
