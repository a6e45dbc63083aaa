"""TensorRTBackend driven by a fake ``tensorrt`` runtime and fake cuda-python bindings.

The fake "device" memory is host RAM and the fake engine really computes (from the bytes the
backend copied to its device buffer), so these tests check the data path end to end: manifest
check, one-time buffer allocation, H2D -> execute_async_v3 -> D2H, dynamic shapes, output
conversion, close. No TensorRT or GPU is used; the real-TensorRT test is in tests/export.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from edgeseg.runtime.backends.base import Backend
from edgeseg.runtime.backends.trt import TensorRTBackend
from edgeseg.runtime.errors import BackendUnavailableError, EngineMismatchError, ModelFormatError, UsageError
from edgeseg.runtime.manifest import EngineManifest, Profile, TensorInfo, write_manifest
from edgeseg.runtime.metadata import ModelMeta

CLASSES = ("road", "car", "sky", "person")
PALETTE = ((128, 64, 128), (0, 0, 142), (70, 130, 180), (220, 20, 60))
GPU = b"NVIDIA GeForce RTX 4090"
GPU_NAME = GPU.decode()


# -- fakes ------------------------------------------------------------------------------------------
class FakeStream:
    def __int__(self) -> int:
        return 0xC0FFEE


class FakeCudart:
    """cuda-python's runtime calls the backend makes; device memory is host RAM."""

    def __init__(self, gpu: bytes = GPU, cc=(8, 9)) -> None:
        self.gpu, self.cc = gpu, cc
        self.device: dict[int, ctypes.Array] = {}
        self.pinned: dict[int, ctypes.Array] = {}
        self.calls: list[str] = []
        self.streams: list[FakeStream] = []
        self.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice="H2D", cudaMemcpyDeviceToHost="D2H")

    def _alloc(self, pool, nbytes):
        buf = ctypes.create_string_buffer(nbytes)
        pool[ctypes.addressof(buf)] = buf
        return (0, ctypes.addressof(buf))

    def cudaSetDevice(self, index):
        self.calls.append(f"cudaSetDevice({index})")
        return (0,)

    def cudaGetDeviceProperties(self, index):
        return (0, SimpleNamespace(name=self.gpu, major=self.cc[0], minor=self.cc[1]))

    def cudaMalloc(self, nbytes):
        self.calls.append("cudaMalloc")
        return self._alloc(self.device, nbytes)

    def cudaMallocHost(self, nbytes):
        self.calls.append("cudaMallocHost")
        return self._alloc(self.pinned, nbytes)

    def cudaFree(self, ptr):
        self.device.pop(ptr)
        return (0,)

    def cudaFreeHost(self, ptr):
        self.pinned.pop(ptr)
        return (0,)

    def cudaStreamCreate(self):
        self.streams.append(FakeStream())
        return (0, self.streams[-1])

    def cudaStreamDestroy(self, stream):
        self.streams.remove(stream)
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        assert stream in self.streams
        self.calls.append(kind)
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        self.calls.append("sync")
        return (0,)


