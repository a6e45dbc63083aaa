"""The embedding API: ``Segmenter(model)(frame_bgr) -> Result``.

A Segmenter picks a backend from the artifact (``.onnx`` -> ONNX Runtime, ``.xml`` -> OpenVINO,
``.engine``/``.plan`` -> TensorRT, ``.pt`` -> PyTorch reference), reads every fact it needs from the artifact's
metadata, and does the pre- and post-processing around the backend with reused buffers.

    with Segmenter("camvid-unet-lite.int8") as seg:
        res = seg(frame)                  # frame: uint8 (H, W, 3) BGR, any size
        res.class_map                     # (H, W) uint8 class ids at frame size
        cv2.imshow("seg", res.overlay(0.5))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import zoo
from .backends.base import Backend
from .confidence import KINDS as CONFIDENCE_KINDS
from .confidence import LOW_CONFIDENCE, FrameConfidence, frame_confidence, shade_uncertain, softmax_top2
from .errors import BackendUnavailableError, ModelFormatError, UsageError, unknown_name
from .metadata import LAYOUT_UINT8, OUTPUT_CLASS_MAP, ModelMeta, class_ids
from .preprocess import Postprocessor, Preprocessor, check_fit, check_frame, content_box, resize_nearest
from .sizes import format_hw, parse_hw
from .visualize import colorize, overlay, palette_lut

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt", "pytorch")
# "auto" keeps ONNX on ONNX Runtime even where OpenVINO is installed: at float32 the two ran the bundled
# model equally fast, OpenVINO's lead there comes from computing in bfloat16 where the CPU can, and
# the ONNX Runtime INT8 flavour is fastest on ONNX Runtime (docs/openvino.md has the figures).
SUFFIX_BACKEND = {".onnx": "onnxruntime", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt",
                  ".pt": "pytorch"}


class Result:
    """One segmented frame. ``class_map`` is owned by the result (later calls never overwrite it).

    Confidence (:attr:`confidence`, :meth:`confidence_map`, :meth:`frame_confidence`) is computed
    from the model's logits on first use only; models that output class ids have none.
    """

    __slots__ = ("frame", "class_map", "timings", "classes", "palette", "_lut", "_color", "_logits",
                 "_scale", "_box", "_conf")

    def __init__(self, frame: np.ndarray, class_map: np.ndarray, timings: dict[str, float],
                 classes: tuple[str, ...], palette: tuple[tuple[int, int, int], ...], lut: np.ndarray,
                 logits: np.ndarray | None = None, logit_scale: float | None = None,
                 box: tuple[int, int, int, int] | None = None) -> None:
        self.frame = frame  # (H, W, 3) uint8 BGR, the input as given (not copied)
        self.class_map = class_map  # (H, W) uint8 class ids
        self.timings = timings  # preprocess_ms, infer_ms, postprocess_ms and their sum, total_ms
        self.classes = classes
        self.palette = palette  # RGB
        self._lut = lut
        self._color: np.ndarray | None = None
        self._logits = logits  # (C, h, w) float32 or uint8 (quantized, times _scale) at model resolution
        self._scale = logit_scale
        self._box = box  # (top, left, h, w) of the picture in the model input (letterbox), else None
        self._conf: dict[str, np.ndarray] = {}

    def _lowres_confidence(self, kind: str) -> np.ndarray:
        """(h, w) float32 confidence at model resolution, the letterbox border cut off (cached)."""
        if kind not in self._conf:
            if self._logits is None:
                raise UsageError("this result has no logits, so no confidence: the model outputs class ids "
                                 "(use an export without --fuse-argmax), or the Segmenter does not keep them (set "
                                 "seg.keep_logits = True; TensorRT keeps them only then)")
            if kind not in CONFIDENCE_KINDS:
                raise unknown_name("confidence kind", kind, CONFIDENCE_KINDS)
            p1, p2 = softmax_top2(self._logits, self._scale)  # (h, w) float32 each: both kinds in one pass
            if self._box is not None:
                top, left, ch, cw = self._box
                p1, p2 = p1[top:top + ch, left:left + cw], p2[top:top + ch, left:left + cw]
            self._conf["max_softmax"], self._conf["margin"] = p1, p1 - p2
        return self._conf[kind]

    def confidence_map(self, kind: str = "max_softmax") -> np.ndarray:
        """(H, W) float32 per-pixel confidence in [0, 1] at frame size: ``"max_softmax"`` (the
        winning class's probability) or ``"margin"`` (its lead over the runner-up)."""
        conf = self._lowres_confidence(kind)
        h, w = self.class_map.shape
        if conf.shape == (h, w):
            return conf
        return cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR)  # (H, W) float32

    @property
    def confidence(self) -> np.ndarray:
        """(H, W) float32 max-softmax confidence at frame size (see :meth:`confidence_map`)."""
        return self.confidence_map("max_softmax")

    def shade_uncertain(self, image: np.ndarray | None = None, threshold: float = LOW_CONFIDENCE,
                        kind: str = "max_softmax") -> np.ndarray:
        """``image`` (default: :meth:`overlay`) with the pixels below ``threshold`` greyed out."""
        base = self.overlay() if image is None else image
        return shade_uncertain(base, self.confidence_map(kind), threshold)

    def frame_confidence(self, threshold: float = LOW_CONFIDENCE, kind: str = "max_softmax") -> FrameConfidence:
        """Mean confidence and share of pixels below ``threshold``, at model resolution (cheaper,
        and the same statistics for a stretched frame)."""
        return frame_confidence(self._lowres_confidence(kind), threshold, kind)

    def colorize(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR colour mask (computed once, then cached)."""
        if self._color is None:
            self._color = colorize(self.class_map, self._lut)
        return self._color

    def overlay(self, alpha: float = 0.5, ignore: Iterable[int | str] = ()) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame with the mask blended in; ``ignore``: class ids or names left clear."""
        return overlay(self.frame, self.class_map, self._lut, alpha, ignore=self.class_ids(ignore),
                       color=self.colorize())

    def class_ids(self, names_or_ids: Iterable[int | str]) -> list[int]:
        """Class names (any case) or ids -> ids (unknown names get close-match suggestions)."""
        return class_ids(names_or_ids, self.classes)

    def fractions(self) -> dict[str, float]:
        """Share of the frame's pixels per class present (e.g. for logs and tests)."""
        counts = np.bincount(self.class_map.ravel(), minlength=len(self.classes))
        total = max(1, self.class_map.size)
        return {self.classes[i] if i < len(self.classes) else str(i): float(n) / total
                for i, n in enumerate(counts) if n}

    def __repr__(self) -> str:
        t = ", ".join(f"{k}={v:.2f}" for k, v in self.timings.items())
        return f"Result(class_map={self.class_map.shape}, {t})"


def resolve_model(model: str | Path) -> Path:
    """A model path, or a zoo short name (``camvid-unet-lite``) -> an existing file path."""
    p = Path(model).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        raise ModelFormatError(f"model {p} is a folder; give the .onnx, .engine/.plan or .pt file inside it")
    text = str(model)
    if "/" in text or "\\" in text:
        raise ModelFormatError(f"model file {p} does not exist")
    try:
        return zoo.resolve(text)  # a bundled name, also written with its file name (x.int8.onnx)
    except (UsageError, ModelFormatError):
        if p.suffix.lower() in SUFFIX_BACKEND:  # a file name, not a misspelt bundled name
            raise ModelFormatError(f"model file {p} does not exist") from None
        raise


def _backend_for(path: Path, backend: str) -> str:
    if backend not in BACKENDS:
        raise unknown_name("backend", backend, BACKENDS)
    by_suffix = SUFFIX_BACKEND.get(path.suffix.lower())
    if backend == "auto":
        if by_suffix is None:
            raise ModelFormatError(f"cannot tell the model type of {path} from its suffix; expected .onnx "
                                   "(ONNX Runtime), .xml (OpenVINO IR), .engine/.plan (TensorRT) or .pt (edgeseg checkpoint)")
        return by_suffix
    if backend == "openvino" and by_suffix == "onnxruntime":
        return "openvino"  # OpenVINO compiles ONNX files directly
    if by_suffix == "onnxruntime" and backend == "tensorrt":
        return "onnxruntime-tensorrt"  # an ONNX file on TensorRT: ONNX Runtime's TensorRT provider
    if by_suffix is not None and by_suffix != backend:
        raise UsageError(f"backend {backend!r} cannot run {path.name} (a {path.suffix} file runs on "
                         f"{by_suffix}); drop --backend or convert the model with 'edgeseg export'")
    return backend


def backend_kind(model: str | Path, backend: str = "auto") -> str:
    """Which backend would run ``model``: ``"onnxruntime"``, ``"onnxruntime-tensorrt"``,
    ``"tensorrt"`` or ``"pytorch"`` (nothing is loaded; errors as :class:`Segmenter` raises them)."""
    return _backend_for(resolve_model(model), backend)


def create_backend(path: Path, backend: str = "auto", device: str = "cpu", **opts: Any) -> Backend:
    """Construct the backend for ``path``; optional packages are imported only here."""
    kind = _backend_for(path, backend)
    if kind.startswith("onnxruntime"):
        from .backends.ort import OnnxRuntimeBackend

        if kind == "onnxruntime-tensorrt" and not opts.get("providers"):
            opts["providers"] = ["tensorrt", "cuda"]
        return OnnxRuntimeBackend(path, device, **opts)
    if kind == "openvino":
        from .backends.ov import OpenVinoBackend

        if opts.pop("providers", None):
            raise UsageError("providers= choose ONNX Runtime execution providers; with backend 'openvino' "
                             "pick the OpenVINO device instead (device='CPU', 'GPU', 'NPU' or 'AUTO')")
        return OpenVinoBackend(path, device, **opts)
    if kind == "tensorrt":
        try:
            from .backends.trt import TensorRTBackend
        except ImportError as e:  # tensorrt / cuda-python missing, or the module itself absent
            raise BackendUnavailableError(
                f"TensorRT is not available here ({e}); running {path.name} needs an NVIDIA GPU and "
                "'pip install edgeseg[trt]' (tensorrt, cuda-python)") from None
        # An engine only runs on a GPU: the Segmenter's default device "cpu" means "the first GPU" here.
        return TensorRTBackend(path, "cuda:0" if device == "cpu" else device, **opts)
    from .backends.pytorch import PyTorchBackend

    return PyTorchBackend(path, device, threads=opts.get("threads"))


class Segmenter:
    """Semantic segmentation of BGR frames with any edgeseg artifact.

    Args:
        model: a ``.onnx``, ``.engine``/``.plan`` or ``.pt`` path, or a zoo short name
            (see :func:`edgeseg.runtime.zoo.list_models`).
        backend: ``"auto"`` (by suffix), ``"onnxruntime"``, ``"openvino"``, ``"tensorrt"`` or ``"pytorch"``.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; for OpenVINO ``"CPU"``, ``"GPU"``, ``"NPU"`` or ``"AUTO"``.
        threads: intra-op threads of the backend (None: the library's default).
        imgsz: inference size (H, W) or ``"HxW"`` for models with dynamic height/width.
        classes, palette, mean, std: for an ONNX model without edgeseg metadata (or to override it).
        providers: ONNX Runtime providers by name (``["tensorrt", "cuda"]``); default from ``device``.
        fit: ``"stretch"`` resizes frames to the input size; ``"letterbox"`` keeps their aspect ratio
            (mean-colour border, cropped off again in the class map).
    """

    #: whether results keep their logits (model resolution) for :attr:`Result.confidence`: None keeps
    #: them where it is free (backends that return a new array per call: ONNX Runtime, OpenVINO,
    #: PyTorch); True also copies them out of TensorRT's reused buffer, every frame; False never
    #: (code holding many results then holds only their class maps).
    keep_logits: bool | None = None

    def __init__(self, model: str | Path, backend: str = "auto", device: str = "cpu", *,
                 threads: int | None = None, imgsz: str | int | tuple[int, int] | None = None,
                 classes: Sequence[str] | None = None, palette: Sequence[Sequence[int]] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 providers: Sequence[str] | None = None, fit: str = "stretch") -> None:
        self.fit = check_fit(fit)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise UsageError(f"threads {threads!r} must be a whole number >= 1 (0 or None: the backend's default)")
        self.path = resolve_model(model)
        opts: dict[str, Any] = {"threads": threads}
        if providers:
            opts["providers"] = list(providers)
        if classes is not None:
            opts.update(classes=list(classes), palette=palette, mean=mean, std=std)
        elif palette is not None or mean is not None or std is not None:
            raise UsageError("palette/mean/std by hand need classes too (Segmenter(..., classes=[...]))")
        self.backend = create_backend(self.path, backend, device, **opts)
        self.meta: ModelMeta = self.backend.meta
        self.fused_input = self.meta.input_layout == LAYOUT_UINT8
        self.input_size = self._input_size(imgsz)
        n = self.backend.input_shape[0]
        self.fixed_batch: int | None = n if isinstance(n, int) else None  # None: any batch size
        # A Segmenter may be shared between threads: each calling thread gets its own reused
        # buffers (_scratch), and a backend that cannot run two inferences at once takes turns.
        self._local = threading.local()
        self._turns = None if self.backend.concurrent_runs else threading.Lock()
        self._closed = False
        self._lut = palette_lut(self.meta.palette)
        self.classes = self.meta.classes
        self.palette = self.meta.palette

    def _input_size(self, imgsz: str | int | tuple[int, int] | None) -> tuple[int, int]:
        shape = self.backend.input_shape
        h, w = (shape[1], shape[2]) if self.fused_input else (shape[2], shape[3])
        asked = parse_hw(imgsz, "imgsz") if imgsz is not None else None
        if isinstance(h, int) and isinstance(w, int):
            if asked is not None and asked != (h, w):
                raise UsageError(f"{self.path.name} has a fixed input size {h}x{w}, so imgsz "
                                 f"{format_hw(asked)} cannot be used; drop imgsz or export with --dynamic")
            return h, w
        size = asked or self.meta.input_size
        if size is None:
            raise UsageError(f"{self.path.name} accepts any input size and names no preferred one; "
                             "pass imgsz (e.g. imgsz='360x480')")
        return int(size[0]), int(size[1])

    # -- inference -------------------------------------------------------------------------------
    def __call__(self, frame: np.ndarray) -> Result:
        """Segment one uint8 (H, W, 3) BGR frame (safe to call from several threads at once)."""
        return self.batch([frame])[0]

    @property
    def batch_capacity(self) -> int | None:
        """Frames one inference of this artifact takes: its fixed batch (1 for most exports), or
        None when the batch is dynamic (any number). ``edgeseg export --batch N`` or ``--dynamic``."""
        return self.fixed_batch

    def batch(self, frames: Sequence[np.ndarray]) -> list[Result]:
        """Segment several frames (e.g. one per camera) with as few inferences as the model allows.

        The artifact's :attr:`batch_capacity` decides how many: a dynamic batch runs all frames in
        one inference; a fixed batch N runs them N at a time (the last inference padded), so a
        batch-1 artifact runs them one after another.

        Timings per result: its own pre- and post-processing, and its share of the batch's
        inference time (batch time / frames in the batch).
        """
        self._check_open()
        frames = [check_frame(f) for f in frames]
        if not frames:
            return []
        step = self.fixed_batch or len(frames)
        results: list[Result] = []
        for start in range(0, len(frames), step):
            results.extend(self._run_chunk(frames[start:start + step]))
        return results

    def _run_chunk(self, frames: list[np.ndarray]) -> list[Result]:
        n = len(frames)
        slots = self.fixed_batch or n
        pre_ms = []
        pre = self._scratch().pre
        batch = pre.reserve(slots)  # (N, 3, h, w) float32 or (N, h, w, 3) uint8
        for i, frame in enumerate(frames):
            t = time.perf_counter()
            pre.one(frame, i)
            pre_ms.append((time.perf_counter() - t) * 1e3)
        for i in range(n, slots):
            batch[i] = batch[n - 1]  # a fixed-batch model gets the last frame repeated as padding
        t = time.perf_counter()
        out = self.infer_prepared(batch)  # (N, C, h, w) logits or (N, h, w) class ids
        infer_ms = (time.perf_counter() - t) * 1e3 / n
        return [self.finish(frame, out, i, pre_ms[i], infer_ms) for i, frame in enumerate(frames)]

    # -- stages, for pipelines that run them in different threads ---------------------------------
    def new_preprocessor(self) -> Preprocessor:
        """A pre-processor with its own input buffer (one per thread that pre-processes)."""
        return Preprocessor(self.meta, self.input_size, self.fixed_batch or 1, fit=self.fit)

    def infer_prepared(self, batch: np.ndarray) -> np.ndarray:
        """Run the backend on a batch from :meth:`new_preprocessor`; the raw model output."""
        self._check_open()
        if self._turns is None:
            return self.backend.infer(batch)
        with self._turns:
            return self.backend.infer(batch)

    @property
    def concurrent_infer(self) -> bool:
        """Whether :meth:`infer_prepared` may run in several threads at once (pipeline workers)."""
        return self.backend.concurrent_runs

    def finish(self, frame: np.ndarray, out: np.ndarray, index: int = 0, preprocess_ms: float = 0.0,
               infer_ms: float = 0.0) -> Result:
        """Raw output item ``index`` -> :class:`Result` at the frame's size (argmax, resize)."""
        t = time.perf_counter()
        lowres = self._lowres_map(out, index)  # (h, w) uint8 at the model's resolution
        box = None
        if self.fit != "stretch":
            box = content_box(frame.shape[:2], lowres.shape, self.fit)
            top, left, ch, cw = box
            lowres = lowres[top:top + ch, left:left + cw]  # the picture without its border
        class_map = resize_nearest(lowres, frame.shape[:2])  # (H, W) uint8
        logits = None
        keep = self.backend.fresh_outputs if self.keep_logits is None else self.keep_logits
        if keep and self.meta.output_kind != OUTPUT_CLASS_MAP:  # for Result.confidence, if asked
            logits = out[index] if self.backend.fresh_outputs else out[index].copy()  # (C, h, w)
        post_ms = (time.perf_counter() - t) * 1e3
        timings = {"preprocess_ms": preprocess_ms, "infer_ms": infer_ms, "postprocess_ms": post_ms,
                   "total_ms": preprocess_ms + infer_ms + post_ms}
        scale = self.meta.output_quant[0] if self.meta.output_quant else None
        return Result(frame, class_map, timings, self.meta.classes, self.meta.palette, self._lut,
                      logits=logits, logit_scale=scale, box=box)

    def _lowres_map(self, out: np.ndarray, i: int) -> np.ndarray:
        """Model output for batch item ``i`` -> (h, w) uint8 class ids at model resolution."""
        if self.meta.output_kind == OUTPUT_CLASS_MAP:
            ids = out[i]  # (h, w) uint8 (or int64 from a plain ArgMax)
            if ids.dtype != np.uint8:
                lowres = self._lowres_for(ids.shape)
                np.copyto(lowres, ids, casting="unsafe")
                return lowres
            return ids
        # argmax on the low-resolution logits, then resize the uint8 map: C times less data to resize
        return self._scratch().post.argmax(out[i], out=self._lowres_for(out.shape[2:]))

    def _lowres_for(self, hw: tuple[int, ...]) -> np.ndarray:
        """This thread's (h, w) uint8 argmax buffer, reused while the size stays."""
        scratch = self._scratch()
        if scratch.lowres.shape != tuple(hw):
            scratch.lowres = np.empty(hw, np.uint8)
        return scratch.lowres

    def _scratch(self) -> threading.local:
        """The calling thread's buffers (made on its first call, then reused): pre, post, lowres."""
        scratch = self._local
        if not hasattr(scratch, "pre"):
            scratch.pre = self.new_preprocessor()
            scratch.post = Postprocessor()
            scratch.lowres = np.empty(self.input_size, np.uint8)
        return scratch

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError(f"this Segmenter for {self.path.name} is closed; create a new one to run the model")

    # -- facts and lifetime ----------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """Classes, palette, sizes, precision, backend and providers, as one plain dict."""
        self._check_open()
        d = {
            "model": str(self.path),
            "classes": list(self.meta.classes),
            "palette": [list(c) for c in self.meta.palette],
            "input_size": list(self.input_size),
            "dynamic_hw": self.meta.dynamic_hw,
            "batch": self.fixed_batch or "dynamic",  # frames per inference (batch_capacity)
            "precision": self.meta.precision,
            "int8_target": self.meta.int8_target,
            "layout": self.meta.input_layout,
            "output_kind": self.meta.output_kind,
            "output_stride": self.meta.output_stride,
            "output_quant": list(self.meta.output_quant) if self.meta.output_quant else None,
            "mean": list(self.meta.mean),
            "std": list(self.meta.std),
        }
        described = self.backend.describe()
        d["backend"] = described.get("backend", self.backend.name)
        d["device"] = described.get("device", self.backend.device)
        d["providers"] = described.get("providers", [])
        d["backend_details"] = described
        return d

    def close(self) -> None:
        """Release the backend (sessions, device memory); safe to call twice. Later calls raise."""
        self._closed = True
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Segmenter({self.path.name}, backend={self.backend.name}, {format_hw(self.input_size)}, "
                f"{self.meta.precision}, {len(self.meta.classes)} classes)")
