"""The TensorRT layer driven by fake TensorRT-10-like and TensorRT-11-like modules.

The fakes record every TensorRT call in order, so these tests check what ``onnx_to_engine``
asks of TensorRT (network flags, parse, profile shapes, config flags and memory pool, timing
cache, build, serialize) without TensorRT or a GPU. The ``trt``-marked test at the end builds
a real engine and compares it with ONNX Runtime where TensorRT and a GPU exist.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.export.engine import EngineBuilder, onnx_to_engine, read_onnx_meta
from edgeseg.export.trt_calibrator import make_entropy_calibrator
from edgeseg.runtime.errors import BackendUnavailableError, ExportError, ModelFormatError
from edgeseg.runtime.manifest import read_manifest
from edgeseg.runtime.metadata import ModelMeta

CLASSES = ("road", "car", "sky", "person")
PALETTE = ((128, 64, 128), (0, 0, 142), (70, 130, 180), (220, 20, 60))


# -- a tiny edgeseg ONNX ----------------------------------------------------------------------------
def tiny_onnx(path: Path, *, precision: str = "fp32", dynamic: bool = True, int8_target: str = "") -> Path:
    """A 1x1 conv 3 -> 4 classes with edgeseg metadata; ``fp16`` casts around an FP16 conv."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    dims = ["N", 3, "H", "W"] if dynamic else [1, 3, 32, 48]
    out_dims = ["N", 4, "H", "W"] if dynamic else [1, 4, 32, 48]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_dims)
    if precision == "fp16":
        inits = [numpy_helper.from_array(w.astype(np.float16), "w"), numpy_helper.from_array(b.astype(np.float16), "b")]
        nodes = [helper.make_node("Cast", ["input"], ["x16"], to=TensorProto.FLOAT16),
                 helper.make_node("Conv", ["x16", "w", "b"], ["y16"]),
                 helper.make_node("Cast", ["y16"], ["logits"], to=TensorProto.FLOAT)]
    else:
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMeta(classes=CLASSES, palette=PALETTE, input_size=(32, 48), dynamic_hw=dynamic,
                     dynamic_batch=dynamic, precision=precision, int8_target=int8_target)
    helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# -- fake cuda-python runtime -----------------------------------------------------------------------
class FakeCudart:
    """Enough of ``cuda.bindings.runtime`` for the builder: device info and calibrator buffers (host RAM)."""

    def __init__(self, gpu: bytes = b"NVIDIA Jetson AGX Orin", cc: tuple[int, int] = (8, 7)) -> None:
        self.gpu, self.cc = gpu, cc
        self.live: dict[int, ctypes.Array] = {}
        self.calls: list[str] = []
        self.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def cudaSetDevice(self, index):
        self.calls.append(f"cudaSetDevice({index})")
        return (0,)

    def cudaGetDeviceProperties(self, index):
        return (0, SimpleNamespace(name=self.gpu + b"\0\0", major=self.cc[0], minor=self.cc[1]))

    def cudaMalloc(self, nbytes):
        buf = ctypes.create_string_buffer(nbytes)
        self.live[ctypes.addressof(buf)] = buf
        return (0, ctypes.addressof(buf))

    def cudaMemcpy(self, dst, src, nbytes, kind):
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaFree(self, ptr):
        self.live.pop(ptr)
        return (0,)


def install_cudart(monkeypatch, cudart: FakeCudart) -> None:
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)


# -- fake tensorrt (builder side) -------------------------------------------------------------------
def dtype(name: str) -> SimpleNamespace:
    return SimpleNamespace(name=name)


