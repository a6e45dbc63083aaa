"""Backends: provider selection, the PyTorch reference on a real checkpoint, TensorRT availability errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime import Segmenter
from edgeseg.runtime.backends.ort import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    OnnxRuntimeBackend,
    parse_device,
    resolve_providers,
)
from edgeseg.runtime.errors import BackendUnavailableError, CheckpointError, UsageError
from edgeseg.runtime.preprocess import Postprocessor


@pytest.mark.parametrize("device,expected", [("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:1", ("cuda", 1)),
                                             ("CUDA:0", ("cuda", 0)), ("0", ("cuda", 0))])
def test_parse_device(device, expected):
    assert parse_device(device) == expected


def test_parse_device_refuses_nonsense():
    for bad in ("tpu", "cuda:x", "cuda:", ""):
        with pytest.raises(UsageError, match="cpu', 'cuda' or 'cuda:N'"):
            parse_device(bad)


def test_resolve_providers():
    gpu_build = [TRT_EP, CUDA_EP, CPU_EP]
    assert resolve_providers("cpu", None, [CPU_EP]) == [CPU_EP]
    assert resolve_providers("cuda:1", None, gpu_build) == [(CUDA_EP, {"device_id": 1}), CPU_EP]
    assert resolve_providers("cuda", ["tensorrt", "cuda"], gpu_build) == [
        (TRT_EP, {"device_id": 0}), (CUDA_EP, {"device_id": 0}), CPU_EP]
    with pytest.raises(BackendUnavailableError, match=r"no CUDAExecutionProvider.*edgeseg\[gpu\].*NVIDIA GPU"):
        resolve_providers("cuda", None, [CPU_EP])
    with pytest.raises(UsageError, match="unknown ONNX Runtime provider 'openvino'"):
        resolve_providers("cpu", ["openvino"], [CPU_EP])


def test_ort_backend_io_and_describe(tiny_model):
    be = OnnxRuntimeBackend(tiny_model.path, threads=1)
    assert be.input_shape == (1, 3, 48, 64) and be.model_hw == (48, 64)
    x = np.zeros((1, 3, 48, 64), np.float32)  # (N, 3, H, W)
    out = be.infer(x)
    assert out.shape == (1, 4, 48, 64) and out.dtype == np.float32
    d = be.describe()
    assert d["inputs"] == [{"name": "images", "shape": [1, 3, 48, 64], "dtype": "float"}]
    assert d["outputs"][0]["shape"] == [1, 4, 48, 64] and d["threads"] == 1
    be.close()
    be.close()  # twice is fine


def test_ort_backend_refuses_negative_threads(tiny_model):
    with pytest.raises(UsageError, match="threads=-1"):
        OnnxRuntimeBackend(tiny_model.path, threads=-1)


def test_argmax_matches_numpy_including_ties():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 33, 45)).astype(np.float32)  # (C, h, w)
    logits[3, :5] = logits[1, :5] = 100.0  # a tie: the lower id wins, as in np.argmax
    post = Postprocessor()
    out = post.argmax(logits)
    np.testing.assert_array_equal(out, logits.argmax(0))
    assert (out[:5] == 1).all()
    again = post.argmax(logits[:4], out=out)  # fewer classes, same buffers
    np.testing.assert_array_equal(again, logits[:4].argmax(0))
    np.testing.assert_array_equal(post.argmax(logits.astype(np.float16)), logits.astype(np.float16).argmax(0))
    # quantized uint8 logits (ONNX Runtime INT8 artifacts) are compared as they are, ties included
    q = rng.integers(0, 256, (7, 33, 45), dtype=np.uint8)
    q[:2, :4] = 0
    q[2, :4] = q[5, :4] = 255  # a tie at the top: class 2 wins
    out = post.argmax(q)
    np.testing.assert_array_equal(out, q.argmax(0))
    assert (out[:4] == 2).all() and post._best.dtype == np.uint8


def test_tensorrt_backend_import_failure_says_what_to_install(tmp_path, monkeypatch):
    import sys

    engine = tmp_path / "model.fp16.engine"
    engine.write_bytes(b"\x00" * 16)
    # None in sys.modules makes the import fail as it does where tensorrt / cuda-python are missing.
    monkeypatch.setitem(sys.modules, "edgeseg.runtime.backends.trt", None)
    with pytest.raises(BackendUnavailableError, match=r"NVIDIA GPU.*edgeseg\[trt\]"):
        Segmenter(engine)
    with pytest.raises(BackendUnavailableError, match=r"edgeseg\[trt\]"):
        Segmenter(engine, backend="tensorrt")


# -- PyTorch reference --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgeseg.runtime.metadata import default_palette
    from edgeseg.train.checkpoint import Checkpoint, save_checkpoint

    torch.manual_seed(0)
    from edgeseg.models import create_model

    model = create_model("unet_lite", 5, base=4)
    ckpt = Checkpoint(model_name="unet_lite", model_kwargs={"base": 4}, state_dict=model.state_dict(),
                      classes=[f"c{i}" for i in range(5)], palette=[list(c) for c in default_palette(5)],
                      ignore_index=255, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], input_size=[64, 96])
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(ckpt, path, with_resume_state=False)
    return path, model.eval()


def test_pytorch_backend_matches_the_model(tiny_checkpoint):
    import torch

    path, model = tiny_checkpoint
    seg = Segmenter(path)
    assert seg.info["backend"] == "pytorch" and seg.input_size == (64, 96)
    assert seg.info["batch"] == "dynamic" and seg.meta.dynamic_hw
    frame = np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    rgb = frame[:, :, ::-1].astype(np.float32) / 255.0  # (H, W, 3)
    x = torch.from_numpy(((rgb - 0.5) / 0.25).transpose(2, 0, 1).copy())[None]  # (1, 3, H, W)
    with torch.no_grad():
        logits = model(x)[0]  # (C, H, W)
    top2 = logits.topk(2, dim=0).values
    sure = (top2[0] - top2[1]).numpy() > 1e-4
    expected = logits.argmax(0).numpy().astype(np.uint8)
    got = seg(frame).class_map
    np.testing.assert_array_equal(got[sure], expected[sure])
    seg2 = Segmenter(path, imgsz="32x48")  # fully convolutional: any size
    assert seg2(frame).class_map.shape == (64, 96)
    seg.close()
    seg.close()


def test_pytorch_backend_refuses_other_files(tmp_path):
    pytest.importorskip("torch")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        Segmenter(bad)
