"""The edge models export to ONNX with dynamic H/W and match PyTorch in ONNX Runtime at other sizes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeseg.models import create_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.mark.parametrize("name", ["unet_lite", "fcn8s_lite"])
def test_dynamic_hw_export_matches_torch(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model(name, 6).eval()
    path = tmp_path / f"{name}.onnx"
    h, w = torch.export.Dim("h", min=8, max=2048), torch.export.Dim("w", min=8, max=2048)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(1, 3, 64, 96),), str(path), dynamo=True, opset_version=18,
                          input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"x": {2: h, 3: w}}, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for hw in [(61, 83), (97, 130)]:  # neither is the export size nor a multiple of 32
        x = torch.randn(1, 3, *hw)  # (1, 3, H, W)
        with torch.no_grad():
            ref = model(x).numpy()  # (1, 6, H, W)
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
        assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999
