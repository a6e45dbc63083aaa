"""A model repository for NVIDIA Triton Inference Server from an edgeseg artifact.

    repo/<name>/config.pbtxt       platform, batching, input/output names, data types and dims
    repo/<name>/labels.txt         one class name per line: class id = line number (label_filename)
    repo/<name>/1/model.onnx       the artifact (model.plan for a TensorRT engine)

From a checkpoint the ONNX is exported in the form clients can use without edgeseg: a uint8 BGR
frame in (``--fuse-preprocess``), a uint8 class map out (``--fuse-argmax``), dynamic batch, height
and width, so Triton's dynamic batcher can group frames. An existing ``.onnx`` or ``.engine``
is written as it is, with its tensors read from the file (ONNX) or its manifest (engine).

The config follows Triton's ``ModelConfig`` schema (``model_config.proto``); the tests parse it
with Triton's own protobuf classes. Serving the repository (``tritonserver --model-repository
repo``) has not run here: these machines have no container runtime and no GPU.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeseg.runtime.errors import ModelFormatError, UsageError
from edgeseg.runtime.fileio import FILE_MODE
from edgeseg.runtime.metadata import ModelMeta

# numpy dtype name -> Triton data type (model_config.proto, DataType)
TRITON_TYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
                "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
                "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64"}
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".engine": ("tensorrt_plan", "model.plan"),
             ".plan": ("tensorrt_plan", "model.plan")}
LABELS_FILE = "labels.txt"
DEFAULT_MAX_BATCH = 8
MAX_BATCH_LIMIT = 1024
QUEUE_DELAY_US = 2000  # how long the batcher waits to fill a preferred batch: ~1/20 of a 30 FPS frame interval
NAME_RE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Tensor:
    """One model input or output: name, numpy dtype name, shape with -1 for a dynamic dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]


def model_name(path: str | os.PathLike) -> str:
    """``camvid.fp16.onnx`` -> ``camvid_fp16``: a name Triton accepts as a folder and in URLs."""
    stem = Path(path).name
    for suffix in PLATFORMS:
        stem = stem.removesuffix(suffix)
    return NAME_RE.sub("_", stem).strip("_") or "model"


def onnx_tensors(path: Path) -> tuple[list[Tensor], list[Tensor], ModelMeta]:
    import onnx

    from .onnx_io import get_meta, load_onnx

    proto = load_onnx(path)
    weights = {init.name for init in proto.graph.initializer}

    def tensor(v: Any) -> Tensor:
        t = v.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        return Tensor(v.name, onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims)

    inputs = [tensor(v) for v in proto.graph.input if v.name not in weights]
    return inputs, [tensor(v) for v in proto.graph.output], get_meta(proto, str(path))


def engine_tensors(path: Path) -> tuple[list[Tensor], list[Tensor], ModelMeta]:
    from edgeseg.runtime.manifest import read_manifest

    m = read_manifest(path)
    return ([Tensor(t.name, t.dtype, t.shape) for t in m.inputs], [Tensor(t.name, t.dtype, t.shape) for t in m.outputs],
            m.meta)


def _dims(shape: Sequence[int]) -> str:
    return "[ " + ", ".join(str(d) for d in shape) + " ]"


def _triton_type(t: Tensor, model: Path) -> str:
    if t.dtype not in TRITON_TYPES:
        raise ModelFormatError(f"{model}: tensor {t.name!r} has type {t.dtype}, which Triton has no type for")
    return TRITON_TYPES[t.dtype]


def batching(inputs: Sequence[Tensor], outputs: Sequence[Tensor], max_batch_size: int) -> int:
    """Triton's ``max_batch_size``: ``max_batch_size`` when every tensor's first dim is a dynamic
    batch, else 0 (Triton then sees the full shapes and cannot batch)."""
    dynamic = all(t.shape and t.shape[0] == -1 for t in (*inputs, *outputs))
    return max_batch_size if dynamic else 0


