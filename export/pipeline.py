"""``edgeseg export`` as a library call: checkpoint -> artifacts -> checked reports -> summary.

Every artifact gets a JSON report beside it (``x.onnx`` -> ``x.fp32.json``, ``x.fp16.onnx`` ->
``x.fp16.json``, ``x.int8.onnx`` -> ``x.int8.json``, ``x.int8.trt.onnx`` -> ``x.int8.trt.json``).
Gates: FP32 pixel agreement with PyTorch >= 99.9 %; FP16/INT8 mIoU at most ``max_miou_drop``
points below FP32. Artifacts are checked under a temporary name and take their own name only when
they pass: a failed artifact is removed unless ``keep_failed`` (its report stays, saying why it
failed), and a good artifact from an earlier export is then left as it was.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeseg import __version__
from edgeseg.runtime.errors import (
    BackendUnavailableError,
    DatasetError,
    ExportError,
    UsageError,
    unknown_name,
)
from edgeseg.runtime.fileio import atomic_path, sha256_file, write_json
from edgeseg.runtime.metadata import PRECISIONS
from edgeseg.runtime.sizes import format_hw, parse_hw

from .calibration import ImageSet, load_images
from .gate import GateFailed, quantize_with_gate
from .onnx_io import DEFAULT_OPSET, check_opset, read_meta
from .parity import EvalContext, check_parity, torch_reference
from .passes import check_pass_names
from .quantize import CALIB_METHODS, INT8_TARGETS, check_choice

log = logging.getLogger("edgeseg.export")

FORMATS = ("onnx", "engine")
MIN_FP32_AGREEMENT = 99.9  # percent of pixels whose class must match PyTorch
DEFAULT_IMGSZ = (360, 480)  # when the checkpoint records no input size


@dataclass
class ExportResult:
    """What ``export_checkpoint`` produced: one row per artifact, the PyTorch reference, pass/fail."""

    checkpoint: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # artifact, precision, size, parity, mIoU, latency
    reference: dict[str, Any] = field(default_factory=dict)  # PyTorch mIoU etc.
    passed: bool = True
    error: str = ""

    @property
    def artifact(self) -> Path | None:
        """The artifact that was asked for (the last one produced)."""
        return Path(self.rows[-1]["artifact"]) if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "passed": self.passed, "error": self.error,
                "reference": self.reference, "artifacts": self.rows}

    def table(self) -> str:
        """Summary table: artifact, size, parity (max |logit diff|, pixel agreement), mIoU, latency."""
        head = ("artifact", "size MB", "max|dlogit|", "agree %", "mIoU", "dmIoU", "latency ms", "status")
        lines = [head]
        ref = self.reference.get("miou")
        lines.append((f"{self.reference.get('framework', 'pytorch')} (reference)", "-", "-", "-", _f(ref), "-", "-", ""))
        for r in self.rows:
            p = r.get("parity") or {}
            miou = (p.get("metrics") or {}).get("miou")
            lines.append((Path(r["artifact"]).name, _f(r.get("size_bytes", 0) / 1e6, 1),
                          _f(p.get("max_abs_logit_diff"), 4), _f(p.get("pixel_agreement"), 3), _f(miou),
                          _f(None if miou is None or ref is None else miou - ref), _f(p.get("latency_ms"), 1),
                          r.get("status", "")))
        widths = [max(len(str(row[i])) for row in lines) for i in range(len(head))]
        out = []
        for j, row in enumerate(lines):
            out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                                 enumerate(zip(row, widths, strict=True))))
            if j == 0:
                out.append("  ".join("-" * w for w in widths))
        return "\n".join(out)


def _f(v: Any, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def base_path(checkpoint: str | os.PathLike, out: str | os.PathLike | None) -> Path:
    """``x`` in ``x.onnx`` / ``x.fp16.onnx``: from ``--out`` or the checkpoint's name and folder."""
    p = Path(out) if out else Path(checkpoint)
    name = p.name
    for suffix in (".engine", ".plan", ".onnx", ".pt", ".pth", ".trt", ".int8", ".fp16", ".fp32"):
        name = name.removesuffix(suffix)
    return p.with_name(name)


