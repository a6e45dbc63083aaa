"""The share_concat_ranges pass (export/passes/share_concat_ranges.py)."""

from __future__ import annotations

import json

import numpy as np
from testkit.pass_graphs import calib_ranges, concat_graph, concat_params, images, run, span

from edgeseg.export import quantize_onnx, read_meta
from edgeseg.export.passes import PassContext, pass_counts, run_pass


def test_concat_ranges_are_shared_for_onnx_runtime(unet_onnx, tmp_path):
    calib = images(4, (64, 96))
    shared = quantize_onnx(unet_onnx[0], tmp_path / "s.int8.onnx", calib=calib, target="ort",
                           cache_path=tmp_path / "c.calib.json")
    plain = quantize_onnx(unet_onnx[0], tmp_path / "p.int8.onnx", calib=calib, target="ort",
                          cache_path=tmp_path / "c.calib.json", skip_passes=["share_concat_ranges"])
    assert plain.cache_hit  # same calibration: the cache holds the calibrated ranges, not the shared ones
    assert len(shared.changed("share_concat_ranges")) == 4 and pass_counts(read_meta(shared.path).extra)["share_concat_ranges"] == 4
    assert [len(p) for p in concat_params(shared.path)] == [1, 1, 1, 1]
    assert max(len(p) for p in concat_params(plain.path)) > 1
    x = np.random.default_rng(5).standard_normal((1, 3, 64, 96)).astype(np.float32)
    a, b = (read_meta(r.path).float_logits(run(r.path, x)) for r in (shared, plain))  # uint8 logits, dequantized
    assert np.abs(a - b).max() < 0.25 * np.abs(b).max()  # the same model, a little less precise on some inputs


def test_share_concat_ranges_follows_resizes_back_and_merges_chained_concats():
    ranges = calib_ranges(ra=(0, 4), ua=(0, 3.9), rb=(0, 6), cat1=(0, 6), rc=(-1, 5), cat2=(-1, 6))
    assert run_pass("share_concat_ranges", concat_graph(), PassContext(ranges=ranges)) == ["cat1", "cat2"]
    # The Resize takes its input's parameters, so ra (not only ua) must carry the shared range.
    assert {span(ranges, k) for k in ("ra", "ua", "rb", "cat1", "rc", "cat2")} == {(-1.0, 6.0)}


def test_share_concat_ranges_leaves_far_apart_ranges_and_unquantized_inputs_alone():
    ranges = calib_ranges(ra=(0, 1), ua=(0, 1), rb=(0, 6), cat1=(0, 6), rc=(0, 6), cat2=(0, 6))
    before = json.dumps(ranges, sort_keys=True)
    assert run_pass("share_concat_ranges", concat_graph(), PassContext(ranges=ranges)) == []  # ra's span is 1/6 of the union's
    assert json.dumps(ranges, sort_keys=True) == before
    ranges = calib_ranges(ra=(0, 4), ua=(0, 4), cat1=(0, 6), rc=(-1, 5), cat2=(0, 6))  # rb left in float
    assert run_pass("share_concat_ranges", concat_graph(), PassContext(ranges=ranges)) == ["cat2"]  # cat1 cannot share; cat2 still can
    assert span(ranges, "ra") == (0.0, 4.0) and span(ranges, "rc") == (-1.0, 6.0)