def make_fake_trt(version: str, *, parse_ok: bool = True, build_ok: bool = True,
                  inputs=(("input", (-1, 3, -1, -1)),), outputs=(("logits", (-1, 4, -1, -1)),)):
    """A TensorRT module that records calls; 11.x lacks the FP16/INT8 flags and the calibrator."""
    calls: list[tuple] = []
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = calls

    class Logger:
        WARNING, INFO = "WARNING", "INFO"

        def __init__(self, level):
            calls.append(("Logger", level))

    trt.Logger = Logger
    trt.NetworkDefinitionCreationFlag = (SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=5) if major <= 10
                                         else SimpleNamespace(STRONGLY_TYPED=5))
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.BuilderFlag = (SimpleNamespace(FP16="FP16", INT8="INT8", TF32="TF32") if major <= 10
                       else SimpleNamespace(TF32="TF32"))

    class Tensor(SimpleNamespace):
        pass

    class Network:
        def __init__(self):
            self.num_inputs, self.num_outputs = len(inputs), len(outputs)

        def get_input(self, i):
            return Tensor(name=inputs[i][0], shape=inputs[i][1], dtype=dtype("FLOAT"))

        def get_output(self, i):
            return Tensor(name=outputs[i][0], shape=outputs[i][1], dtype=dtype("FLOAT"))

    class Parser:
        num_errors = 0 if parse_ok else 1

        def __init__(self, network, logger):
            calls.append(("OnnxParser",))

        def parse_from_file(self, path):
            calls.append(("parse_from_file", Path(path).name))
            return parse_ok

        def get_error(self, i):
            return "In node 0 (Conv): UNSUPPORTED_NODE"

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("set_shape", name, tuple(lo), tuple(opt), tuple(hi)))

    class TimingCache:
        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            calls.append(("serialize_timing_cache",))
            return self.blob + b"+tuned"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))
            return 0

        def create_timing_cache(self, blob):
            calls.append(("create_timing_cache", bytes(blob)))
            self.cache = TimingCache(blob)
            return self.cache

        def set_timing_cache(self, cache, ignore_mismatch):
            calls.append(("set_timing_cache", ignore_mismatch))
            return True

        def get_timing_cache(self):
            return self.cache

        if major <= 10:  # removed in TensorRT 11 with the calibrator
            def set_calibration_profile(self, profile):
                calls.append(("set_calibration_profile",))

        def __setattr__(self, name, value):
            if name == "int8_calibrator":
                if major > 10:
                    raise AttributeError("int8_calibrator was removed in TensorRT 11")
                calls.append(("int8_calibrator", type(value).__name__))
            object.__setattr__(self, name, value)

    class Builder:
        def __init__(self, logger):
            calls.append(("Builder",))

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network()

        def create_builder_config(self):
            calls.append(("create_builder_config",))
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network",))
            calibrator = getattr(config, "int8_calibrator", None)
            if calibrator is not None:  # TensorRT pulls batches until get_batch returns None
                calibrator.read_calibration_cache()
                while calibrator.get_batch(["input"]) is not None:
                    calls.append(("calibration_batch",))
                calibrator.write_calibration_cache(b"calib-table")
            return memoryview(b"SERIALIZED-ENGINE") if build_ok else None

    trt.Builder = Builder
    trt.OnnxParser = Parser
    if major <= 10:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                calls.append(("IInt8EntropyCalibrator2.__init__",))

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    return trt


@pytest.fixture
def cudart(monkeypatch):
    fake = FakeCudart()
    install_cudart(monkeypatch, fake)
    return fake


def names(calls):
    return [c[0] for c in calls]