def config_text(name: str, platform: str, inputs: Sequence[Tensor], outputs: Sequence[Tensor], meta: ModelMeta,
                max_batch_size: int, model: Path) -> str:
    """``config.pbtxt`` in protobuf text format."""
    strip = 1 if max_batch_size else 0  # with batching, dims leave out the batch dimension
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {max_batch_size}"]
    for kind, tensors in (("input", inputs), ("output", outputs)):
        for t in tensors:
            lines += [f"{kind} [", "  {", f'    name: "{t.name}"', f"    data_type: {_triton_type(t, model)}",
                      f"    dims: {_dims(t.shape[strip:])}"]
            if kind == "output" and meta.output_kind == "class_map":
                lines.append(f'    label_filename: "{LABELS_FILE}"')
            lines += ["  }", "]"]
    if max_batch_size:
        preferred = [b for b in (2, 4, 8, 16, 32, 64) if b <= max_batch_size] or [max_batch_size]
        lines += ["dynamic_batching {", f"  preferred_batch_size: {_dims(preferred)}",
                  f"  max_queue_delay_microseconds: {QUEUE_DELAY_US}", "}"]
    # What a client needs when the graph does not do it (float input: x = (rgb / 255 - mean) / std).
    params = {"edgeseg.input_layout": meta.input_layout, "edgeseg.output_kind": meta.output_kind,
              "edgeseg.output_stride": str(meta.output_stride), "edgeseg.precision": meta.precision,
              "edgeseg.mean": ",".join(f"{v:g}" for v in meta.mean), "edgeseg.std": ",".join(f"{v:g}" for v in meta.std)}
    for key, value in params.items():
        lines += ["parameters {", f'  key: "{key}"', f'  value: {{ string_value: "{value}" }}', "}"]
    return "\n".join(lines) + "\n"


def write_repository(model: str | os.PathLike, repo: str | os.PathLike, name: str | None = None,
                     max_batch_size: int = DEFAULT_MAX_BATCH) -> Path:
    """Write ``repo/<name>/`` for an edgeseg ``.onnx`` or ``.engine``; returns that folder.

    The entry is assembled in a hidden folder and renamed into place whole; an existing entry is
    never replaced (remove it, or pass another ``name``).
    """
    model = Path(model)
    suffix = model.suffix.lower()
    if suffix not in PLATFORMS:
        raise UsageError(f"{model} is not an .onnx or .engine/.plan file; a Triton repository holds one of those")
    if not model.is_file():
        raise UsageError(f"{model} does not exist")
    if not 1 <= max_batch_size <= MAX_BATCH_LIMIT:
        raise UsageError(f"max batch size {max_batch_size} must be between 1 and {MAX_BATCH_LIMIT}")
    name = name or model_name(model)
    entry = Path(repo) / name
    check_free(entry)
    inputs, outputs, meta = onnx_tensors(model) if suffix == ".onnx" else engine_tensors(model)
    platform, file_name = PLATFORMS[suffix]
    text = config_text(name, platform, inputs, outputs, meta, batching(inputs, outputs, max_batch_size), model)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=entry.parent))
    try:
        (tmp / "1").mkdir()
        shutil.copyfile(model, tmp / "1" / file_name)
        (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
        (tmp / LABELS_FILE).write_text("".join(c + "\n" for c in meta.classes), encoding="utf-8")
        for p in (tmp / "1" / file_name, tmp / "config.pbtxt", tmp / LABELS_FILE):
            os.chmod(p, FILE_MODE)
        os.chmod(tmp, 0o777 & ~(0o666 & ~FILE_MODE))  # mkdtemp makes 0700; a folder gets the usual mode
        check_free(entry)
        os.rename(tmp, entry)  # a folder that appeared meanwhile makes this fail rather than be replaced
    except OSError as e:
        raise UsageError(f"cannot write {entry}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return entry


def check_free(entry: Path) -> None:
    """UsageError when ``entry`` cannot be written: it exists, or the repository is not a folder."""
    repo = entry.parent
    if repo.exists() and not repo.is_dir():
        raise UsageError(f"--out {repo} is a file; a Triton model repository is a folder (e.g. --out triton_repo/)")
    if entry.exists():
        raise UsageError(f"{entry} already exists in the Triton repository; remove it or write to another --out "
                         "(an existing model is never replaced)")

