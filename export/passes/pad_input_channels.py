"""In a Q/DQ graph (``ort`` INT8): give each quantized convolution that reads fewer than 4 channels (an
image) extra zero input channels, so ONNX Runtime runs it on MLAS's indirect int8 kernel, which wants input
channels in multiples of 4; with 3 it takes the slower im2col path (docs/benchmarks.md#graph-passes).

The uint8 input is padded with its zero point (so it dequantizes to 0) and the weights with zero channels:
bit-identical. The Pad runs on a 5-D view, (N, C, H, W, 1), which ONNX Runtime's transpose optimizer cannot
move into its channels-last layout (where padding the innermost axis copies 3 bytes at a time). Reshape's
0 copies each dimension, so dynamic sizes work.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .base import GraphIndex, PassContext, attr, make_node, per_tensor_params

NAME = "pad_input_channels"
CHANNEL_ALIGN = 4  # MLAS's symmetric (indirect) int8 convolution wants input channels in multiples of 4


class PadInputChannels:
    name = NAME
    doc = "few-channel (image) input convolutions get zero channels up to 4: ONNX Runtime's faster int8 kernel"

    def applies(self, index: GraphIndex) -> bool:
        return {"Conv", "DequantizeLinear"} <= index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Returns the names of the padded convolutions."""
        g, inits, producer, consumers = index.graph, index.inits, index.producer, index.consumers
        padded: list[str] = []
        made: dict[str, str] = {}  # DequantizeLinear output -> its padded twin (convs reading one input share it)
        for conv in [n for n in g.node if n.op_type == "Conv" and attr(n, "group", 1) == 1]:
            dq, wdq = producer.get(conv.input[0]), producer.get(conv.input[1])
            if dq is None or wdq is None or dq.op_type != "DequantizeLinear" or wdq.op_type != "DequantizeLinear":
                continue
            params = per_tensor_params(dq, inits)
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
            index.forget({wdq.output[0]})
            if dq.output[0] not in made:
                t = f"{dq.output[0]}_pad_channels"  # one twin per DequantizeLinear: its own scale and zero point
                fill = numpy_helper.from_array(np.array(params[1], np.uint8), f"{t}_value")
                g.initializer.append(fill)
                g.node.extend([
                    make_node(NAME, "Reshape", [dq.input[0], index.int64(f"{t}_5d_shape", [0, 0, 0, 0, 1])],
                              [f"{t}_5d"], name=f"{key}_pad_channels_5d"),
                    make_node(NAME, "Pad", [f"{t}_5d", index.int64(f"{t}_pads", [0, 0, 0, 0, 0, 0, extra, 0, 0, 0]),
                                            fill.name], [f"{t}_padded5d"], name=f"{key}_pad_channels", mode="constant"),
                    make_node(NAME, "Reshape", [f"{t}_padded5d", index.int64(f"{t}_4d_shape", [0, 0, 0, 0])], [t],
                              name=f"{key}_pad_channels_4d"),
                    make_node(NAME, "DequantizeLinear", [t, *dq.input[1:3]], [f"{t}_dq"], name=f"{key}_pad_channels_dq"),
                ])
                made[dq.output[0]] = f"{t}_dq"
            conv.input[0] = made[dq.output[0]]
            padded.append(key)
        if padded:
            read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
            for dq in [producer[d] for d in made if d not in read]:  # the padded twin replaced it everywhere
                g.node.remove(dq)
                index.forget({dq.output[0]})
            index.sort()
        return padded
