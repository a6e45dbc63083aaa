"""TensorRT backend: runs a serialized engine (``.engine``/``.plan``) with cuda-python buffers.

Written to NVIDIA's documented Python API for TensorRT 10 and 11 (name-based IO:
``num_io_tensors``/``get_tensor_name``/``set_input_shape``/``set_tensor_address``/
``execute_async_v3``) and cuda-python's runtime bindings (``cuda.bindings.runtime``, or
``cuda.cudart`` in older cuda-python). NOT RUN ON REAL TENSORRT: the machines this was
written on have no GPU; the unit tests drive it with fake ``tensorrt`` and cuda modules.

Nothing here imports tensorrt or cuda-python until a backend is constructed. The helpers
``import_tensorrt``, ``import_cudart``, ``cuda_check`` and ``gpu_info`` are shared with the
engine builder (``edgeseg.export.engine``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, ModelFormatError, UsageError
from ..manifest import EngineManifest, Profile, check_manifest, read_manifest, rebuild_command
from ..metadata import OUTPUT_CLASS_MAP
from .base import Backend

log = logging.getLogger(__name__)

INSTALL_HINT = ('pip install "edgeseg[trt]" (on a Jetson, use the TensorRT that comes with JetPack); '
                "TensorRT needs an NVIDIA GPU with its driver")

# TensorRT DataType member name -> numpy dtype name (types edgeseg IO can use).
TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "UINT8": "uint8",
              "INT32": "int32", "INT64": "int64", "BOOL": "bool", "BF16": "bfloat16", "FP8": "float8"}


# -- lazy imports and CUDA helpers (shared with export/engine.py) -----------------------------------
def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except Exception as e:  # ImportError, or OSError when libnvinfer is missing behind the bindings
        raise BackendUnavailableError(f"TensorRT is not usable here ({type(e).__name__}: {e}); "
                                      f"{INSTALL_HINT}") from None
    return tensorrt


def import_cudart() -> ModuleType:
    """cuda-python's runtime API: ``cuda.bindings.runtime`` (cuda-python >= 12.6), else ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except Exception:
        try:
            from cuda import cudart
        except Exception as e:
            raise BackendUnavailableError(f"cuda-python is not usable here ({type(e).__name__}: {e}); "
                                          f"{INSTALL_HINT}") from None
    return cudart


def cuda_check(result: Any, what: str) -> Any:
    """Unpack a cuda-python call's ``(error, *values)`` tuple, raising on any error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:  # cudaSuccess is 0 in every CUDA release
        name = getattr(err, "name", str(err))
        raise BackendUnavailableError(f"CUDA call {what} failed with {name}; check the NVIDIA driver "
                                      "(nvidia-smi) and that the GPU is not out of memory")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def parse_device(device: str | int | None) -> int:
    """``"cuda:1"`` -> 1; ``"cuda"``, ``"gpu"``, ``"auto"``, ``None`` -> 0."""
    if isinstance(device, int):
        return device
    text = (device or "cuda").strip().lower()
    if text in ("cuda", "gpu", "auto"):
        return 0
    head, _, index = text.partition(":")
    if head in ("cuda", "gpu") and index.isdigit():
        return int(index)
    if text.isdigit():
        return int(text)
    raise UsageError(f"device {device!r} cannot run a TensorRT engine; use 'cuda:0' (TensorRT needs an "
                     "NVIDIA GPU; use the ONNX model for CPU)")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.7"


def gpu_info(cudart: ModuleType, index: int = 0) -> GpuInfo:
    prop = cuda_check(cudart.cudaGetDeviceProperties(index), f"cudaGetDeviceProperties({index})")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return GpuInfo(index, str(name).strip(), f"{int(prop.major)}.{int(prop.minor)}")


def dtype_name(trt_dtype: Any) -> str:
    """TensorRT ``DataType`` -> numpy dtype name (``DataType.HALF`` -> ``"float16"``)."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    return TRT_DTYPES.get(str(name), str(name).lower())


# -- buffers ----------------------------------------------------------------------------------------
@dataclass
class _Buffer:
    name: str
    is_input: bool
    dtype: np.dtype
    nbytes: int  # allocated for the profile's largest shape
    device: int  # device pointer
    host_ptr: int  # pinned host pointer
    host: np.ndarray  # 1-D view over the pinned host memory
    shape: tuple[int, ...] = ()  # current shape


