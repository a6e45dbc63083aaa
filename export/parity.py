"""Parity and accuracy of an exported artifact against the PyTorch model, on real images.

For each artifact: max abs logit difference vs PyTorch, pixel agreement of the class maps,
mIoU and per-class IoU of both (the same numpy ``ConfusionMatrix``), and ONNX Runtime
latency (batch 1, median). Class maps are scored at the label's resolution: the model runs
at its input size and its class map is resized with nearest neighbour, as the runtime does.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edgeseg.runtime.errors import ExportError, ModelFormatError, UsageError, first_line
from edgeseg.runtime.metadata import OUTPUT_CLASS_MAP, ModelMeta
from edgeseg.runtime.metrics import ConfusionMatrix
from edgeseg.runtime.preprocess import resize_nearest
from edgeseg.runtime.progress import Progress

from .calibration import ImageSet, fill_batch, preprocess
from .onnx_io import read_meta


def ort_session(path: str | os.PathLike, threads: int = 0, spin: bool = False) -> ort.InferenceSession:
    """A CPU session with all graph optimisations; ``threads`` 0 lets ONNX Runtime choose.

    Idle worker threads sleep unless ``spin`` (the runtime's policy, runtime/backends/ort.py), so
    the latencies in export reports are measured the way the runtime will run the model.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
        first = first_line(e)
        raise ModelFormatError(f"ONNX Runtime cannot load {path} ({first}); re-export it") from None


def session_batch(sess: ort.InferenceSession) -> int:
    """The batch the session's model takes: its fixed first input dimension, or 1 when that is dynamic."""
    dim = sess.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) and dim > 0 else 1


def _to_class_map(out: np.ndarray, kind: str) -> np.ndarray:
    """Model output -> (N, h, w) uint8 class ids."""
    if kind == OUTPUT_CLASS_MAP:
        return out.astype(np.uint8, copy=False)  # (N, h, w)
    return out.argmax(1).astype(np.uint8)  # (N, C, h, w) -> (N, h, w)


