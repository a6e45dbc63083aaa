"""The OpenVINO INT8 flavour: NNCF post-training quantization into an OpenVINO IR, through the accuracy gate.

Each INT8 target gets the artifact it runs fast: ONNX Runtime's U8S8 Q/DQ file runs slower on
OpenVINO than on ONNX Runtime, while NNCF's quantization of the FP32 model, kept as OpenVINO IR
(FakeQuantize nodes OpenVINO folds into integer kernels), is OpenVINO's fast form. Artifact
``x.int8.ov.xml`` + ``x.int8.ov.bin``, metadata ``int8_target="openvino"`` in the IR's rt_info.

The gate is the export's usual one (:class:`~edgeseg.export.gate.GateReport`): mIoU on labelled
validation images against FP32, at most ``max_miou_drop`` points lower. When the all-INT8 model
fails it, NNCF's accuracy-controlled quantization proposes a model with the most harmful
quantizers removed; the gate scores that proposal the same way and decides.

The NNCF result of a calibration is cached (``x.ov.calib.json`` + ``x.ov.calib.xml/.bin``) under a
provenance hash (FP32 model bytes, pre-processing, the images' pixels, NNCF/OpenVINO versions,
options) and reused only when the hash matches, as the other flavours' range caches are.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg import __version__
from edgeseg.runtime.backends.ov import (
    WEIGHTS_HASH_KEY,
    OpenVinoBackend,
    import_openvino,
    read_props,
    write_props,
)
from edgeseg.runtime.errors import BackendUnavailableError, ExportError, ModelFormatError, UsageError
from edgeseg.runtime.fileio import sha256_file, write_json
from edgeseg.runtime.metadata import OUTPUT_CLASS_MAP, ModelMeta

from .calibration import CalibrationReader, ImageSet, fill_batch, fixed_batch, preprocess
from .gate import GateFailed, GateReport
from .parity import _to_class_map, median_ms, score_maps
from .quantize import images_sha256, prov_hash, read_cache

log = logging.getLogger("edgeseg.export")

TARGET = "openvino"  # ModelMeta.int8_target of this flavour
CACHE_FORMAT = "edgeseg.openvino-calibration"
EXPORT_EXTRA = "pip install 'edgeseg[openvino-export]'"
PRESET = "performance"  # NNCF's default for CNNs: symmetric weights and activations


@dataclass
class OvQuantizeResult:
    path: Path
    calib_images: int
    cache_path: Path | None
    cache_hit: bool
    proposal: str = "nncf.quantize"  # or "nncf.quantize_with_accuracy_control"
    fake_quantize: int = 0  # FakeQuantize nodes in the model: fewer after accuracy control removed some
    fake_quantize_all: int = 0  # ... in the all-INT8 model
    target: str = TARGET

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "target": self.target, "method": f"nncf ({PRESET} preset)",
                "calib_images": self.calib_images, "cache": str(self.cache_path) if self.cache_path else None,
                "cache_hit": self.cache_hit, "proposal": self.proposal, "fake_quantize": self.fake_quantize,
                "fake_quantize_all_int8": self.fake_quantize_all,
                "quantizers_removed": self.fake_quantize_all - self.fake_quantize}


def import_nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise BackendUnavailableError(f"the OpenVINO INT8 export needs NNCF and OpenVINO; {EXPORT_EXTRA}") from None
    return nncf


def bin_path(xml: str | os.PathLike) -> Path:
    return Path(xml).with_suffix(".bin")


def save_ir(model: Any, xml: str | os.PathLike, meta: ModelMeta) -> Path:
    """Write ``model`` as IR (``.xml`` + ``.bin``) carrying ``meta``; the pair appears only when complete.

    Both files are written in a private folder beside ``xml`` and renamed into place, the weights first;
    the .xml records the .bin's sha256, so a crash between the renames is caught when the pair is loaded.
    """
    ov = import_openvino()
    xml = Path(xml)
    write_props(model, meta)
    with tempfile.TemporaryDirectory(prefix=f".{xml.name}.", dir=xml.parent) as tmp:
        staged = Path(tmp) / xml.name
        ov.save_model(model, str(staged), compress_to_fp16=False)  # weights stay as NNCF left them
        weights = sha256_file(bin_path(staged))
        model.set_rt_info(weights, WEIGHTS_HASH_KEY)  # the .xml names its .bin (checked at load)
        ov.save_model(model, str(staged), compress_to_fp16=False)
        if sha256_file(bin_path(staged)) != weights:
            raise ExportError(f"OpenVINO wrote different weights for {xml.name} twice; nothing was written")
        os.replace(bin_path(staged), bin_path(xml))
        os.replace(staged, xml)
    return xml


def read_model_meta(path: str | os.PathLike) -> tuple[Any, ModelMeta]:
    """An edgeseg ONNX or IR file -> (``openvino.Model``, its metadata)."""
    ov = import_openvino()
    try:
        model = ov.Core().read_model(str(path))
    except RuntimeError as e:
        raise ModelFormatError(f"OpenVINO cannot read {path} ({str(e).strip().splitlines()[0][:200]})") from None
    return model, ModelMeta.from_props(read_props(model), source=str(path))


def count_fake_quantize(model: Any) -> int:
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())


# -- scoring (the ONNX flavours' class maps, mIoU and timer, on OpenVINO) ---------------------------
def run_images(backend: OpenVinoBackend, images: Sequence[np.ndarray], size: tuple[int, int],
               keep_logits: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Class maps (h, w) uint8 (and float logits (C, h, w) when asked) of RGB ``images`` on ``backend``."""
    meta, maps, logits = backend.meta, [], []
    for img in images:
        x = fill_batch(preprocess([img], meta, size), fixed_batch(meta))  # (n, 3, h, w) f32 or (n, h, w, 3) u8
        out = backend.infer(x)
        maps.append(_to_class_map(out[:1], meta.output_kind)[0])  # (h, w)
        if keep_logits and meta.output_kind != OUTPUT_CLASS_MAP:
            logits.append(meta.float_logits(out[:1])[0])
    return maps, logits


