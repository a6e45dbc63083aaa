"""The JSON manifest that travels beside every TensorRT engine.

A serialized TensorRT engine is only valid for the TensorRT version and the GPU it was
built on, and it carries none of edgeseg's facts (classes, palette, mean/std). The
manifest records both, so the runtime can refuse a mismatched engine with a message
that says how to rebuild it, instead of failing inside ``deserialize_cuda_engine``.

Naming: ``x.fp16.engine`` -> ``x.fp16.engine.json`` (the engine's full name plus
``.json``). ``x.fp16.json`` is taken: the export writes the parity/accuracy report of
``x.fp16.onnx`` there, and the two must not overwrite each other.

This module imports neither tensorrt nor torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import EngineMismatchError, ModelFormatError
from .fileio import write_json
from .metadata import PRECISIONS, ModelMeta
from .sizes import format_hw

MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".json"
ENGINE_SUFFIXES = (".engine", ".plan")


def manifest_path(engine_path: str | os.PathLike) -> Path:
    """``x.fp16.engine`` -> ``x.fp16.engine.json``."""
    p = Path(engine_path)
    return p.with_name(p.name + MANIFEST_SUFFIX)


# -- TensorRT versions ------------------------------------------------------------------------------
@dataclass(frozen=True, order=True)
class TrtVersion:
    """A TensorRT version such as ``10.3.0.30`` (major.minor.patch[.build])."""

    major: int
    minor: int = 0
    patch: int = 0
    build: int | None = None  # None: not known (e.g. "10.3" given by hand)

    @classmethod
    def parse(cls, text: str | TrtVersion) -> TrtVersion:
        if isinstance(text, TrtVersion):
            return text
        # tensorrt.__version__ looks like "10.3.0" or "10.3.0.30"; tolerate suffixes like "10.8.0.43+cuda12.8".
        m = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:\.(\d+))?", str(text))
        if not m:
            raise ModelFormatError(f"TensorRT version {text!r} is not a version; expected e.g. '10.3.0'")
        major, minor, patch, build = m.groups()
        return cls(int(major), int(minor or 0), int(patch or 0), int(build) if build else None)

    def same_release(self, other: TrtVersion) -> bool:
        """True when an engine built by one can be deserialised by the other.

        NVIDIA's support policy: plans (and timing caches) need major, minor, patch and build
        to match. A build number that one side does not know is not held against it.
        """
        if (self.major, self.minor, self.patch) != (other.major, other.minor, other.patch):
            return False
        return self.build is None or other.build is None or self.build == other.build

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return base if self.build is None else f"{base}.{self.build}"


def format_compute_capability(cc: str | Sequence[int] | float) -> str:
    """``(8, 7)``, ``"8.7"``, ``"sm_87"`` or ``8.7`` -> ``"8.7"``."""
    if isinstance(cc, str):
        text = cc.strip().lower().removeprefix("sm_").removeprefix("sm")
        if re.fullmatch(r"\d+\.\d+", text):
            return text
        if re.fullmatch(r"\d{2,3}", text):  # "87" -> "8.7", "100" -> "10.0"
            return f"{text[:-1]}.{text[-1]}"
        raise ModelFormatError(f"compute capability {cc!r} is not like '8.7'")
    if isinstance(cc, (int, float)):
        return f"{float(cc):.1f}"
    major, minor = cc
    return f"{int(major)}.{int(minor)}"


# -- pieces of the manifest -------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """One engine input or output as TensorRT reports it (``-1`` marks a dynamic dimension)."""

    name: str
    mode: str  # "input" or "output"
    shape: tuple[int, ...]
    dtype: str  # numpy name: "float32", "float16", "uint8", "int32", "int64", ...

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorInfo:
        mode = str(d["mode"])
        if mode not in ("input", "output"):
            raise ValueError(f"tensor mode {mode!r} is neither 'input' nor 'output'")
        return cls(str(d["name"]), mode, tuple(int(v) for v in d["shape"]), str(d["dtype"]))


@dataclass(frozen=True)
class Profile:
    """One optimisation profile for one input: the shapes TensorRT tuned for and accepts."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError(f"profile for {self.input!r} mixes ranks: {self.min} / {self.opt} / {self.max}")
        for lo, mid, hi in zip(self.min, self.opt, self.max, strict=True):
            if not (0 < lo <= mid <= hi):
                raise ValueError(f"profile for {self.input!r} needs 0 < min <= opt <= max, got "
                                 f"{self.min} / {self.opt} / {self.max}")

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= int(s) <= hi for s, lo, hi in zip(shape, self.min, self.max, strict=True))

    def describe(self) -> str:
        if self.is_static:
            return "x".join(map(str, self.min))
        return f"min {tuple(self.min)}, opt {tuple(self.opt)}, max {tuple(self.max)}"

    def to_dict(self) -> dict[str, Any]:
        return {"input": self.input, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        return cls(str(d["input"]), *(tuple(int(v) for v in d[k]) for k in ("min", "opt", "max")))


@dataclass(frozen=True)
class EngineManifest:
    """Everything the runtime needs to trust, load and use one engine file."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"
    precision: str  # "fp32" | "fp16" | "int8"
    profiles: tuple[Profile, ...]
    io: tuple[TensorInfo, ...]
    meta: ModelMeta  # classes, palette, mean/std, layout, output kind (edgeseg's facts)
    source_onnx: str = ""  # path of the ONNX the engine was built from, as given at build time
    source_checkpoint: str = ""  # the .pt the ONNX came from, when the exporter knows it (for rebuilding)
    source_onnx_sha256: str = ""
    engine_sha256: str = ""
    built_at: str = ""  # ISO 8601, UTC
    edgeseg_version: str = ""
    build: Mapping[str, Any] = field(default_factory=dict)  # flags, workspace, timing cache: for people

    @property
    def inputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.io if t.mode == "input")

    @property
    def outputs(self) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.io if t.mode == "output")

    def profile_for(self, input_name: str) -> Profile | None:
        return next((p for p in self.profiles if p.input == input_name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest_version": MANIFEST_VERSION,
            "tensorrt_version": self.trt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "precision": self.precision,
            "profiles": [p.to_dict() for p in self.profiles],
            "io": [t.to_dict() for t in self.io],
            "meta": self.meta.to_dict(),
            "source_onnx": self.source_onnx,
            "source_checkpoint": self.source_checkpoint,
            "source_onnx_sha256": self.source_onnx_sha256,
            "engine_sha256": self.engine_sha256,
            "built_at": self.built_at,
            "edgeseg_version": self.edgeseg_version,
            "build": dict(self.build),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "engine manifest") -> EngineManifest:
        version = d.get("manifest_version")
        if version != MANIFEST_VERSION:
            raise ModelFormatError(f"{source} has manifest version {version!r}; this edgeseg reads version "
                                   f"{MANIFEST_VERSION}: rebuild the engine with this edgeseg")
        try:
            meta = ModelMeta.from_dict(d["meta"], source)
            precision = str(d["precision"])
            if precision not in PRECISIONS:
                raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
            return cls(
                trt_version=str(TrtVersion.parse(str(d["tensorrt_version"]))),
                gpu_name=str(d["gpu_name"]),
                compute_capability=format_compute_capability(str(d["compute_capability"])),
                precision=precision,
                profiles=tuple(Profile.from_dict(p) for p in d["profiles"]),
                io=tuple(TensorInfo.from_dict(t) for t in d["io"]),
                meta=meta,
                source_onnx=str(d.get("source_onnx", "")),
                source_checkpoint=str(d.get("source_checkpoint", "")),
                source_onnx_sha256=str(d.get("source_onnx_sha256", "")),
                engine_sha256=str(d.get("engine_sha256", "")),
                built_at=str(d.get("built_at", "")),
                edgeseg_version=str(d.get("edgeseg_version", "")),
                build=dict(d.get("build") or {}),
            )
        except ModelFormatError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFormatError(f"{source} is incomplete or malformed ({e}); rebuild the engine") from None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


# -- files ------------------------------------------------------------------------------------------
def write_manifest(engine_path: str | os.PathLike, manifest: EngineManifest) -> Path:
    """Write ``manifest`` beside ``engine_path`` atomically; returns the manifest's path."""
    return write_json(manifest_path(engine_path), manifest.to_dict())


def read_manifest(engine_path: str | os.PathLike) -> EngineManifest:
    """Read the manifest beside ``engine_path``; a missing or broken one is a :class:`ModelFormatError`."""
    engine = Path(engine_path)
    path = manifest_path(engine)
    if not path.is_file():
        raise ModelFormatError(
            f"{engine} has no manifest {path.name} beside it (edgeseg needs it for the classes and the "
            f"GPU/TensorRT check); rebuild the engine with: {rebuild_command_for(engine)}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path} is not a readable JSON manifest ({e}); rebuild the engine with: "
                               f"{rebuild_command_for(engine)}") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} is not an edgeseg engine manifest; rebuild the engine with: "
                               f"{rebuild_command_for(engine)}")
    return EngineManifest.from_dict(data, str(path))


