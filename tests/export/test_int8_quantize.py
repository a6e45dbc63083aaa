"""quantize_onnx / the accuracy gate on a tiny model: targets, calibration cache, reader, float fallback."""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest

from edgeseg.export import CalibrationReader, ImageSet, quantize_onnx, read_meta, torch_to_onnx
from edgeseg.export.gate import GateFailed, quantize_with_gate
from edgeseg.export.onnx_export import run_onnx
from edgeseg.export.parity import class_maps, score_maps
from edgeseg.runtime.errors import ExportError, UsageError

CLASSES = ["road", "car", "sky", "tree", "person"]  # matches the tiny_model fixture


def _images(n: int, seed: int = 0, labels: bool = False, size: tuple[int, int] = (32, 48)) -> ImageSet:
    rng = np.random.default_rng(seed)
    imgs = tuple(rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n))  # (H, W, 3) RGB
    labs = tuple(rng.integers(0, len(CLASSES), size, dtype=np.uint8) for _ in range(n)) if labels else None
    return ImageSet(source=f"random:{seed}", ids=tuple(f"img{seed}_{i}" for i in range(n)), images=imgs,
                    labels=labs, classes=tuple(CLASSES))


@pytest.fixture
def fp32_onnx(tiny_model, tmp_path):
    return torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES)


def _zero_points(path) -> dict[int, list[np.ndarray]]:
    by_type: dict[int, list[np.ndarray]] = {}
    for init in onnx.load(str(path)).graph.initializer:
        if "zero_point" in init.name:
            by_type.setdefault(init.data_type, []).append(onnx.numpy_helper.to_array(init))
    return by_type


def test_tensorrt_target_is_symmetric_s8s8(fp32_onnx, tmp_path):
    res = quantize_onnx(fp32_onnx, tmp_path / "m.int8.trt.onnx", calib=_images(4), target="tensorrt")
    zps = _zero_points(res.path)
    assert onnx.TensorProto.UINT8 not in zps
    assert all(not z.any() for z in zps[onnx.TensorProto.INT8])  # zero point 0 everywhere
    meta = read_meta(res.path)
    assert meta.int8_target == "tensorrt" and meta.extra["activations"] == "int8 symmetric"


def test_ort_target_is_u8s8(fp32_onnx, tmp_path):
    res = quantize_onnx(fp32_onnx, tmp_path / "m.int8.onnx", calib=_images(4), target="ort")
    zps = _zero_points(res.path)
    assert onnx.TensorProto.UINT8 in zps and onnx.TensorProto.INT8 in zps
    assert res.qdq_nodes > 0 and read_meta(res.path).int8_target == "ort_cpu"


def _conv_weight_kinds(path) -> dict[str, bool]:
    """Conv node name -> True when its weight comes through a DequantizeLinear (int8)."""
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    return {n.name: n.input[1] in producer and producer[n.input[1]].op_type == "DequantizeLinear"
            for n in g.node if n.op_type == "Conv"}


def test_classifier_head_stays_float_for_ort_only(fp32_onnx, tmp_path):
    from edgeseg.export.quantize import classifier_tail

    proto = onnx.load(str(fp32_onnx))
    tail = classifier_tail(proto)
    ops = {n.name: n.op_type for n in proto.graph.node}
    assert tail and ops[tail[-1]] == "Conv"  # output side first, the classifier conv closes the chain
    assert all(ops[n] != "Conv" for n in tail[:-1])
    ort_res = quantize_onnx(fp32_onnx, tmp_path / "m.int8.onnx", calib=_images(4), target="ort", float_head=True)
    kinds = _conv_weight_kinds(ort_res.path)
    assert kinds and sum(not q for q in kinds.values()) == 1  # exactly the classifier conv in float
    assert ort_res.head_in_float and read_meta(ort_res.path).extra["head_in_float"]
    trt_res = quantize_onnx(fp32_onnx, tmp_path / "m.int8.trt.onnx", calib=_images(4), target="tensorrt")
    assert all(_conv_weight_kinds(trt_res.path).values()) and not trt_res.head_in_float
    off = quantize_onnx(fp32_onnx, tmp_path / "all.int8.onnx", calib=_images(4), float_head=False)
    assert all(_conv_weight_kinds(off.path).values())