def miou(maps: Sequence[np.ndarray], images: ImageSet, meta: ModelMeta) -> float:
    return score_maps(maps, images, meta)["miou"]


def latency_ms(backend: OpenVinoBackend, image: np.ndarray, size: tuple[int, int], runs: int = 20) -> float:
    x = fill_batch(preprocess([image], backend.meta, size), fixed_batch(backend.meta))
    return median_ms(lambda: backend.infer(x), runs)


def score(path: str | os.PathLike, val: ImageSet, size: tuple[int, int], threads: int = 0,
          precision_hint: str | None = None) -> float:
    """mIoU of an ONNX/IR file on OpenVINO's CPU device."""
    with OpenVinoBackend(path, "CPU", threads=threads or None, precision_hint=precision_hint) as b:
        return miou(run_images(b, val.images, size)[0], val, b.meta)


# -- calibration cache --------------------------------------------------------------------------
def provenance(src: Path, meta: ModelMeta, size: tuple[int, int], images: Sequence[np.ndarray]) -> dict[str, Any]:
    """Everything the NNCF result depends on; its hash decides whether a cached result is reusable."""
    nncf, ov = import_nncf(), import_openvino()
    files = [src] + ([bin_path(src)] if src.suffix.lower() == ".xml" else [])
    return {"model_sha256": "+".join(sha256_file(f) for f in files), "mean": list(meta.mean),
            "std": list(meta.std), "input_size": list(size), "input_layout": meta.input_layout,
            "images_sha256": images_sha256(images), "num_images": len(images), "preset": PRESET,
            "target": TARGET, "nncf": nncf.__version__, "openvino": ov.__version__.split("-")[0]}


def load_cached(cache: Path, want: str, prov: dict[str, Any] | None = None) -> Any:
    """The cached NNCF model for hash ``want``, or None (saying why when a cache exists but differs)."""
    xml = cache.with_suffix(".xml")
    if not xml.is_file() or not bin_path(xml).is_file():
        return None
    data = read_cache(cache, want, CACHE_FORMAT, "model_sha256", prov, what="OpenVINO calibration cache")
    if data is None:
        return None
    if data["model_sha256"] != sha256_file(xml) + "+" + sha256_file(bin_path(xml)):
        log.warning("the model beside calibration cache %s was changed; recalibrating", cache)
        return None
    return import_openvino().Core().read_model(str(xml))


