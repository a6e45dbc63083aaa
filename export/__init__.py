"""edgeseg.export: checkpoint -> ONNX -> FP16 / INT8 -> TensorRT, with parity and accuracy reports.

Public API (imported lazily, so ``import edgeseg.export`` stays cheap and TensorRT is only
touched by ``onnx_to_engine``)::

    torch_to_onnx(model_or_checkpoint, out, imgsz=..., dynamic=..., fuse_preprocess=..., ...)
    convert_fp16(onnx_in, onnx_out)
    quantize_onnx(onnx_in, onnx_out, calib=..., target="ort"|"tensorrt", method=..., ...)
    quantize_with_gate(onnx_in, onnx_out, calib=..., val=..., fp32_miou=..., max_miou_drop=1.0)
    check_parity(artifact, EvalContext, ...) -> dict report
    export_checkpoint(checkpoint, fmt="onnx", precision="fp32", ...) -> ExportResult
    export_onnx_model(model.onnx, classes=..., mean=..., std=..., precision=...)  # an ONNX made elsewhere
    onnx_to_engine(onnx_path, engine_path, ...)          # TensorRT (export/engine.py)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "torch_to_onnx": "onnx_export",
    "FusedPreprocess": "onnx_export",
    "FusedArgmax": "onnx_export",
    "load_onnx": "onnx_export",
    "read_meta": "onnx_export",
    "convert_fp16": "fp16",
    "quantize_onnx": "quantize",
    "QuantizeResult": "quantize",
    "INT8_TARGETS": "quantize",
    "CALIB_METHODS": "quantize",
    "CalibrationReader": "calibration",
    "ImageSet": "calibration",
    "load_images": "calibration",
    "quantize_with_gate": "gate",
    "GateReport": "gate",
    "check_parity": "parity",
    "evaluate_onnx": "parity",
    "export_checkpoint": "pipeline",
    "ExportResult": "pipeline",
    "ExportFailed": "pipeline",
    "artifact_path": "pipeline",
    "export_onnx_model": "foreign",
    "onnx_to_engine": "engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeseg.export' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value