def _volume(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built by ``edgeseg export --format engine``.

    The manifest beside the engine is read and checked first (TensorRT release, GPU, engine
    hash); device and pinned host buffers are allocated once for the profile's largest shapes;
    each :meth:`infer` does H2D copy, ``execute_async_v3`` and D2H copy on one CUDA stream.

    Options: ``allow_other_gpu`` (accept another GPU model of the same compute capability),
    ``verify_hash`` (default True: refuse an engine whose sha256 differs from the manifest's),
    ``verbose`` (TensorRT INFO logs). Options meant for other backends are ignored.

    Not run on real TensorRT (no GPU where it was written); see the README.
    """

    name = "tensorrt"

    def __init__(self, path: str | Path, device: str = "cuda:0", **options: Any) -> None:
        super().__init__(path, device, **options)
        self._cudart: ModuleType | None = None
        self._buffers: list[_Buffer] = []
        self._stream: Any = None
        self._context = self._engine = self._runtime = None
        if not self.path.is_file():
            raise ModelFormatError(f"TensorRT engine {self.path} does not exist; build one with "
                                   "'edgeseg export MODEL --format engine'")
        # The manifest comes first: it says what the engine is before anything touches the GPU.
        self.manifest: EngineManifest = read_manifest(self.path)
        self.meta = self.manifest.meta
        index = parse_device(device)
        trt = import_tensorrt()
        cudart = import_cudart()
        self._trt = trt
        self._cudart = cudart
        cuda_check(cudart.cudaSetDevice(index), f"cudaSetDevice({index})")
        self.gpu = gpu_info(cudart, index)
        self.trt_version = str(getattr(trt, "__version__", "unknown"))
        check_manifest(self.manifest, self.trt_version, self.gpu.name, self.gpu.compute_capability,
                       engine_path=self.path, strict_gpu_name=not options.get("allow_other_gpu", False))
        data = self.path.read_bytes()
        if options.get("verify_hash", True) and self.manifest.engine_sha256:
            digest = hashlib.sha256(data).hexdigest()
            if digest != self.manifest.engine_sha256:
                raise ModelFormatError(
                    f"{self.path} does not match its manifest (sha256 {digest[:12]}... vs {self.manifest.engine_sha256[:12]}"
                    f"...): the engine or the manifest was replaced; rebuild both with: "
                    f"{rebuild_command(self.manifest, self.path)}")
        try:
            self._load(trt, data)
            self._allocate()
        except BaseException:
            self.close()
            raise

    # -- setup --------------------------------------------------------------------------------------
    def _load(self, trt: ModuleType, data: bytes) -> None:
        level = trt.Logger.INFO if self.options.get("verbose") else trt.Logger.WARNING
        self._logger = trt.Logger(level)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ModelFormatError(f"TensorRT could not deserialise {self.path} (see TensorRT's log above); "
                                   f"rebuild it with: {rebuild_command(self.manifest, self.path)}")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendUnavailableError(f"TensorRT could not create an execution context for {self.path}; "
                                          "the GPU is probably out of memory")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        expected = [t.name for t in self.manifest.io]
        if sorted(names) != sorted(expected):
            raise ModelFormatError(f"{self.path} has tensors {names} but its manifest lists {expected}; rebuild "
                                   f"with: {rebuild_command(self.manifest, self.path)}")
        self._names = names
        self._is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        inputs = [n for n in names if self._is_input[n]]
        if len(inputs) != 1:
            raise ModelFormatError(f"{self.path} has {len(inputs)} inputs {inputs}; edgeseg engines take one image")
        self._input_name = inputs[0]
        outputs = [t.name for t in self.manifest.outputs if t.name in names]
        if not outputs:
            raise ModelFormatError(f"{self.path} has no output tensor")
        self._output_name = outputs[0]  # the manifest's order: the model's first output is the result
        declared = tuple(int(d) for d in self._engine.get_tensor_shape(self._input_name))
        self.input_shape = tuple(None if d < 0 else d for d in declared)
        self.profile = self._engine_profile(declared)

    def _engine_profile(self, declared: tuple[int, ...]) -> Profile:
        if all(d >= 0 for d in declared):
            return Profile(self._input_name, declared, declared, declared)
        lo, opt, hi = self._engine.get_tensor_profile_shape(self._input_name, 0)
        return Profile(self._input_name, *(tuple(int(d) for d in s) for s in (lo, opt, hi)))

    def _allocate(self) -> None:
        cudart = self._cudart
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        # Size every buffer for the largest input the profile allows, so infer() never allocates.
        self._set_input_shape(self.profile.max)
        for name in self._names:
            dtype = np.dtype(dtype_name(self._engine.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in self._context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelFormatError(f"{self.path}: TensorRT cannot tell the shape of {name!r} ({shape}) from "
                                       "the input shape; edgeseg needs outputs whose shape follows the input")
            nbytes = max(1, _volume(shape) * dtype.itemsize)
            device = int(cuda_check(cudart.cudaMalloc(nbytes), f"cudaMalloc({nbytes})"))
            host_ptr = int(cuda_check(cudart.cudaMallocHost(nbytes), f"cudaMallocHost({nbytes})"))
            host = np.frombuffer((ctypes.c_ubyte * nbytes).from_address(host_ptr), dtype=dtype,
                                 count=nbytes // dtype.itemsize)
            buf = _Buffer(name, self._is_input[name], dtype, nbytes, device, host_ptr, host, shape)
            self._buffers.append(buf)
            if not self._context.set_tensor_address(name, device):
                raise BackendUnavailableError(f"TensorRT refused the buffer address for {name!r} in {self.path}")
        self._by_name = {b.name: b for b in self._buffers}
        log.debug("TensorRT %s on %s (sm %s): %s", self.trt_version, self.gpu.name,
                  self.gpu.compute_capability, {b.name: (b.shape, str(b.dtype)) for b in self._buffers})

    def _set_input_shape(self, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(self._input_name, tuple(int(d) for d in shape)):
            raise UsageError(f"TensorRT refused input shape {tuple(shape)} for {self.path} (profile "
                             f"{self.profile.describe()})")
        self._current_shape = tuple(shape)

    # -- inference ----------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self._context is None:
            raise UsageError(f"the TensorRT backend for {self.path} is closed")
        cudart = self._cudart
        inp = self._by_name[self._input_name]
        x = np.asarray(batch)
        if x.dtype != inp.dtype and not (x.dtype.kind == "f" and inp.dtype.kind == "f"):
            raise UsageError(f"{self.path} takes {inp.dtype} input ({self.meta.input_layout}) but got {x.dtype}; "
                             "pass the batch the Segmenter's pre-processing makes")
        shape = tuple(int(d) for d in x.shape)
        if shape != self._current_shape:
            if not self.profile.contains(shape):
                raise UsageError(
                    f"input shape {shape} is outside the engine's profile ({self.profile.describe()}) of "
                    f"{self.path}; resize to fit, or rebuild with matching --imgsz/--dynamic/--batch: "
                    f"{rebuild_command(self.manifest, self.path)}")
            self._set_input_shape(shape)
            for b in self._buffers:
                b.shape = tuple(int(d) for d in self._context.get_tensor_shape(b.name))
        n = _volume(shape)
        np.copyto(inp.host[:n].reshape(shape), x, casting="same_kind")  # into pinned memory
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        stream = self._stream
        cuda_check(cudart.cudaMemcpyAsync(inp.device, inp.host_ptr, n * inp.dtype.itemsize, h2d, stream),
                   "cudaMemcpyAsync(host to device)")
        if not self._context.execute_async_v3(int(stream)):
            raise BackendUnavailableError(f"TensorRT failed to run {self.path} (execute_async_v3 returned False; "
                                          "rerun with --verbose for TensorRT's log)")
        for b in self._buffers:
            if not b.is_input:
                cuda_check(cudart.cudaMemcpyAsync(b.host_ptr, b.device, _volume(b.shape) * b.dtype.itemsize,
                                                  d2h, stream), "cudaMemcpyAsync(device to host)")
        cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        out = self._by_name[self._output_name]
        y = out.host[:_volume(out.shape)].reshape(out.shape)
        return self._postprocess(y)

    def _postprocess(self, y: np.ndarray) -> np.ndarray:
        """Bring the engine's output to the contract: float32 logits, or a uint8 (N, H, W) class map."""
        if self.meta.output_kind == OUTPUT_CLASS_MAP:
            if y.ndim == 4 and y.shape[1] == 1:
                y = y[:, 0]  # (N, 1, H, W) -> (N, H, W)
            return y if y.dtype == np.uint8 else y.astype(np.uint8)
        return y if y.dtype == np.float32 else y.astype(np.float32)  # FP16 IO -> float32 logits

    # -- info and cleanup ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({
            "tensorrt": self.trt_version,
            "gpu": self.gpu.name,
            "compute_capability": self.gpu.compute_capability,
            "precision": self.manifest.precision,
            "profile": self.profile.to_dict(),
            "built_with_tensorrt": self.manifest.trt_version,
            "built_at": self.manifest.built_at,
            "io": [t.to_dict() for t in self.manifest.io],
        })
        return info

    def close(self) -> None:
        cudart = self._cudart
        if cudart is not None:
            for b in self._buffers:
                self._quiet(cudart.cudaFree, b.device, "cudaFree")
                self._quiet(cudart.cudaFreeHost, b.host_ptr, "cudaFreeHost")
            if self._stream is not None:
                self._quiet(cudart.cudaStreamDestroy, self._stream, "cudaStreamDestroy")
        self._buffers = []
        self._stream = None
        # Context before engine before runtime: TensorRT objects must die in reverse order of creation.
        self._context = None
        self._engine = None
        self._runtime = None

    @staticmethod
    def _quiet(fn: Any, arg: Any, what: str) -> None:
        try:
            cuda_check(fn(arg), what)
        except Exception as e:  # freeing must not hide the error that led to close()
            log.warning("%s failed while closing the TensorRT backend: %s", what, e)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
