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

import onnx
from onnx import numpy_helper

from edgeseg.runtime.errors import ModelFormatError, UsageError

from .onnx_io import get_meta, set_meta
from .passes.base import GraphIndex, attr, const_scales


def _head_resize(index: GraphIndex, out: str) -> tuple[onnx.NodeProto, onnx.NodeProto | None]:
    node, crop = index.producer.get(out), None
    if node is not None and node.op_type == "Slice":
        crop, node = node, index.producer.get(node.input[0])
    if node is None or node.op_type != "Resize":
        raise ModelFormatError("the graph does not end in the head's upsampling (Resize, then an optional crop), "
                               "so it cannot be cut to a coarser output stride; export the checkpoint with "
                               "--output-stride instead")
    return node, crop


def _resize_factor(index: GraphIndex, resize: onnx.NodeProto) -> int:
    scales = const_scales(resize, index.inits)
    if attr(resize, "mode", "nearest") != "linear" or scales is None or len(scales) != 4 or scales[:2] != (1, 1) \
            or scales[2] != scales[3] or scales[2] < 2 or scales[2] != int(scales[2]):
        raise ModelFormatError("the head's upsampling is not a bilinear Resize by a whole factor on H and W "
                               "(scales 1, 1, s, s); export the checkpoint with --output-stride instead")
    return int(scales[2])


def _crop_bounds(index: GraphIndex, crop: onnx.NodeProto) -> tuple[list[int], list[int]]:
    if crop.input[1] not in index.inits or crop.input[2] not in index.inits:
        raise ModelFormatError("the head's crop has computed bounds; export the checkpoint with --output-stride")
    starts, ends = (numpy_helper.to_array(index.inits[crop.input[k]]).tolist() for k in (1, 2))
    return starts, ends


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
    index = GraphIndex(out)
    resize, crop = _head_resize(index, g.output[0].name)
    factor = _resize_factor(index, resize)
    if stride != factor:
        raise UsageError(f"--output-stride {stride} does not fit this model: its head upsamples x{factor}, so "
                         f"use --output-stride 1 or {factor}")
    coarse = resize.input[0]
    old_consts = set(resize.input)
    if crop is not None:  # crop at the coarse stride: starts floor, ends ceil (the padded border stays out)
        starts, ends = _crop_bounds(index, crop)
        old_consts |= {crop.input[1], crop.input[2]}
        crop.input[1] = index.int64(f"{crop.input[1]}_coarse", [v // stride for v in starts])
        crop.input[2] = index.int64(f"{crop.input[2]}_coarse",
                                    [math.ceil(v / stride) if v < 2 ** 62 else v for v in ends])
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
    index.drop_initializers(old_consts)
    set_meta(out, meta.with_(output_stride=stride,
                             extra={**meta.extra, "output_stride_from": "onnx graph cut"}))
    onnx.checker.check_model(out)
    return out