def artifact_path(base: str | os.PathLike, precision: str, fmt: str = "onnx", int8_target: str = "ort") -> Path:
    """File name of an artifact: ``x.onnx``, ``x.fp16.onnx``, ``x.int8.onnx``, ``x.int8.trt.onnx``, ``x.fp16.engine``."""
    base = Path(base)
    if fmt == "engine":
        return base.with_name(f"{base.name}.{precision}.engine")
    if precision == "fp32":
        return base.with_name(f"{base.name}.onnx")
    if precision == "int8" and int8_target == "tensorrt":
        return base.with_name(f"{base.name}.int8.trt.onnx")
    if precision == "int8" and int8_target == "openvino":
        return base.with_name(f"{base.name}.int8.ov.xml")  # OpenVINO IR, weights in x.int8.ov.bin
    return base.with_name(f"{base.name}.{precision}.onnx")


def report_path(artifact: str | os.PathLike) -> Path:
    """``x.onnx`` -> ``x.fp32.json``; ``x.fp16.onnx`` -> ``x.fp16.json``; ``x.int8.trt.onnx`` -> ``x.int8.trt.json``."""
    p = Path(artifact)
    stem = p.name.removesuffix(".onnx").removesuffix(".xml")
    if not stem.endswith((".fp16", ".int8", ".int8.trt", ".int8.ov")):
        stem += ".fp32"
    return p.with_name(stem + ".json")


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"export: {msg}", file=sys.stderr, flush=True)


def _threads_from_kwargs(fn: Callable[..., ExportResult]) -> Callable[..., ExportResult]:
    """Run ``fn`` with PyTorch at ``threads=`` intra-op threads for its whole duration.

    Measured on the shared 2-core machines: with the second core busy, 2 spinning OpenMP threads made
    a forward pass ~10-40x slower than 1 thread, so a thread setting must cover every PyTorch call.
    """
    @functools.wraps(fn)
    def run(*args: Any, **kw: Any) -> ExportResult:
        with _torch_threads(int(kw.get("threads") or 0)):
            return fn(*args, **kw)

    return run


@dataclass
class _Run:
    """What every step of one export shares: where artifacts go, the reference, the options."""

    base: Path
    ctx: EvalContext
    result: ExportResult
    fp32_path: Path
    fp32_miou: float
    max_miou_drop: float
    keep_failed: bool
    threads: int
    progress: bool


