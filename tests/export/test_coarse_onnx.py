"""Cutting an edgeseg FP32 ONNX at its head's output stride, without the checkpoint."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeseg.export import read_meta, torch_to_onnx
from edgeseg.export.coarse_onnx import to_output_stride
from edgeseg.export.onnx_io import get_meta, load_onnx, save_onnx
from edgeseg.models import create_model
from edgeseg.runtime import Segmenter, zoo
from edgeseg.runtime.errors import ModelFormatError, UsageError

CLASSES = ["road", "car", "sky", "tree", "person"]


def _run(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def unet_lite(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()
    d = tmp_path_factory.mktemp("coarse")
    full = torch_to_onnx(model, d / "m.onnx", imgsz="66x96", classes=CLASSES)  # 66: the crop matters
    s2 = torch_to_onnx(model, d / "m-s2.onnx", imgsz="66x96", classes=CLASSES, output_stride=2)
    return full, s2


def test_the_cut_graph_equals_the_checkpoint_export_at_stride_2(unet_lite, tmp_path):
    full, s2 = unet_lite
    cut = save_onnx(to_output_stride(load_onnx(full), 2), tmp_path / "cut.onnx")
    x = np.random.default_rng(0).standard_normal((1, 3, 66, 96)).astype(np.float32)
    got, want = _run(cut, x), _run(s2, x)
    assert got.shape == want.shape == (1, len(CLASSES), 33, 48)
    assert np.abs(got - want).max() < 1e-4
    meta = read_meta(cut)
    assert meta.output_stride == 2 and meta.classes == tuple(CLASSES) and meta.precision == "fp32"
    assert not any(n.op_type == "Resize" and n.output[0] in {o.name for o in load_onnx(cut).graph.output}
                   for n in load_onnx(cut).graph.node)
    frame = np.random.default_rng(1).integers(0, 255, (66, 96, 3), np.uint8)
    with Segmenter(cut) as a, Segmenter(s2) as b:  # the runtime upsamples both class maps the same way
        assert np.array_equal(a(frame).class_map, b(frame).class_map)


def test_the_bundled_model_cuts_to_half_resolution_logits(tmp_path):
    proto = load_onnx(zoo.resolve("camvid-unet-lite"))
    cut = to_output_stride(proto, 2)
    dims = [d.dim_value for d in cut.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, 11, 180, 240]
    assert get_meta(cut).output_stride == 2 and get_meta(proto).output_stride == 1  # the input is not touched
    used = {i for n in cut.graph.node for i in n.input}
    assert all(t.name in used for t in cut.graph.initializer)  # no orphaned crop bounds


def test_a_stride_the_head_does_not_have_is_refused_with_the_one_it_has(unet_lite):
    with pytest.raises(UsageError, match=r"upsamples x2, so use --output-stride 1 or 2"):
        to_output_stride(load_onnx(unet_lite[0]), 4)


def test_an_already_coarse_or_quantized_model_is_refused(unet_lite):
    with pytest.raises(UsageError, match="output stride 2"):
        to_output_stride(load_onnx(unet_lite[1]), 2)
    with pytest.raises(UsageError, match="int8"):
        to_output_stride(load_onnx(zoo.resolve("camvid-unet-lite.int8")), 2)


def test_a_graph_without_a_head_upsampling_is_refused(tmp_path):
    torch.manual_seed(0)
    path = torch_to_onnx(create_model("unet", len(CLASSES), base=4).eval(), tmp_path / "u.onnx", imgsz="32x32",
                         classes=CLASSES)
    with pytest.raises(ModelFormatError, match="--output-stride instead"):
        to_output_stride(load_onnx(path), 2)
    onnx.checker.check_model(load_onnx(path))  # untouched


def test_the_export_cli_on_onnx_names_a_missing_file_and_takes_bundled_names(tmp_path, capsys):
    from edgeseg.cli import main

    assert main(["export", str(tmp_path / "mine.onnx")]) != 0
    assert "mine.onnx does not exist" in capsys.readouterr().err
    # a bundled name is an edgeseg ONNX: the flavours that need PyTorch's graph say so
    assert main(["export", "camvid-unet-lite", "--precision", "int8", "--out", str(tmp_path / "x")]) == 2
    assert "export its checkpoint" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
