"""The one interface every inference backend implements.

A backend owns a loaded artifact and runs it on already pre-processed batches; the
:class:`~edgeseg.runtime.segmenter.Segmenter` does pre- and post-processing around it.
Each backend lives in its own file and imports its heavy package (onnxruntime,
tensorrt + cuda-python, torch) only when it is constructed.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import ModelFormatError
from ..metadata import LAYOUT_FLOAT, LAYOUT_UINT8, OUTPUT_CLASS_MAP, OUTPUT_LOGITS, ModelMeta, default_palette


class Backend(abc.ABC):
    #: short name shown in ``seg.info`` and ``edgeseg bench`` ("onnxruntime", "tensorrt", "pytorch").
    name: ClassVar[str]
    #: whether ``infer`` may run in several threads at once (the pipeline's ``workers``); a
    #: backend that reuses one execution context or set of buffers across calls says False.
    concurrent_runs: ClassVar[bool] = False
    #: whether ``infer`` returns a new array each call (a Result may then keep the logits without a copy).
    fresh_outputs: ClassVar[bool] = False

    def __init__(self, path: str | Path, device: str = "cpu", **options: Any) -> None:
        self.path = Path(path)
        self.device = device
        self.options = options
        #: read from the artifact itself (ONNX metadata_props, engine manifest, checkpoint).
        self.meta: ModelMeta
        #: input shape as the artifact declares it; ``None`` for dynamic dimensions.
        self.input_shape: tuple[int | None, ...]

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch.

        ``batch`` is laid out as ``meta.input_layout`` says: float32 (N, 3, H, W) normalised,
        or uint8 (N, H, W, 3) BGR for fused pre-processing. Returns, per ``meta.output_kind``,
        float32 logits (N, C, H, W) (uint8 when ``meta.output_quant`` says they are quantized) or a
        uint8 class map (N, H, W). The returned array may be
        a reused buffer: copy it if you keep it past the next call.
        """

    def describe(self) -> dict[str, Any]:
        """Facts for ``seg.info`` / ``edgeseg info``: providers, device, library versions."""
        return {"backend": self.name, "device": self.device, "path": str(self.path)}

    def close(self) -> None:  # noqa: B027 - optional hook: backends without resources keep this no-op
        """Release device memory and sessions; safe to call twice."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_meta(props: dict[str, str], path: Path, io_facts: dict[str, Any], *,
              classes: Sequence[str] | None = None, palette: Sequence[Sequence[int]] | None = None,
              mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> ModelMeta:
    """The artifact's metadata, with hand-given ``classes`` (+ ``palette``, ``mean``, ``std``) overriding it.

    Without ``classes`` the edgeseg metadata in ``props`` must be there (the error says how to fix it).
    With them, a model without metadata gets the rest from ``io_facts`` (:func:`io_facts`).
    """
    if classes is None:
        return ModelMeta.from_props(props, source=str(path))  # raises with the how-to-fix line
    manual: dict[str, Any] = {"classes": tuple(str(c) for c in classes)}
    manual["palette"] = (tuple(tuple(int(v) for v in c) for c in palette) if palette is not None
                         else default_palette(len(manual["classes"])))
    if mean is not None:
        manual["mean"] = tuple(float(v) for v in mean)
    if std is not None:
        manual["std"] = tuple(float(v) for v in std)
    try:
        base = ModelMeta.from_props(props, source=str(path))
    except ModelFormatError:
        base = None
    try:
        if base is not None:  # metadata present: the hand-given facts override it
            return base.with_(**manual)
        return ModelMeta(**manual, **io_facts)
    except ModelFormatError as e:
        raise ModelFormatError(f"{path}: {e}") from None


def io_facts(input_shape: tuple[int | None, ...], input_dtype: np.dtype,
             output_shape: tuple[int | None, ...]) -> dict[str, Any]:
    """What a plain model tells about itself through its 4-D input and its output declarations."""
    fused = input_dtype == np.uint8
    n, *rest = input_shape
    hw = (rest[0], rest[1]) if fused else (rest[1], rest[2])
    return {
        "input_layout": LAYOUT_UINT8 if fused else LAYOUT_FLOAT,
        "output_kind": OUTPUT_CLASS_MAP if len(output_shape) == 3 else OUTPUT_LOGITS,
        "input_size": (hw[0], hw[1]) if None not in hw else None,
        "dynamic_hw": None in hw,
        "dynamic_batch": n is None,
        "batch": n or 1,
    }


def as_float_logits(out: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """A backend's raw output in the dtype ``infer`` promises: float32 logits unless quantized."""
    if meta.output_kind == OUTPUT_LOGITS and out.dtype != np.float32 and meta.output_quant is None:
        return out.astype(np.float32)  # (N, C, H, W); quantized uint8 logits stay uint8 for the argmax
    return out