@_threads_from_kwargs
def export_checkpoint(checkpoint: str | os.PathLike, *, fmt: str = "onnx", precision: str = "fp32",
                      imgsz: Any = None, dynamic: bool = False, batch: int = 1, calib: str | None = None,
                      calib_images: int = 32, calib_method: str = "minmax", int8_target: str | None = None,
                      max_miou_drop: float = 1.0, fuse_preprocess: bool = False, fuse_argmax: bool = False,
                      opset: int = DEFAULT_OPSET, workspace_gb: float = 4.0, out: str | os.PathLike | None = None,
                      data: str | None = None, val_images: int = 0, keep_failed: bool = False,
                      simplify: bool = True, output_stride: int = 1, threads: int = 0,
                      skip_passes: Sequence[str] = (), progress: bool = True) -> ExportResult:
    """Export an edgeseg checkpoint and check every artifact against PyTorch on real images.

    ``threads`` (0 = library defaults) applies to PyTorch and ONNX Runtime for the whole export.
    ``output_stride`` > 1 ends every artifact (and the PyTorch reference) before the head's upsampling.
    Raises :class:`ExportError` when a gate fails (after writing the report), and the usual
    ``UsageError``/``CheckpointError``/``DatasetError``/``BackendUnavailableError`` for bad input.
    """
    from edgeseg.train.checkpoint import load_checkpoint

    from .onnx_export import torch_to_onnx, with_output_stride

    target = _check_options(fmt, precision, calib_method, int8_target, max_miou_drop, calib_images, val_images,
                            workspace_gb, opset, skip_passes)
    ckpt = load_checkpoint(checkpoint)
    _check_exportable(ckpt, checkpoint)
    net = ckpt.build_model()  # built once: exported, and (cut the same way) the PyTorch reference
    model = with_output_stride(net, output_stride)
    size = parse_hw(imgsz) if imgsz is not None else (tuple(ckpt.input_size) if ckpt.input_size else DEFAULT_IMGSZ)
    base = base_path(checkpoint, out)
    result = ExportResult(checkpoint=str(checkpoint))
    started = time.perf_counter()

    # 1. validation (and calibration) images before any long step: a bad folder fails in seconds.
    val, val_source = _validation_images(ckpt, checkpoint, data, val_images, progress)
    calib_set, calib_source = (_calibration_images(ckpt, checkpoint, calib, calib_images, progress)
                               if precision == "int8" else (None, None))

    # 2. FP32 ONNX (always: FP16 and INT8 are derived from it). Each artifact is written and checked
    # under a temporary name beside its own and takes that name only once it passed (or is kept):
    # a failed or interrupted re-export leaves the earlier good file as it was.
    fp32_path = artifact_path(base, "fp32")
    stride_note = f", output stride {output_stride}" if output_stride > 1 else ""
    _say(f"exporting {fp32_path.name} ({format_hw(size)}{', dynamic' if dynamic else ''}{stride_note})", progress)
    with atomic_path(fp32_path) as cand:
        torch_to_onnx(net, cand, meta=ckpt.meta(), imgsz=size, dynamic=dynamic, batch=batch, opset=opset,
                      fuse_preprocess=fuse_preprocess, fuse_argmax=fuse_argmax, simplify=simplify,
                      output_stride=output_stride, skip_passes=skip_passes)
        meta = read_meta(cand)
        ctx = EvalContext(images=val, meta=meta, size=size)
        _say(f"PyTorch reference on {len(val)} validation images", progress)
        ctx.reference = torch_reference(model, val, meta, size, progress=progress)
        result.reference = {"framework": "pytorch", **ctx.reference.metrics, "images": len(val),
                            "data": str(val_source)}
        fp32_row = _check(cand, fp32_path, ctx, threads, progress)
        agree = fp32_row["parity"]["pixel_agreement"]
        fp32_ok = agree >= MIN_FP32_AGREEMENT
        _finish(fp32_row, fp32_ok, keep_failed,
                "" if fp32_ok else f"pixel agreement {agree:.3f} % < {MIN_FP32_AGREEMENT} % with PyTorch", result,
                candidate=cand)
    if not fp32_ok:
        return _fail(result, f"FP32 ONNX {fp32_path.name} agrees with PyTorch on only {agree:.3f} % of pixels "
                             f"(need {MIN_FP32_AGREEMENT} %); report in {fp32_row['report']}")
    run = _Run(base=base, ctx=ctx, result=result, fp32_path=fp32_path,
               fp32_miou=fp32_row["parity"]["metrics"]["miou"], max_miou_drop=max_miou_drop,
               keep_failed=keep_failed, threads=threads, progress=progress)

    # 3. the precision asked for, then 4. a TensorRT engine from the ONNX of that precision.
    onnx_for_engine = fp32_path
    if precision == "fp16":
        onnx_for_engine = _fp16_step(run)
    elif precision == "int8" and target == "openvino":
        _openvino_step(run, calib_set, calib_source, val)
    elif precision == "int8":
        onnx_for_engine = _int8_step(run, calib_set, calib_source, val, target, calib_method, skip_passes)
    if fmt == "engine":
        _engine_step(run, onnx_for_engine, precision, size, dynamic, batch, workspace_gb, checkpoint)
    _say(f"done in {time.perf_counter() - started:.1f} s", progress)
    return result


