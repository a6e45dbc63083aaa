"""``edgeseg export x.onnx`` where ``x.onnx`` is an edgeseg FP32 export (it carries its metadata).

Without the checkpoint, two artifacts can still be derived from the FP32 file alone:

* ``--output-stride S``: the graph cut before the head's upsampling (:mod:`.coarse_onnx`), written as
  ``x-sS.onnx``;
* ``--precision int8 --int8-target openvino``: the OpenVINO INT8 flavour (NNCF, through the accuracy
  gate), of the full model or of the cut one (``x-sS.int8.ov.xml``).

The reference every artifact is checked against is the FP32 file run by ONNX Runtime; the INT8 gate
compares with the full-resolution FP32 model's mIoU, so a cut flavour pays for its coarser output
there. The other flavours need the checkpoint (their calibration rewrites start from PyTorch's
graph) or the foreign-ONNX route (``--classes``/``--mean``/``--std``), which re-derives the metadata.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import onnx

from edgeseg.runtime import zoo
from edgeseg.runtime.errors import DatasetError, UsageError
from edgeseg.runtime.fileio import atomic_path
from edgeseg.runtime.metadata import ModelMeta

from .calibration import ImageSet, load_images
from .coarse_onnx import to_output_stride
from .foreign import float_reference, inspect_io
from .onnx_io import get_meta, load_onnx
from .parity import EvalContext, Reference
from .pipeline import DEFAULT_IMGSZ, ExportResult, _check, _fail, _finish, artifact_path, base_path


def has_edgeseg_meta(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an ONNX file that carries edgeseg's metadata (classes at least)."""
    try:
        return any(p.key == "edgeseg.classes" for p in load_onnx(path).metadata_props)
    except Exception:  # noqa: BLE001 - unreadable files are reported by the route that reads them
        return False


def resolve_input(name: str) -> Path:
    """An existing file, or a bundled model's name (``camvid-unet-lite``); else one line saying which is missing."""
    from edgeseg.runtime.segmenter import resolve_model

    return resolve_model(name)


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"export: {msg}", file=sys.stderr, flush=True)


def _check_request(source: Path, meta: ModelMeta, precision: str, target: str, output_stride: int) -> None:
    if precision == "fp16" or (precision == "int8" and target != "openvino"):
        flavour = "--precision fp16" if precision == "fp16" else f"--precision int8 --int8-target {target}"
        raise UsageError(f"{source.name} is an edgeseg export: from the FP32 file alone edgeseg makes "
                         f"--output-stride cuts and the OpenVINO INT8 flavour (--int8-target openvino); for "
                         f"{flavour} export its checkpoint (.pt)")
    if precision == "fp32" and output_stride == 1:
        raise UsageError(f"{source.name} already is the FP32 artifact: add --output-stride S (a cut model) or "
                         "--precision int8 --int8-target openvino")
    if meta.precision != "fp32":
        raise UsageError(f"{source.name} is a {meta.precision} model; start from the FP32 export (x.onnx)")
    if output_stride < 1:
        raise UsageError(f"--output-stride {output_stride} must be >= 1 (1: full-resolution output)")


def _images(source: Path, meta: ModelMeta, data: str | None, calib: str | None, val: str | None,
            precision: str, calib_images: int, val_images: int, progress: bool) -> tuple[ImageSet, ImageSet | None]:
    val_source = val or data
    if not val_source:
        raise DatasetError(f"exporting from {source.name} needs labelled images: pass --data DIR (a dataset with "
                           "train and val splits) or --val DIR")
    _say(f"loading validation images from {val_source}", progress)
    val_set = load_images(val_source, "val", val_images, need_labels=True, what="validation")
    if val_set.classes is not None and len(val_set.classes) != meta.num_classes:
        raise DatasetError(f"validation data {val_source} has {len(val_set.classes)} classes but {source.name} "
                           f"has {meta.num_classes}; pass the matching --data")
    calib_set = None
    if precision == "int8":
        calib_source = calib or data
        if not calib_source:
            raise DatasetError("--precision int8 needs calibration images: pass --data DIR or --calib DIR")
        _say(f"loading {calib_images} calibration images from {calib_source}", progress)
        calib_set = load_images(calib_source, "train", calib_images, what="calibration")
    return val_set, calib_set


