"""The fold_input_normalization pass (export/passes/fold_input_normalization.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from testkit.pass_graphs import CLASSES, frames, fused, run

from edgeseg.export import torch_to_onnx
from edgeseg.export.passes import input_normalizer, run_pass


@pytest.mark.parametrize("mean, tol", [((0.4, 0.6, 0.2), 1e-4), ((0.485, 0.456, 0.406), 0.05)])
def test_folded_normalisation_reads_the_frame_with_the_mean_colour_as_border(tiny_model, tmp_path, mean, tol):

    src = fused(tiny_model, tmp_path, batch=2, mean=mean, std=(0.229, 0.224, 0.225))
    proto = onnx.load(str(src))
    norm = input_normalizer(proto)
    assert norm is not None  # FusedPreprocess exports Transpose -> Cast -> 1x1 Conv
    folded = run_pass("fold_input_normalization", proto)
    assert folded and input_normalizer(proto) is None
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node[:4]] == ["Transpose", "Concat", "Concat", "Cast"]
    first = next(n for n in proto.graph.node if n.op_type == "Conv")
    assert folded == [first.name] and not any(a.name == "pads" for a in first.attribute)
    x = frames()
    want, got = run(src, x), run(proto, x)
    # 255 * mean whole (first case): exact up to float rounding everywhere. ImageNet means: the border
    # strips hold round(255 * mean), off by < 0.5 / 255 / std per padded tap; the interior is exact.
    assert np.abs(got - want).max() < tol
    np.testing.assert_allclose(got[:, :, 4:-4, 4:-4], want[:, :, 4:-4, 4:-4], atol=1e-4)


def test_fold_needs_a_static_frame_and_leaves_unfused_graphs_alone(tiny_model, tmp_path):

    dynamic = onnx.load(str(fused(tiny_model, tmp_path, dynamic=True)))
    assert input_normalizer(dynamic) is not None and run_pass("fold_input_normalization", dynamic) == []
    plain = onnx.load(str(torch_to_onnx(tiny_model, tmp_path / "p.onnx", imgsz="32x48", classes=CLASSES)))
    before = plain.SerializeToString()
    assert input_normalizer(plain) is None and run_pass("fold_input_normalization", plain) == []
    assert plain.SerializeToString() == before
