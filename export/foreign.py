"""A segmentation ONNX made elsewhere -> edgeseg artifacts (FP32 with metadata, FP16, gated INT8), without torch.

Input: any NCHW float-input ONNX with one image input whose first output is logits (N, C, h, w), at the
input size or a 1/s fraction of it, static or dynamic shapes. What the file does not say comes from the
user: class names (one per line, in output-channel order), mean/std and their pixel range, channel order.
The FP32 artifact is the same graph with edgeseg metadata (input renamed ``images``; a BGR model gets
the channel swap folded into its first convolutions, so every edgeseg runtime feeds it RGB as usual),
plus the exact ``export`` graph passes and onnxslim when it changes no result.

Every artifact is checked against the float ONNX as given: pixel agreement on the check images, mIoU on
labelled ``--val`` images. The FP16 and INT8 gates compare mIoU with the FP32 artifact's; without labels
they compare pixel agreement with the float model (percentage points below the FP32 artifact's ~100).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeseg import __version__
from edgeseg.runtime.errors import DatasetError, ModelFormatError, UsageError, first_line, unknown_name
from edgeseg.runtime.fileio import atomic_path, sha256_file
from edgeseg.runtime.metadata import LAYOUT_FLOAT, OUTPUT_LOGITS, PRECISIONS, ModelMeta, default_palette
from edgeseg.runtime.sizes import format_hw, parse_hw

from .calibration import ImageSet, load_images, preprocess
from .onnx_io import MIN_OPSET, load_onnx, newest_opset, opset_of, set_meta, simplify_onnx
from .parity import EvalContext, Reference, ort_session, reference_run, session_batch
from .passes import check_pass_names, passes_meta, run_stage
from .pipeline import (
    DEFAULT_IMGSZ,
    MIN_FP32_AGREEMENT,
    ExportResult,
    _check,
    _fail,
    _finish,
    _say,
    artifact_path,
)
from .quantize import CALIB_METHODS, INT8_TARGETS, check_choice

INPUT_NAME = "images"  # what edgeseg's own exports and its calibration readers call the image input
CHANNEL_ORDERS = ("rgb", "bgr")
PIXEL_RANGES = (1, 255)
MAX_CLASSES_BYTES = 1 << 20  # a classes file is a short text file
MAX_CLASSES = 65536
KEEP_LOGITS_MB = 400.0  # reference logits held in memory for max |logit diff|; beyond, agreement only
CHECK_IMAGES = "synthetic://?n=4"  # what the FP32 check runs on when neither --calib nor --val is given


@dataclass(frozen=True)
class Preprocessing:
    """How the model wants its input: ``(pixel / 255 - mean) / std`` on RGB, after the flags' conversion."""

    mean: tuple[float, float, float]  # [0, 1] units, RGB
    std: tuple[float, float, float]
    bgr: bool  # the model was trained on BGR channel order


