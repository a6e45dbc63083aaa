"""Confidence from logits: the softmax math, quantized logits, and Result's lazy confidence."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.runtime import Segmenter
from edgeseg.runtime.confidence import confidence_map, frame_confidence, softmax_top2
from edgeseg.runtime.errors import UsageError


def numpy_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(0))  # (C, h, w)
    return e / e.sum(0)


def test_max_softmax_and_margin_match_numpy():
    logits = np.random.default_rng(0).normal(0, 3, (6, 7, 9)).astype(np.float32)  # (C, h, w)
    p = np.sort(numpy_softmax(logits.astype(np.float64)), axis=0)  # (C, h, w) ascending
    np.testing.assert_allclose(confidence_map(logits), p[-1], rtol=1e-5)
    np.testing.assert_allclose(confidence_map(logits, "margin"), p[-1] - p[-2], atol=1e-6)
    p1, p2 = softmax_top2(logits)
    assert (p1 >= p2).all() and (p1 >= 1 / 6 - 1e-6).all()


def test_quantized_logits_need_only_the_scale():
    rng = np.random.default_rng(1)
    q = rng.integers(0, 256, (4, 5, 6), dtype=np.uint8)  # (C, h, w) uint8
    scale, zero = 0.05, 128
    float_logits = (q.astype(np.float32) - zero) * scale
    np.testing.assert_allclose(confidence_map(q, scale=scale), confidence_map(float_logits), rtol=1e-5)


def test_ties_give_the_lowest_confidence():
    logits = np.zeros((3, 2, 2), np.float32)
    np.testing.assert_allclose(confidence_map(logits), 1 / 3, rtol=1e-6)
    np.testing.assert_allclose(confidence_map(logits, "margin"), 0, atol=1e-7)


def test_frame_score_and_bad_arguments():
    conf = np.array([[0.2, 0.4], [0.9, 1.0]], np.float32)
    score = frame_confidence(conf, threshold=0.5)
    assert score.mean == pytest.approx(0.625) and score.low_share == 0.5
    with pytest.raises(UsageError):
        frame_confidence(conf, threshold=2)
    with pytest.raises(UsageError, match="margin"):
        confidence_map(np.zeros((2, 1, 1), np.float32), "marg")
    with pytest.raises(UsageError, match="C >= 2"):
        confidence_map(np.zeros((1, 1, 1), np.float32))


def test_result_confidence_is_lazy_and_matches_the_model(tiny_model):
    frame = np.random.default_rng(2).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    with Segmenter(tiny_model.path) as seg:
        res = seg(frame)
        later = seg(255 - frame)  # a second call must not change the first result's logits
    assert not res._conf  # nothing computed until asked
    expected = numpy_softmax(tiny_model.logits(frame)).max(0)  # (h, w) at model resolution
    assert res.confidence.shape == frame.shape[:2] and res.confidence.dtype == np.float32
    np.testing.assert_allclose(res._lowres_confidence("max_softmax"), expected, atol=1e-4)
    score = res.frame_confidence(0.6)
    assert score.mean == pytest.approx(float(expected.mean()), abs=1e-4)
    assert score.low_share == pytest.approx(float((expected < 0.6).mean()), abs=1e-3)
    assert res.confidence_map("margin").max() <= 1.0
    with pytest.raises(UsageError, match="margin"):
        res.confidence_map("margins")
    assert later.frame_confidence().mean != pytest.approx(score.mean)


def test_letterbox_confidence_covers_the_picture_only(tiny_onnx):
    frame = np.random.default_rng(3).integers(0, 256, (30, 120, 3), dtype=np.uint8)
    with Segmenter(tiny_onnx, fit="letterbox") as seg:
        res = seg(frame)
    assert res._lowres_confidence("max_softmax").shape == (16, 64)  # 48x64 input, 4:1 picture: 64 x 16
    assert res.confidence.shape == (30, 120)


def test_class_map_models_say_they_have_no_confidence(make_tiny_onnx):
    model = make_tiny_onnx(output_kind="class_map")
    with Segmenter(model.path) as seg:
        res = seg(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(UsageError, match="fuse-argmax"):
        _ = res.confidence


def test_segmenter_can_drop_the_logits(tiny_model):
    with Segmenter(tiny_model.path) as seg:
        seg.keep_logits = False  # a caller holding many results keeps only their class maps
        res = seg(np.zeros((48, 64, 3), np.uint8))
    assert res._logits is None
    with pytest.raises(UsageError, match="keep_logits"):
        res.frame_confidence()


def test_logits_are_copied_out_of_a_reused_buffer_only_when_asked(tiny_model):
    frame = np.zeros((48, 64, 3), np.uint8)
    with Segmenter(tiny_model.path) as seg:
        seg.backend.fresh_outputs = False  # as TensorRT: infer returns the same buffer every call
        assert seg(frame)._logits is None  # by default no per-frame copy
        seg.keep_logits = True
        res = seg(frame)
    assert res._logits is not None and res.frame_confidence() is not None


def test_bundled_int8_model_gives_sane_confidence():
    with Segmenter("camvid-unet-lite.int8", threads=1) as seg:
        assert seg.meta.output_quant is not None
        res = seg(np.full((360, 480, 3), 128, np.uint8))
    conf = res.confidence
    assert conf.shape == (360, 480) and 1 / 11 - 1e-6 <= conf.min() and conf.max() <= 1.0 + 1e-6


def test_shade_uncertain_greys_out_only_low_confidence_pixels(tiny_model):
    from edgeseg.runtime.confidence import shade_uncertain

    image = np.full((2, 2, 3), 200, np.uint8)
    conf = np.array([[0.2, 0.9], [0.9, 0.9]], np.float32)
    out = shade_uncertain(image, conf, threshold=0.5, strength=0.5)
    assert (out[0, 0] == 132).all() and (out[1:] == 200).all() and (out[0, 1] == 200).all()
    assert (image == 200).all()  # the input is left alone
    with pytest.raises(UsageError):
        shade_uncertain(image, conf[:1])
    frame = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with Segmenter(tiny_model.path) as seg:
        res = seg(frame)
    shaded = res.shade_uncertain(threshold=1.01)  # every pixel is below: all shaded
    assert shaded.shape == frame.shape and (shaded != res.overlay()).any()
