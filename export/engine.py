"""ONNX -> TensorRT engine, plus the JSON manifest beside it.

The thin layer that talks to TensorRT. Every decision (flags per release and precision,
profiles, file names) is made in :mod:`edgeseg.export.engine_plan`; this module only carries it
out with NVIDIA's documented Python API for TensorRT 10 and 11: ``Builder.create_network``,
``OnnxParser.parse_from_file``, ``IBuilderConfig.set_memory_pool_limit``/``set_flag``/
``add_optimization_profile``/``create_timing_cache``/``set_timing_cache``,
``build_serialized_network``.

NOT RUN ON REAL TENSORRT: the machines this was written on have no GPU and cannot install
TensorRT. The unit tests drive it with fake TensorRT-10-like and TensorRT-11-like modules and
check the calls it makes; the ``trt``-marked tests build a real engine where TensorRT exists.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeseg import __version__ as EDGESEG_VERSION
from edgeseg.runtime.backends.trt import (
    cuda_check,
    dtype_name,
    gpu_info,
    import_cudart,
    import_tensorrt,
    parse_device,
)
from edgeseg.runtime.errors import ExportError, ModelFormatError
from edgeseg.runtime.fileio import atomic_open, atomic_path, sha256_file
from edgeseg.runtime.manifest import (
    EngineManifest,
    Profile,
    TensorInfo,
    manifest_path,
    utc_now,
    write_manifest,
)
from edgeseg.runtime.metadata import ModelMeta
from edgeseg.runtime.sizes import format_hw

from .engine_plan import (
    BuildPlan,
    TrtCapabilities,
    calibration_cache_path,
    capabilities,
    check_precision,
    engine_path_for,
    hw_axes,
    make_profile,
    plan_build,
    timing_cache_path,
)

log = logging.getLogger(__name__)

__all__ = ["EngineBuilder", "onnx_to_engine", "read_onnx_meta"]


def read_onnx_meta(onnx_path: str | os.PathLike) -> ModelMeta:
    """edgeseg's metadata from an ONNX file's ``metadata_props`` (weights are not loaded)."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends for corrupt files
        raise ModelFormatError(f"{onnx_path} is not a readable ONNX model ({type(e).__name__}: {e}); "
                               "re-export it with 'edgeseg export'") from None
    return ModelMeta.from_props({p.key: p.value for p in model.metadata_props}, str(onnx_path))


