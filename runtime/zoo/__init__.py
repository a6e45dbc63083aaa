"""Bundled pretrained models, resolvable by short name.

A short name is a bundled file's name without ``.onnx``: ``camvid-unet-lite`` is
``camvid-unet-lite.onnx`` (FP32), ``camvid-unet-lite.int8`` its INT8 twin. The files ship
as package data beside this module, so ``Segmenter("camvid-unet-lite")`` works after a
plain ``pip install edgeseg`` without downloads.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError, unknown_name

ZOO_DIR = Path(__file__).resolve().parent
SUFFIX = ".onnx"
# The default of `predict` and `demo`: the fastest bundled file that keeps the FP32 model's accuracy
# (docs/benchmarks.md#bundled-models). The stride-2 twin is faster still but draws blockier edges.
DEFAULT_MODEL = "camvid-unet-lite.int8"


def list_models(root: Path | None = None) -> list[str]:
    """Short names of the bundled models, sorted."""
    folder = root or ZOO_DIR
    return sorted(p.name[: -len(SUFFIX)] for p in folder.glob(f"*{SUFFIX}") if p.is_file())


def resolve(name: str, root: Path | None = None) -> Path:
    """Short name -> bundled file path; unknown names raise a UsageError with close matches."""
    folder = root or ZOO_DIR
    key = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    path = folder / f"{key}{SUFFIX}"
    if path.is_file():
        return path
    names = list_models(folder)
    if not names:
        raise ModelFormatError(f"model {name!r} is neither an existing file nor a bundled model "
                               f"(no bundled models in {folder}); give the path to a .onnx, .engine or .pt file")
    err = unknown_name("model", name, names)
    raise type(err)(f"{err}; or give the path to a .onnx, .engine or .pt file") from None


def describe_models(root: Path | None = None) -> list[dict]:
    """One row per bundled model: name, file, size, precision, input size, output stride, classes and
    the validation mIoU recorded in ``index.json`` (its model card has the details)."""
    import json

    import onnxruntime as ort

    from ..metadata import ModelMeta

    folder = root or ZOO_DIR
    index_file = folder / "index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only
    rows = []
    for name in list_models(folder):
        path = folder / f"{name}{SUFFIX}"
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        meta = ModelMeta.from_props(session.get_modelmeta().custom_metadata_map, source=str(path))
        entry = index.get(name, {})
        rows.append({"name": name, "file": path.name, "size_mb": round(path.stat().st_size / 1e6, 1),
                     "precision": meta.precision, "input_size": list(meta.input_size or ()),
                     "output_stride": meta.output_stride, "classes": len(meta.classes),
                     "miou": entry.get("miou"), "miou_split": entry.get("split"),
                     "default": name == DEFAULT_MODEL})
    return rows