@pytest.mark.parametrize("output_stride,dynamic,float_head", [(1, False, False), (1, True, True), (2, False, False)])
def test_ort_keeps_the_classifier_float_only_when_the_graph_resizes_logits(tmp_path, output_stride, dynamic,
                                                                          float_head):
    import torch

    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()  # stride-2 stem: bilinear x2 after the classifier
    src = torch_to_onnx(model, tmp_path / "u.onnx", imgsz="32x64", classes=CLASSES, output_stride=output_stride,
                        dynamic=dynamic)
    res = quantize_onnx(src, tmp_path / "u.int8.onnx", calib=_images(4, size=(32, 64)), target="ort")
    # static full resolution: the bilinear x2 becomes a sub-pixel conv (the subpixel_bilinear_head pass)
    # and quantizes; with dynamic shapes the Resize stays, and the classifier with it in float
    assert len(res.changed("subpixel_bilinear_head")) == int(output_stride == 1 and not dynamic)
    assert bool(res.head_in_float) is float_head
    assert sum(not q for q in _conv_weight_kinds(res.path).values()) == int(float_head)


def test_fused_preprocessing_stays_float_where_it_is_not_folded(tiny_model, tmp_path):
    from edgeseg.export.quantize import input_preprocessing

    # dynamic shapes: the ort target cannot fold the normalising conv into the first one (fold_input_normalization)
    fused = torch_to_onnx(tiny_model, tmp_path / "f.onnx", imgsz="32x48", classes=CLASSES, fuse_preprocess=True,
                          dynamic=True)
    names = input_preprocessing(onnx.load(str(fused)))
    ops = {n.name: n.op_type for n in onnx.load(str(fused)).graph.node}
    assert [ops[n] for n in names] == ["Transpose", "Cast", "Conv"]  # the frame -> normalised RGB block
    res = quantize_onnx(fused, tmp_path / "f.int8.onnx", calib=_images(4))
    assert not res.changed("raw_uint8_input")
    g = onnx.load(str(res.path)).graph
    producer = {o: n for n in g.node for o in n.output}
    norm = next(n for n in g.node if n.name == names[-1])
    # fed by the Cast and by float weights, not by DequantizeLinear: ORT runs it as a float conv
    assert all(producer.get(i) is None or producer[i].op_type != "DequantizeLinear" for i in norm.input)
    assert producer[norm.input[0]].op_type == "Cast"


def test_calibration_cache_hit_and_miss_on_provenance(fp32_onnx, tmp_path, caplog):
    cache = tmp_path / "m.calib.json"
    first = quantize_onnx(fp32_onnx, tmp_path / "a.onnx", calib=_images(4), cache_path=cache)
    assert not first.cache_hit and cache.is_file()
    stored = json.loads(cache.read_text())
    assert stored["provenance"]["method"] == "minmax" and stored["provenance"]["num_images"] == 4
    assert quantize_onnx(fp32_onnx, tmp_path / "b.onnx", calib=_images(4), cache_path=cache).cache_hit
    same = onnx.load(str(tmp_path / "a.onnx")).graph == onnx.load(str(tmp_path / "b.onnx")).graph
    assert same  # ranges from the cache give the identical model
    with caplog.at_level(logging.WARNING, logger="edgeseg.export"):
        other_images = quantize_onnx(fp32_onnx, tmp_path / "c.onnx", calib=_images(4, seed=1), cache_path=cache)
    assert not other_images.cache_hit and "images_sha256" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeseg.export"):
        other_method = quantize_onnx(fp32_onnx, tmp_path / "d.onnx", calib=_images(4, seed=1), cache_path=cache,
                                     method="percentile")
    assert not other_method.cache_hit and "method" in caplog.text


def test_calibration_cache_misses_when_the_same_names_hold_other_pixels(fp32_onnx, tmp_path, caplog):
    # Two folders with frames named alike (0001.png, ...) but different content must not share ranges.
    cache = tmp_path / "m.calib.json"
    first = _images(4, seed=0)
    quantize_onnx(fp32_onnx, tmp_path / "a.onnx", calib=first, cache_path=cache)
    renamed = ImageSet(source="other/folder", ids=first.ids, images=_images(4, seed=1).images, labels=None)
    with caplog.at_level(logging.WARNING, logger="edgeseg.export"):
        other = quantize_onnx(fp32_onnx, tmp_path / "b.onnx", calib=renamed, cache_path=cache)
    assert not other.cache_hit and "images_sha256" in caplog.text
    assert quantize_onnx(fp32_onnx, tmp_path / "c.onnx", calib=renamed, cache_path=cache).cache_hit