class EngineBuilder:
    """Parse an ONNX into a TensorRT network, then build a serialized engine from it.

    Two steps, as in NVIDIA's samples: :meth:`parse` creates the network (flags from the plan)
    and logs every input/output name, shape and dtype; :meth:`build` configures workspace,
    precision flags, the optimisation profile, the timing cache and (TensorRT <= 10 only) the
    legacy calibrator, and returns the serialized plan. Not run on real TensorRT.
    """

    def __init__(self, *, workspace_gb: float = 4.0, verbose: bool = False, trt: ModuleType | None = None) -> None:
        if workspace_gb <= 0:
            raise ExportError(f"--workspace {workspace_gb} GB must be positive")
        self.trt = trt if trt is not None else import_tensorrt()
        self.caps: TrtCapabilities = capabilities(getattr(self.trt, "__version__", "0"))
        self.workspace_bytes = int(workspace_gb * (1 << 30))
        self.logger = self.trt.Logger(self.trt.Logger.INFO if verbose else self.trt.Logger.WARNING)
        self.builder = self.trt.Builder(self.logger)
        self.network: Any = None
        self.parser: Any = None  # kept alive with the network: TensorRT's parser owns weights it parsed

    @property
    def version(self) -> str:
        return str(self.caps.version)

    def _network_flags(self, plan: BuildPlan) -> int:
        flags = 0
        enum = self.trt.NetworkDefinitionCreationFlag
        for name in plan.network_flags:
            member = getattr(enum, name, None)
            if member is None:
                if name == "STRONGLY_TYPED" and self.caps.strongly_typed_only:
                    continue  # always strongly typed on 11+: a release that drops the flag needs none
                raise ExportError(f"TensorRT {self.version} has no NetworkDefinitionCreationFlag.{name}")
            flags |= 1 << int(member)
        return flags

    def parse(self, onnx_path: str | os.PathLike, plan: BuildPlan) -> tuple[TensorInfo, ...]:
        """Create the network and parse ``onnx_path`` into it; returns its inputs and outputs."""
        trt = self.trt
        self.network = self.builder.create_network(self._network_flags(plan))
        self.parser = trt.OnnxParser(self.network, self.logger)
        # parse_from_file (not parse(bytes)) so weights stored as external data next to the ONNX resolve.
        if not self.parser.parse_from_file(str(onnx_path)):
            errors = [str(self.parser.get_error(i)) for i in range(self.parser.num_errors)]
            raise ExportError(f"TensorRT {self.version} could not parse {onnx_path}: "
                              f"{'; '.join(errors) or 'no error reported'}")
        io = []
        for mode, count, get in (("input", self.network.num_inputs, self.network.get_input),
                                 ("output", self.network.num_outputs, self.network.get_output)):
            for i in range(count):
                t = get(i)
                info = TensorInfo(str(t.name), mode, tuple(int(d) for d in t.shape), dtype_name(t.dtype))
                log.info("network %s %r: shape %s, dtype %s", mode, info.name, info.shape, info.dtype)
                io.append(info)
        return tuple(io)

    def build(
        self,
        plan: BuildPlan,
        profile: Profile,
        *,
        timing_cache: Path | None = None,
        calibrator: Any = None,
    ) -> bytes:
        """Configure and build; returns the serialized engine. Saves the timing cache when given."""
        if self.network is None:
            raise ExportError("EngineBuilder.build() needs parse() first")
        trt = self.trt
        config = self.builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        for name in plan.builder_flags:
            member = getattr(trt.BuilderFlag, name, None)
            if member is None:  # the plan and the installed release disagree: a bug, or a very new TensorRT
                raise ExportError(f"TensorRT {self.version} has no BuilderFlag.{name}; the {plan.precision} plan "
                                  f"({plan.note}) does not fit this release")
            config.set_flag(member)

        opt_profile = self.builder.create_optimization_profile()
        opt_profile.set_shape(profile.input, profile.min, profile.opt, profile.max)
        if config.add_optimization_profile(opt_profile) < 0:
            raise ExportError(f"TensorRT rejected the optimisation profile {profile.describe()} for "
                              f"input {profile.input!r}")
        log.info("profile for %r: %s", profile.input, profile.describe())

        if calibrator is not None:
            if not self.caps.legacy_calibrator:
                raise ExportError(f"TensorRT {self.version} has no INT8 calibrator; use the Q/DQ ONNX")
            config.int8_calibrator = calibrator
            if not profile.is_static:
                config.set_calibration_profile(opt_profile)  # calibration runs at the profile's opt shape

        if timing_cache is not None:
            self._load_timing_cache(config, timing_cache)

        started = time.perf_counter()
        serialized = self.builder.build_serialized_network(self.network, config)
        if serialized is None:
            raise ExportError(f"TensorRT {self.version} failed to build the engine ({plan.note}); rerun with "
                              "--verbose for TensorRT's log, or raise --workspace")
        log.info("built a %s engine in %.1f s", plan.precision, time.perf_counter() - started)

        if timing_cache is not None:
            blob = config.get_timing_cache().serialize()
            with atomic_open(timing_cache, "wb") as f:
                f.write(bytes(memoryview(blob)))
            log.info("timing cache saved to %s", timing_cache)
        return bytes(memoryview(serialized))

    def _load_timing_cache(self, config: Any, path: Path) -> None:
        blob = path.read_bytes() if path.is_file() else b""
        cache = None
        try:
            cache = config.create_timing_cache(blob)
        except Exception as e:  # a corrupt file: start over rather than fail the build
            log.warning("timing cache %s is unreadable (%s); starting a new one", path, e)
        if cache is None and blob:
            cache = config.create_timing_cache(b"")
            blob = b""
        if cache is None or not config.set_timing_cache(cache, False):
            log.warning("TensorRT did not accept timing cache %s; building without it", path)
            return
        log.info("timing cache %s (%s)", path, f"reusing {len(blob)} bytes" if blob else "new")


def check_calibration_shape(batch_shape: tuple[int, ...], profile: Profile) -> None:
    """The legacy calibrator runs at the profile's opt shape: the batches must have exactly that shape."""
    if tuple(batch_shape) != tuple(profile.opt):
        raise ExportError(f"calibration batches have shape {tuple(batch_shape)} but TensorRT calibrates at the "
                          f"engine's opt shape {profile.opt}; preprocess calibration images to that size and batch")