def _check_options(fmt: str, precision: str, calib_method: str, int8_target: str | None, max_miou_drop: float,
                   calib_images: int, val_images: int, workspace_gb: float, opset: int,
                   skip_passes: Sequence[str]) -> str:
    """Every option checked before any work; returns the INT8 target."""
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    check_choice("calibration method", calib_method, CALIB_METHODS)
    target = int8_target or ("tensorrt" if fmt == "engine" else "ort")
    check_choice("INT8 target", target, INT8_TARGETS)
    if max_miou_drop < 0:
        raise UsageError(f"--max-miou-drop {max_miou_drop} must be >= 0 (mIoU points)")
    if calib_images < 1:
        raise UsageError(f"--calib-images {calib_images} must be >= 1")
    if val_images < 0:
        raise UsageError(f"--val-images {val_images} must be at least 0 (0 = all images)")
    if not workspace_gb > 0:
        raise UsageError(f"--workspace {workspace_gb} must be a positive number of GB")
    check_opset(opset)
    check_pass_names(skip_passes)
    if precision == "int8" and target == "openvino":
        from .ov_int8 import check_export

        check_export(fmt, calib_method)
    elif fmt == "engine":
        _require_tensorrt()
    return target


def _validation_images(ckpt: Any, checkpoint: str | os.PathLike, data: str | None, val_images: int,
                       progress: bool) -> tuple[ImageSet, str]:
    val_source = data or (ckpt.dataset or {}).get("root")
    if not val_source:
        raise DatasetError(f"{checkpoint} records no dataset; pass --data DIR (a labelled dataset with a val split)")
    _say(f"loading validation images from {val_source}", progress)
    val = load_images(val_source, "val", val_images, need_labels=True, what="validation")
    if val.classes is not None and len(val.classes) != ckpt.num_classes:
        raise DatasetError(f"validation data {val_source} has {len(val.classes)} classes but {checkpoint} was "
                           f"trained on {ckpt.num_classes}; pass the matching --data")
    return val, val_source


def _calibration_images(ckpt: Any, checkpoint: str | os.PathLike, calib: str | None, calib_images: int,
                        progress: bool) -> tuple[ImageSet, str]:
    calib_source = calib or (ckpt.dataset or {}).get("root")
    if not calib_source:
        raise DatasetError(f"{checkpoint} records no dataset to calibrate on; pass --calib DIR (images or a dataset)")
    _say(f"loading {calib_images} calibration images from {calib_source}", progress)
    return load_images(calib_source, "train", calib_images, what="calibration"), calib_source


def _fp16_step(run: _Run) -> Path:
    from .fp16 import convert_fp16

    path = artifact_path(run.base, "fp16")
    _say(f"converting to {path.name}", run.progress)
    with atomic_path(path) as cand:
        convert_fp16(run.fp32_path, cand)
        row = _check(cand, path, run.ctx, run.threads, run.progress)
        drop = run.fp32_miou - row["parity"]["metrics"]["miou"]
        ok = drop <= run.max_miou_drop
        _finish(row, ok, run.keep_failed, "" if ok else f"mIoU drop {drop:.2f} > {run.max_miou_drop:g}", run.result,
                candidate=cand)
    if not ok:
        _fail(run.result, f"FP16 model {path.name} drops {drop:.2f} mIoU points below FP32 "
                          f"(limit {run.max_miou_drop:g}); report in {row['report']}")
    return path


