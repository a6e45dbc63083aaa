"""The OpenVINO backend: agreement with ONNX Runtime, IR metadata round trip, devices, bad input."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

import numpy as np
import pytest

from edgeseg.runtime import zoo
from edgeseg.runtime.errors import BackendUnavailableError, ModelFormatError, UsageError
from edgeseg.runtime.segmenter import Segmenter, backend_kind
from edgeseg.runtime.synthetic import SceneGenerator

FP32 = zoo.resolve("camvid-unet-lite")
ORT_INT8 = zoo.resolve("camvid-unet-lite.int8")


def _ov():
    return pytest.importorskip("openvino", reason="OpenVINO not installed (pip install 'edgeseg[openvino]')")


def _frames(n: int, hw: tuple[int, int] = (360, 480)) -> list[np.ndarray]:
    gen = SceneGenerator(hw, seed=11)
    return [np.ascontiguousarray(gen.scene(i)[0]) for i in range(n)]  # (H, W, 3) uint8 driving scenes


def test_same_file_class_maps_agree_with_onnxruntime():
    _ov()
    frames = _frames(3)
    with Segmenter(FP32, threads=1) as ort_seg, Segmenter(FP32, backend="openvino", threads=1) as ov_seg:
        agree = [float((ort_seg(f).class_map == ov_seg(f).class_map).mean()) for f in frames]
        res = ov_seg(frames[0])
        info = ov_seg.info
    assert min(agree) >= 0.995, agree
    assert set(res.timings) == {"preprocess_ms", "infer_ms", "postprocess_ms", "total_ms"} and res.class_map.dtype == np.uint8
    assert info["backend"] == "openvino" and info["device"] == "CPU" and info["backend_details"]["pin"] is False


def test_ir_round_trip_keeps_metadata(tmp_path):
    ov = _ov()
    from edgeseg.runtime.backends.ov import write_props

    with Segmenter(FP32, backend="openvino", threads=1) as onnx_seg:
        meta = onnx_seg.meta.with_(extra={"note": "ir"})
        frame = _frames(1)[0]
        want = onnx_seg(frame).class_map
    model = ov.Core().read_model(str(FP32))
    write_props(model, meta)
    xml = tmp_path / "m.xml"
    ov.save_model(model, str(xml), compress_to_fp16=False)  # the same float32 weights as the ONNX
    assert backend_kind(xml) == "openvino"
    with Segmenter(xml, threads=1) as seg:
        assert seg.meta == meta
        assert np.array_equal(seg(frame).class_map, want)


def _plain_ir(ov, tmp_path):
    """An IR without edgeseg metadata: a 1x1 convolution from 3 to 4 channels."""
    from openvino import opset13 as ops

    x = ops.parameter([1, 3, 8, 8], np.float32, name="images")
    w = ops.constant(np.random.default_rng(0).normal(size=(4, 3, 1, 1)).astype(np.float32))
    y = ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1])  # (1, 4, 8, 8) logits
    xml = tmp_path / "plain.xml"
    ov.save_model(ov.Model([y], [x], "plain"), str(xml))
    return xml


def test_ir_without_metadata(tmp_path):
    ov = _ov()
    xml = _plain_ir(ov, tmp_path)
    with pytest.raises(ModelFormatError, match="no edgeseg metadata in its rt_info.*int8-target openvino"):
        Segmenter(xml)
    with Segmenter(xml, classes=["a", "b", "c", "d"]) as seg:  # classes by hand, the rest from the graph
        assert seg(np.zeros((16, 16, 3), np.uint8)).class_map.shape == (16, 16)
    (tmp_path / "plain.bin").unlink()
    with pytest.raises(ModelFormatError, match="no weights file plain.bin"):
        Segmenter(xml, classes=["a", "b", "c", "d"])


def test_unknown_and_absent_devices_name_those_present():
    _ov()
    from edgeseg.runtime.backends.ov import devices

    present = devices()
    with pytest.raises(UsageError, match=f"does not exist; devices here: {present[0]}"):
        Segmenter(FP32, backend="openvino", device="XPU")
    for absent in {"GPU", "NPU"} - {d.split(".")[0] for d in present}:
        with pytest.raises(BackendUnavailableError, match=f"'{absent}' is not present here; devices here: "):
            Segmenter(FP32, backend="openvino", device=absent)
    with pytest.raises(UsageError, match="pick the OpenVINO device"):
        Segmenter(FP32, backend="openvino", providers=["cpu"])


@pytest.mark.parametrize("device", ["GPU", "NPU"])
def test_gpu_and_npu_where_present(device):
    _ov()
    from edgeseg.runtime.backends.ov import devices

    if not any(d.split(".")[0] == device for d in devices()):
        pytest.skip(f"no OpenVINO {device} device on this machine (needs Intel's {device} driver)")
    frame = _frames(1)[0]
    with Segmenter(FP32, backend="openvino", device=device) as seg, Segmenter(FP32, threads=1) as ref:
        assert (seg(frame).class_map == ref(frame).class_map).mean() >= 0.99


def test_ort_flavour_int8_warns_once_that_it_is_the_slow_form(caplog):
    _ov()
    with caplog.at_level(logging.WARNING, logger="edgeseg.runtime"):
        with Segmenter(ORT_INT8, backend="openvino", threads=1) as seg:
            assert seg(_frames(1)[0]).class_map.shape == (360, 480)
    msgs = [r.getMessage() for r in caplog.records if "INT8" in r.getMessage()]
    assert len(msgs) == 1 and "slow" in msgs[0] and "--int8-target openvino" in msgs[0]


def test_one_segmenter_shared_by_threads():
    _ov()
    frames = _frames(4, (120, 160))
    with Segmenter(FP32, backend="openvino", threads=1) as seg:
        want = [seg(f).class_map for f in frames]
        got: dict[int, np.ndarray] = {}

        def work(i: int) -> None:
            got[i] = seg(frames[i]).class_map

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(frames))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert all(np.array_equal(got[i], want[i]) for i in range(len(frames)))


def test_without_openvino_says_which_extra():
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from edgeseg.runtime.segmenter import Segmenter\n"
        "from edgeseg.runtime.errors import BackendUnavailableError\n"
        "seg = Segmenter('camvid-unet-lite', threads=1)\n"  # auto still runs ONNX on ONNX Runtime
        "assert seg.info['backend'] == 'onnxruntime'\n"
        "try:\n"
        "    Segmenter('camvid-unet-lite', backend='openvino')\n"
        "except BackendUnavailableError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OpenVINO is not installed; pip install 'edgeseg[openvino]'"


def test_bench_runs_both_backends_interleaved_and_info_lists_devices(tiny_onnx, tmp_path, capsys):
    _ov()
    from edgeseg.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_onnx), "--backend", "ort,openvino", "--runs", "2", "--warmup", "1",
                 "--rounds", "2", "--threads", "1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["models"]
    assert [r["backend"] for r in rows] == ["onnxruntime", "openvino"] and all(r["runs"] == 2 for r in rows)
    assert main(["info", str(tiny_onnx), "--backend", "openvino"]) == 0
    text = capsys.readouterr().out
    assert "openvino on CPU" in text and "devices: CPU (" in text