def store_cache(cache: Path, model: Any, meta: ModelMeta, digest: str, prov: dict[str, Any]) -> None:
    xml = save_ir(model, cache.with_suffix(".xml"), meta)
    write_json(cache, {"format": CACHE_FORMAT, "hash": digest, "provenance": prov,
                       "model_sha256": sha256_file(xml) + "+" + sha256_file(bin_path(xml))})


# -- quantization and the gate ------------------------------------------------------------------
def nncf_quantize(model: Any, calib: CalibrationReader) -> Any:
    nncf = import_nncf()
    return nncf.quantize(model, nncf.Dataset(list(calib)), subset_size=len(calib.images),
                         preset=nncf.QuantizationPreset.PERFORMANCE)


def accuracy_controlled(model: Any, calib: CalibrationReader, val: ImageSet, meta: ModelMeta,
                        size: tuple[int, int], max_miou_drop: float) -> Any:
    """NNCF's proposal: the all-INT8 model with the quantizers that cost the most mIoU removed."""
    nncf = import_nncf()

    def validate(compiled: Any, items: Any) -> float:
        idx = list(items)
        maps = [_to_class_map(compiled(fill_batch(preprocess([val.images[i]], meta, size), fixed_batch(meta)))[0][:1],
                              meta.output_kind)[0] for i in idx]  # (h, w) each
        subset = dataclasses.replace(val, ids=tuple(val.ids[i] for i in idx), images=tuple(val.images[i] for i in idx),
                                     labels=tuple(val.labels[i] for i in idx))
        return miou(maps, subset, meta)

    return nncf.quantize_with_accuracy_control(
        model, nncf.Dataset(list(calib)), nncf.Dataset(list(range(len(val)))), validate,
        max_drop=max_miou_drop, drop_type=nncf.DropType.ABSOLUTE, subset_size=len(calib.images),
        preset=nncf.QuantizationPreset.PERFORMANCE)


def int8_meta(meta: ModelMeta, res_extra: dict[str, str]) -> ModelMeta:
    return meta.with_(precision="int8", int8_target=TARGET, output_quant=None, edgeseg_version=__version__,
                      extra={**meta.extra, **res_extra})