def test_entropy_is_not_minmax(fp32_onnx, tmp_path):
    # ONNX Runtime's entropy calibration with default bins returns the MinMax range; ours must search for a tighter one.
    mm = quantize_onnx(fp32_onnx, tmp_path / "mm.onnx", calib=_images(4), method="minmax")
    en = quantize_onnx(fp32_onnx, tmp_path / "en.onnx", calib=_images(4), method="entropy")
    scales = [[onnx.numpy_helper.to_array(i) for i in onnx.load(str(p)).graph.initializer if i.name.endswith("_scale")]
              for p in (mm.path, en.path)]
    assert any(not np.allclose(a, b) for a, b in zip(*scales, strict=True))


def test_calibration_reader_yields_preprocessed_batches(fp32_onnx):
    meta = read_meta(fp32_onnx)
    reader = CalibrationReader(_images(5), meta, (32, 48), batch=2)
    batches = list(reader)
    assert [b.shape for b in batches] == [(2, 3, 32, 48), (2, 3, 32, 48), (1, 3, 32, 48)]
    assert all(b.dtype == np.float32 for b in batches) and len(reader) == 3
    img = _images(5).images[0]
    want = (img.astype(np.float32) / 255 - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)
    np.testing.assert_allclose(batches[0][0], want.transpose(2, 0, 1), atol=1e-5)
    assert reader.get_next()["images"].shape == (2, 3, 32, 48)
    reader.rewind()
    assert sum(1 for _ in iter(reader.get_next, None)) == 3


def test_calibration_reader_fills_a_fixed_batch(fp32_onnx):
    meta = read_meta(fp32_onnx).with_(batch=3)  # a static --batch 3 export takes exactly 3 images
    batches = list(CalibrationReader(_images(2), meta, (32, 48)))
    assert [b.shape for b in batches] == [(3, 3, 32, 48), (3, 3, 32, 48)]
    assert all((b == b[:1]).all() for b in batches)  # one image per batch, repeated
    assert [b.shape for b in CalibrationReader(_images(5), meta, (32, 48), batch=2)] == [(3, 3, 32, 48)] * 3
    with pytest.raises(UsageError, match="fixed batch 3"):
        CalibrationReader(_images(5), meta, (32, 48), batch=4)
    assert next(iter(CalibrationReader(_images(2), meta.with_(dynamic_batch=True), (32, 48)))).shape[0] == 1


def test_fixed_batch_model_quantizes_and_goes_through_the_gate(tiny_model, tmp_path):
    one = torch_to_onnx(tiny_model, tmp_path / "b1.onnx", imgsz="32x48", classes=CLASSES)
    two = torch_to_onnx(tiny_model, tmp_path / "b2.onnx", imgsz="32x48", classes=CLASSES, batch=2)
    q1 = quantize_onnx(one, tmp_path / "b1.int8.onnx", calib=_images(3))
    val = _images(3, seed=7, labels=True)
    # an unreachable FP32 figure: calibration, scoring, latency probe and node ranking all run at batch 2
    with pytest.raises(GateFailed) as info:
        quantize_with_gate(two, tmp_path / "b2.int8.onnx", calib=_images(3), val=val, fp32_miou=200.0,
                           max_float_nodes=1, threads=1, failed_out=tmp_path / "failed.onnx")
    assert [s["nodes_in_float"] for s in info.value.report.steps] == [0, 1]
    assert info.value.report.latency_final_ms > 0
    q2 = quantize_onnx(two, tmp_path / "b2.int8.onnx", calib=_images(3))
    # each image fills its batch alone, so the ranges are those of the batch-1 export
    scales = [{i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(q.path)).graph.initializer
               if i.name.endswith("_scale")} for q in (q1, q2)]
    assert scales[0].keys() == scales[1].keys()
    assert all(np.array_equal(scales[0][k], scales[1][k]) for k in scales[0])
    x = np.repeat(np.random.default_rng(0).standard_normal((1, 3, 32, 48)).astype(np.float32), 2, axis=0)
    assert np.allclose(*[run_onnx(q.path, x[: 1 if q is q1 else 2])[0] for q in (q1, q2)], atol=1e-5)