# -- the check --------------------------------------------------------------------------------------
def _norm_gpu(name: str) -> str:
    return " ".join(name.lower().split())


def _engine_base(engine_path: str | os.PathLike) -> Path:
    """``dir/x.fp16.engine`` -> ``dir/x`` (the base name ``edgeseg export`` gives its artifacts)."""
    p = Path(engine_path)
    stem = p.name
    for suffix in ENGINE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    for precision in PRECISIONS:
        stem = stem.removesuffix("." + precision)
    return p.with_name(stem)


def _checkpoint_for(recorded: str, engine_path: str | os.PathLike | None) -> str:
    """The checkpoint to rebuild from: the recorded one, else ``x.pt`` beside the engine, else ''."""
    if recorded and Path(recorded).is_file():
        return recorded
    if engine_path is not None:
        base = _engine_base(engine_path)
        beside = base.with_name(base.name + ".pt")  # not with_suffix: "model_v1.5" must not become "model_v1.pt"
        if beside.is_file():
            return str(beside)
    return recorded


def _export_command(checkpoint: str, precision: str, extra: list[str], onnx_name: str) -> str:
    parts = ["edgeseg", "export", _quote(checkpoint or "CHECKPOINT"), "--format", "engine", "--precision", precision]
    text = " ".join(parts + extra)
    if not checkpoint:
        text += f" (CHECKPOINT: the .pt that {onnx_name} was exported from)"
    return text