def _reference(path: Path, proto: onnx.ModelProto, images: ImageSet, meta: ModelMeta,
               size: tuple[int, int], threads: int, progress: bool) -> Reference:
    return float_reference(path, images, meta, size, inspect_io(proto, path), False, threads, progress)


def export_edgeseg_onnx(onnx_in: str | os.PathLike, *, precision: str = "fp32", int8_target: str | None = None,
                        output_stride: int = 1, data: str | None = None, calib: str | None = None,
                        val: str | None = None, out: str | os.PathLike | None = None, calib_images: int = 32,
                        val_images: int = 0, max_miou_drop: float = 1.0, keep_failed: bool = False,
                        threads: int = 0, progress: bool = True) -> ExportResult:
    """Derive the cut FP32 model and/or the OpenVINO INT8 flavour from an edgeseg FP32 ONNX (see the module).

    Artifacts go beside ``out`` (default: the current folder for a bundled model, else beside the
    input); each is checked under a temporary name and published only when it passed (or is kept).
    Raises :class:`~edgeseg.export.pipeline.ExportFailed` when a gate fails, UsageError/DatasetError
    for bad input before any long step.
    """
    source = resolve_input(str(onnx_in))
    proto = load_onnx(source)
    meta = get_meta(proto, str(source))
    target = int8_target or "ort"
    _check_request(source, meta, precision, target, output_stride)
    if max_miou_drop < 0 or calib_images < 1 or val_images < 0:
        raise UsageError("--max-miou-drop must be >= 0, --calib-images >= 1 and --val-images >= 0 (0 = all)")
    cut = to_output_stride(proto, output_stride) if output_stride > 1 else None
    if precision == "int8":
        from .ov_int8 import check_export

        check_export("onnx")
    default_dir = Path.cwd() if source.parent == zoo.ZOO_DIR else source.parent
    base = base_path(source, out) if out else default_dir / base_path(source, None).name
    if cut is not None and not out:
        base = base.with_name(f"{base.name}-s{output_stride}")
    if cut is not None and artifact_path(base, "fp32").resolve() == source.resolve():
        raise UsageError(f"--out {out} would overwrite the input {source}; choose another name")
    size = meta.input_size or DEFAULT_IMGSZ
    val_set, calib_set = _images(source, meta, data, calib, val, precision, calib_images, val_images, progress)
    started = time.perf_counter()
    result = ExportResult(checkpoint=str(source))

    _say(f"float reference: {source.name} on ONNX Runtime, {len(val_set)} images", progress)
    full = _reference(source, proto, val_set, meta, size, threads, progress)
    result.reference = {"framework": "fp32 onnx", "model": str(source), **full.metrics, "images": len(val_set)}
    fp32_path, ctx = source, EvalContext(images=val_set, meta=meta, size=size, reference=full)
    if cut is not None:
        fp32_path = artifact_path(base, "fp32")
        _say(f"writing {fp32_path.name} (output stride {output_stride})", progress)
        with atomic_path(fp32_path) as cand:
            onnx.save(cut, str(cand))
            ref = _reference(cand, cut, val_set, get_meta(cut), size, threads, progress)
            ctx = EvalContext(images=val_set, meta=get_meta(cut), size=size, reference=ref)
            row = _check(cand, fp32_path, ctx, threads, progress)
            row["full_resolution_miou"] = full.metrics.get("miou")
            _finish(row, True, True, "", result, candidate=cand)
    if precision == "int8":
        from .ov_int8 import export_openvino_int8

        path = artifact_path(base, "int8", int8_target="openvino")
        _say(f"quantizing to {path.name} (NNCF, target openvino, {len(calib_set)} images)", progress)
        row, why = export_openvino_int8(fp32_path, path, calib=calib_set, val=val_set, ctx=ctx,
                                        fp32_miou=full.metrics["miou"], max_miou_drop=max_miou_drop,
                                        cache=base.with_name(f"{base.name}.ov.calib.json"), threads=threads,
                                        keep_failed=keep_failed)
        row["quantization"]["calib_source"] = str(calib or data)
        _finish(row, not why, keep_failed, why, result)
        if why:
            return _fail(result, why)
    _say(f"done in {time.perf_counter() - started:.1f} s", progress)
    return result