def read_classes(path: str | os.PathLike) -> tuple[str, ...]:
    """Class names from a text file, one per line in output-channel order (blank lines ignored)."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--classes {p} does not exist; write one class name per line, in output-channel order")
    if p.stat().st_size > MAX_CLASSES_BYTES:
        raise UsageError(f"--classes {p} is larger than {MAX_CLASSES_BYTES >> 10} KiB; it should hold one class "
                         "name per line")
    try:
        names = tuple(line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    except UnicodeDecodeError:
        raise UsageError(f"--classes {p} is not UTF-8 text; write one class name per line") from None
    if not names or len(names) > MAX_CLASSES:
        raise UsageError(f"--classes {p} lists {len(names)} class names; it needs 1 to {MAX_CLASSES}")
    return names


def preprocessing(mean: Sequence[float], std: Sequence[float], channel_order: str = "rgb",
                  pixel_range: int = 1) -> Preprocessing:
    """Check the normalisation flags and convert them to edgeseg's [0, 1] RGB convention."""
    if channel_order not in CHANNEL_ORDERS:
        raise unknown_name("channel order", channel_order, CHANNEL_ORDERS)
    if pixel_range not in PIXEL_RANGES:
        raise UsageError(f"--pixel-range {pixel_range} must be 1 (pixels scaled to 0-1 before mean/std) or 255 "
                         "(mean and std in 0-255 pixel units)")
    for flag, values in (("--mean", mean), ("--std", std)):
        if len(values) != 3:
            raise UsageError(f"{flag} has {len(values)} values; give three, one per channel: {flag} A,B,C")
        if not all(np.isfinite(v) for v in values):
            raise UsageError(f"{flag} {','.join(map(str, values))} has a value that is not a finite number")
    if any(s <= 0 for s in std):
        raise UsageError(f"--std {','.join(map(str, std))} must be positive (the model divides by it)")
    scale = 1.0 / pixel_range if pixel_range == 255 else 1.0
    m = tuple(float(v) * scale for v in mean)
    s = tuple(float(v) * scale for v in std)
    if channel_order == "bgr":  # the flags follow the model's channel order; edgeseg's metadata is RGB
        m, s = m[::-1], s[::-1]
    return Preprocessing(mean=m, std=s, bgr=channel_order == "bgr")  # type: ignore[arg-type]


@dataclass(frozen=True)
class ModelIO:
    """What the ONNX file says about its image input and logits output."""

    input_name: str
    batch: int | None  # None: dynamic
    hw: tuple[int | None, int | None]
    opset: int


def inspect_io(proto: onnx.ModelProto, source: str | os.PathLike) -> ModelIO:
    """The model's one float NCHW image input; a one-line ModelFormatError for anything else."""
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelFormatError(f"{source} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a "
                               "segmentation model takes one image batch (N, 3, H, W)")
    tt = inputs[0].type.tensor_type
    if tt.elem_type != onnx.TensorProto.FLOAT:
        raise ModelFormatError(f"{source} input {inputs[0].name!r} is "
                               f"{onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)}, not float32; edgeseg reads "
                               "float32 NCHW image models (export the FP32 model; edgeseg makes the FP16 one)")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tt.shape.dim]
    if len(dims) != 4 or dims[1] not in (3, None):
        raise ModelFormatError(f"{source} input {inputs[0].name!r} has shape {_shape_text(dims)}; edgeseg needs "
                               "an NCHW image input (N, 3, H, W)")
    opset = opset_of(proto)
    newest = newest_opset()
    if opset is None or opset > newest:
        import onnxruntime

        raise ModelFormatError(f"{source} uses ONNX opset {opset}, newer than the installed onnxruntime "
                               f"{onnxruntime.__version__} and onnx run (up to {newest}); re-export the model at "
                               f"opset {newest} or lower, or upgrade onnxruntime")
    return ModelIO(input_name=inputs[0].name, batch=dims[0], hw=(dims[2], dims[3]), opset=opset)