def _resize_map(cmap: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Class map -> label size, the runtime's way (nearest on pixel centres), so reports score what it shows."""
    if cmap.shape == shape:
        return cmap
    return resize_nearest(cmap, shape)  # (H, W) uint8


@dataclass
class Reference:
    """PyTorch results on an image set, computed once and reused by every artifact's check."""

    class_maps: list[np.ndarray]  # (h, w) uint8 at model input size, one per image
    metrics: dict[str, Any]
    logits: list[np.ndarray] | None = None  # (C, h, w) float32; kept only when small enough
    model: Any = None  # the torch module, to recompute logits when they were not kept


@dataclass
class EvalContext:
    """Images, labels, the PyTorch reference and the float pre-processing meta, shared by all checks."""

    images: ImageSet
    meta: ModelMeta  # of the FP32 float-input export: gives mean/std for the PyTorch reference
    size: tuple[int, int]
    reference: Reference | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def torch_reference(model: Any, images: ImageSet, meta: ModelMeta, size: tuple[int, int],
                    keep_logits_mb: float = 400.0, progress: bool = False) -> Reference:
    """Run the PyTorch model once over ``images``; keep logits in memory only up to ``keep_logits_mb``."""
    import torch

    float_meta = meta.with_(input_layout="NCHW_RGB_F32")
    per_image_mb = meta.num_classes * size[0] * size[1] * 4 / 1e6
    keep = per_image_mb * len(images) <= keep_logits_mb

    def logits_of(i: int, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(preprocess([image], float_meta, size))  # (1, 3, h, w)
        y = model(x)[0].float().numpy()  # (C, h, w)
        if not np.isfinite(y).all():
            raise ExportError(f"the PyTorch model's outputs are NaN or infinite on validation image {i + 1} "
                              f"({images.ids[i]}): its weights or mean/std are broken; nothing was written")
        return y

    with torch.inference_mode():
        ref = reference_run(logits_of, images, meta, keep, "pytorch reference", progress)
    ref.model = None if keep else model
    return ref


def reference_run(logits_of: Callable[[int, np.ndarray], np.ndarray], images: ImageSet, meta: ModelMeta,
                  keep_logits: bool, label: str, progress: bool = False) -> Reference:
    """Class maps, metrics and (when ``keep_logits``) logits of a reference model over ``images``.

    ``logits_of(i, image)`` gives image ``i``'s float32 logits (C, h, w) and raises when they are
    NaN or infinite; it is the only part that differs between references (PyTorch, a float ONNX).
    """
    cm = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    maps, logits = [], []
    with Progress(len(images), label, enabled=progress) as bar:
        for i, image in enumerate(images.images):
            y = logits_of(i, image)  # (C, h, w)
            cmap = y.argmax(0).astype(np.uint8)  # (h, w)
            maps.append(cmap)
            if keep_logits:
                logits.append(y)
            if images.labels is not None:
                cm.update(_resize_map(cmap, images.labels[i].shape[:2]), images.labels[i])
            bar.update(1)
    metrics = _summary(cm, meta) if images.labels is not None else {}
    return Reference(class_maps=maps, metrics=metrics, logits=logits if keep_logits else None)


def _summary(cm: ConfusionMatrix, meta: ModelMeta) -> dict[str, Any]:
    s = cm.summary(meta.classes)
    return {"miou": s.miou, "pixel_accuracy": s.pixel_accuracy, "per_class_iou": s.per_class_iou}


def median_ms(run: Any, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time in ms of ``runs`` calls of ``run()`` after ``warmup`` ones (any runtime)."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def latency_ms(sess: ort.InferenceSession, x: np.ndarray, runs: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``runs`` single-batch inferences after ``warmup`` ones."""
    feed = {sess.get_inputs()[0].name: x}
    return median_ms(lambda: sess.run(None, feed), runs, warmup)


def check_parity(artifact: str | os.PathLike, ctx: EvalContext, *, threads: int = 0,
                 latency_runs: int = 20, with_logits: bool = True, progress: bool = False,
                 name: str | None = None) -> dict[str, Any]:
    """Compare an ONNX artifact with the PyTorch reference in ``ctx`` on ``ctx.images``.

    Returns a JSON-ready dict: ``max_abs_logit_diff`` (None for class-map outputs),
    ``pixel_agreement`` (0-100), ``metrics`` (mIoU, pixel accuracy, per-class IoU of the
    artifact), ``latency_ms`` (ONNX Runtime, batch 1, median) and the image count.
    ``name`` labels the progress bar (default: the file's name).
    """
    if ctx.reference is None:
        raise UsageError("check_parity needs the PyTorch reference; build it with torch_reference()")
    meta = read_meta(artifact)
    sess = ort_session(artifact, threads)
    inp = sess.get_inputs()[0]
    batch = session_batch(sess)
    ref = ctx.reference
    cm = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    agree = total = non_finite = 0
    max_diff = 0.0 if (with_logits and meta.output_kind != OUTPUT_CLASS_MAP) else None
    first_x = None
    with Progress(len(ctx.images), f"check {name or Path(artifact).name}", enabled=progress) as bar:
        for i, image in enumerate(ctx.images.images):
            # (1, 3, h, w) f32 or (1, h, w, 3) u8; a fixed-batch artifact gets copies, the first is scored
            x = fill_batch(preprocess([image], meta, ctx.size), batch)
            if first_x is None:
                first_x = x
            out = sess.run(None, {inp.name: x})[0]
            if out.dtype.kind == "f" and not np.isfinite(out[:1]).all():
                non_finite += 1  # NaN would vanish in max() below and in the argmax (all class 0)
            cmap = _to_class_map(out, meta.output_kind)[0]  # (h, w)
            ref_map = ref.class_maps[i]
            agree += int((cmap == ref_map).sum())
            total += cmap.size
            if max_diff is not None:
                ref_logits = ref.logits[i] if ref.logits is not None else _torch_logits(ref.model, image,
                                                                                        ctx.meta, ctx.size)
                max_diff = max(max_diff, float(np.abs(meta.float_logits(out[:1])[0] - ref_logits).max()))
            if ctx.images.labels is not None:
                label = ctx.images.labels[i]
                cm.update(_resize_map(cmap, label.shape[:2]), label)
            bar.update(1)
    report: dict[str, Any] = {
        "images": len(ctx.images),
        "max_abs_logit_diff": max_diff,
        "pixel_agreement": 100.0 * agree / max(total, 1),
        "non_finite_images": non_finite,  # images whose outputs had NaN or inf; any fails the export
        "metrics": _summary(cm, meta) if ctx.images.labels is not None else {},
        "latency_ms": latency_ms(sess, first_x, runs=latency_runs) if latency_runs and first_x is not None
        else None,
        "threads": threads or "ort-default",
        "input_layout": meta.input_layout,
        "output_kind": meta.output_kind,
    }
    return report


def class_maps(artifact: str | os.PathLike, images: Sequence[np.ndarray], size: tuple[int, int],
               threads: int = 0) -> list[np.ndarray]:
    """Class maps (h, w) uint8 of an ONNX artifact, one per image (used by the INT8 gate search)."""
    meta = read_meta(artifact)
    sess = ort_session(artifact, threads)
    name, batch = sess.get_inputs()[0].name, session_batch(sess)
    maps = []
    for img in images:
        x = fill_batch(preprocess([img], meta, size), batch)  # a fixed-batch artifact: copies, the first is used
        maps.append(_to_class_map(sess.run(None, {name: x})[0], meta.output_kind)[0])
    return maps


def score_maps(maps: Sequence[np.ndarray], images: ImageSet, meta: ModelMeta) -> dict[str, Any]:
    """mIoU / per-class IoU of ready class maps against ``images.labels``."""
    cm = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    for cmap, label in zip(maps, images.labels or (), strict=True):
        cm.update(_resize_map(cmap, label.shape[:2]), label)
    return _summary(cm, meta)


def _torch_logits(model: Any, image: np.ndarray, meta: ModelMeta, size: tuple[int, int]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(preprocess([image], meta.with_(input_layout="NCHW_RGB_F32"), size))  # (1, 3, h, w)
        return model(x)[0].float().numpy()  # (C, h, w)


def evaluate_onnx(artifact: str | os.PathLike, data: str | os.PathLike, split: str = "val", n: int = 0,
                  threads: int = 0) -> dict[str, Any]:
    """mIoU and per-class IoU of an ONNX artifact on a labelled dataset split (no PyTorch needed)."""
    from .calibration import load_images

    meta = read_meta(artifact)
    images = load_images(data, split, n, need_labels=True, what="evaluation")
    size = meta.input_size or images.images[0].shape[:2]
    maps = class_maps(artifact, images.images, size, threads)
    return score_maps(maps, images, meta)

