"""Models exported once per session for the graph-pass tests."""

from __future__ import annotations

import pytest
from testkit.pass_graphs import CLASSES

from edgeseg.export import torch_to_onnx
from edgeseg.models import create_model


@pytest.fixture(scope="session")
def unet_onnx(tmp_path_factory):
    """unet_lite (base 8): four nearest x2 Resizes in its decoder; static and dynamic exports."""
    import torch

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()
    d = tmp_path_factory.mktemp("fence")
    static = torch_to_onnx(model, d / "u.onnx", imgsz="64x96", classes=CLASSES)
    dynamic = torch_to_onnx(model, d / "ud.onnx", imgsz="64x96", classes=CLASSES, dynamic=True)
    return static, dynamic


@pytest.fixture(scope="session")
def fcn_onnx(tmp_path_factory):
    """fcn8s_lite exports its transposed convolutions as conv + DepthToSpace, then crops with a Slice."""
    import torch

    torch.manual_seed(0)
    model = create_model("fcn8s_lite", len(CLASSES)).eval()
    return torch_to_onnx(model, tmp_path_factory.mktemp("sink") / "f.onnx", imgsz="64x96", classes=CLASSES)