def _shape_text(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def output_stride(source: str | os.PathLike, out_shape: Sequence[int], size: tuple[int, int],
                  num_classes: int) -> int:
    """The logits' stride (1: input size); a one-line error when the output is not (N, C, H/s, W/s)."""
    if len(out_shape) != 4:
        raise ModelFormatError(f"{source} output is {len(out_shape)}-D {tuple(out_shape)}; edgeseg needs logits "
                               "(N, C, h, w), one channel per class (not a class map, not a detection head)")
    _, c, h, w = out_shape
    if c != num_classes:
        raise UsageError(f"{source} outputs {c} channels but --classes lists {num_classes} names; the file needs "
                         "one class name per output channel, in channel order")
    H, W = size
    s = max(1, round(H / h))
    if -(-H // s) != h or -(-W // s) != w:
        raise ModelFormatError(f"{source} output is {h}x{w} for a {H}x{W} input; edgeseg needs logits at the "
                               "input size or at 1/s of it (e.g. 1/4)")
    return s


def prepared_graph(proto: onnx.ModelProto, io: ModelIO, pre: Preprocessing) -> onnx.ModelProto:
    """A copy of ``proto`` whose input is named ``images`` and takes RGB (channel swap folded in for BGR)."""
    g = onnx.ModelProto.FromString(proto.SerializeToString())
    if io.input_name != INPUT_NAME:
        _rename_input(g.graph, io.input_name, INPUT_NAME)
    if pre.bgr:
        _swap_input_channels(g.graph, INPUT_NAME)
    if (opset_of(g) or 0) < MIN_OPSET:  # per-channel Q/DQ and edgeseg's passes need a recent opset
        try:
            g = onnx.version_converter.convert_version(g, MIN_OPSET)
        except Exception as e:  # the converter raises plain errors
            raise ModelFormatError(f"opset {io.opset} is older than {MIN_OPSET} and the onnx version converter "
                                   f"cannot lift it ({str(e).splitlines()[0][:160]}); re-export the model at "
                                   f"opset {MIN_OPSET} or newer") from None
    return g


def _rename_input(g: onnx.GraphProto, old: str, new: str) -> None:
    if any(new in n.output for n in g.node) or new in {t.name for t in g.initializer}:
        raise ModelFormatError(f"the model already has a tensor named {new!r}; rename it in the source model")
    for v in g.input:
        if v.name == old:
            v.name = new
    for n in g.node:
        n.input[:] = [new if i == old else i for i in n.input]


def _swap_input_channels(g: onnx.GraphProto, name: str) -> None:
    """Make a BGR model take RGB: reverse the input channels of the convolutions reading the image
    (exact), or put a channel Gather in front when something else reads it."""
    inits = {t.name: t for t in g.initializer}
    readers = [n for n in g.node if name in n.input]
    weights = {n.input[1] for n in readers if n.op_type == "Conv" and len(n.input) > 1}
    convs_only = readers and all(n.op_type == "Conv" and n.input[0] == name and n.input[1] in inits
                                 and len(inits[n.input[1]].dims) == 4 and inits[n.input[1]].dims[1] == 3
                                 and sum(1 for m in g.node if n.input[1] in m.input) == 1 for n in readers)
    if convs_only:
        for w in weights:
            arr = numpy_helper.to_array(inits[w])  # (O, 3, kh, kw)
            inits[w].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr[:, ::-1]), w))
        return
    swapped = f"{name}_bgr"
    g.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), f"{name}_bgr_order"))
    for n in readers:
        n.input[:] = [swapped if i == name else i for i in n.input]
    g.node.insert(0, helper.make_node("Gather", [name, f"{name}_bgr_order"], [swapped], name="rgb_to_bgr", axis=1))


def probe_output(onnx_in: str | os.PathLike, io: ModelIO, meta: ModelMeta, size: tuple[int, int],
                 image: np.ndarray, threads: int = 0) -> tuple[int, ...]:
    """The shape of the model's first output for one image at ``size``."""
    sess = ort_session(onnx_in, threads)
    x = np.repeat(preprocess([image], meta, size), session_batch(sess), axis=0)  # (N, 3, H, W)
    try:
        return tuple(sess.run(None, {io.input_name: x})[0].shape)
    except Exception as e:  # onnxruntime raises its own types
        first = first_line(e)
        raise ModelFormatError(f"{onnx_in} does not run on a {format_hw(size)} image ({first}); pass the size it "
                               "takes with --imgsz") from None