def _view(addr: int, shape, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    return np.frombuffer((ctypes.c_char * n).from_address(addr), dtype).reshape(shape)


NP_TO_TRT = {"float32": "FLOAT", "float16": "HALF", "uint8": "UINT8", "int32": "INT32", "int64": "INT64"}


def make_runtime_trt(version: str = "10.3.0.30"):
    """TensorRT's runtime side. The 'engine' bytes are JSON describing the IO; the context computes:
    logits[:, c] = x[:, c % 3] * (c + 1); class map = first channel % num_classes."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    trt.TensorIOMode = SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")

    class Logger:
        WARNING, INFO = "WARNING", "INFO"

        def __init__(self, level):
            self.level = level

    class Context:
        def __init__(self, engine):
            self.e = engine
            self.shape = None
            self.addr = {}

        def set_input_shape(self, name, shape):
            trt.calls.append(("set_input_shape", name, tuple(shape)))
            lo, _, hi = self.e.profile
            ok = all(a <= s <= b for s, a, b in zip(shape, lo, hi, strict=True))
            if ok:
                self.shape = tuple(shape)
            return ok

        def get_tensor_shape(self, name):
            s = self.e.spec
            x = self.shape or tuple(s["input_shape"])
            if name == s["input"]:
                return x
            n, (h, w) = x[0], ((x[1], x[2]) if s["kind"] == "class_map" else (x[2], x[3]))
            return (n, h, w) if s["kind"] == "class_map" else (n, s["classes"], h, w)

        def set_tensor_address(self, name, ptr):
            trt.calls.append(("set_tensor_address", name))
            self.addr[name] = ptr
            return True

        def execute_async_v3(self, stream_handle):
            trt.calls.append(("execute_async_v3", stream_handle))
            s = self.e.spec
            x = _view(self.addr[s["input"]], self.shape, s["input_dtype"])
            out_shape = self.get_tensor_shape(s["output"])
            y = _view(self.addr[s["output"]], out_shape, s["output_dtype"])
            if s["kind"] == "class_map":
                y[...] = x[..., 0] % s["classes"]
            else:
                for c in range(s["classes"]):
                    y[:, c] = x[:, c % 3] * (c + 1)
            return True

    class Engine:
        def __init__(self, spec):
            self.spec = spec
            self.names = [spec["input"], spec["output"]]
            self.num_io_tensors = 2
            self.profile = [tuple(p) for p in spec["profile"]]

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == self.spec["input"] else trt.TensorIOMode.OUTPUT

        def get_tensor_shape(self, name):
            if name == self.spec["input"]:
                return tuple(self.spec["input_shape"])
            return (-1, -1, -1) if self.spec["kind"] == "class_map" else (-1, self.spec["classes"], -1, -1)

        def get_tensor_dtype(self, name):
            key = "input_dtype" if name == self.spec["input"] else "output_dtype"
            return SimpleNamespace(name=NP_TO_TRT[self.spec[key]])

        def get_tensor_profile_shape(self, name, index):
            trt.calls.append(("get_tensor_profile_shape", name, index))
            return self.profile

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            try:
                return Engine(json.loads(bytes(data)))
            except ValueError:
                return None

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


def install(monkeypatch, trt, cudart, legacy: bool = False) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    cuda = types.ModuleType("cuda")
    if legacy:  # old cuda-python: only cuda.cudart
        cuda.cudart = cudart
        monkeypatch.setitem(sys.modules, "cuda.bindings", None)
        monkeypatch.setitem(sys.modules, "cuda.cudart", cudart)
    else:
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = cudart
        cuda.bindings = bindings
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    monkeypatch.setitem(sys.modules, "cuda", cuda)


def write_engine(tmp_path, *, kind="logits", dynamic=True, output_dtype="float32", trt_version="10.3.0.30",
                 gpu=GPU_NAME, cc="8.9", payload: bytes | None = None):
    """An engine file (JSON for the fake runtime) and its manifest."""
    if kind == "class_map":
        layout, inp_dtype = "NHWC_BGR_U8", "uint8"
        shape = (-1, -1, -1, 3) if dynamic else (1, 32, 48, 3)
        profile = ((1, 16, 24, 3), (1, 32, 48, 3), (2, 64, 96, 3)) if dynamic else ((1, 32, 48, 3),) * 3
    else:
        layout, inp_dtype = "NCHW_RGB_F32", "float32"
        shape = (-1, 3, -1, -1) if dynamic else (1, 3, 32, 48)
        profile = ((1, 3, 16, 24), (1, 3, 32, 48), (2, 3, 64, 96)) if dynamic else ((1, 3, 32, 48),) * 3
    spec = {"input": "input", "output": "out", "input_shape": list(shape), "input_dtype": inp_dtype,
            "output_dtype": output_dtype, "classes": len(CLASSES), "kind": kind, "profile": [list(p) for p in profile]}
    engine = tmp_path / f"m.{kind}.fp16.engine"
    data = payload if payload is not None else json.dumps(spec).encode()
    engine.write_bytes(data)
    meta = ModelMeta(classes=CLASSES, palette=PALETTE, input_size=(32, 48), input_layout=layout, output_kind=kind,
                     precision="fp16", dynamic_hw=dynamic, dynamic_batch=dynamic)
    out_shape = (-1, -1, -1) if kind == "class_map" else (-1, len(CLASSES), -1, -1)
    write_manifest(engine, EngineManifest(
        trt_version=trt_version, gpu_name=gpu, compute_capability=cc, precision="fp16",
        profiles=(Profile("input", *profile),),
        io=(TensorInfo("input", "input", shape, inp_dtype), TensorInfo("out", "output", out_shape, output_dtype)),
        meta=meta, source_onnx=str(tmp_path / "m.onnx"), engine_sha256=hashlib.sha256(data).hexdigest()))
    return engine


def expected_logits(x: np.ndarray) -> np.ndarray:
    return np.stack([x[:, c % 3] * (c + 1) for c in range(len(CLASSES))], axis=1)


@pytest.fixture
def fakes(monkeypatch):
    trt, cudart = make_runtime_trt(), FakeCudart()
    install(monkeypatch, trt, cudart)
    return trt, cudart


# -- tests ------------------------------------------------------------------------------------------
def test_dynamic_engine_allocates_once_and_runs_several_shapes(tmp_path, fakes):
    trt, cudart = fakes
    backend = TensorRTBackend(write_engine(tmp_path), "cuda:0")
    assert isinstance(backend, Backend) and backend.name == "tensorrt"
    assert backend.meta.classes == CLASSES and backend.input_shape == (None, 3, None, None)
    assert cudart.calls[:1] == ["cudaSetDevice(0)"]
    assert cudart.calls.count("cudaMalloc") == 2 and cudart.calls.count("cudaMallocHost") == 2
    # Buffers sized for the profile's max: input (2,3,64,96) float32, output (2,4,64,96) float32.
    assert sorted(len(b) for b in cudart.device.values()) == [2 * 3 * 64 * 96 * 4, 2 * 4 * 64 * 96 * 4]
    assert [c[1] for c in trt.calls if c[0] == "set_tensor_address"] == ["input", "out"]

    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, 32, 48)).astype(np.float32)
    y1 = backend.infer(x1)
    assert y1.dtype == np.float32 and y1.shape == (1, 4, 32, 48)
    np.testing.assert_allclose(y1, expected_logits(x1))
    y1 = y1.copy()
    shapes_set = len([c for c in trt.calls if c[0] == "set_input_shape"])
    backend.infer(x1)  # same shape again: no new set_input_shape
    assert len([c for c in trt.calls if c[0] == "set_input_shape"]) == shapes_set

    x2 = rng.standard_normal((2, 3, 20, 30)).astype(np.float64)  # float64 is cast, shape changes
    y2 = backend.infer(x2)
    assert y2.shape == (2, 4, 20, 30)
    np.testing.assert_allclose(y2, expected_logits(x2.astype(np.float32)), rtol=1e-6)
    assert ("set_input_shape", "input", (2, 3, 20, 30)) in trt.calls
    assert ("execute_async_v3", 0xC0FFEE) in trt.calls
    # Order within one call: H2D, execute, D2H, sync; no allocation after construction.
    assert cudart.calls[-3:] == ["H2D", "D2H", "sync"]
    assert cudart.calls.count("cudaMalloc") == 2

    info = backend.describe()
    assert info["tensorrt"] == "10.3.0.30" and info["gpu"] == GPU_NAME and info["compute_capability"] == "8.9"
    assert info["backend"] == "tensorrt" and info["precision"] == "fp16"

    backend.close()
    assert not cudart.device and not cudart.pinned and not cudart.streams
    backend.close()  # twice is fine
    with pytest.raises(UsageError, match="closed"):
        backend.infer(x1)


def test_shape_outside_the_profile_is_refused_with_the_range(tmp_path, fakes):
    with TensorRTBackend(write_engine(tmp_path), "cuda") as backend:
        with pytest.raises(UsageError, match=r"outside the engine's profile \(min \(1, 3, 16, 24\).*max "
                                             r"\(2, 3, 64, 96\)\).*edgeseg export"):
            backend.infer(np.zeros((3, 3, 32, 48), np.float32))
        with pytest.raises(UsageError, match="takes float32 input"):
            backend.infer(np.zeros((1, 3, 32, 48), np.uint8))
        # Still usable after a refused call.
        assert backend.infer(np.ones((1, 3, 32, 48), np.float32)).shape == (1, 4, 32, 48)


def test_static_engine_uses_its_declared_shape(tmp_path, fakes):
    trt, _ = fakes
    with TensorRTBackend(write_engine(tmp_path, dynamic=False)) as backend:
        assert backend.input_shape == (1, 3, 32, 48) and backend.profile.is_static
        assert not [c for c in trt.calls if c[0] == "get_tensor_profile_shape"]
        with pytest.raises(UsageError, match="outside"):
            backend.infer(np.zeros((1, 3, 64, 64), np.float32))


def test_fp16_output_comes_back_as_float32(tmp_path, fakes):
    with TensorRTBackend(write_engine(tmp_path, output_dtype="float16")) as backend:
        x = np.random.default_rng(1).standard_normal((1, 3, 32, 48)).astype(np.float32)
        y = backend.infer(x)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, expected_logits(x), rtol=2e-3, atol=2e-3)


def test_class_map_engine_returns_uint8_nhw(tmp_path, fakes):
    with TensorRTBackend(write_engine(tmp_path, kind="class_map", output_dtype="int32")) as backend:
        frame = np.random.default_rng(2).integers(0, 255, (2, 40, 60, 3), dtype=np.uint8)
        y = backend.infer(frame)
        assert y.dtype == np.uint8 and y.shape == (2, 40, 60)
        np.testing.assert_array_equal(y, frame[..., 0] % len(CLASSES))


def test_old_cuda_python_layout_works(tmp_path, monkeypatch):
    cudart = FakeCudart()
    install(monkeypatch, make_runtime_trt(), cudart, legacy=True)
    with TensorRTBackend(write_engine(tmp_path), "cuda:0") as backend:
        assert backend.infer(np.zeros((1, 3, 32, 48), np.float32)).shape == (1, 4, 32, 48)


def test_missing_manifest_is_refused_before_tensorrt_is_needed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    engine = tmp_path / "x.fp16.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ModelFormatError, match=r"no manifest x\.fp16\.engine\.json.*--format engine"):
        TensorRTBackend(engine)
    with pytest.raises(ModelFormatError, match="does not exist"):
        TensorRTBackend(tmp_path / "gone.engine")


def test_missing_tensorrt_says_what_to_install(tmp_path, monkeypatch):
    engine = write_engine(tmp_path)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match=r'pip install "edgeseg\[trt\]".*NVIDIA GPU'):
        TensorRTBackend(engine)


@pytest.mark.parametrize("changes, what", [
    ({"gpu": "NVIDIA Jetson AGX Orin", "cc": "8.7"}, "compute capability 8.7"),
    ({"gpu": "NVIDIA RTX 6000 Ada Generation"}, "GPU 'NVIDIA RTX 6000 Ada Generation'"),
    ({"trt_version": "10.0.1"}, "TensorRT 10.0.1"),
])
def test_engine_for_another_gpu_or_release_is_refused(tmp_path, fakes, changes, what):
    _, cudart = fakes
    engine = write_engine(tmp_path, **changes)
    with pytest.raises(EngineMismatchError, match=rf"{what}.*rebuild it here: edgeseg export CHECKPOINT "
                                                  r"--format engine --precision fp16 .*m\.onnx was exported"):
        TensorRTBackend(engine)
    assert not cudart.device and not cudart.streams


def test_same_capability_other_gpu_allowed_on_request(tmp_path, fakes):
    engine = write_engine(tmp_path, gpu="NVIDIA RTX 6000 Ada Generation")
    with TensorRTBackend(engine, allow_other_gpu=True) as backend:
        assert backend.gpu.name == GPU_NAME


def test_replaced_engine_or_unreadable_plan_is_refused(tmp_path, fakes):
    _, cudart = fakes
    engine = write_engine(tmp_path)
    engine.write_bytes(engine.read_bytes() + b" ")
    with pytest.raises(ModelFormatError, match="does not match its manifest"):
        TensorRTBackend(engine)
    corrupt = write_engine(tmp_path, payload=b"not an engine")
    with pytest.raises(ModelFormatError, match="could not deserialise"):
        TensorRTBackend(corrupt)
    assert not cudart.device and not cudart.pinned and not cudart.streams


def test_cpu_device_is_refused(tmp_path, fakes):
    with pytest.raises(UsageError, match="NVIDIA GPU"):
        TensorRTBackend(write_engine(tmp_path), "cpu")
