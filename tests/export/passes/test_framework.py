"""The pass framework (export/passes/__init__.py, base.py): stages, records, markers, one index per run."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from testkit.pass_graphs import bilinear_head_graph, d2s_graph, run

from edgeseg.export.passes import (
    PASS_KEY,
    PASSES,
    STAGES,
    GraphIndex,
    check_pass_names,
    pass_counts,
    passes_meta,
    run_stage,
)
from edgeseg.runtime.errors import UsageError


def test_every_stage_names_known_passes_and_every_pass_says_what_it_does():
    assert {n for names in STAGES.values() for n in names} == set(PASSES)  # each pass runs somewhere
    assert STAGES["tensorrt"] == ()
    for name, p in PASSES.items():
        assert p.name == name and p.doc and len(p.doc) < 120


def test_a_misspelt_pass_name_gets_a_close_match():
    with pytest.raises(UsageError, match="unknown pass 'sink_dequant'; did you mean 'sink_dequantize'"):
        check_pass_names(["sink_dequant"])
    assert check_pass_names(["pad_input_channels"]) == ("pad_input_channels",)


class CountingIndex(GraphIndex):
    inferences = 0

    @property
    def dims(self):
        if self._dims is None:
            self.inferences += 1
        return super().dims


def test_a_stage_shares_one_index_infers_shapes_once_and_records_every_pass():
    model = bilinear_head_graph()
    x = np.random.default_rng(0).standard_normal((1, 5, 6, 7)).astype(np.float32)
    want = run(model, x)
    index = CountingIndex(model)
    records = run_stage("ort_before_calibration", model, index=index)
    # subpixel makes a DepthToSpace, split turns it into transposes, channels_last reads its input NHWC:
    # each later pass finds the shapes the earlier one recorded, with no second inference
    assert [(r.name, r.count) for r in records] == [("fold_input_normalization", 0), ("subpixel_bilinear_head", 1),
                                                    ("split_depth_to_space", 1), ("channels_last_depth_to_space", 1)]
    assert index.inferences == 1
    onnx.checker.check_model(model, full_check=True)
    assert np.abs(run(model, x) - want).max() < 1e-5
    created = [n for n in model.graph.node if any(p.key == PASS_KEY for p in n.metadata_props)]
    assert {p.value for n in created for p in n.metadata_props if p.key == PASS_KEY} == {
        "subpixel_bilinear_head", "split_depth_to_space", "channels_last_depth_to_space"}
    assert model.graph.node[0].op_type == "Relu" and not model.graph.node[0].metadata_props  # untouched


def test_disabled_passes_leave_the_graph_and_are_recorded_as_disabled():
    model = d2s_graph(1, 3, 2, 4, 4)
    before = model.SerializeToString()
    records = run_stage("export", model, skip=["split_depth_to_space"])
    assert model.SerializeToString() == before
    assert passes_meta(records) == {"passes": "", "passes_disabled": "split_depth_to_space"}
    records = run_stage("export", model)
    assert passes_meta(records) == {"passes": "split_depth_to_space=1", "passes_disabled": ""}


def test_pass_counts_reads_the_passes_entry_and_older_per_pass_keys():
    assert pass_counts({"passes": "split_depth_to_space=3,sink_dequantize=2,split_depth_to_space=1"}) == {
        "split_depth_to_space": 4, "sink_dequantize": 2}
    assert pass_counts({"nchw_resizes": "4", "sunk_dequantize": "9", "raw_uint8_input": "conv"}) == {
        "keep_nearest_resizes_nchw": 4, "sink_dequantize": 9}


@pytest.mark.parametrize("model", ["missing.pt", "missing.onnx"])
def test_export_no_pass_names_a_close_match_before_any_work(model, tmp_path, capsys):
    from edgeseg.cli import main

    extra = ["--classes", str(tmp_path / "c.txt"), "--mean", "0,0,0", "--std", "1,1,1"] if model.endswith("onnx") else []
    (tmp_path / "c.txt").write_text("a\nb\n", encoding="utf-8")
    assert main(["export", str(tmp_path / model), "--no-pass", "sink_dequant", *extra]) != 0
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: unknown pass 'sink_dequant'; did you mean 'sink_dequantize'?")