def float_reference(onnx_in: str | os.PathLike, images: ImageSet, meta: ModelMeta, size: tuple[int, int],
                    io: ModelIO, bgr: bool, threads: int = 0, progress: bool = False) -> Reference:
    """The float ONNX as given, run over ``images``: what every artifact is compared with."""
    sess = ort_session(onnx_in, threads)
    batch = session_batch(sess)
    per_image_mb = meta.num_classes * size[0] * size[1] * 4 / 1e6 / meta.output_stride ** 2
    keep = per_image_mb * len(images) <= KEEP_LOGITS_MB

    def logits_of(i: int, image: np.ndarray) -> np.ndarray:
        x = preprocess([image], meta, size)  # (1, 3, H, W) RGB, normalised
        if bgr:
            x = np.ascontiguousarray(x[:, ::-1])
        x = np.repeat(x, batch, axis=0) if batch > 1 else x
        y = sess.run(None, {io.input_name: x})[0]
        y = y[0].astype(np.float32)  # (C, h, w)
        if not np.isfinite(y).all():
            raise ModelFormatError(f"{onnx_in} outputs NaN or inf on {images.ids[i]}; check the model and "
                                   "its --mean/--std/--pixel-range")
        return y

    return reference_run(logits_of, images, meta, keep, "float ONNX reference", progress)


