"""Every decision behind a TensorRT build, in plain Python (no tensorrt import).

``engine.py`` only carries out what this module decides, so the decisions are unit-tested
on machines without TensorRT or a GPU:

* which TensorRT releases are supported and what each can do (:func:`capabilities`);
* network-creation and builder flags per precision and release (:func:`plan_build`);
* which ONNX flavour to feed per precision (:func:`preferred_onnx`);
* optimisation profiles from ``imgsz``/``dynamic``/``batch``/``max_batch`` (:func:`make_profile`);
* file names: engine, manifest, timing cache, calibration cache.

TensorRT 11 removed weak typing: every network is strongly typed, so an engine's precision is
the ONNX's precision (an FP16-converted or Q/DQ model) and ``BuilderFlag.FP16``/``INT8`` and the
INT8 calibrator no longer exist. TensorRT 10 (and 8.5-9.x on older Jetson images) builds weakly
typed networks, where the FP16/INT8 flags let TensorRT pick lower-precision kernels, explicit
Q/DQ INT8 works with the INT8 flag, and the legacy entropy calibrator is still available.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgeseg.runtime.errors import BackendUnavailableError, ExportError, UsageError, unknown_name
from edgeseg.runtime.manifest import (
    ENGINE_SUFFIXES,
    Profile,
    TrtVersion,
    format_compute_capability,
    manifest_path,
)
from edgeseg.runtime.metadata import LAYOUT_UINT8, PRECISIONS
from edgeseg.runtime.sizes import format_hw, parse_hw

__all__ = [
    "TrtVersion", "TrtCapabilities", "BuildPlan", "capabilities", "plan_build", "preferred_onnx",
    "make_profile", "engine_path_for", "manifest_path", "timing_cache_path", "calibration_cache_path",
    "hw_axes", "check_precision", "MIN_TRT",
]

MIN_TRT = TrtVersion(8, 5)  # first release with the name-based IO API (num_io_tensors, execute_async_v3)
INT8_TARGET_ORT_CPU = "ort_cpu"  # U8S8 Q/DQ: ONNX Runtime CPU flavour, not for TensorRT
DYNAMIC_MIN_SIDE = 32  # smallest H/W a dynamic profile accepts: FCN/U-Net downsample by up to 32


@dataclass(frozen=True)
class TrtCapabilities:
    """What one TensorRT release offers to the build; one row of the version table."""

    version: TrtVersion
    strongly_typed_only: bool  # 11+: every network is strongly typed; precision comes from the ONNX
    precision_flags: bool  # <= 10: BuilderFlag.FP16 / INT8 exist (weakly typed networks)
    legacy_calibrator: bool  # <= 10: IInt8EntropyCalibrator2 + config.int8_calibrator
    explicit_batch_flag: bool  # < 10: networks must be created with EXPLICIT_BATCH (ignored since 10)

    @property
    def network_flags(self) -> tuple[str, ...]:
        if self.strongly_typed_only:
            # Accepted and ignored on 11 (always strongly typed); engine.py skips it if a later release drops it.
            return ("STRONGLY_TYPED",)
        if self.explicit_batch_flag:
            return ("EXPLICIT_BATCH",)
        return ()


def capabilities(version: str | TrtVersion) -> TrtCapabilities:
    """The version table: 8.5-9.x (legacy Jetson), 10.x, 11.x and later."""
    v = TrtVersion.parse(version)
    if v < MIN_TRT:
        raise BackendUnavailableError(
            f"TensorRT {v} is too old; edgeseg builds engines with TensorRT >= {MIN_TRT.major}.{MIN_TRT.minor} "
            "(10 or 11 recommended): pip install \"edgeseg[trt]\" or use JetPack 6")
    weak = v.major <= 10
    return TrtCapabilities(version=v, strongly_typed_only=not weak, precision_flags=weak,
                           legacy_calibrator=weak, explicit_batch_flag=v.major < 10)


@dataclass(frozen=True)
class BuildPlan:
    """How to build one engine: flags are names of TensorRT enum members, applied by engine.py."""

    precision: str  # engine precision: "fp32" | "fp16" | "int8"
    onnx_precision: str  # precision of the ONNX that feeds the build
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]  # BuilderFlag members
    use_calibrator: bool  # legacy implicit INT8 with IInt8EntropyCalibrator2 (TensorRT <= 10)
    strongly_typed: bool
    note: str  # one line for the log and the report

    def to_dict(self) -> dict[str, object]:
        return {"precision": self.precision, "onnx_precision": self.onnx_precision,
                "network_flags": list(self.network_flags), "builder_flags": list(self.builder_flags),
                "use_calibrator": self.use_calibrator, "strongly_typed": self.strongly_typed, "note": self.note}


def check_precision(precision: str) -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise unknown_name("precision", precision, PRECISIONS)
    return p


def preferred_onnx(precision: str, trt_version: str | TrtVersion, *, legacy_calibrator: bool = False) -> str:
    """Which ONNX flavour (``"fp32"``, ``"fp16"`` or ``"int8"``) to export before building ``precision``.

    FP16 on TensorRT 10 builds from the FP32 ONNX with the FP16 flag (TensorRT then keeps the layers
    that need it in FP32); on 11 it must be the FP16-converted ONNX. INT8 needs the symmetric Q/DQ
    ONNX (``int8_target="tensorrt"``), except the legacy calibrator path on TensorRT <= 10, which
    calibrates the FP32 ONNX itself.
    """
    precision = check_precision(precision)
    caps = capabilities(trt_version)
    if precision == "fp32":
        return "fp32"
    if precision == "fp16":
        return "fp16" if caps.strongly_typed_only else "fp32"
    if legacy_calibrator:
        if not caps.legacy_calibrator:
            raise _no_calibrator_error(caps)
        return "fp32"
    return "int8"


def _no_calibrator_error(caps: TrtCapabilities) -> ExportError:
    return ExportError(
        f"TensorRT {caps.version} removed the INT8 calibrator (implicit quantization); build INT8 engines from "
        "the Q/DQ ONNX instead: edgeseg export CHECKPOINT --format engine --precision int8 --calib DATA")


def plan_build(
    precision: str,
    caps: TrtCapabilities,
    onnx_precision: str,
    *,
    int8_target: str = "",
    calibration: bool = False,
    onnx_name: str = "the ONNX",
) -> BuildPlan:
    """Flags for building ``precision`` from an ONNX of ``onnx_precision`` with TensorRT ``caps``.

    Raises :class:`ExportError` (saying which ONNX to export instead) when the ONNX cannot give
    that precision on this release, e.g. an FP32 ONNX for an FP16 engine on TensorRT 11.
    """
    precision = check_precision(precision)
    onnx_precision = check_precision(onnx_precision)
    v = caps.version
    net = caps.network_flags

    def strong(note: str) -> BuildPlan:
        return BuildPlan(precision, onnx_precision, net, (), False, True, note)

    def weak(flags: tuple[str, ...], note: str, calibrator: bool = False) -> BuildPlan:
        return BuildPlan(precision, onnx_precision, net, flags, calibrator, False, note)

    def wrong_onnx(want: str, how: str) -> ExportError:
        return ExportError(
            f"{onnx_name} is a {onnx_precision.upper()} model but a {precision.upper()} engine on TensorRT {v} "
            f"needs the {want} ONNX; {how}")

    export_hint = f"export it with: edgeseg export CHECKPOINT --format onnx --precision {precision}"
    if onnx_precision == "int8" and int8_target == INT8_TARGET_ORT_CPU:
        raise ExportError(
            f"{onnx_name} is the ONNX Runtime CPU INT8 flavour (unsigned activations), which TensorRT cannot "
            "build; TensorRT needs symmetric int8 Q/DQ: edgeseg export CHECKPOINT --format engine --precision int8")

    if precision == "fp32":
        if onnx_precision != "fp32":
            raise wrong_onnx("FP32", "give the plain FP32 ONNX (x.onnx)")
        if caps.strongly_typed_only:
            return strong("FP32 engine, strongly typed network")
        return weak((), "FP32 engine, no precision flags")

    if precision == "fp16":
        if caps.strongly_typed_only:
            if onnx_precision != "fp16":
                raise wrong_onnx("FP16-converted", f"TensorRT 11 takes precision from the graph; {export_hint}")
            return strong("FP16 engine from the FP16 ONNX, strongly typed (TensorRT >= 11 has no FP16 flag)")
        if onnx_precision == "int8":
            raise wrong_onnx("FP32 (or FP16)", "give x.onnx")
        return weak(("FP16",), f"FP16 flag on the {onnx_precision.upper()} ONNX (weakly typed, TensorRT {v.major})")

    # int8
    if onnx_precision == "int8":
        if caps.strongly_typed_only:
            return strong("INT8 engine from the Q/DQ ONNX (explicit quantization), strongly typed")
        # Explicit quantization on a weakly typed network needs the INT8 flag. No FP16 flag: float
        # layers stay FP32 as in the ONNX, which is what the export's accuracy gate measured (and
        # what TensorRT 11 does).
        return weak(("INT8",), "INT8 flag with the Q/DQ ONNX (explicit quantization)")
    if onnx_precision == "fp16":
        raise wrong_onnx("Q/DQ INT8", export_hint)
    if not calibration:
        how = export_hint
        if caps.legacy_calibrator:
            how += " (or pass calibration images for the legacy calibrator)"
        raise wrong_onnx("Q/DQ INT8", how)
    if not caps.legacy_calibrator:
        raise _no_calibrator_error(caps)
    return weak(("INT8",), f"legacy entropy calibrator on the FP32 ONNX (implicit quantization, TensorRT {v.major})",
                calibrator=True)


# -- optimisation profiles --------------------------------------------------------------------------
def hw_axes(layout: str, shape: Sequence[int]) -> tuple[int, int]:
    """Axes of H and W in the input: NHWC for fused pre-processing, else NCHW."""
    if len(shape) != 4:
        raise ExportError(f"the model input has shape {tuple(shape)}; edgeseg engines need a 4-D image input")
    return (1, 2) if layout == LAYOUT_UINT8 else (2, 3)


def make_profile(
    input_name: str,
    network_shape: Sequence[int],
    *,
    layout: str,
    imgsz: str | int | tuple[int, int] | None = None,
    dynamic: bool = False,
    batch: int = 1,
    max_batch: int | None = None,
    default_hw: tuple[int, int] | None = None,
) -> Profile:
    """Min/opt/max shapes for the network input (``-1`` marks a dimension the ONNX left dynamic).

    * Static build (``dynamic=False``): min = opt = max = (batch, imgsz).
    * ``dynamic=True``: batch 1..``max_batch`` (default ``batch``) with opt ``batch``, and where the ONNX
      leaves H/W dynamic, sides from half of ``imgsz`` (at least 32) to twice ``imgsz``, opt ``imgsz``.
    * Dimensions the ONNX fixes stay fixed; asking for another value is a :class:`UsageError`.
    """
    shape = tuple(int(d) for d in network_shape)
    h_ax, w_ax = hw_axes(layout, shape)
    if batch < 1:
        raise UsageError(f"--batch {batch} must be at least 1")
    if max_batch is not None and max_batch < batch:
        raise UsageError(f"max batch {max_batch} is smaller than --batch {batch}; give a max batch >= {batch}")
    top_batch = max_batch if (dynamic and max_batch is not None) else batch
    if max_batch is not None and max_batch > batch and not dynamic:
        raise UsageError(f"max batch {max_batch} needs a dynamic engine; add --dynamic (or drop the max batch)")

    fixed_hw = (shape[h_ax], shape[w_ax]) if shape[h_ax] > 0 and shape[w_ax] > 0 else None
    hw = parse_hw(imgsz) if imgsz is not None else (fixed_hw or default_hw)
    if hw is None:
        raise UsageError(f"input {input_name!r} has dynamic height/width and the model records no input size; "
                         "give --imgsz HxW")
    if fixed_hw is not None and hw != fixed_hw:
        raise UsageError(f"--imgsz {format_hw(hw)} does not match the ONNX's fixed input {format_hw(fixed_hw)}; "
                         "use that size or re-export the ONNX with --imgsz or --dynamic")

    lo, opt, hi = list(shape), list(shape), list(shape)
    # Batch axis.
    if shape[0] > 0:
        if shape[0] != batch or top_batch != batch:
            raise UsageError(f"the ONNX has a fixed batch of {shape[0]}; build with --batch {shape[0]} or "
                             "re-export the ONNX with --dynamic")
    else:
        lo[0] = 1 if dynamic else batch
        opt[0], hi[0] = batch, top_batch
    # Height/width axes.
    for ax, side in ((h_ax, hw[0]), (w_ax, hw[1])):
        if shape[ax] > 0:
            continue
        opt[ax] = side
        lo[ax] = max(DYNAMIC_MIN_SIDE, side // 2) if dynamic else side
        hi[ax] = max(side * 2, lo[ax]) if dynamic else side
        lo[ax] = min(lo[ax], side)
    # Any other dynamic axis (e.g. channels) cannot be guessed.
    for ax, d in enumerate(shape):
        if d <= 0 and ax not in (0, h_ax, w_ax):
            raise ExportError(f"input {input_name!r} has a dynamic axis {ax} in {shape}; only batch, height and "
                              "width may be dynamic")
    return Profile(input_name, tuple(lo), tuple(opt), tuple(hi))


# -- file names -------------------------------------------------------------------------------------
def engine_path_for(onnx_path: str | os.PathLike, precision: str) -> Path:
    """``x.onnx`` / ``x.fp16.onnx`` / ``x.int8.trt.onnx`` -> ``x.<precision>.engine`` (precision once)."""
    precision = check_precision(precision)
    p = Path(onnx_path)
    stem = p.name.removesuffix(".onnx").removesuffix(".trt")  # x.int8.trt.onnx: the TensorRT INT8 flavour
    for q in PRECISIONS:
        stem = stem.removesuffix("." + q)
    return p.with_name(f"{stem}.{precision}.engine")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def timing_cache_name(trt_version: str | TrtVersion, gpu_name: str, compute_capability: str | Sequence[int]) -> str:
    """A timing cache is only valid for one TensorRT release and one GPU, so both are in its name."""
    cc = format_compute_capability(compute_capability).replace(".", "")
    return f"trt{TrtVersion.parse(trt_version)}-{_slug(gpu_name)}-sm{cc}.timing.cache"


def timing_cache_path(
    setting: str | os.PathLike | bool | None,
    engine_path: str | os.PathLike,
    trt_version: str | TrtVersion,
    gpu_name: str,
    compute_capability: str | Sequence[int],
) -> Path | None:
    """Where the timing cache lives.

    ``None``/``True``: the keyed name beside the engine (reused by every build in that folder);
    ``False``: no timing cache; a folder: the keyed name inside it; any other path: that file.
    """
    if setting is False:
        return None
    name = timing_cache_name(trt_version, gpu_name, compute_capability)
    if setting is None or setting is True:
        return Path(engine_path).parent / name
    p = Path(setting)
    if p.is_dir() or str(setting).endswith(("/", os.sep)):
        return p / name
    return p


def calibration_cache_path(engine_path: str | os.PathLike, onnx_sha256: str) -> Path:
    """TensorRT's own calibration cache for the legacy calibrator, keyed by the ONNX it calibrated.

    The ONNX hash in the name keeps a cache from another model from being reused silently.
    """
    p = Path(engine_path)
    stem = p.name
    for suffix in ENGINE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    return p.with_name(f"{stem}.trtcalib-{onnx_sha256[:12]}.cache")
