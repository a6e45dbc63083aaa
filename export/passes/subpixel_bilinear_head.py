"""Fold a 1x1 classifier Conv and the bilinear x2 Resize after it (and the crop after that) into
Slice -> Pad(edge) -> 2x2 Conv to the four output phases -> DepthToSpace -> Slice (``ort`` INT8).

The quantizer leaves a bilinear Resize in float, and so the classifier in front of it, and ONNX Runtime's
uint8 bilinear Resize is slower still. A bilinear x2 with half-pixel centres mixes, for each output pixel,
the 2x2 input pixels around it with weights 0.75/0.25 per axis, so with the 1x1 classifier folded in it is
one 2x2 convolution producing 4 phases per class (channel ``c * 4 + row_phase * 2 + col_phase``, CRD
order), read with a one-pixel shift: phase conv position j covers output rows 2j - 1 and 2j. The input's
edges are repeated (Pad edge) as the Resize clamps its source coordinates, the first Slice drops the feature
rows the final crop never reads, the last Slice undoes the shift and crops. Equal to the original up to
float rounding; the new Conv quantizes. Float graphs run the original head faster, so only the INT8 flavour
gets it (docs/benchmarks.md#graph-passes). Needs static shapes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .base import GraphIndex, PassContext, attr, const_scales, make_node, pointwise_conv

NAME = "subpixel_bilinear_head"
ROLE_CONV = "bilinear_x2"  # the folded convolution
HALF_PIXEL = ("half_pixel", "pytorch_half_pixel")  # the same coordinates for an x2 upsampling
NCHW_X2_SCALES = (1.0, 1.0, 2.0, 2.0)
# Bilinear x2 with half-pixel centres: output row 2j-1 = 0.75 in[j-1] + 0.25 in[j], row 2j = 0.25 in[j-1]
# + 0.75 in[j]. Indexed [phase][tap] over the two input rows j-1, j.
X2_TAPS = np.array([[0.75, 0.25], [0.25, 0.75]], np.float64)


def _slice_window(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto],
                  dims: tuple[int, int]) -> tuple[list[int], list[int]] | None:
    """(starts, ends) of a constant step-1 Slice over axes 2 and 3 of an (N, C, H, W) tensor of spatial
    size ``dims``, normalised to 0 <= start < end <= dim; None for any other Slice."""
    if len(node.input) < 3 or any(i not in inits for i in node.input[1:] if i):
        return None
    vals = [[int(v) for v in numpy_helper.to_array(inits[i]).ravel()] if i else None for i in node.input[1:5]]
    starts, ends = vals[0], vals[1]
    axes = vals[2] if len(vals) > 2 and vals[2] is not None else list(range(len(starts)))
    steps = vals[3] if len(vals) > 3 and vals[3] is not None else [1] * len(starts)
    window = [[0, dims[0]], [0, dims[1]]]
    for a, s, e, step in zip(axes, starts, ends, steps, strict=True):
        a = a + 4 if a < 0 else a
        if a not in (2, 3) or step != 1:
            return None
        d = dims[a - 2]
        s, e = (max(0, min(d, v + d if v < 0 else v)) for v in (s, e))
        if e <= s:
            return None
        window[a - 2] = [s, e]
    return [w[0] for w in window], [w[1] for w in window]


def _x2_resize_input(node: onnx.NodeProto, index: GraphIndex) -> list[int] | None:
    """The static (N, C, H, W) input shape of a bilinear, half-pixel, x2 spatial Resize; else None."""
    if (node.op_type != "Resize" or attr(node, "mode", "nearest") != "linear" or attr(node, "antialias", 0)
            or attr(node, "coordinate_transformation_mode", "half_pixel") not in HALF_PIXEL
            or attr(node, "axes", None) is not None):
        return None
    shape = index.static_shape(node.input[0])
    if shape is None or len(shape) != 4:
        return None
    n, c, h, w = shape
    if const_scales(node, index.inits) == NCHW_X2_SCALES:
        return shape
    sizes = node.input[3] if len(node.input) > 3 else ""
    if sizes in index.inits and [int(v) for v in numpy_helper.to_array(index.inits[sizes]).ravel()] == [n, c, 2 * h, 2 * w]:
        return shape
    return None


class SubpixelBilinearHead:
    name = NAME
    doc = "1x1 classifier + bilinear x2 Resize as one quantizable 2x2 sub-pixel convolution (ort INT8)"

    def applies(self, index: GraphIndex) -> bool:
        return {"Resize", "Conv"} <= index.op_types

    def apply(self, index: GraphIndex, ctx: PassContext) -> list[str]:
        """Returns the names of the folded classifier Convs."""
        g, inits = index.graph, index.inits
        gone: set[int] = set()  # id() of the nodes replaced
        stale: set[str] = set()  # tensors that no longer exist
        released: set[str] = set()  # inputs of the replaced nodes: their initializers may go
        added: list[onnx.NodeProto] = []
        folded: list[str] = []
        for resize in g.node:
            shape = _x2_resize_input(resize, index)
            conv = index.producer.get(resize.input[0]) if shape is not None else None
            if not pointwise_conv(conv, inits) or conv.output[0] in index.outputs \
                    or len(index.consumers.get(conv.output[0], [])) != 1:
                continue
            n, c, h, w = shape
            users = index.consumers.get(resize.output[0], [])
            crop = users[0] if len(users) == 1 and users[0].op_type == "Slice" and resize.output[0] not in index.outputs \
                else None
            window = _slice_window(crop, inits, (2 * h, 2 * w)) if crop is not None else None
            if window is None:
                crop = None
                window = ([0, 0], [2 * h, 2 * w])
            key = conv.name or conv.output[0]
            t = f"{resize.output[0]}_bx2"  # prefix of the new tensor names (tensor names are unique)
            # Per axis: phase positions j0..j1 cover output rows r0..r1-1; they read input rows j0-1..j1.
            feat_lo, feat_hi, pad_lo, pad_hi, out_lo, out_hi = [], [], [], [], [], []
            for (r0, r1), d in zip(zip(*window, strict=True), (h, w), strict=True):
                j0, j1 = (r0 + 1) // 2, r1 // 2
                feat_lo.append(max(j0 - 1, 0))
                feat_hi.append(min(j1, d - 1) + 1)
                pad_lo.append(int(j0 - 1 < 0))
                pad_hi.append(int(j1 > d - 1))
                out_lo.append(r0 + 1 - 2 * j0)
                out_hi.append(r1 + 1 - 2 * j0)
            x = conv.input[0]
            if feat_lo != [0, 0] or feat_hi != [h, w]:
                added.append(make_node(NAME, "Slice", [x, index.int64(f"{t}_rows_starts", feat_lo),
                                                       index.int64(f"{t}_rows_ends", feat_hi),
                                                       index.int64(f"{t}_axes", [2, 3])],
                                       [f"{t}_rows"], name=f"{key}_bilinear_rows"))
                x = f"{t}_rows"
            if any(pad_lo + pad_hi):
                added.append(make_node(NAME, "Pad", [x, index.int64(f"{t}_pads", [0, 0, *pad_lo, 0, 0, *pad_hi])],
                                       [f"{t}_padded"], name=f"{key}_bilinear_pad", mode="edge"))
                x = f"{t}_padded"
            weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)[:, :, 0, 0]  # (C, K)
            phases = np.einsum("ay,bx,ck->cabkyx", X2_TAPS, X2_TAPS, weight).reshape(c * 4, weight.shape[1], 2, 2)
            g.initializer.append(numpy_helper.from_array(phases.astype(np.float32), f"{t}_weight"))
            conv_in = [x, f"{t}_weight"]
            if len(conv.input) > 2 and conv.input[2]:  # the taps of each phase sum to 1: the bias carries over
                bias = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32)
                g.initializer.append(numpy_helper.from_array(np.repeat(bias, 4), f"{t}_bias"))
                conv_in.append(f"{t}_bias")
            added += [make_node(NAME, "Conv", conv_in, [f"{t}_phases"], name=f"{key}_bilinear_x2", role=ROLE_CONV,
                                kernel_shape=[2, 2]),
                      make_node(NAME, "DepthToSpace", [f"{t}_phases"], [f"{t}_up"], name=f"{key}_bilinear_d2s",
                                blocksize=2, mode="CRD")]
            # each axis: (rows read + padding - 1) conv positions, 2 output rows each
            positions = [hi - lo + plo + phi - 1 for lo, hi, plo, phi in zip(feat_lo, feat_hi, pad_lo, pad_hi,
                                                                              strict=True)]
            index.set_shape(f"{t}_phases", [n, c * 4, *positions])
            final = crop.output[0] if crop is not None else resize.output[0]
            span = [2 * p for p in positions]
            if out_lo == [0, 0] and out_hi == span:
                added[-1].output[0] = final
            else:
                added.append(make_node(NAME, "Slice", [f"{t}_up", index.int64(f"{t}_crop_starts", out_lo),
                                                       index.int64(f"{t}_crop_ends", out_hi),
                                                       index.int64(f"{t}_crop_axes", [2, 3])],
                                       [final], name=f"{key}_bilinear_crop"))
            for nd in (conv, resize, crop):
                if nd is not None:
                    gone.add(id(nd))
                    released.update(nd.input)
            stale.update({conv.output[0], resize.output[0]} - {final})
            folded.append(key)
        if folded:
            keep = [nd for nd in g.node if id(nd) not in gone]
            index.set_nodes([*keep, *added])
            index.drop_initializers(released)  # the old classifier's weights, the Resize's scales, the old crop's
            index.forget(stale)
            index.sort()
        return folded
