"""The INT8 accuracy gate: quantize, score on validation images, keep sensitive nodes in float.

Segmentation INT8 is fragile (a depthwise/dilated model can lose several mIoU points under
MinMax, docs/export.md#int8), so a calibration method flag alone is not enough. The gate quantizes everything first; if the mIoU drop against FP32
exceeds the limit it ranks nodes by their local quantization error (ONNX Runtime's QDQ debug
tools, :func:`~edgeseg.export.quantize.node_sensitivity`) and re-quantizes with the worst
1, 2, 4, 8, ... nodes left in float until the drop is within the limit.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg.runtime.errors import ExportError
from edgeseg.runtime.fileio import atomic_path

from .calibration import CalibrationReader, ImageSet, fill_batch, preprocess
from .parity import class_maps, latency_ms, ort_session, score_maps, session_batch
from .quantize import (  # noqa: F401 - check_finite_outputs is part of the gate's API
    QuantizeResult,
    check_finite_outputs,
    node_sensitivity,
    preprocess_for_quant,
    quantize_onnx,
)

log = logging.getLogger("edgeseg.export")

_METRIC_NAMES = {"miou": "mIoU", "pixel_accuracy": "pixel agreement"}  # the gate's score, as messages name it
SENSITIVITY_IMAGES = 4  # images for the per-node error measurement (activations of every layer are kept)


@dataclass
class GateReport:
    passed: bool
    max_miou_drop: float
    fp32_miou: float
    int8_miou: float
    nodes_in_float: list[str]
    steps: list[dict[str, Any]] = field(default_factory=list)  # one per quantization tried
    latency_all_int8_ms: float | None = None
    latency_final_ms: float | None = None

    @property
    def drop(self) -> float:
        return self.fp32_miou - self.int8_miou

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "max_miou_drop": self.max_miou_drop, "fp32_miou": self.fp32_miou,
                "int8_miou": self.int8_miou, "miou_drop": self.drop, "nodes_in_float": self.nodes_in_float,
                "steps": self.steps, "latency_all_int8_ms": self.latency_all_int8_ms,
                "latency_final_ms": self.latency_final_ms,
                "latency_cost_of_float_nodes_ms": (self.latency_final_ms - self.latency_all_int8_ms)
                if self.latency_final_ms is not None and self.latency_all_int8_ms is not None else None}


def quantize_with_gate(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, *, calib: ImageSet,
                       val: ImageSet, fp32_miou: float, max_miou_drop: float = 1.0, method: str = "minmax",
                       target: str = "ort", per_channel: bool = True, cache_path: str | os.PathLike | None = None,
                       max_float_nodes: int = 32, threads: int = 0,
                       failed_out: str | os.PathLike | None = None,
                       skip_passes: Sequence[str] = (), metric: str = "miou") -> tuple[QuantizeResult, GateReport]:
    """Quantize ``onnx_in`` and enforce ``fp32_miou - int8_miou <= max_miou_drop`` on ``val``.

    Every attempt is written to a private temporary folder; only a model that passed is moved onto
    ``onnx_out`` (atomically), so a failed or interrupted gate leaves an existing ``onnx_out`` as it was.
    Raises :class:`GateFailed` when even ``max_float_nodes`` nodes in float do not pass; the last
    model tried is then written to ``failed_out`` when given (the caller decides whether to keep it).
    ``metric``: the score compared, ``miou`` or ``pixel_accuracy`` (agreement, when ``val``'s labels are the
    float model's own class maps).
    """
    if target == "openvino":  # NNCF into OpenVINO IR, scored on OpenVINO (export/ov_int8.py)
        from .ov_int8 import quantize_for_openvino

        return quantize_for_openvino(onnx_in, onnx_out, calib=calib, val=val, fp32_miou=fp32_miou,  # type: ignore[return-value]
                                     max_miou_drop=max_miou_drop, cache_path=cache_path, threads=threads,
                                     failed_out=failed_out)
    if val.labels is None:
        raise ExportError(f"the INT8 accuracy gate needs labelled validation images; {val.source} has none")
    from .onnx_io import read_meta

    meta = read_meta(onnx_in)
    size = meta.input_size
    with tempfile.TemporaryDirectory(prefix="edgeseg-gate-") as tmp:
        work = Path(tmp)
        pre_path = work / "pre.onnx"
        pre = preprocess_for_quant(onnx_in, pre_path, target, skip_passes=skip_passes)
        ranges_at = Path(cache_path) if cache_path else work / "calib.json"  # calibrate once, reuse per attempt
        trial = work / "candidate.int8.onnx"  # every attempt lands here; onnx_out only gets a passed one

        def attempt(excluded: list[str]) -> tuple[QuantizeResult, float]:
            res = quantize_onnx(onnx_in, trial, calib=calib, method=method, target=target,
                                per_channel=per_channel, cache_path=ranges_at, nodes_to_exclude=excluded,
                                skip_passes=skip_passes, _pre=(pre_path, pre))
            if not cache_path:
                res.cache_path = None
            miou = score_maps(class_maps(res.path, val.images, size, threads), val, meta)[metric]
            return res, miou

        res, miou = attempt([])
        report = GateReport(passed=fp32_miou - miou <= max_miou_drop, max_miou_drop=max_miou_drop,
                            fp32_miou=fp32_miou, int8_miou=miou, nodes_in_float=[])
        report.steps.append({"nodes_in_float": 0, "miou": miou, "miou_drop": fp32_miou - miou})
        log.info("INT8 (all nodes): mIoU %.2f, drop %.2f (limit %.2f)", miou, fp32_miou - miou, max_miou_drop)
        sess = ort_session(res.path, threads)
        report.latency_all_int8_ms = latency_ms(sess, _probe_input(sess, res.path, val, size))
        if report.passed:
            report.latency_final_ms = report.latency_all_int8_ms
            return _publish(res, onnx_out), report

        sens_reader = CalibrationReader(val.images[:SENSITIVITY_IMAGES], meta, size)
        ranking = node_sensitivity(pre_path, Path(res.path), sens_reader, work)
        ranking = [n for n in ranking if n][:max_float_nodes]
        log.info("INT8 gate: most sensitive nodes %s", ", ".join(ranking[:8]))
        k = 1
        while k <= len(ranking):
            excluded = ranking[:k]
            res, miou = attempt(excluded)
            report.steps.append({"nodes_in_float": k, "miou": miou, "miou_drop": fp32_miou - miou,
                                 "nodes": list(excluded)})
            log.info("INT8 with %d node(s) in float: mIoU %.2f, drop %.2f", k, miou, fp32_miou - miou)
            report.int8_miou, report.nodes_in_float = miou, list(excluded)
            if fp32_miou - miou <= max_miou_drop:
                report.passed = True
                break
            if k == len(ranking):
                break
            k = min(2 * k, len(ranking))
        sess = ort_session(res.path, threads)
        report.latency_final_ms = latency_ms(sess, _probe_input(sess, res.path, val, size))
        if report.passed:
            return _publish(res, onnx_out), report
        if failed_out is not None:
            _publish(res, failed_out)
    raise GateFailed(
        f"INT8 model {Path(onnx_out).name} loses {report.drop:.2f} {_METRIC_NAMES.get(metric, metric)} points "
        "against FP32 "
        f"({report.int8_miou:.2f} vs {fp32_miou:.2f}; limit {max_miou_drop:g}) even with "
        f"{len(report.nodes_in_float)} sensitive nodes in float; try --calib-method percentile, more "
        "--calib-images, --precision fp16, or a larger --max-miou-drop", report, res)


def _publish(res: QuantizeResult, dest: str | os.PathLike) -> QuantizeResult:
    """Copy a tried model from the gate's temporary folder onto ``dest`` atomically (no half-written file)."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(res.path, tmp)
    res.path = Path(dest)
    return res


class GateFailed(ExportError):
    """The INT8 accuracy gate could not be met; carries the report and the last model tried.

    ``result.path`` is the ``failed_out`` the gate was given; without one the model was not kept.
    """

    def __init__(self, message: str, report: GateReport, result: QuantizeResult) -> None:
        super().__init__(message)
        self.report, self.result = report, result


def _probe_input(sess: Any, path: str | os.PathLike, val: ImageSet, size: tuple[int, int]) -> Any:
    """One validation image as the input of ``sess`` (the model at ``path``), repeated to a fixed batch."""
    from .onnx_io import read_meta

    return fill_batch(preprocess([val.images[0]], read_meta(path), size), session_batch(sess))
