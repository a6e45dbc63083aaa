"""End an edgeseg float ONNX before its head's upsampling, without the checkpoint.

``edgeseg export best.pt --output-stride 2`` cuts the model in PyTorch (:class:`~.onnx_export.CoarseLogits`).
Someone holding only the FP32 ``.onnx`` (the bundled one, say) gets the same artifact here: the
graph's last bilinear ``Resize`` by the model's head factor (and the crop ``Slice`` after it, if
any) is removed, the crop rescaled, and ``output_stride`` recorded in the metadata, so the runtime
takes the argmax at that stride and upsamples the uint8 class map (nearest). Used by the OpenVINO
INT8 flavour, whose quantized convolutions are fast enough that the full-resolution float
Resize of C planes is a large share of the model's time.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from edgeseg.runtime.errors import ModelFormatError, UsageError

from .onnx_io import get_meta, set_meta


def _const(g: onnx.GraphProto, name: str) -> np.ndarray | None:
    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant" and name in n.output:
            return numpy_helper.to_array(n.attribute[0].t) if n.attribute and n.attribute[0].name == "value" else None
    return None


def _set_const(g: onnx.GraphProto, name: str, value: np.ndarray) -> str:
    """A new initializer holding ``value`` (the old one may be shared); returns its name."""
    new = f"{name}_coarse"
    g.initializer.append(numpy_helper.from_array(value, new))
    return new


def _head_resize(g: onnx.GraphProto, out: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None]:
    producer = {o: n for n in g.node for o in n.output}
    node = producer.get(out)
    crop = None
    if node is not None and node.op_type == "Slice":
        crop, node = node, producer.get(node.input[0])
    if node is None or node.op_type != "Resize":
        raise ModelFormatError("the graph does not end in the head's upsampling (Resize, then an optional crop), "
                               "so it cannot be cut to a coarser output stride; export the checkpoint with "
                               "--output-stride instead")
    return node, crop


def _resize_factor(g: onnx.GraphProto, resize: onnx.NodeProto) -> int:
    mode = next((a.s.decode() for a in resize.attribute if a.name == "mode"), "nearest")
    scales = _const(g, resize.input[2]) if len(resize.input) > 2 and resize.input[2] else None
    if mode != "linear" or scales is None or scales.size != 4 or tuple(scales[:2]) != (1, 1) \
            or scales[2] != scales[3] or scales[2] < 2 or scales[2] != int(scales[2]):
        raise ModelFormatError("the head's upsampling is not a bilinear Resize by a whole factor on H and W "
                               "(scales 1, 1, s, s); export the checkpoint with --output-stride instead")
    return int(scales[2])


def to_output_stride(proto: onnx.ModelProto, stride: int) -> onnx.ModelProto:
    """A copy of an edgeseg FP32 logits ONNX ending at ``stride`` (the head's own upsampling factor)."""
    meta = get_meta(proto)
    if meta.output_stride != 1 or meta.precision != "fp32" or meta.output_kind != "logits":
        raise UsageError(f"--output-stride {stride} cuts a full-resolution FP32 logits ONNX; this one is "
                         f"{meta.precision}, {meta.output_kind}, output stride {meta.output_stride}")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    if len(g.output) != 1:
        raise ModelFormatError(f"expected one output (the logits), found {len(g.output)}")
    resize, crop = _head_resize(g, g.output[0].name)
    factor = _resize_factor(g, resize)
    if stride != factor:
        raise UsageError(f"--output-stride {stride} does not fit this model: its head upsamples x{factor}, so "
                         f"use --output-stride 1 or {factor}")
    coarse = resize.input[0]
    if crop is not None:  # crop at the coarse stride: starts floor, ends ceil (the padded border stays out)
        starts, ends = _const(g, crop.input[1]), _const(g, crop.input[2])
        if starts is None or ends is None:
            raise ModelFormatError("the head's crop has computed bounds; export the checkpoint with --output-stride")
        crop.input[1] = _set_const(g, crop.input[1], (starts // stride).astype(starts.dtype))
        crop.input[2] = _set_const(g, crop.input[2], np.array([math.ceil(int(e) / stride) if e < 2 ** 62 else e
                                                               for e in ends], dtype=ends.dtype))
        crop.input[0] = coarse
        g.node.remove(resize)
    else:  # the Resize made the graph output: its input takes the output's name
        g.node.remove(resize)
        name = g.output[0].name
        for n in g.node:
            n.output[:] = [name if o == coarse else o for o in n.output]
            n.input[:] = [name if i == coarse else i for i in n.input]
    dims = g.output[0].type.tensor_type.shape.dim
    for d in list(dims)[2:]:
        if d.HasField("dim_value"):
            d.dim_value = math.ceil(d.dim_value / stride)
        else:
            d.dim_param = f"{d.dim_param or 'dim'}_s{stride}"
    del g.value_info[:]
    used = {i for n in g.node for i in n.input}
    for t in [t for t in g.initializer if t.name not in used]:
        g.initializer.remove(t)
    set_meta(out, meta.with_(output_stride=stride,
                             extra={**meta.extra, "output_stride_from": "onnx graph cut"}))
    onnx.checker.check_model(out)
    return out