def onnx_to_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike | None = None,
    *,
    precision: str = "fp16",
    imgsz: str | int | tuple[int, int] | None = None,
    dynamic: bool = False,
    batch: int = 1,
    max_batch: int | None = None,
    workspace_gb: float = 4.0,
    timing_cache: str | os.PathLike | bool | None = None,
    calibration: Iterable[np.ndarray] | None = None,
    meta: ModelMeta | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str = "cuda:0",
    verbose: bool = False,
) -> dict[str, Any]:
    """Build a TensorRT engine from an edgeseg ONNX and write the manifest beside it.

    * ``engine_path``: default ``x.<precision>.engine`` beside the ONNX; written atomically.
    * ``precision``: the engine's precision. On TensorRT 11 the ONNX must already have it (the FP16
      or Q/DQ INT8 export); on TensorRT 10 an FP32 ONNX becomes FP16 with the FP16 flag, and INT8
      comes from the Q/DQ ONNX or, with ``calibration``, from the legacy calibrator.
    * ``imgsz``/``dynamic``/``batch``/``max_batch``: the optimisation profile (see ``make_profile``).
    * ``timing_cache``: ``None`` keeps a cache keyed by TensorRT version and GPU beside the engine;
      ``False`` disables it; a folder or file path puts it there.
    * ``calibration``: preprocessed float32 (N, 3, H, W) batches, for the legacy calibrator only.
    * ``meta``: edgeseg metadata; read from the ONNX's ``metadata_props`` when None.
    * ``checkpoint``: the ``.pt`` the ONNX came from; recorded so a mismatch error can say
      ``edgeseg export CHECKPOINT --format engine ...`` with the real path.

    Returns a report dict (paths, sizes, plan, profile, IO, timings). Raises
    :class:`BackendUnavailableError` without TensorRT/cuda-python/GPU, :class:`ExportError` when
    the build cannot be done as asked. Not run on real TensorRT (see the module docstring).
    """
    started = time.perf_counter()
    onnx_path = Path(onnx_path)
    precision = check_precision(precision)
    if not onnx_path.is_file():
        raise ModelFormatError(f"ONNX model {onnx_path} does not exist; export one with 'edgeseg export CHECKPOINT'")
    engine_path = Path(engine_path) if engine_path is not None else engine_path_for(onnx_path, precision)
    if meta is None:
        meta = read_onnx_meta(onnx_path)

    trt = import_tensorrt()
    cudart = import_cudart()
    index = parse_device(device)
    cuda_check(cudart.cudaSetDevice(index), f"cudaSetDevice({index})")
    gpu = gpu_info(cudart, index)
    builder = EngineBuilder(workspace_gb=workspace_gb, verbose=verbose, trt=trt)
    log.info("TensorRT %s on %s (compute capability %s)", builder.version, gpu.name, gpu.compute_capability)

    plan = plan_build(precision, builder.caps, meta.precision, int8_target=meta.int8_target,
                      calibration=calibration is not None, onnx_name=str(onnx_path))
    log.info("plan: %s", plan.note)
    io = builder.parse(onnx_path, plan)
    inputs = [t for t in io if t.mode == "input"]
    if len(inputs) != 1:
        raise ExportError(f"{onnx_path} has {len(inputs)} inputs; edgeseg engines take one image input")
    profile = make_profile(inputs[0].name, inputs[0].shape, layout=meta.input_layout, imgsz=imgsz,
                           dynamic=dynamic, batch=batch, max_batch=max_batch, default_hw=meta.input_size)
    onnx_sha = sha256_file(onnx_path)
    cache_path = timing_cache_path(timing_cache, engine_path, builder.version, gpu.name, gpu.compute_capability)

    calibrator = None
    calib_cache = None
    if plan.use_calibrator:
        from .trt_calibrator import make_entropy_calibrator

        calib_cache = calibration_cache_path(engine_path, onnx_sha)
        calibrator = make_entropy_calibrator(calibration, calib_cache, trt=trt, cudart=cudart)
    try:
        if calibrator is not None:
            check_calibration_shape(calibrator.feed.batch_shape, profile)
        serialized = builder.build(plan, profile, timing_cache=cache_path, calibrator=calibrator)
    finally:
        if calibrator is not None:
            calibrator.free()

    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(serialized)
    engine_sha = sha256_file(engine_path)

    h_ax, w_ax = hw_axes(meta.input_layout, profile.opt)
    engine_meta = meta.with_(
        precision=precision,
        input_size=(profile.opt[h_ax], profile.opt[w_ax]),
        dynamic_hw=(profile.min[h_ax], profile.min[w_ax]) != (profile.max[h_ax], profile.max[w_ax]),
        dynamic_batch=profile.min[0] != profile.max[0],
        batch=profile.opt[0],
        edgeseg_version=meta.edgeseg_version or EDGESEG_VERSION,
    )
    build_facts = {
        "plan": plan.to_dict(),
        "workspace_gb": workspace_gb,
        "timing_cache": str(cache_path) if cache_path else None,
        "calibration_cache": str(calib_cache) if calib_cache else None,
        "device_index": index,
    }
    manifest = EngineManifest(
        trt_version=builder.version, gpu_name=gpu.name, compute_capability=gpu.compute_capability,
        precision=precision, profiles=(profile,), io=io, meta=engine_meta, source_onnx=str(onnx_path),
        source_checkpoint=str(checkpoint) if checkpoint is not None else "",
        source_onnx_sha256=onnx_sha, engine_sha256=engine_sha, built_at=utc_now(),
        edgeseg_version=EDGESEG_VERSION, build=build_facts,
    )
    manifest_file = write_manifest(engine_path, manifest)
    seconds = time.perf_counter() - started
    log.info("wrote %s (%.1f MB) and %s in %.1f s", engine_path, len(serialized) / 1e6, manifest_file.name, seconds)
    return {
        "engine": str(engine_path),
        "manifest": str(manifest_path(engine_path)),
        "onnx": str(onnx_path),
        "precision": precision,
        "size_bytes": len(serialized),
        "tensorrt": builder.version,
        "gpu": gpu.name,
        "compute_capability": gpu.compute_capability,
        "imgsz": format_hw(engine_meta.input_size),
        "profile": profile.to_dict(),
        "io": [t.to_dict() for t in io],
        "plan": plan.to_dict(),
        "timing_cache": build_facts["timing_cache"],
        "seconds": round(seconds, 3),
    }
