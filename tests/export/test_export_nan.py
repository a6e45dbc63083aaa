"""Non-finite weights, outputs or statistics fail the export with one line and replace nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from edgeseg.cli import main

SYNTH = "synthetic://?n=8&size=32x32&seed=3"


def _checkpoint(path: Path, break_it=None, **fields) -> Path:
    from edgeseg.data import build_dataset
    from edgeseg.models import create_model
    from edgeseg.train.checkpoint import Checkpoint, save_checkpoint

    ds = build_dataset(SYNTH, "val")
    torch.manual_seed(0)
    model = create_model("unet_lite", len(ds.classes), base=4).eval()
    state = model.state_dict()
    if break_it:
        break_it(state)
    kw = {"classes": list(ds.classes), "palette": [list(c) for c in ds.palette], "mean": [0.485, 0.456, 0.406],
          "std": [0.229, 0.224, 0.225], **fields}
    ckpt = Checkpoint(model_name="unet_lite", model_kwargs={"base": 4}, state_dict=state,
                      ignore_index=ds.ignore_index, input_size=[32, 32],
                      dataset={"layout": "synthetic", "root": SYNTH}, **kw)
    save_checkpoint(ckpt, path, with_resume_state=False)
    return path


def _first_conv(state, value) -> None:
    key = next(k for k, v in state.items() if k.endswith("weight") and v.dim() == 4)
    state[key] = torch.full_like(state[key], value)


@pytest.fixture(scope="module")
def good_export(tmp_path_factory) -> Path:
    """A folder holding good.pt and its passing export m.onnx (+ report), made once."""
    folder = tmp_path_factory.mktemp("good")
    good = _checkpoint(folder / "good.pt")
    assert main(["export", str(good), "--out", str(folder / "m"), "--quiet", "--no-simplify"]) == 0
    return folder


@pytest.mark.parametrize(("break_it", "fields", "words"), [
    (lambda s: _first_conv(s, float("nan")), {}, "has NaN or infinite values"),
    (lambda s: _first_conv(s, 3e38), {}, "outputs are NaN or infinite"),
    (None, {"std": [0.2, 0.0, 0.2]}, "must be positive"),
    (None, {"std": [0.2, float("nan"), 0.2]}, "three finite numbers"),
    (None, {"mean": [0.5, 0.5]}, "three finite numbers"),
    (None, {"palette": "two-channel"}, "is not an RGB triple"),
])
def test_broken_checkpoint_fails_and_keeps_the_good_artifact(good_export, tmp_path, capsys, break_it, fields,
                                                            words) -> None:
    import shutil

    for f in good_export.glob("m.*"):
        shutil.copy(f, tmp_path / f.name)
    out = tmp_path / "m"
    before = (tmp_path / "m.onnx").read_bytes()
    capsys.readouterr()
    if fields.get("palette") == "two-channel":
        from edgeseg.data import build_dataset

        fields = {"palette": [list(c)[:2] for c in build_dataset(SYNTH, "val").palette]}
    bad = _checkpoint(tmp_path / "bad.pt", break_it, **fields)
    assert main(["export", str(bad), "--out", str(out), "--quiet", "--no-simplify"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0], err
    assert (tmp_path / "m.onnx").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_parity_counts_non_finite_outputs(monkeypatch) -> None:
    """max(max_diff, nan) keeps max_diff: NaN outputs must be counted, not compared."""
    import types

    import numpy as np

    from edgeseg.export import parity
    from edgeseg.export.calibration import ImageSet
    from edgeseg.runtime.metadata import ModelMeta

    meta = ModelMeta(classes=("a", "b"), palette=((0, 0, 0), (255, 255, 255)), input_size=(4, 4))

    class Session:
        def get_inputs(self):
            return [types.SimpleNamespace(name="x", shape=[1, 3, 4, 4])]

        def run(self, _names, feed):
            out = np.zeros((1, 2, 4, 4), np.float32)
            out[0, 1, 0, 0] = np.nan  # one NaN logit among finite ones
            return [out]

    monkeypatch.setattr(parity, "read_meta", lambda _path: meta)
    monkeypatch.setattr(parity, "ort_session", lambda _path, _threads: Session())
    images = ImageSet(source="x", ids=("i0", "i1"), images=(np.zeros((4, 4, 3), np.uint8),) * 2, labels=None)
    ref = parity.Reference(class_maps=[np.zeros((4, 4), np.uint8)] * 2, metrics={},
                           logits=[np.zeros((2, 4, 4), np.float32)] * 2)
    ctx = parity.EvalContext(images=images, meta=meta, size=(4, 4), reference=ref)
    report = parity.check_parity("m.onnx", ctx, latency_runs=0)
    assert max(0.0, float("nan")) == 0.0 and report["max_abs_logit_diff"] == 0.0  # the diff alone hides it
    assert report["non_finite_images"] == 2


def test_int8_gate_refuses_a_float_model_with_nan_on_calibration_images(tmp_path, monkeypatch) -> None:
    """Issue: NaN/inf in the float model's outputs on calibration images must fail with one line."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from edgeseg.export import gate, onnx_io
    from edgeseg.export.calibration import ImageSet
    from edgeseg.runtime.errors import ExportError
    from edgeseg.runtime.metadata import ModelMeta

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Sqrt", ["x"], ["y"])], "nan", [x], [y])  # sqrt(<0) = NaN
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "f.onnx"
    onnx.save(model, str(path))
    meta = ModelMeta(classes=("a", "b", "c"), palette=((0, 0, 0),) * 3, input_size=(8, 8))
    monkeypatch.setattr(onnx_io, "read_meta", lambda _p: meta)
    bright = np.full((8, 8, 3), 255, np.uint8)  # normalises above 0: finite
    dark = np.zeros((8, 8, 3), np.uint8)  # normalises below 0: NaN
    ok = ImageSet(source="calib", ids=("b0",), images=(bright,), labels=None)
    gate.check_finite_outputs(path, ok, (8, 8))
    bad = ImageSet(source="calib", ids=("b0", "d1"), images=(bright, dark), labels=None)
    with pytest.raises(ExportError, match="NaN or infinite outputs on calibration image d1"):
        gate.check_finite_outputs(path, bad, (8, 8))