def rebuild_command(manifest: EngineManifest, engine_path: str | os.PathLike | None = None) -> str:
    """The ``edgeseg export`` command line that rebuilds this engine on the current machine."""
    extra: list[str] = []
    profile = manifest.profiles[0] if manifest.profiles else None
    if profile is not None and len(profile.opt) == 4:
        hw_axes = (1, 2) if manifest.meta.input_layout == "NHWC_BGR_U8" else (2, 3)
        extra += ["--imgsz", format_hw((profile.opt[hw_axes[0]], profile.opt[hw_axes[1]]))]
        if not profile.is_static:
            extra.append("--dynamic")
        if profile.opt[0] != 1:
            extra += ["--batch", str(profile.opt[0])]
    if manifest.meta.input_layout == "NHWC_BGR_U8":
        extra.append("--fuse-preprocess")
    if manifest.meta.output_kind == "class_map":
        extra.append("--fuse-argmax")
    if manifest.meta.output_stride > 1:
        extra += ["--output-stride", str(manifest.meta.output_stride)]
    if engine_path is not None:
        extra += ["--out", _quote(str(engine_path))]
    onnx_name = Path(manifest.source_onnx).name or "the ONNX"
    return _export_command(_checkpoint_for(manifest.source_checkpoint, engine_path), manifest.precision, extra,
                           onnx_name)


def rebuild_command_for(engine_path: str | os.PathLike) -> str:
    """Best rebuild command when there is no manifest: the precision comes from the engine's name."""
    engine = Path(engine_path)
    stem = engine.name
    for suffix in ENGINE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    precision = next((p for p in PRECISIONS if stem.endswith("." + p)), "fp16")
    base = _engine_base(engine)
    return _export_command(_checkpoint_for("", engine), precision, ["--out", _quote(str(engine))],
                           base.name + ".onnx")


def _quote(text: str) -> str:
    return f'"{text}"' if any(c.isspace() for c in text) else text


def check_manifest(
    manifest: EngineManifest,
    trt_version: str | TrtVersion,
    gpu_name: str,
    compute_capability: str | Sequence[int],
    *,
    engine_path: str | os.PathLike | None = None,
    strict_gpu_name: bool = True,
) -> None:
    """Refuse an engine built for another TensorRT release or GPU.

    Raises :class:`EngineMismatchError` whose message names both sides and gives the
    ``edgeseg export`` command that rebuilds the engine here. With ``strict_gpu_name=False`` a
    different GPU model of the same compute capability is accepted (TensorRT may still run
    such an engine, but its kernels were tuned for the other GPU).
    """
    here_trt = TrtVersion.parse(trt_version)
    built_trt = TrtVersion.parse(manifest.trt_version)
    here_cc = format_compute_capability(compute_capability)
    problems = []
    if not built_trt.same_release(here_trt):
        problems.append(f"TensorRT {built_trt} (this machine has {here_trt})")
    if manifest.compute_capability != here_cc:
        problems.append(f"compute capability {manifest.compute_capability} (this GPU is {here_cc})")
    elif strict_gpu_name and _norm_gpu(manifest.gpu_name) != _norm_gpu(gpu_name):
        problems.append(f"GPU {manifest.gpu_name!r} (this GPU is {gpu_name!r})")
    if problems:
        name = str(engine_path) if engine_path is not None else "this engine"
        raise EngineMismatchError(
            f"{name} was built for {' and '.join(problems)}; TensorRT engines only run on the release "
            f"and GPU they were built for, so rebuild it here: {rebuild_command(manifest, engine_path)}")