def _openvino_step(run: _Run, calib_set: ImageSet, calib_source: str, val: ImageSet) -> None:
    from .ov_int8 import export_openvino_int8

    path = artifact_path(run.base, "int8", int8_target="openvino")
    _say(f"quantizing to {path.name} (NNCF, target openvino, {len(calib_set)} images)", run.progress)
    row, why = export_openvino_int8(run.fp32_path, path, calib=calib_set, val=val, ctx=run.ctx,
                                    fp32_miou=run.fp32_miou, max_miou_drop=run.max_miou_drop,
                                    cache=run.base.with_name(f"{run.base.name}.ov.calib.json"), threads=run.threads,
                                    keep_failed=run.keep_failed)
    row["quantization"]["calib_source"] = str(calib_source)
    _finish(row, not why, run.keep_failed, why, run.result)
    if why:
        _fail(run.result, why)


def _int8_step(run: _Run, calib_set: ImageSet, calib_source: str, val: ImageSet, target: str, calib_method: str,
               skip_passes: Sequence[str]) -> Path:
    path = artifact_path(run.base, "int8", int8_target=target)
    base = run.base
    cache = base.with_name(f"{base.name}.calib.json") if target == "ort" else base.with_name(f"{base.name}.trt.calib.json")
    _say(f"quantizing to {path.name} ({calib_method}, target {target}, {len(calib_set)} images)", run.progress)
    with atomic_path(path) as failed_at:  # publishes a failed model only when it is kept
        try:
            qres, gate = quantize_with_gate(run.fp32_path, path, calib=calib_set, val=val, fp32_miou=run.fp32_miou,
                                            max_miou_drop=run.max_miou_drop, method=calib_method, target=target,
                                            cache_path=cache, threads=run.threads, failed_out=failed_at,
                                            skip_passes=skip_passes)
        except GateFailed as e:
            row = _check(failed_at, path, run.ctx, run.threads, run.progress)
            row["quantization"] = {**e.result.to_dict(), "path": str(path), "calib_source": str(calib_source),
                                   "calib_ids": list(calib_set.ids)}
            row["gate"] = e.report.to_dict()
            _finish(row, False, run.keep_failed, str(e), run.result, candidate=failed_at)
            _fail(run.result, str(e))
        failed_at.unlink()  # passed: the gate has written `path` itself
    _say(f"calibration cache {'reused' if qres.cache_hit else 'written'}: {cache.name}", run.progress)
    if qres.changed("subpixel_bilinear_head"):
        _say("the classifier and its bilinear x2 upsampling run quantized, as a sub-pixel convolution", run.progress)
    if qres.head_in_float:
        _say(f"kept in float by design: the classifier and what follows it ({len(qres.head_in_float)} nodes)",
             run.progress)
    row = _check(path, path, run.ctx, run.threads, run.progress)
    row["quantization"] = {**qres.to_dict(), "calib_source": str(calib_source), "calib_ids": list(calib_set.ids)}
    row["gate"] = gate.to_dict()
    _finish(row, True, True, "", run.result)
    return path


def _engine_step(run: _Run, onnx_for_engine: Path, precision: str, size: tuple[int, int], dynamic: bool, batch: int,
                 workspace_gb: float, checkpoint: str | os.PathLike) -> None:
    from .engine import onnx_to_engine

    engine = artifact_path(run.base, precision, "engine")
    _say(f"building TensorRT engine {engine.name} from {onnx_for_engine.name}", run.progress)
    build = onnx_to_engine(onnx_for_engine, engine, precision=precision, imgsz=size, dynamic=dynamic,
                           batch=batch, workspace_gb=workspace_gb, timing_cache=None, calibration=None,
                           meta=read_meta(onnx_for_engine), checkpoint=checkpoint)
    run.result.rows.append({"artifact": str(engine), "format": "engine", "precision": precision,
                            "size_bytes": engine.stat().st_size if engine.exists() else 0,
                            "source_onnx": str(onnx_for_engine), "build": build, "status": "built",
                            "parity": None})


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run PyTorch with ``threads`` intra-op threads (0: leave as is), restoring the setting after."""
    import torch

    if threads < 0:  # checked here: this wraps the whole export, argument checks included
        raise UsageError(f"--threads {threads} must be at least 0 (0 = the libraries' defaults)")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _check_exportable(ckpt: Any, checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint whose artifact could only be wrong: non-finite weights or statistics,
    wrong-length mean/std, a palette that is not RGB (the runtime would refuse the artifact)."""
    import torch

    from edgeseg.runtime.errors import ModelFormatError

    try:
        ckpt.meta()  # the same validation the runtime applies when it loads the artifact
    except ModelFormatError as e:
        raise ExportError(f"{checkpoint}: {e}; nothing was exported") from None
    for name, value in ckpt.state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not torch.isfinite(value).all():
            raise ExportError(f"{checkpoint}: weight {name} has NaN or infinite values (a diverged training run?); "
                              "nothing was exported")