def quantize_for_openvino(model_in: str | os.PathLike, xml_out: str | os.PathLike, *, calib: ImageSet,
                          val: ImageSet, fp32_miou: float | None = None, max_miou_drop: float = 1.0,
                          cache_path: str | os.PathLike | None = None, threads: int = 0,
                          accuracy_control: bool = True,
                          failed_out: str | os.PathLike | None = None) -> tuple[OvQuantizeResult, GateReport]:
    """Quantize an edgeseg FP32 ONNX (or IR) for OpenVINO and enforce ``fp32_miou - int8_miou <= max_miou_drop``.

    ``fp32_miou`` defaults to the FP32 model's mIoU on ``val`` computed here (OpenVINO, float32). A model
    reaches ``xml_out`` only when it passed; otherwise :class:`GateFailed` is raised after the last model
    tried was written to ``failed_out`` (when given).
    """
    if val.labels is None:
        raise ExportError(f"the INT8 accuracy gate needs labelled validation images; {val.source} has none")
    src = Path(model_in)
    model, meta = read_model_meta(src)
    if meta.precision != "fp32":
        raise ExportError(f"{src.name} is a {meta.precision} model; quantize the FP32 export (x.onnx)")
    size = meta.input_size or tuple(val.images[0].shape[:2])
    reader = CalibrationReader(calib, meta, size)
    if fp32_miou is None:
        fp32_miou = score(src, val, size, threads, precision_hint="f32")
    with tempfile.TemporaryDirectory(prefix="edgeseg-ov-gate-") as tmp:
        cache = Path(cache_path) if cache_path else Path(tmp) / "calib.json"
        prov = provenance(src, meta, size, reader.images)
        digest = prov_hash(prov)
        quantized = load_cached(cache, digest, prov)
        hit = quantized is not None
        if not hit:
            quantized = nncf_quantize(model, reader)
            store_cache(cache, quantized, meta, digest, prov)
        extra = {"calibration": f"nncf {prov['nncf']} {PRESET}, {len(reader.images)} images",
                 "calibration_sha256": digest[:16]}
        res = OvQuantizeResult(path=Path(xml_out), calib_images=len(reader.images),
                               cache_path=cache if cache_path else None, cache_hit=hit,
                               fake_quantize=count_fake_quantize(quantized))
        res.fake_quantize_all = res.fake_quantize
        trial = save_ir(quantized, Path(tmp) / "candidate.xml", int8_meta(meta, extra))
        report, lat_all = _gate_step(trial, val, size, threads, fp32_miou, max_miou_drop, "all quantizers")
        report.latency_all_int8_ms = report.latency_final_ms = lat_all
        if not report.passed and accuracy_control:
            log.info("INT8 gate: asking NNCF's accuracy control for a model within %.2f mIoU points", max_miou_drop)
            proposal = accuracy_controlled(model, reader, val, meta, size, max_miou_drop)
            res.proposal, res.fake_quantize = "nncf.quantize_with_accuracy_control", count_fake_quantize(proposal)
            trial = save_ir(proposal, Path(tmp) / "candidate.xml", int8_meta(meta, extra))
            step, report.latency_final_ms = _gate_step(trial, val, size, threads, fp32_miou, max_miou_drop,
                                                       f"{res.fake_quantize_all - res.fake_quantize} quantizers removed")
            report.passed, report.int8_miou = step.passed, step.int8_miou
            report.steps += step.steps
        report.nodes_in_float = [f"{res.fake_quantize_all - res.fake_quantize} FakeQuantize removed"] \
            if res.fake_quantize < res.fake_quantize_all else []
        if report.passed:
            _publish(trial, xml_out)
            return res, report
        if failed_out is not None:
            _publish(trial, failed_out)
            res.path = Path(failed_out)
    raise GateFailed(
        f"OpenVINO INT8 model {Path(xml_out).name} loses {report.drop:.2f} mIoU points against FP32 "
        f"({report.int8_miou:.2f} vs {fp32_miou:.2f}; limit {max_miou_drop:g})"
        f"{' even after accuracy control' if accuracy_control else ''}; try more --calib-images, "
        "--precision fp16, or a larger --max-miou-drop", report, res)


def _gate_step(trial: Path, val: ImageSet, size: tuple[int, int], threads: int, fp32_miou: float,
               max_drop: float, what: str) -> tuple[GateReport, float]:
    with OpenVinoBackend(trial, "CPU", threads=threads or None) as b:
        m = miou(run_images(b, val.images, size)[0], val, b.meta)
        lat = latency_ms(b, val.images[0], size)
    log.info("OpenVINO INT8 (%s): mIoU %.2f, drop %.2f (limit %.2f)", what, m, fp32_miou - m, max_drop)
    report = GateReport(passed=fp32_miou - m <= max_drop, max_miou_drop=max_drop, fp32_miou=fp32_miou,
                        int8_miou=m, nodes_in_float=[])
    report.steps.append({"model": what, "miou": m, "miou_drop": fp32_miou - m, "latency_ms": lat})
    return report, lat


def _publish(trial: Path, xml: str | os.PathLike) -> None:
    """Copy a tried IR pair onto ``xml`` (+ ``.bin``), the pair appearing only when complete."""
    xml = Path(xml)
    with tempfile.TemporaryDirectory(prefix=f".{xml.name}.", dir=xml.parent) as tmp:
        staged = Path(tmp) / xml.name
        shutil.copyfile(trial, staged)
        shutil.copyfile(bin_path(trial), bin_path(staged))
        os.replace(bin_path(staged), bin_path(xml))
        os.replace(staged, xml)


