"""Bundled pretrained models, resolvable by short name.

A short name is a bundled file's name without ``.onnx`` (or ``.xml`` for an OpenVINO IR, whose
weights sit beside it in ``.bin``): ``camvid-unet-lite`` is ``camvid-unet-lite.onnx`` (FP32),
``camvid-unet-lite.int8`` its INT8 twin, ``camvid-unet-lite-s2.int8.ov`` the OpenVINO INT8 flavour.
The files ship as package data beside this module, so ``Segmenter("camvid-unet-lite")`` works after
a plain ``pip install edgeseg`` without downloads.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelFormatError, unknown_name

ZOO_DIR = Path(__file__).resolve().parent
SUFFIX = ".onnx"
SUFFIXES = (SUFFIX, ".xml")  # ONNX, OpenVINO IR
# The default of `predict` and `demo`: the fastest bundled file that keeps the FP32 model's accuracy
# (docs/benchmarks.md#bundled-models). The stride-2 twin is faster still but draws blockier edges.
DEFAULT_MODEL = "camvid-unet-lite.int8"


def _files(folder: Path) -> dict[str, Path]:
    """Short name -> file, for every bundled model in ``folder`` (an IR counts only with its weights)."""
    out = {}
    for suffix in SUFFIXES:
        for p in folder.glob(f"*{suffix}"):
            if p.is_file() and (suffix != ".xml" or p.with_suffix(".bin").is_file()):
                out[p.name[: -len(suffix)]] = p
    return out


def list_models(root: Path | None = None) -> list[str]:
    """Short names of the bundled models, sorted."""
    return sorted(_files(root or ZOO_DIR))


def resolve(name: str, root: Path | None = None) -> Path:
    """Short name (or a bundled file's name) -> its path; unknown names raise a UsageError with close matches."""
    folder = root or ZOO_DIR
    files = _files(folder)
    key = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s)), name)
    if key in files:
        return files[key]
    names = sorted(files)
    if not names:
        raise ModelFormatError(f"model {name!r} is neither an existing file nor a bundled model "
                               f"(no bundled models in {folder}); give the path to a .onnx, .engine or .pt file")
    err = unknown_name("model", name, names)
    raise type(err)(f"{err}; or give the path to a .onnx, .engine or .pt file") from None


def _props(path: Path) -> dict[str, str]:
    """edgeseg metadata of a bundled file, read without running it (no OpenVINO needed for an IR)."""
    if path.suffix == ".xml":
        import xml.etree.ElementTree as ET  # noqa: N817 - a bundled, trusted file

        from ..metadata import PREFIX

        section = ET.parse(path).getroot().find("rt_info/edgeseg")
        return {} if section is None else {PREFIX + e.tag: e.get("value", "") for e in section}
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map


def describe_models(root: Path | None = None) -> list[dict]:
    """One row per bundled model: name, file, size, precision, input size, output stride, classes and
    the validation mIoU recorded in ``index.json`` (its model card has the details)."""
    import json

    from ..metadata import ModelMeta

    folder = root or ZOO_DIR
    index_file = folder / "index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else {}
    rows = []
    for name, path in sorted(_files(folder).items()):
        meta = ModelMeta.from_props(_props(path), source=str(path))
        entry = index.get(name, {})
        size = path.stat().st_size + (path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0)
        rows.append({"name": name, "file": path.name, "size_mb": round(size / 1e6, 1),
                     "precision": meta.precision, "int8_target": meta.int8_target or None,
                     "input_size": list(meta.input_size or ()), "output_stride": meta.output_stride,
                     "classes": len(meta.classes), "miou": entry.get("miou"), "miou_split": entry.get("split"),
                     "default": name == DEFAULT_MODEL})
    return rows