def _check(path: Path, final: Path, ctx: EvalContext, threads: int, progress: bool,
           with_logits: bool = True) -> dict[str, Any]:
    """The report row of the artifact at ``path``, which is (or will be) named ``final``."""
    meta = read_meta(path)
    parity = check_parity(path, ctx, threads=threads, progress=progress, name=final.name, with_logits=with_logits)
    if parity.get("non_finite_images"):
        # Raised inside the artifact's atomic_path block: the candidate is deleted, an earlier file kept.
        raise ExportError(f"{final.name} gives NaN or infinite outputs on {parity['non_finite_images']} of "
                          f"{parity['images']} validation images; nothing was replaced")
    return {"artifact": str(final), "format": "onnx", "precision": meta.precision,
            "int8_target": meta.int8_target or None, "size_bytes": path.stat().st_size,
            "sha256": sha256_file(path), "imgsz": list(ctx.size), "dynamic": meta.dynamic_hw,
            "batch": meta.batch, "input_layout": meta.input_layout, "output_kind": meta.output_kind,
            "source_sha256": meta.source_sha256, "edgeseg_version": __version__, "parity": parity,
            "metadata": meta.to_dict()}


def _finish(row: dict[str, Any], ok: bool, keep: bool, why: str, result: ExportResult,
            candidate: Path | None = None) -> None:
    """Write the report of a checked artifact; delete a failed ``candidate`` unless it is kept.

    ``candidate`` is the temporary file of an :func:`atomic_path` block, which publishes it under the
    artifact's name when the block ends, unless it was deleted here. An artifact already under that
    name (an earlier export) then stays untouched, and so does its report: the failed attempt's
    report goes to ``x.<precision>.failed.json``.
    """
    path = Path(row["artifact"])
    row["status"] = "ok" if ok else "FAILED"
    row["passed"] = ok
    if why:
        row["reason"] = why
    if candidate is not None and not (ok or keep):
        candidate.unlink()
    report = report_path(path)
    if not ok and not keep:
        row["removed"] = True
        if path.exists():  # not this run's artifact but an earlier good one: its report stays beside it
            row["previous_kept"] = True
            report = report.with_name(report.name.removesuffix(".json") + ".failed.json")
    row["report"] = str(write_json(report, row))
    result.rows.append(row)


def _fail(result: ExportResult, message: str) -> ExportResult:
    result.passed = False
    result.error = message
    raise ExportFailed(message, result)


class ExportFailed(ExportError):
    """A gate failed; ``result`` holds the rows (with reports) produced so far for the summary."""

    def __init__(self, message: str, result: ExportResult) -> None:
        super().__init__(message)
        self.result = result


def _require_tensorrt() -> None:
    """Fail before any long step when TensorRT cannot be imported (the build would fail at the end)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        raise BackendUnavailableError(
            "--format engine needs TensorRT and an NVIDIA GPU: install 'edgeseg[trt]' (tensorrt, cuda-python) "
            "on a machine with a CUDA GPU; on this machine export ONNX instead (--format onnx)")

