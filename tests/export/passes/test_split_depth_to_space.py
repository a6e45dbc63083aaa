"""The split_depth_to_space pass (export/passes/split_depth_to_space.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from testkit.pass_graphs import d2s_graph, run

from edgeseg.export.passes import run_pass, with_role


@pytest.mark.parametrize("n, c, s, h, w", [(1, 3, 2, 5, 7), (2, 4, 3, 4, 6), (1, 12, 8, 3, 5)])
def test_split_depth_to_space_is_bit_identical_and_channels_last_too(n, c, s, h, w):

    model = d2s_graph(n, c, s, h, w)
    x = np.random.default_rng(6).standard_normal((n, c * s * s, h, w)).astype(np.float32)
    before = run(model, x)
    assert run_pass("split_depth_to_space", model) == ["d2s"]
    onnx.checker.check_model(model, full_check=True)
    assert "DepthToSpace" not in {nd.op_type for nd in model.graph.node}
    assert np.array_equal(run(model, x), before)
    swapped = run_pass("channels_last_depth_to_space", model)
    assert len(swapped) == 1 and [n.name.removesuffix("_to_nhwc") for n in with_role(model, "to_nhwc")] == swapped
    onnx.checker.check_model(model, full_check=True)
    assert np.array_equal(run(model, x), before)
    first = next(nd for nd in model.graph.node if nd.input[0] == "r")
    assert first.op_type == "Transpose" and list(first.attribute[0].ints) == [0, 2, 3, 1]  # reads NHWC
    used = {i for nd in model.graph.node for i in nd.input}
    assert all(t.name in used for t in model.graph.initializer)  # the replaced Reshape's shape is gone
    assert run_pass("channels_last_depth_to_space", model) == []  # nothing left to match


@pytest.mark.parametrize("kw", [{"mode": "DCR"}, {"dynamic": True}])
def test_split_depth_to_space_leaves_dcr_and_dynamic_shapes(kw):

    model = d2s_graph(1, 3, 2, 4, 4, **kw)
    assert run_pass("split_depth_to_space", model) == []
    assert [nd.op_type for nd in model.graph.node] == ["Relu", "DepthToSpace"]
