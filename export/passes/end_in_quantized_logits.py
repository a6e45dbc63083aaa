"""Drop the DequantizeLinear that ends a U8S8 graph, so it outputs uint8 logits (``ort`` INT8).

The argmax of the quantized logits is the argmax of the dequantized ones (one scale for the whole tensor,
ties included), and the runtime's argmax reads a quarter of the bytes; the full-resolution dequantize
itself goes too. Its (scale, zero point) go to the metadata (``output_quant``).
"""

from __future__ import annotations

import onnx

from .base import GraphIndex, PassContext, per_tensor_params

NAME = "end_in_quantized_logits"


class EndInQuantizedLogits:
    name = NAME
    doc = "the graph outputs uint8 logits (the final per-tensor DequantizeLinear goes); argmax unchanged"

    def applies(self, index: GraphIndex) -> bool:
        return "DequantizeLinear" in index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """A Quantize/Dequantize pair with equal parameters just before the final dequantize (a tensor
        re-quantized to itself) goes too. Sets ``ctx.output_quant``; returns [output name] or []."""
        g, inits = index.graph, index.inits
        out = g.output[0]
        dq = index.producer.get(out.name)
        params = per_tensor_params(dq, inits) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if params is None or params[2] != onnx.TensorProto.UINT8:
            return []
        drop = [dq]
        tail = dq.input[0]
        uses = {name: len(readers) for name, readers in index.consumers.items()}
        while (q := index.producer.get(tail)) is not None and q.op_type == "QuantizeLinear" and uses.get(tail) == 1:
            dq_in = index.producer.get(q.input[0])
            if (dq_in is None or dq_in.op_type != "DequantizeLinear" or uses.get(q.input[0]) != 1
                    or per_tensor_params(q, inits) != params or per_tensor_params(dq_in, inits) != params):
                break
            drop += [q, dq_in]
            tail = dq_in.input[0]
        gone = {n.output[0] for n in drop}
        keep = [n for n in g.node if n.output[0] not in gone]
        for n in keep:  # the uint8 tensor takes the output's name
            n.output[:] = [out.name if o == tail else o for o in n.output]
            n.input[:] = [out.name if i == tail else i for i in n.input]
        index.set_nodes(keep)
        index.forget({tail, out.name, *(o for n in drop for o in n.output)})
        out.type.tensor_type.elem_type = onnx.TensorProto.UINT8
        ctx.output_quant = (params[0], params[1])
        return [out.name]
