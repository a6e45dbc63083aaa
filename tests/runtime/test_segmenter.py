"""Segmenter on tiny ONNX models: class maps against a numpy reference, layouts, batch, bad inputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgeseg.runtime import Result, Segmenter
from edgeseg.runtime.errors import ModelFormatError, UsageError
from edgeseg.runtime.metadata import default_palette


def _random_frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _assert_matches(class_map: np.ndarray, expected: np.ndarray, margin: np.ndarray) -> None:
    """Equal everywhere except where the reference is ambiguous (near-tied logits, border samples)."""
    assert class_map.shape == expected.shape and class_map.dtype == np.uint8
    differ = class_map != expected
    assert not (differ & (margin > 1e-3)).any(), f"{differ.sum()} pixels differ from the numpy reference"
    assert (margin > 1e-3).mean() > 0.5  # most pixels are unambiguous, so the check has teeth


@pytest.mark.parametrize("hw", [(48, 64), (540, 960), (37, 101), (5, 3)])
def test_class_map_matches_reference_at_any_frame_size(tiny_model, hw):
    frame = _random_frame(*hw)
    with Segmenter(tiny_model.path) as seg:
        res = seg(frame)
    expected, margin = tiny_model.reference(frame)
    _assert_matches(res.class_map, expected, margin)
    assert isinstance(res, Result) and res.frame is frame
    assert set(res.timings) == {"preprocess_ms", "infer_ms", "postprocess_ms", "total_ms"}
    assert all(v >= 0 for v in res.timings.values())
    stages = res.timings["preprocess_ms"] + res.timings["infer_ms"] + res.timings["postprocess_ms"]
    assert res.timings["total_ms"] == pytest.approx(stages)


@pytest.mark.parametrize("layout,kind", [("NCHW_RGB_F32", "class_map"), ("NHWC_BGR_U8", "logits"),
                                         ("NHWC_BGR_U8", "class_map")])
def test_fused_layouts_and_in_graph_argmax_match_reference(make_tiny_onnx, layout, kind):
    model = make_tiny_onnx(input_layout=layout, output_kind=kind)
    frame = _random_frame(135, 240, seed=3)
    seg = Segmenter(model.path)
    assert seg.info["layout"] == layout and seg.info["output_kind"] == kind
    expected, margin = model.reference(frame)
    _assert_matches(seg(frame).class_map, expected, margin)


def test_results_own_their_class_maps(tiny_model):
    seg = Segmenter(tiny_model.path)
    a, b = _random_frame(60, 80, 1), _random_frame(60, 80, 2)
    ra = seg(a)
    kept = ra.class_map.copy()
    seg(b)  # a later call must not overwrite an earlier result (the pipeline renders while inferring)
    np.testing.assert_array_equal(ra.class_map, kept)


@pytest.mark.parametrize("concurrent", [True, False])  # ONNX Runtime; a one-at-a-time backend (TensorRT, PyTorch)
def test_one_segmenter_shared_by_threads_gives_single_thread_results(tiny_model, monkeypatch, concurrent):
    from edgeseg.runtime.backends.ort import OnnxRuntimeBackend

    monkeypatch.setattr(OnnxRuntimeBackend, "concurrent_runs", concurrent)
    seg = Segmenter(tiny_model.path, threads=1)
    frames = [_random_frame(540, 960, 1), _random_frame(37, 101, 2), _random_frame(240, 320, 3)]
    expected = [seg(f).class_map for f in frames]
    wrong: list[tuple[int, int]] = []

    def work(k: int) -> None:
        for j in range(40):
            i = (k + j) % len(frames)
            if not np.array_equal(seg(frames[i]).class_map, expected[i]):
                wrong.append((k, j))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong, f"{len(wrong)} of 160 results differ from the same frame segmented alone"


@pytest.mark.parametrize("threads", ["2", 1.5, -1, True])
def test_bad_thread_counts_are_refused(tiny_model, threads):
    with pytest.raises(UsageError, match=f"threads {threads!r} must be a whole number"):
        Segmenter(tiny_model.path, threads=threads)


def test_class_ids_by_name_any_case_or_id(tiny_model):
    res = Segmenter(tiny_model.path)(_random_frame(20, 30))
    classes = res.classes
    assert res.class_ids([classes[1].upper(), 0, "2"]) == [1, 0, 2]
    with pytest.raises(UsageError, match="class id 99 is out of range"):
        res.class_ids([99])
    with pytest.raises(UsageError, match="unknown class 'nope'"):
        res.class_ids(["nope"])


def test_closed_segmenter_says_so(tiny_model):
    with Segmenter(tiny_model.path) as seg:
        seg(_random_frame(20, 30))
    for use in (lambda: seg(_random_frame(20, 30)), lambda: seg.info, lambda: seg.infer_prepared(None)):
        with pytest.raises(UsageError, match="Segmenter for .* is closed; create a new one"):
            use()
    seg.close()  # a second close is harmless


@pytest.mark.parametrize("batch", [1, None])
def test_batch_equals_single_calls(make_tiny_onnx, batch):
    model = make_tiny_onnx(batch=batch)
    seg = Segmenter(model.path)
    frames = [_random_frame(90, 160, s) for s in range(3)] + [_random_frame(41, 57, 9)]
    results = seg.batch(frames)
    assert len(results) == 4
    for frame, res in zip(frames, results, strict=True):
        np.testing.assert_array_equal(res.class_map, seg(frame).class_map)
        assert res.frame is frame
    assert seg.batch([]) == []
    assert seg.info["batch"] == (1 if batch == 1 else "dynamic")


def test_dynamic_hw_uses_imgsz_or_preferred_size(make_tiny_onnx):
    model = make_tiny_onnx(hw=None, preferred_hw=(32, 48))
    assert Segmenter(model.path).input_size == (32, 48)
    seg = Segmenter(model.path, imgsz="24x40")
    assert seg.input_size == (24, 40) and seg.info["input_size"] == [24, 40]
    frame = _random_frame(100, 200, 4)
    model.size = (24, 40)  # the reference resizes to the size actually used
    expected, margin = model.reference(frame)
    _assert_matches(seg(frame).class_map, expected, margin)


def test_dynamic_hw_without_any_size_asks_for_imgsz(make_tiny_onnx):
    model = make_tiny_onnx(hw=None)
    with pytest.raises(UsageError, match="pass imgsz"):
        Segmenter(model.path)


def test_static_model_refuses_other_imgsz(tiny_model):
    with pytest.raises(UsageError, match="fixed input size 48x64"):
        Segmenter(tiny_model.path, imgsz=(96, 128))
    assert Segmenter(tiny_model.path, imgsz="48x64").input_size == (48, 64)


def test_info_and_meta(tiny_model):
    seg = Segmenter(tiny_model.path, threads=1)
    info = seg.info
    assert info["classes"] == [f"class{i}" for i in range(4)]
    assert info["palette"] == [list(c) for c in default_palette(4)]
    assert info["input_size"] == [48, 64] and info["precision"] == "fp32"
    assert info["backend"] == "onnxruntime" and info["providers"] == ["CPUExecutionProvider"]
    assert info["backend_details"]["threads"] == 1
    assert seg.meta == tiny_model.meta
    assert "onnxruntime" in repr(seg)


def test_metadata_less_model_needs_classes(make_tiny_onnx):
    model = make_tiny_onnx(with_meta=False)
    with pytest.raises(ModelFormatError, match="no edgeseg metadata.*edgeseg export.*classes"):
        Segmenter(model.path)
    seg = Segmenter(model.path, classes=["a", "b", "c", "d"], mean=model.mean, std=model.std)
    assert seg.classes == ("a", "b", "c", "d") and seg.palette == default_palette(4)
    frame = _random_frame(70, 90, 5)
    expected, margin = model.reference(frame)
    _assert_matches(seg(frame).class_map, expected, margin)


def test_hand_given_classes_must_fit_the_output(make_tiny_onnx):
    model = make_tiny_onnx(with_meta=False)
    with pytest.raises(ModelFormatError, match="has 4 class channels.*2 classes are named"):
        Segmenter(model.path, classes=["a", "b"])
    with pytest.raises(ModelFormatError, match="palette"):
        Segmenter(model.path, classes=["a", "b", "c", "d"], palette=[(1, 2, 3)])
    with pytest.raises(UsageError, match="need classes"):
        Segmenter(model.path, mean=(0.5, 0.5, 0.5))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        Segmenter(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf \x00\x01\x02" * 10)
    with pytest.raises(ModelFormatError, match=r"bad.onnx is not a loadable ONNX model.*edgeseg export"):
        Segmenter(bad)
    with pytest.raises(ModelFormatError, match="is a folder"):
        Segmenter(tmp_path)
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="suffix"):
        Segmenter(odd)


def test_bad_frames_are_refused(tiny_model):
    seg = Segmenter(tiny_model.path)
    for bad, what in [(np.zeros((10, 10), np.uint8), "uint8 \\(H, W, 3\\)"),
                      (np.zeros((10, 10, 4), np.uint8), "BGRA"),
                      (np.zeros((10, 10, 3), np.float32), "float32"),
                      ("frame.png", "numpy")]:
        with pytest.raises(UsageError, match=what):
            seg(bad)


def test_bad_backend_and_device(tiny_model):
    with pytest.raises(UsageError, match="did you mean 'onnxruntime'"):
        Segmenter(tiny_model.path, backend="onnxruntim")
    with pytest.raises(UsageError, match="cannot run"):
        Segmenter(tiny_model.path, backend="pytorch")
    with pytest.raises(UsageError, match="device 'tpu'"):
        Segmenter(tiny_model.path, device="tpu")


def test_missing_gpu_provider_says_what_to_install(tiny_model):
    import onnxruntime as ort

    from edgeseg.runtime.errors import BackendUnavailableError

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendUnavailableError, match=r"no CUDAExecutionProvider.*edgeseg\[gpu\]"):
        Segmenter(tiny_model.path, device="cuda")
    with pytest.raises(BackendUnavailableError, match="TensorrtExecutionProvider"):
        Segmenter(tiny_model.path, backend="tensorrt")


def test_result_overlay_and_fractions(tiny_model):
    seg = Segmenter(tiny_model.path)
    frame = _random_frame(30, 40, 6)
    res = seg(frame)
    color = res.colorize()
    assert color.shape == (30, 40, 3) and res.colorize() is color  # cached
    ov = res.overlay(0.0)
    np.testing.assert_array_equal(ov, frame)
    full = res.overlay(1.0)
    np.testing.assert_array_equal(full, color)
    cleared = res.overlay(1.0, ignore=["class0", 1, 2, 3])
    np.testing.assert_array_equal(cleared, frame)
    with pytest.raises(UsageError, match="did you mean 'class1'"):
        res.overlay(0.5, ignore=["clas1"])
    fr = res.fractions()
    assert abs(sum(fr.values()) - 1.0) < 1e-9 and set(fr) <= set(seg.classes)


def test_content_box_keeps_the_aspect_ratio() -> None:
    from edgeseg.runtime.preprocess import content_box

    assert content_box((540, 960), (360, 480), "stretch") == (0, 0, 360, 480)
    assert content_box((540, 960), (360, 480), "letterbox") == (45, 0, 270, 480)  # 16:9 in 4:3: bars
    assert content_box((720, 960), (360, 480), "letterbox") == (0, 0, 360, 480)  # same aspect: no bars
    assert content_box((1000, 100), (360, 480), "letterbox") == (0, 222, 360, 36)


def test_letterbox_borders_are_the_mean_and_the_map_fits_the_frame(tiny_onnx) -> None:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.preprocess import Preprocessor

    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (30, 120, 3), dtype=np.uint8)  # 4:1, into a square-ish input
    seg = Segmenter(tiny_onnx, fit="letterbox")
    pre = Preprocessor(seg.meta, (60, 80), fit="letterbox")
    batch = pre([frame])[0]  # (3, 60, 80) float32
    top, ch, cw = 20, 20, 80  # 120x30 scaled by 2/3 into 80 wide, centred in 60 rows
    assert not batch[:, :top].any() and not batch[:, top + ch:].any()  # normalised mean = 0
    stretched = Preprocessor(seg.meta, (ch, cw))([frame])[0]
    assert np.allclose(batch[:, top:top + ch], stretched, atol=1e-5)
    res = seg(frame)
    assert res.class_map.shape == (30, 120)
    with pytest.raises(UsageError, match="letterbox"):
        Segmenter(tiny_onnx, fit="crop")
