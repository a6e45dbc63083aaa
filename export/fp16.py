"""FP32 ONNX -> FP16 ONNX with onnxconverter-common, float32 inputs/outputs kept by default."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from edgeseg.runtime.errors import ExportError

from .onnx_io import get_meta, load_onnx, run_onnx, save_onnx, set_meta

# Ops kept in float32 on top of the converter's defaults (which already include Resize/Upsample):
# ArgMax must compare at full precision so near-ties resolve like the FP32 model, and
# ONNX Runtime has no float16 ArgMax kernel on CPU.
EXTRA_FP32_OPS = ("ArgMax",)


def convert_fp16(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, *, keep_io_types: bool = True,
                 op_block_list: Sequence[str] | None = None, validate: bool = True) -> Path:
    """Convert an edgeseg FP32 ONNX to FP16 and validate it with ONNX Runtime.

    ``keep_io_types=True`` keeps float32 inputs and logits so callers feed and read the same
    tensors as for FP32. Metadata is carried over with ``precision="fp16"``.
    """
    from onnxconverter_common import float16

    proto = load_onnx(onnx_in)
    meta = get_meta(proto, str(onnx_in))
    blocked = list(float16.DEFAULT_OP_BLOCK_LIST) + list(EXTRA_FP32_OPS)
    if op_block_list:
        blocked += list(op_block_list)
    # The exporter's value_info records float32 types the converter does not rewrite consistently
    # around blocked ops (Concat then sees float and float16 inputs); infer them afresh instead.
    del proto.graph.value_info[:]
    proto = onnx.shape_inference.infer_shapes(proto)
    try:
        # The converter warns once per weight it clamps into float16 range (thousands of lines for
        # tiny weights flushed to 1e-7); count them into the metadata instead.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            half = float16.convert_float_to_float16(proto, keep_io_types=keep_io_types,
                                                    op_block_list=sorted(set(blocked)))
    except Exception as e:  # the converter raises plain Exceptions/ValueErrors
        raise ExportError(f"float16 conversion of {onnx_in} failed ({str(e).splitlines()[0][:200]})") from None
    _match_cast_types(half)
    if keep_io_types:
        _float32_outputs(half)
    clamped = sum("truncated" in str(w.message) for w in caught)
    set_meta(half, meta.with_(precision="fp16",
                              extra={**dict(meta.extra), "fp16_keep_io_types": str(keep_io_types).lower(),
                                     "fp16_clamped_values": str(clamped),
                                     "fp16_fp32_ops": ",".join(sorted(set(blocked) & _op_types(proto)))}))
    try:
        onnx.checker.check_model(half, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"float16 model from {onnx_in} fails onnx.checker: {str(e).splitlines()[0]}") from None
    if validate:
        _validate(half, meta, onnx_in)
    return save_onnx(half, onnx_out)


def _match_cast_types(half: onnx.ModelProto) -> None:
    """Make each float32 Cast produce the float16 the converter recorded for its output.

    The converter retypes a Cast's output to float16 but leaves its ``to=FLOAT``: a fused-preprocessing
    graph's uint8 frame -> float Cast then fails onnx.checker ("Inferred elem type differs").
    Casting the 0..255 frame straight to float16 is exact (integers up to 2048 are).
    """
    recorded = {vi.name: vi.type.tensor_type.elem_type
                for vi in list(half.graph.value_info) + list(half.graph.output)}
    for node in half.graph.node:
        if node.op_type != "Cast" or recorded.get(node.output[0]) != onnx.TensorProto.FLOAT16:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.FLOAT16


def _float32_outputs(half: onnx.ModelProto) -> None:
    """Make every float16 graph output float32 again.

    The converter misses outputs produced by a blocked op (a graph ending in Resize gets
    Resize(fp32) -> Cast(to fp16) -> output); that closing Cast is turned into a float32 one,
    which ONNX Runtime drops, so the logits stay exactly as the float32 Resize made them.
    """
    producer = {o: n for n in half.graph.node for o in n.output}
    for out in half.graph.output:
        tt = out.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT16:
            continue
        node = producer.get(out.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = onnx.TensorProto.FLOAT
        else:
            inner = out.name + "_fp16"
            if node is not None:
                node.output[list(node.output).index(out.name)] = inner
            half.graph.node.append(onnx.helper.make_node("Cast", [inner], [out.name], to=onnx.TensorProto.FLOAT,
                                                         name=out.name + "_to_float32"))
        tt.elem_type = onnx.TensorProto.FLOAT


def _op_types(proto: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in proto.graph.node}


def _validate(half: onnx.ModelProto, meta: object, source: str | os.PathLike) -> None:
    """Run once in ONNX Runtime on a pattern input; the output must be finite and well-shaped."""
    inp = half.graph.input[0]
    dims = [d.dim_value if d.dim_value > 0 else 0 for d in inp.type.tensor_type.shape.dim]
    size = getattr(meta, "input_size", None) or (64, 64)
    layout_hw = (1, 2) if inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8 else (2, 3)
    shape = [d or 1 for d in dims]
    if not dims[layout_hw[0]]:
        shape[layout_hw[0]] = size[0]
    if not dims[layout_hw[1]]:
        shape[layout_hw[1]] = size[1]
    rng = np.random.default_rng(0)
    elem = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
    if elem == np.uint8:
        x = rng.integers(0, 256, shape, dtype=np.uint8)
    else:
        x = rng.standard_normal(shape).astype(elem)
    try:
        y = run_onnx(half, x)
    except Exception as e:
        raise ExportError(f"float16 model from {source} does not run in ONNX Runtime "
                          f"({str(e).splitlines()[0][:200]})") from None
    if y.dtype.kind == "f" and not np.isfinite(y.astype(np.float32)).all():
        raise ExportError(f"float16 model from {source} produces inf/NaN: activations overflow float16; "
                          "keep the overflowing layers in float32 (op_block_list) or use fp32")
