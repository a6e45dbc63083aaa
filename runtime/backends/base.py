"""The one interface every inference backend implements.

A backend owns a loaded artifact and runs it on already pre-processed batches; the
:class:`~edgeseg.runtime.segmenter.Segmenter` does pre- and post-processing around it.
Each backend lives in its own file and imports its heavy package (onnxruntime,
tensorrt + cuda-python, torch) only when it is constructed.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..metadata import ModelMeta


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