def test_bad_method_target_and_precision(fp32_onnx, tmp_path):
    with pytest.raises(UsageError, match="did you mean 'percentile'"):
        quantize_onnx(fp32_onnx, tmp_path / "x.onnx", calib=_images(2), method="percentil")
    with pytest.raises(UsageError, match="did you mean 'tensorrt'"):
        quantize_onnx(fp32_onnx, tmp_path / "x.onnx", calib=_images(2), target="tensorrt10")
    q = quantize_onnx(fp32_onnx, tmp_path / "q.onnx", calib=_images(2))
    with pytest.raises(ExportError, match="int8; quantize the FP32 ONNX"):
        quantize_onnx(q.path, tmp_path / "qq.onnx", calib=_images(2))


def test_gate_keeps_sensitive_nodes_in_float_and_fails_clearly(fp32_onnx, tmp_path):
    val = _images(3, seed=7, labels=True)
    meta = read_meta(fp32_onnx)
    fp32_miou = score_maps(class_maps(fp32_onnx, val.images, (32, 48)), val, meta)["miou"]
    # An FP32 target 100 points above reality cannot be met: the gate must search, then fail.
    with pytest.raises(GateFailed, match="loses .* mIoU points") as info:
        quantize_with_gate(fp32_onnx, tmp_path / "m.int8.onnx", calib=_images(4), val=val,
                           fp32_miou=fp32_miou + 100, max_miou_drop=1.0, max_float_nodes=2, threads=1,
                           failed_out=tmp_path / "failed.onnx")
    steps = info.value.report.steps
    assert [s["nodes_in_float"] for s in steps] == [0, 1, 2]
    assert len(info.value.report.nodes_in_float) == 2
    assert info.value.result.path == tmp_path / "failed.onnx"
    kept = read_meta(info.value.result.path).extra["nodes_in_float"].split(",")
    assert kept == info.value.report.nodes_in_float
    assert not (tmp_path / "m.int8.onnx").exists()  # a model that failed never takes the artifact's name
    # With the real FP32 figure and a loose limit the first (all-INT8) attempt passes.
    res, report = quantize_with_gate(fp32_onnx, tmp_path / "ok.int8.onnx", calib=_images(4), val=val,
                                     fp32_miou=fp32_miou, max_miou_drop=100.0, threads=1)
    assert report.passed and report.nodes_in_float == [] and report.latency_all_int8_ms > 0


@pytest.mark.data
def test_calibration_images_from_camvid_are_spread_and_named(camvid_root):
    from edgeseg.export import load_images

    calib = load_images(camvid_root, "train", 4)
    assert len(calib) == 4 and len(set(calib.ids)) == 4
    assert all(i.endswith(".png") for i in calib.ids) and calib.ids == tuple(sorted(calib.ids))
    # Evenly spread over the 367 frames of the train sequences, not the first four look-alikes.
    train_names = sorted(p.name for p in (camvid_root / "train").iterdir())
    assert calib.ids[0] == train_names[0] and calib.ids[-1] == train_names[-1]
    assert calib.images[0].dtype == np.uint8 and calib.images[0].shape[2] == 3
    assert calib.ignore_index == 11 and calib.labels is not None


def test_failed_gate_leaves_the_earlier_model_byte_identical(fp32_onnx, tmp_path, monkeypatch):
    from edgeseg.export import gate

    val = _images(3, seed=7, labels=True)
    out = tmp_path / "m.int8.onnx"
    quantize_with_gate(fp32_onnx, out, calib=_images(4), val=val, fp32_miou=0.0, max_miou_drop=100.0, threads=1)
    before = out.read_bytes()
    scored = []

    def class_maps_spy(path, *a, **kw):
        assert out.read_bytes() == before  # while an attempt is scored (a kill now) the good model is in place
        scored.append(path)
        return class_maps(path, *a, **kw)

    monkeypatch.setattr(gate, "class_maps", class_maps_spy)
    with pytest.raises(GateFailed):
        quantize_with_gate(fp32_onnx, out, calib=_images(4, seed=3), val=val, fp32_miou=200.0, max_float_nodes=1,
                           threads=1)
    assert len(scored) == 2 and all(p != out for p in scored)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]  # no half-done candidates


def test_quantizing_leaves_the_applications_log_level_alone(tmp_path):
    """ONNX Runtime's quantizer warns on the root logger; edgeseg quiets it for the call only."""
    import logging

    from edgeseg.export.quantize import _quiet_quant_logs

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        with _quiet_quant_logs():
            assert root.level == logging.ERROR
        assert root.level == logging.INFO
    finally:
        root.setLevel(before)