# -- the export report --------------------------------------------------------------------------
def check_parity_ov(xml: str | os.PathLike, ctx: Any, threads: int = 0, latency_runs: int = 20) -> dict[str, Any]:
    """Like :func:`edgeseg.export.parity.check_parity` for an IR on OpenVINO's CPU device: max |logit
    difference| and pixel agreement with the PyTorch reference in ``ctx``, mIoU, latency."""
    with OpenVinoBackend(xml, "CPU", threads=threads or None) as b:
        maps, logits = run_images(b, ctx.images.images, ctx.size, keep_logits=ctx.reference.logits is not None)
        lat = latency_ms(b, ctx.images.images[0], ctx.size, latency_runs) if latency_runs else None
        precision = b.describe().get("inference_precision_hint")
        meta = b.meta
    ref = ctx.reference
    agree = sum(int((m == r).sum()) for m, r in zip(maps, ref.class_maps, strict=True))
    total = sum(m.size for m in maps)
    max_diff = max((float(np.abs(lg - r).max()) for lg, r in zip(logits, ref.logits or (), strict=False)),
                   default=None)
    metrics = score_maps(maps, ctx.images, meta) if ctx.images.labels is not None else {}
    return {"images": len(ctx.images), "max_abs_logit_diff": max_diff, "pixel_agreement": 100.0 * agree / max(total, 1),
            "metrics": metrics, "latency_ms": lat, "threads": threads or "openvino-default",
            "runtime": "openvino CPU", "inference_precision": precision,
            "input_layout": meta.input_layout, "output_kind": meta.output_kind}


def report_row(xml: Path, final: Path, ctx: Any, threads: int) -> dict[str, Any]:
    """The export report row of the IR at ``xml`` (to be named ``final``), like the ONNX flavours' rows."""
    _, meta = read_model_meta(xml)
    return {"artifact": str(final), "format": "openvino-ir", "precision": meta.precision,
            "int8_target": meta.int8_target or None,
            "size_bytes": xml.stat().st_size + bin_path(xml).stat().st_size,
            "sha256": sha256_file(xml), "weights_sha256": sha256_file(bin_path(xml)), "imgsz": list(ctx.size),
            "dynamic": meta.dynamic_hw, "batch": meta.batch, "input_layout": meta.input_layout,
            "output_kind": meta.output_kind, "source_sha256": meta.source_sha256, "edgeseg_version": __version__,
            "parity": check_parity_ov(xml, ctx, threads), "metadata": meta.to_dict()}


# -- edgeseg export --precision int8 --int8-target openvino ---------------------------------------
def check_export(fmt: str, calib_method: str = "minmax") -> None:
    """Fail before any long step: NNCF/OpenVINO missing, a TensorRT engine or a calibration method asked for."""
    if fmt != "onnx":
        raise UsageError("--int8-target openvino writes an OpenVINO IR (x.int8.ov.xml); drop --format engine "
                         "(TensorRT engines take --int8-target tensorrt)")
    if calib_method != "minmax":
        raise UsageError(f"--calib-method {calib_method} applies to the ort and tensorrt INT8 targets; NNCF "
                         "estimates the openvino flavour's ranges itself: drop --calib-method")
    import_nncf()
    import_openvino()


def export_openvino_int8(fp32_onnx: Path, xml: Path, *, calib: ImageSet, val: ImageSet, ctx: Any,
                         fp32_miou: float, max_miou_drop: float, cache: Path, threads: int,
                         keep_failed: bool) -> tuple[dict[str, Any], str]:
    """The export's INT8 step for OpenVINO: the report row of ``xml`` and, when the gate failed, why.

    A failed model takes the artifact's name only with ``keep_failed``; otherwise an earlier good
    ``xml`` stays as it was and the row carries the gate report without parity figures.
    """
    try:
        res, gate = quantize_for_openvino(fp32_onnx, xml, calib=calib, val=val, fp32_miou=fp32_miou,
                                          max_miou_drop=max_miou_drop, cache_path=cache, threads=threads,
                                          failed_out=xml if keep_failed else None)
        why = ""
    except GateFailed as e:
        res, gate, why = e.result, e.report, str(e)
    if why and not keep_failed:
        row: dict[str, Any] = {"artifact": str(xml), "format": "openvino-ir", "precision": "int8",
                               "int8_target": TARGET, "parity": None}
    else:
        row = report_row(xml, xml, ctx, threads)
    row["quantization"] = {**res.to_dict(), "calib_ids": list(calib.ids)}
    row["gate"] = gate.to_dict()
    return row, why
