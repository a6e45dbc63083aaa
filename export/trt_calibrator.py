"""Legacy INT8 entropy calibrator for TensorRT <= 10 (implicit quantization).

TensorRT 11 removed ``IInt8Calibrator`` together with implicit quantization; there INT8 engines
come from a Q/DQ ONNX (see ``engine_plan.plan_build``). On TensorRT 10 (deprecated since 10.1,
still present) and on older Jetson images this calibrator feeds TensorRT the same preprocessed
float32 NCHW batches that the export's calibration reader yields, and reads/writes TensorRT's
calibration cache file so a rebuild skips calibration.

The ``IInt8EntropyCalibrator2`` subclass is created on first use, so importing this module
never needs tensorrt. NOT RUN ON REAL TENSORRT (no GPU where it was written).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeseg.runtime.backends.trt import cuda_check, import_cudart, import_tensorrt
from edgeseg.runtime.errors import ExportError
from edgeseg.runtime.fileio import atomic_open

from .engine_plan import capabilities

log = logging.getLogger(__name__)

_CLASSES: dict[type, type] = {}  # TensorRT base class -> our subclass (keyed by the class: ids get reused)


class _BatchFeed:
    """The TensorRT-independent half: checks batches, copies them to one device buffer, owns the cache."""

    def __init__(self, batches: Iterable[np.ndarray], cache_path: str | os.PathLike | None,
                 cudart: ModuleType) -> None:
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.cudart = cudart
        self._it: Iterator[np.ndarray] = iter(batches)
        first = next(self._it, None)
        if first is None:
            raise ExportError("the calibration reader yielded no batches; give a folder with calibration images "
                              "(--calib DATA)")
        self._first: np.ndarray | None = self._check(first)
        self.batch_shape: tuple[int, ...] = tuple(self._first.shape)  # (N, 3, H, W)
        self.nbytes = int(self._first.nbytes)
        self.device = int(cuda_check(cudart.cudaMalloc(self.nbytes), f"cudaMalloc({self.nbytes})"))
        self.batches_fed = 0
        self.skipped = 0

    @staticmethod
    def _check(batch: Any) -> np.ndarray:
        x = np.asarray(batch)
        if x.ndim != 4 or x.shape[1] != 3 or x.dtype.kind != "f":
            raise ExportError(f"a calibration batch has shape {x.shape} and dtype {x.dtype}; the legacy calibrator "
                              "needs preprocessed float32 (N, 3, H, W) batches")
        return np.ascontiguousarray(x, dtype=np.float32)

    @property
    def batch_size(self) -> int:
        return self.batch_shape[0]

    def next_pointer(self) -> int | None:
        """Device pointer holding the next batch, or None when the reader is exhausted."""
        while True:
            if self._first is not None:
                x, self._first = self._first, None
            else:
                raw = next(self._it, None)
                if raw is None:
                    log.info("calibration: %d batches of %s fed to TensorRT (%d skipped)",
                             self.batches_fed, self.batch_shape, self.skipped)
                    return None
                x = self._check(raw)
            if tuple(x.shape) != self.batch_shape:
                if x.shape[1:] == self.batch_shape[1:] and x.shape[0] < self.batch_size:
                    # TensorRT calibrates in fixed-size batches; a short final batch is dropped.
                    self.skipped += 1
                    log.info("calibration: dropping a short batch of %d (batch size %d)", x.shape[0], self.batch_size)
                    continue
                raise ExportError(f"calibration batch {self.batches_fed + 1} has shape {tuple(x.shape)} but the first "
                                  f"had {self.batch_shape}; preprocess every calibration image to the same size")
            h2d = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            cuda_check(self.cudart.cudaMemcpy(self.device, x.ctypes.data, self.nbytes, h2d), "cudaMemcpy")
            self.batches_fed += 1
            return self.device

    def read_cache(self) -> bytes | None:
        if self.cache_path is not None and self.cache_path.is_file():
            log.info("calibration: reusing TensorRT calibration cache %s", self.cache_path)
            return self.cache_path.read_bytes()
        return None

    def write_cache(self, cache: Any) -> None:
        if self.cache_path is None:
            return
        with atomic_open(self.cache_path, "wb") as f:
            f.write(bytes(memoryview(cache)))
        log.info("calibration: wrote TensorRT calibration cache %s", self.cache_path)

    def free(self) -> None:
        if self.device:
            cuda_check(self.cudart.cudaFree(self.device), "cudaFree")
            self.device = 0


def _calibrator_class(trt: ModuleType) -> type:
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base in _CLASSES:
        return _CLASSES[base]
    if base is None:
        raise ExportError(f"TensorRT {getattr(trt, '__version__', '?')} has no IInt8EntropyCalibrator2 (removed in "
                          "TensorRT 11); build INT8 engines from the Q/DQ ONNX instead")

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        """``IInt8EntropyCalibrator2`` over an iterable of float32 NCHW batches."""

        def __init__(self, feed: _BatchFeed) -> None:
            base.__init__(self)  # TensorRT's pybind trampolines need the base initialised explicitly
            self.feed = feed

        def get_batch_size(self) -> int:
            return self.feed.batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            ptr = self.feed.next_pointer()
            return None if ptr is None else [ptr] * len(names)

        def read_calibration_cache(self) -> bytes | None:
            return self.feed.read_cache()

        def write_calibration_cache(self, cache: Any) -> None:
            self.feed.write_cache(cache)

        def free(self) -> None:
            self.feed.free()

    _CLASSES[base] = EntropyCalibrator
    return EntropyCalibrator


def make_entropy_calibrator(
    batches: Iterable[np.ndarray],
    cache_path: str | os.PathLike | None = None,
    *,
    trt: ModuleType | None = None,
    cudart: ModuleType | None = None,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` fed by ``batches`` (preprocessed float32 (N, 3, H, W) arrays).

    The first batch fixes the calibration batch size and shape. ``cache_path`` is TensorRT's
    calibration cache: read when it exists (TensorRT then skips calibration), written after.
    Call ``.free()`` on the result after the build to release its device buffer.
    Raises :class:`ExportError` on TensorRT 11+, where the calibrator no longer exists.
    """
    trt = trt if trt is not None else import_tensorrt()
    caps = capabilities(getattr(trt, "__version__", "0"))
    if not caps.legacy_calibrator:
        raise ExportError(f"TensorRT {caps.version} removed the INT8 calibrator; build INT8 engines from the Q/DQ "
                          "ONNX: edgeseg export CHECKPOINT --format engine --precision int8")
    cls = _calibrator_class(trt)
    feed = _BatchFeed(batches, cache_path, cudart if cudart is not None else import_cudart())
    return cls(feed)
