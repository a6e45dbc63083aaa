"""ONNX files without torch: load, save (atomically), edgeseg metadata, one ONNX Runtime run, opset checks and
onnxslim simplification. Used by the export from PyTorch and by the torch-free paths (FP16, INT8, and a
segmentation ONNX brought from elsewhere)."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeseg import __version__
from edgeseg.runtime.errors import ModelFormatError, UsageError
from edgeseg.runtime.fileio import atomic_path
from edgeseg.runtime.metadata import ModelMeta

log = logging.getLogger("edgeseg.export")

DEFAULT_OPSET = 18  # the dynamo exporter's native opset; >= 17 as the design asks
MIN_OPSET = 17


@functools.cache
def newest_opset() -> int:
    """The newest ai.onnx opset that both the installed onnx and ONNX Runtime support.

    Every export is checked in ONNX Runtime, so a newer opset (which the exporters would write
    anyway, or silently replace by their own) could never pass. Found by loading a one-node model.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    for version in range(onnx.defs.onnx_opset_version(), MIN_OPSET, -1):
        ops = [helper.make_opsetid("", version)]
        try:
            probe = helper.make_model(graph, opset_imports=ops, ir_version=helper.find_min_ir_version_for(ops))
            ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        except Exception:  # ONNX Runtime raises its own Fail type for an opset (or IR version) it does not know
            continue
        return version
    return MIN_OPSET


def check_opset(opset: int) -> int:
    """``opset`` when edgeseg can export and check it; a UsageError naming the supported range otherwise."""
    newest = newest_opset()
    if not MIN_OPSET <= opset <= newest:
        raise UsageError(f"--opset {opset} is not supported: choose {MIN_OPSET} to {newest} (the newest the "
                         f"installed ONNX Runtime loads; default {DEFAULT_OPSET})")
    return opset


def opset_of(proto: onnx.ModelProto) -> int | None:
    """The ai.onnx opset a model imports (None when it imports none)."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)



@contextlib.contextmanager
def quiet() -> Any:
    """Silence exporter chatter (progress prints, deprecation warnings, torchvision notices)."""
    # torch logs a failed trace at ERROR before raising; the fallback below reports it in one line.
    loggers = [logging.getLogger(n) for n in ("torch", "torch.onnx", "torch.export", "torch._dynamo", "torch._guards",
                                              "torch.fx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)



def simplify_onnx(proto: onnx.ModelProto, example: np.ndarray) -> tuple[onnx.ModelProto, str]:
    """Simplify with onnxslim, keeping the result only if ONNX Runtime gives the same outputs.

    Returns ``(model, note)``; ``note`` says what happened (``"onnxslim"`` or why it was skipped).
    """
    try:
        import onnxslim
    except ImportError:
        return proto, "skipped: onnxslim not installed"
    try:
        with quiet():
            slim = onnxslim.slim(onnx.ModelProto.FromString(proto.SerializeToString()))
    except Exception as e:  # a simplifier bug must not break the export
        return proto, f"skipped: onnxslim failed ({type(e).__name__})"
    if slim is None:
        return proto, "skipped: onnxslim returned nothing"
    try:
        before = run_onnx(proto, example)
        after = run_onnx(slim, example)
    except Exception as e:
        return proto, f"skipped: simplified model does not run ({type(e).__name__})"
    if before.dtype != after.dtype or before.shape != after.shape:
        return proto, "skipped: onnxslim changed the output type or shape"
    if before.dtype.kind in "iu":
        same = np.array_equal(before, after)
    else:
        same = bool(np.allclose(before, after, rtol=1e-4, atol=1e-4))
    if not same:
        return proto, "skipped: onnxslim changed the results"
    return slim, "onnxslim"


def run_onnx(proto_or_path: onnx.ModelProto | str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """One ONNX Runtime CPU run (single output) of a model held in memory or on disk."""
    import onnxruntime as ort

    src = proto_or_path.SerializeToString() if isinstance(proto_or_path, onnx.ModelProto) else str(proto_or_path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


# -- metadata and files ---------------------------------------------------------------------------

def set_meta(proto: onnx.ModelProto, meta: ModelMeta) -> None:
    """Replace all ``edgeseg.*`` metadata_props with ``meta`` (other keys are kept)."""
    keep = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith("edgeseg.")]
    del proto.metadata_props[:]
    for k, v in keep + list(meta.to_props().items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "edgeseg"
    proto.producer_version = __version__


def get_meta(proto: onnx.ModelProto, source: str = "model") -> ModelMeta:
    return ModelMeta.from_props({p.key: p.value for p in proto.metadata_props}, source)


def load_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file; a missing or corrupt file raises ModelFormatError with the path."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f"ONNX model {path} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ModelFormatError(f"{path} is not a readable ONNX model ({type(e).__name__}); "
                               "re-export it with 'edgeseg export'") from None
    if not proto.graph.node:
        raise ModelFormatError(f"{path} is not a valid ONNX model (empty graph); re-export it with 'edgeseg export'")
    return proto


def read_meta(path: str | os.PathLike) -> ModelMeta:
    return get_meta(load_onnx(path), str(path))


def save_onnx(proto: onnx.ModelProto, out: str | os.PathLike) -> Path:
    """Write atomically: temp file beside ``out``, renamed only when complete."""
    out = Path(out)
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out