def test_trt10_fp16_build_calls_in_order(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    trt = make_fake_trt("10.3.0.30")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    report = onnx_to_engine(onnx_path, precision="fp16", imgsz="32x48", dynamic=True, batch=2, max_batch=4,
                            workspace_gb=2, checkpoint=tmp_path / "x.pt")
    assert names(trt.calls) == [
        "Logger", "Builder", "create_network", "OnnxParser", "parse_from_file", "create_builder_config",
        "set_memory_pool_limit", "set_flag", "set_shape", "add_optimization_profile", "create_timing_cache",
        "set_timing_cache", "build_serialized_network", "serialize_timing_cache",
    ]
    calls = {c[0]: c for c in trt.calls}
    assert calls["create_network"] == ("create_network", 0)  # no EXPLICIT_BATCH on 10, weakly typed
    assert calls["set_flag"] == ("set_flag", "FP16")
    assert calls["set_memory_pool_limit"] == ("set_memory_pool_limit", "WORKSPACE", 2 << 30)
    assert calls["set_shape"] == ("set_shape", "input", (1, 3, 32, 32), (2, 3, 32, 48), (4, 3, 64, 96))
    assert calls["set_timing_cache"] == ("set_timing_cache", False)
    assert calls["create_timing_cache"] == ("create_timing_cache", b"")

    engine = tmp_path / "x.fp16.engine"
    assert report["engine"] == str(engine) and engine.read_bytes() == b"SERIALIZED-ENGINE"
    assert report["tensorrt"] == "10.3.0.30" and report["gpu"] == "NVIDIA Jetson AGX Orin"
    m = read_manifest(engine)
    assert (m.trt_version, m.compute_capability, m.precision) == ("10.3.0.30", "8.7", "fp16")
    assert m.meta.classes == CLASSES and m.meta.precision == "fp16" and m.meta.dynamic_batch and m.meta.dynamic_hw
    assert m.meta.input_size == (32, 48) and m.meta.batch == 2
    assert [t.name for t in m.io] == ["input", "logits"] and m.io[0].dtype == "float32"
    assert m.profiles[0].max == (4, 3, 64, 96)
    assert len(m.engine_sha256) == 64 and len(m.source_onnx_sha256) == 64
    assert m.build["plan"]["builder_flags"] == ["FP16"]
    assert m.source_checkpoint == str(tmp_path / "x.pt") and m.source_onnx == str(onnx_path)

    # The timing cache is keyed by release and GPU, and a second build starts from it.
    cache = tmp_path / "trt10.3.0.30-nvidia-jetson-agx-orin-sm87.timing.cache"
    assert cache.read_bytes() == b"+tuned"
    trt.calls.clear()
    onnx_to_engine(onnx_path, precision="fp16", imgsz="32x48")
    assert ("create_timing_cache", b"+tuned") in trt.calls


def test_trt11_fp16_is_strongly_typed_without_precision_flags(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.fp16.onnx", precision="fp16")
    trt = make_fake_trt("11.1.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    onnx_to_engine(onnx_path, precision="fp16", imgsz=(32, 48), timing_cache=False)
    assert ("create_network", 1 << 5) in trt.calls  # STRONGLY_TYPED
    assert not [c for c in trt.calls if c[0] in ("set_flag", "create_timing_cache")]
    assert names(trt.calls)[-1] == "build_serialized_network"
    assert read_manifest(tmp_path / "x.fp16.engine").build["plan"]["strongly_typed"] is True


def test_trt11_refuses_an_fp32_onnx_for_fp16(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("11.0.0"))
    with pytest.raises(ExportError, match="FP16-converted"):
        onnx_to_engine(onnx_path, precision="fp16", imgsz=32)
    assert not (tmp_path / "x.fp16.engine").exists()


def test_trt10_int8_qdq_uses_int8_flag_only(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.int8.onnx", precision="int8", int8_target="tensorrt")
    trt = make_fake_trt("10.7.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    onnx_to_engine(onnx_path, precision="int8", imgsz=32, timing_cache=tmp_path / "caches" / "t.cache")
    assert [c for c in trt.calls if c[0] == "set_flag"] == [("set_flag", "INT8")]
    assert (tmp_path / "caches" / "t.cache").is_file()


def test_trt10_legacy_calibrator_path(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    trt = make_fake_trt("10.3.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    batches = [np.full((2, 3, 32, 48), i, np.float32) for i in range(3)] + [np.zeros((1, 3, 32, 48), np.float32)]
    onnx_to_engine(onnx_path, precision="int8", imgsz="32x48", batch=2, calibration=iter(batches),
                   timing_cache=False)
    order = names(trt.calls)
    assert order.index("int8_calibrator") < order.index("build_serialized_network")
    assert order.count("calibration_batch") == 3  # the short last batch is dropped
    assert "set_calibration_profile" not in order  # static profile
    assert [c for c in trt.calls if c[0] == "set_flag"] == [("set_flag", "INT8")]
    assert not cudart.live  # the calibrator's device buffer was freed
    caches = list(tmp_path.glob("x.int8.trtcalib-*.cache"))
    assert len(caches) == 1 and caches[0].read_bytes() == b"calib-table"


def test_calibration_batches_must_match_the_opt_shape(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
    with pytest.raises(ExportError, match="opt shape"):
        onnx_to_engine(onnx_path, precision="int8", imgsz="32x48",
                       calibration=[np.zeros((1, 3, 64, 64), np.float32)])
    assert not cudart.live


def test_calibrator_reads_cache_and_checks_batches(tmp_path, monkeypatch, cudart):
    trt = make_fake_trt("10.3.0")
    cache = tmp_path / "c.cache"
    cache.write_bytes(b"old-table")
    batches = [np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4), np.zeros((2, 3, 5, 5))]
    cal = make_entropy_calibrator(batches, cache, trt=trt, cudart=cudart)
    assert isinstance(cal, trt.IInt8EntropyCalibrator2)
    assert cal.get_batch_size() == 2
    assert cal.read_calibration_cache() == b"old-table"
    ptr = cal.get_batch(["input"])[0]
    fed = np.frombuffer((ctypes.c_char * (2 * 3 * 4 * 4 * 4)).from_address(ptr), np.float32)
    np.testing.assert_array_equal(fed, np.arange(96, dtype=np.float32))  # float32 on the device
    with pytest.raises(ExportError, match="same size"):
        cal.get_batch(["input"])
    cal.free()
    assert not cudart.live
    with pytest.raises(ExportError, match="no batches"):
        make_entropy_calibrator([], None, trt=trt, cudart=cudart)
    with pytest.raises(ExportError, match=r"float32 \(N, 3, H, W\)"):
        make_entropy_calibrator([np.zeros((2, 4, 4), np.uint8)], None, trt=trt, cudart=cudart)


def test_calibrator_refused_on_trt11(cudart):
    with pytest.raises(ExportError, match="removed the INT8 calibrator"):
        make_entropy_calibrator([np.zeros((1, 3, 8, 8), np.float32)], None, trt=make_fake_trt("11.0.0"),
                                cudart=cudart)


def test_parse_failure_lists_parser_errors_and_writes_nothing(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0", parse_ok=False))
    with pytest.raises(ExportError, match="UNSUPPORTED_NODE"):
        onnx_to_engine(onnx_path, precision="fp16", imgsz=32)
    assert list(tmp_path.iterdir()) == [onnx_path]


def test_build_failure_writes_nothing(tmp_path, monkeypatch, cudart):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0", build_ok=False))
    with pytest.raises(ExportError, match="failed to build.*--workspace"):
        onnx_to_engine(onnx_path, precision="fp32", imgsz=32, timing_cache=False)
    assert list(tmp_path.iterdir()) == [onnx_path]


def test_builder_logs_every_io_tensor(tmp_path, caplog):
    builder = EngineBuilder(trt=make_fake_trt("10.3.0"))
    from edgeseg.export.engine_plan import plan_build

    with caplog.at_level("INFO", logger="edgeseg.export.engine"):
        io = builder.parse(tiny_onnx(tmp_path / "x.onnx"), plan_build("fp32", builder.caps, "fp32"))
    assert [(t.name, t.mode, t.shape, t.dtype) for t in io] == [
        ("input", "input", (-1, 3, -1, -1), "float32"), ("logits", "output", (-1, 4, -1, -1), "float32")]
    assert "network input 'input': shape (-1, 3, -1, -1), dtype float32" in caplog.text
    assert "network output 'logits'" in caplog.text
    with pytest.raises(ExportError, match="positive"):
        EngineBuilder(workspace_gb=0, trt=make_fake_trt("10.3.0"))


def test_missing_tensorrt_says_what_to_install(tmp_path, monkeypatch):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes 'import tensorrt' fail
    with pytest.raises(BackendUnavailableError, match=r'pip install "edgeseg\[trt\]".*NVIDIA GPU'):
        onnx_to_engine(onnx_path, precision="fp16", imgsz=32)


def test_missing_cuda_python_says_what_to_install(tmp_path, monkeypatch):
    onnx_path = tiny_onnx(tmp_path / "x.onnx")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("10.3.0"))
    for mod in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(BackendUnavailableError, match="cuda-python.*edgeseg"):
        onnx_to_engine(onnx_path, precision="fp16", imgsz=32)


def test_bad_inputs(tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        onnx_to_engine(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFormatError, match="not a readable ONNX"):
        read_onnx_meta(bad)
    plain = tiny_onnx(tmp_path / "plain.onnx")
    model = onnx.load(str(plain))
    del model.metadata_props[:]
    onnx.save(model, str(plain))
    with pytest.raises(ModelFormatError, match="no edgeseg metadata"):
        read_onnx_meta(plain)


def test_importing_the_modules_needs_no_tensorrt():
    code = ("import sys; sys.modules['tensorrt'] = None; sys.modules['cuda'] = None\n"
            "import edgeseg.export.engine, edgeseg.export.trt_calibrator, edgeseg.runtime.backends.trt\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- real TensorRT (skipped here: no GPU) -----------------------------------------------------------
@pytest.mark.trt
@pytest.mark.parametrize("dynamic", [False, True])
def test_real_fp16_engine_matches_onnxruntime(tmp_path, dynamic):
    import onnxruntime as ort
    import tensorrt

    from edgeseg.runtime.backends.trt import TensorRTBackend

    fp32 = tiny_onnx(tmp_path / "x.onnx", dynamic=dynamic)
    # TensorRT 11 takes precision from the graph: feed it the FP16 graph; 10 uses the FP16 flag on FP32.
    src = tiny_onnx(tmp_path / "x.fp16.onnx", precision="fp16", dynamic=dynamic) \
        if int(tensorrt.__version__.split(".")[0]) >= 11 else fp32
    report = onnx_to_engine(src, tmp_path / "x.fp16.engine", precision="fp16", imgsz="32x48", dynamic=dynamic,
                            max_batch=2 if dynamic else None)
    assert json.loads(Path(report["manifest"]).read_text())["precision"] == "fp16"
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 48)).astype(np.float32)
    with TensorRTBackend(report["engine"], "cuda:0") as backend:
        y = backend.infer(x)
        np.testing.assert_allclose(y, sess.run(None, {"input": x})[0], atol=2e-2, rtol=2e-2)
        if dynamic:
            x2 = np.random.default_rng(2).standard_normal((2, 3, 40, 56)).astype(np.float32)
            np.testing.assert_allclose(backend.infer(x2), sess.run(None, {"input": x2})[0], atol=2e-2, rtol=2e-2)
