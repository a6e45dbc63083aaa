"""Flicker metric (plain and motion-compensated) and the temporal filter."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.temporal import FilteredSegmenter, FlickerMeter, TemporalFilter, changed_share


def test_changed_share_counts_changed_pixels_only_where_valid():
    a = np.zeros((4, 5), np.uint8)
    b = a.copy()
    b[0, :] = 1
    assert changed_share(a, b) == pytest.approx(5 / 20)
    valid = np.ones_like(a, bool)
    valid[0, :2] = False
    assert changed_share(a, b, valid) == pytest.approx(3 / 18)
    with pytest.raises(UsageError, match="one size"):
        changed_share(a, b[:3])


def textured(h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    import cv2

    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # (h, w, 3) smooth texture


def test_compensation_removes_flicker_of_a_pure_camera_pan():
    frame = textured()
    labels = (np.arange(160)[None, :] // 20 % 3).repeat(120, 0).astype(np.uint8)  # (h, w) vertical bands
    shift = 4
    frame2 = np.roll(frame, shift, axis=1)  # the camera pans: content moves right by 4 pixels
    labels2 = np.roll(labels, shift, axis=1)
    plain, comp = FlickerMeter(), FlickerMeter(compensate=True)
    for meter in (plain, comp):
        meter.update(labels, frame)
        meter.update(labels2, frame2)
    assert plain.summary()["mean"] == pytest.approx(shift * 8 / 160, abs=0.01)  # 8 band edges (one at the wrap) moved
    assert comp.summary()["mean"] < 0.25 * plain.summary()["mean"]
    with pytest.raises(UsageError, match="frame"):
        FlickerMeter(compensate=True).update(labels)


def test_flicker_summary_and_size_changes():
    meter = FlickerMeter()
    assert meter.update(np.zeros((2, 2), np.uint8)) is None
    assert meter.update(np.ones((2, 2), np.uint8)) == 1.0
    assert meter.update(np.ones((3, 3), np.uint8)) is None  # a new size is not compared
    assert meter.summary()["pairs"] == 1 and meter.summary()["mean"] == 1.0


class FakeResult:
    """What the filter reads from a Result: logits, scale, box, frame, class_map."""

    def __init__(self, logits: np.ndarray, frame: np.ndarray) -> None:
        self._logits, self._scale, self._box, self.frame = logits, None, None, frame
        self.class_map = logits.argmax(0).astype(np.uint8)


def test_filter_holds_a_class_through_a_one_frame_blip_and_resets_on_a_cut():
    frame = np.full((4, 4, 3), 100, np.uint8)
    a = np.zeros((2, 4, 4), np.float32)
    a[0] = 2.0  # class 0 confidently
    blip = np.zeros_like(a)
    blip[1] = 0.5  # class 1, weakly
    filt = TemporalFilter(alpha=0.5)
    assert (filt.update(FakeResult(a, frame)) == 0).all()
    assert (filt.update(FakeResult(blip, frame)) == 0).all()  # one weak frame does not flip it
    cut = np.full_like(frame, 250)  # a new scene: the new frame alone decides
    assert (filt.update(FakeResult(blip, cut)) == 1).all() and filt.cuts == 1
    unfiltered = TemporalFilter(alpha=1.0)
    unfiltered.update(FakeResult(a, frame))
    assert (unfiltered.update(FakeResult(blip, frame)) == 1).all()
    with pytest.raises(UsageError):
        TemporalFilter(alpha=0)
    with pytest.raises(UsageError, match="logit"):
        TemporalFilter(space="logits")


@pytest.mark.parametrize("space", TemporalFilter.SPACES)
def test_filter_spaces_smooth_without_touching_the_results(space):
    frame = np.full((4, 4, 3), 100, np.uint8)
    a = np.zeros((2, 4, 4), np.float32)
    a[0] = 2.0
    blip = np.zeros_like(a)
    blip[1] = 1.0
    first = FakeResult(a.copy(), frame)
    filt = TemporalFilter(alpha=0.4, space=space)
    filt.update(first)
    assert (filt.update(FakeResult(blip, frame)) == 0).all()
    np.testing.assert_array_equal(first._logits, a)  # the filter's state is its own copy
    q = FakeResult(np.array([[[200]], [[10]]], np.uint8), frame[:1, :1])  # quantized logits
    assert TemporalFilter(space=space).update(q)[0, 0] == 0


def test_filtered_segmenter_runs_in_the_pipeline_in_order(tiny_model, tmp_path):
    from edgeseg.runtime.pipeline import run_pipeline
    from edgeseg.runtime.sources import open_source

    frames = [np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8) for i in range(3)]
    with Segmenter(tiny_model.path) as seg:
        plain = [seg(f).class_map for f in frames]
        filt = FilteredSegmenter(seg, TemporalFilter(alpha=1.0))  # alpha 1: exactly the plain maps
        assert filt.concurrent_infer is False and filt.meta is seg.meta
        got = [filt(f).class_map for f in frames]
        for a, b in zip(plain, got, strict=True):
            np.testing.assert_array_equal(a, b)
        import cv2

        for i, f in enumerate(frames):
            cv2.imwrite(str(tmp_path / f"{i}.png"), f)
        stats = run_pipeline(FilteredSegmenter(seg, TemporalFilter()), open_source(str(tmp_path)), [],
                             render=None)
    assert stats.frames == 3


def test_filter_needs_logits(make_tiny_onnx):
    model = make_tiny_onnx(output_kind="class_map")
    with Segmenter(model.path) as seg:
        res = seg(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(UsageError, match="fuse-argmax"):
        TemporalFilter().update(res)


def test_predict_temporal_filter_option(tiny_onnx, tmp_path, capsys):
    from edgeseg.cli import main

    src = "synthetic://?frames=3&size=48x64"
    assert main(["predict", str(tiny_onnx), "--source", src, "--temporal-filter", "0.5", "--threads", "1",
                 "--save", str(tmp_path / "out.mp4")]) == 0
    assert main(["predict", str(tiny_onnx), "--source", src, "--temporal-filter", "0.5", "--workers", "2",
                 "--save", str(tmp_path / "out2.mp4")]) != 0
    assert "--workers 1" in capsys.readouterr().err


def test_val_flicker_reports_plain_and_compensated(tiny_onnx, tmp_path, capsys):
    import json

    from edgeseg.cli import main

    out = tmp_path / "f.json"
    assert main(["val", str(tiny_onnx), "--flicker", "synthetic://?frames=4&size=48x64", "--threads", "1",
                 "--json", str(out)]) == 0
    assert "motion-compensated" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["frames"] == 4 and report["flicker"]["pairs"] == 3
    assert 0.0 <= report["flicker_compensated"]["mean"] <= 1.0
    assert main(["val", str(tiny_onnx), "--flicker", "synthetic://?frames=1&size=48x64"]) != 0


def test_temporal_and_confidence_modules_do_not_need_torch():
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None; "
            "import edgeseg.runtime.temporal, edgeseg.runtime.confidence, edgeseg.cli.val_cmd; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