def export_onnx_model(onnx_in: str | os.PathLike, *, classes: str | os.PathLike, mean: Sequence[float],
                      std: Sequence[float], channel_order: str = "rgb", pixel_range: int = 1,
                      ignore_index: int = 255, precision: str = "fp32", calib: str | ImageSet | None = None,
                      val: str | ImageSet | None = None, imgsz: Any = None, out: str | os.PathLike | None = None,
                      calib_images: int = 32, calib_method: str = "minmax", int8_target: str | None = None,
                      max_miou_drop: float = 1.0, val_images: int = 0, keep_failed: bool = False,
                      simplify: bool = True, skip_passes: Sequence[str] = (), threads: int = 0,
                      progress: bool = True) -> ExportResult:
    """Bring a segmentation ONNX made elsewhere into edgeseg: FP32 with metadata, and FP16 or gated INT8.

    ``calib``/``val``: a dataset root or an image folder (or a ready :class:`ImageSet`); ``val`` with labels
    gives mIoU, without labels the checks use pixel agreement with the float model. Raises
    :class:`~edgeseg.export.pipeline.ExportFailed` when a gate fails (reports written; an earlier artifact
    of that name is kept), and UsageError/ModelFormatError/DatasetError for bad input, before any long step.
    """
    if precision not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    check_choice("calibration method", calib_method, CALIB_METHODS)
    target = int8_target or "ort"
    check_choice("INT8 target", target, INT8_TARGETS)
    if precision == "int8" and target == "openvino":
        raise UsageError("--int8-target openvino is not available for an ONNX input yet: export the float "
                         "artifact (--precision fp32), then quantize it with "
                         "edgeseg.export.ov_int8.quantize_for_openvino")
    check_pass_names(skip_passes)
    if max_miou_drop < 0:
        raise UsageError(f"--max-miou-drop {max_miou_drop} must be >= 0 (mIoU points)")
    if calib_images < 1 or val_images < 0:
        raise UsageError("--calib-images must be >= 1 and --val-images >= 0 (0 = all images)")
    if not 0 <= ignore_index <= 65535:
        raise UsageError(f"--ignore-index {ignore_index} must be a label value from 0 to 65535")
    if precision == "int8" and calib is None:
        raise UsageError("--precision int8 needs --calib DIR: images like the ones the model will see")
    names = read_classes(classes)
    pre = preprocessing(mean, std, channel_order, pixel_range)
    source = Path(onnx_in)
    proto = load_onnx(source)
    io = inspect_io(proto, source)
    size = parse_hw(imgsz) if imgsz is not None else (
        (io.hw[0], io.hw[1]) if None not in io.hw else DEFAULT_IMGSZ)
    if None not in io.hw and tuple(size) != io.hw:
        raise UsageError(f"--imgsz {format_hw(size)} does not fit {source}, whose input is fixed at "
                         f"{format_hw(io.hw)}; leave --imgsz out")
    base = Path(out) if out else source.with_name(f"{source.stem}.edgeseg")
    fp32_path = artifact_path(base, "fp32")
    if fp32_path.resolve() == source.resolve():
        raise UsageError(f"--out {out} would overwrite the input {source}; choose another name")
    started = time.perf_counter()
    result = ExportResult(checkpoint=str(source))

    # 1. images (before any long step: a bad folder fails in seconds), the float model's own results.
    calib_set = load_images(calib, "train", calib_images, what="calibration") if isinstance(calib, (str, Path)) \
        else calib
    val_set = load_images(val, "val", val_images, what="validation") if isinstance(val, (str, Path)) else val
    # without --val the checks compare with the float model only: labels of calibration data may not even
    # use the model's classes
    check_set = val_set or _unlabelled(calib_set or load_images(CHECK_IMAGES, "val", 0, what="check"))
    if val_set is not None and val_set.classes is not None and len(val_set.classes) != len(names):
        raise DatasetError(f"--val {val} has {len(val_set.classes)} classes but --classes lists {len(names)}")
    meta = ModelMeta(classes=names, palette=default_palette(len(names)), mean=pre.mean, std=pre.std,
                     ignore_index=int(ignore_index), input_size=tuple(size), dynamic_hw=None in io.hw,
                     dynamic_batch=io.batch is None, batch=io.batch or 1, input_layout=LAYOUT_FLOAT,
                     output_kind=OUTPUT_LOGITS, precision="fp32", model_name=source.stem,
                     source_sha256=sha256_file(source), edgeseg_version=__version__)
    stride = output_stride(source, probe_output(source, io, meta, size, check_set.images[0], threads), size,
                           len(names))
    meta = meta.with_(output_stride=stride)
    _say(f"float ONNX reference on {len(check_set)} images", progress)
    reference = float_reference(source, check_set, meta, size, io, pre.bgr, threads, progress)
    result.reference = {"framework": "float onnx", "model": str(source), **reference.metrics, "images": len(check_set)}
    ctx = EvalContext(images=check_set, meta=meta, size=size, reference=reference)
    with_logits = reference.logits is not None

    # 2. FP32 with metadata: checked against the float model, published only when it agrees.
    _say(f"writing {fp32_path.name} ({format_hw(size)}{', dynamic' if meta.dynamic_hw else ''})", progress)
    graph = prepared_graph(proto, io, pre)
    records = run_stage("export", graph, skip=skip_passes)
    note = "skipped: --no-simplify"
    if simplify:
        graph, note = simplify_onnx(graph, np.zeros((meta.batch, 3, *size), np.float32))
    extra = {"source": "onnx", "source_onnx": source.name, "opset": str(opset_of(graph)), "simplified": note,
             "channel_order": channel_order, **passes_meta(records)}
    set_meta(graph, meta.with_(extra=extra))
    try:
        onnx.checker.check_model(graph, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ModelFormatError(f"{source} fails onnx.checker once prepared: {str(e).splitlines()[0][:200]}") from None
    with atomic_path(fp32_path) as cand:
        onnx.save(graph, str(cand))
        row = _check(cand, fp32_path, ctx, threads, progress, with_logits=with_logits)
        agree = row["parity"]["pixel_agreement"]
        ok = agree >= MIN_FP32_AGREEMENT
        _finish(row, ok, keep_failed, "" if ok else f"pixel agreement {agree:.3f} % < {MIN_FP32_AGREEMENT} %",
                result, candidate=cand)
    if not ok:
        return _fail(result, f"FP32 artifact {fp32_path.name} agrees with {source.name} on only {agree:.3f} % of "
                             f"pixels (need {MIN_FP32_AGREEMENT} %); report in {row['report']}")
    if precision == "fp16":
        _fp16(fp32_path, base, ctx, row, threads, max_miou_drop, keep_failed, progress, result)
    elif precision == "int8":
        _int8(fp32_path, base, ctx, row, calib_set, target, calib_method, threads, max_miou_drop, keep_failed,
              skip_passes, progress, result)
    _say(f"done in {time.perf_counter() - started:.1f} s", progress)
    return result


def _unlabelled(images: ImageSet) -> ImageSet:
    return ImageSet(source=images.source, ids=images.ids, images=images.images, labels=None)


def gate_images(ctx: EvalContext) -> ImageSet:
    """The check images with labels: their own, or the float model's class maps (scored by agreement)."""
    images = ctx.images
    if images.labels is not None:
        return images
    return ImageSet(source=f"{images.source} (float model's class maps as labels)", ids=images.ids,
                    images=images.images, labels=tuple(ctx.reference.class_maps), classes=None,
                    ignore_index=ctx.meta.ignore_index)


def _scored(row: dict[str, Any], ctx: EvalContext) -> float:
    """What the gates compare: mIoU on labelled check images, else pixel agreement with the float model."""
    parity = row["parity"]
    return parity["metrics"]["miou"] if ctx.images.labels is not None else parity["pixel_agreement"]


def _metric(ctx: EvalContext) -> str:
    return "miou" if ctx.images.labels is not None else "pixel_accuracy"


def _fp16(fp32_path: Path, base: Path, ctx: EvalContext, fp32_row: dict[str, Any], threads: int,
          max_drop: float, keep_failed: bool, progress: bool, result: ExportResult) -> None:
    from .fp16 import convert_fp16

    ref = _scored(fp32_row, ctx)
    path = artifact_path(base, "fp16")
    _say(f"converting to {path.name}", progress)
    with atomic_path(path) as cand:
        convert_fp16(fp32_path, cand)
        row = _check(cand, path, ctx, threads, progress, with_logits=ctx.reference.logits is not None)
        drop = ref - _scored(row, ctx)
        ok = drop <= max_drop
        what = "mIoU" if _metric(ctx) == "miou" else "pixel agreement"
        _finish(row, ok, keep_failed, "" if ok else f"{what} drop {drop:.2f} > {max_drop:g}", result, candidate=cand)
    if not ok:
        _fail(result, f"FP16 model {path.name} drops {drop:.2f} {what} points below FP32 (limit {max_drop:g}); "
                      f"report in {row['report']}")


def _int8(fp32_path: Path, base: Path, ctx: EvalContext, fp32_row: dict[str, Any], calib_set: ImageSet,
          target: str, method: str, threads: int, max_drop: float, keep_failed: bool, skip_passes: Sequence[str],
          progress: bool, result: ExportResult) -> None:
    from .gate import GateFailed, quantize_with_gate

    ref = _scored(fp32_row, ctx)
    path = artifact_path(base, "int8", int8_target=target)
    cache = base.with_name(f"{base.name}.calib.json" if target == "ort" else f"{base.name}.trt.calib.json")
    _say(f"quantizing to {path.name} ({method}, target {target}, {len(calib_set)} images)", progress)
    with_logits = ctx.reference.logits is not None
    with atomic_path(path) as failed_at:  # publishes a failed model only when it is kept
        try:
            qres, gate = quantize_with_gate(fp32_path, path, calib=calib_set, val=gate_images(ctx), fp32_miou=ref,
                                            max_miou_drop=max_drop, method=method, target=target, cache_path=cache,
                                            threads=threads, failed_out=failed_at, skip_passes=skip_passes,
                                            metric=_metric(ctx))
        except GateFailed as e:
            row = _check(failed_at, path, ctx, threads, progress, with_logits=with_logits)
            row["quantization"] = {**e.result.to_dict(), "path": str(path), "calib_source": calib_set.source}
            row["gate"] = {**e.report.to_dict(), "metric": _metric(ctx)}
            _finish(row, False, keep_failed, str(e), result, candidate=failed_at)
            _fail(result, str(e))
        failed_at.unlink()  # passed: the gate has written `path` itself
    row = _check(path, path, ctx, threads, progress, with_logits=with_logits)
    row["quantization"] = {**qres.to_dict(), "calib_source": calib_set.source, "calib_ids": list(calib_set.ids)}
    row["gate"] = {**gate.to_dict(), "metric": _metric(ctx)}
    _finish(row, True, True, "", result)

