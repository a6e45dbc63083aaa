"""torch_to_onnx on a bring-your-own model: parity, dynamic shapes, fused pre/argmax, metadata, atomicity."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeseg.export import read_meta, torch_to_onnx
from edgeseg.runtime.errors import ModelFormatError, UsageError
from edgeseg.runtime.metadata import LAYOUT_UINT8, OUTPUT_CLASS_MAP, ModelMeta

CLASSES = ["road", "car", "sky", "tree", "person"]  # matches the tiny_model fixture


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _bgr_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)  # (N, H, W, 3) BGR


def _normalise(frames_bgr: np.ndarray, meta: ModelMeta) -> np.ndarray:
    rgb = frames_bgr[..., ::-1].astype(np.float32) / 255.0  # (N, H, W, 3)
    x = (rgb - np.array(meta.mean, np.float32)) / np.array(meta.std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # (N, 3, H, W)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_static_export_matches_pytorch(tiny_model, tmp_path, exporter):
    out = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="64x96", classes=CLASSES, exporter=exporter)
    onnx.checker.check_model(onnx.load(str(out)), full_check=True)
    meta = read_meta(out)
    assert meta.extra["exporter"] == exporter
    x = _normalise(_bgr_frames(1, 64, 96), meta)
    got = _session(out).run(None, {"images": x})[0]
    want = tiny_model(torch.from_numpy(x)).detach().numpy()
    assert got.shape == (1, len(CLASSES), 64, 96)
    assert np.abs(got - want).max() < 1e-4


def test_dynamic_export_runs_at_two_sizes(tiny_model, tmp_path):
    out = torch_to_onnx(tiny_model, tmp_path / "d.onnx", imgsz="64x96", dynamic=True, classes=CLASSES)
    sess = _session(out)
    meta = read_meta(out)
    assert meta.dynamic_hw and meta.dynamic_batch and meta.input_size == (64, 96)
    for n, h, w in [(1, 64, 96), (2, 48, 80)]:
        x = _normalise(_bgr_frames(n, h, w, seed=h), meta)
        got = sess.run(None, {"images": x})[0]
        want = tiny_model(torch.from_numpy(x)).detach().numpy()
        assert got.shape == (n, len(CLASSES), h, w)
        assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("dynamic", [False, True])
def test_fused_preprocess_and_argmax_equal_float_path(tiny_model, tmp_path, dynamic):
    plain = torch_to_onnx(tiny_model, tmp_path / "p.onnx", imgsz="64x96", classes=CLASSES, dynamic=dynamic)
    fused = torch_to_onnx(tiny_model, tmp_path / "f.onnx", imgsz="64x96", classes=CLASSES, dynamic=dynamic,
                          fuse_preprocess=True, fuse_argmax=True)
    meta = read_meta(fused)
    assert meta.input_layout == LAYOUT_UINT8 and meta.output_kind == OUTPUT_CLASS_MAP
    frames = _bgr_frames(1, 64, 96, seed=3)
    logits = _session(plain).run(None, {"images": _normalise(frames, meta)})[0]  # (1, C, H, W)
    cmap = _session(fused).run(None, {"images": frames})[0]  # (1, H, W)
    assert cmap.dtype == np.uint8 and cmap.shape == (1, 64, 96)
    np.testing.assert_array_equal(cmap, logits.argmax(1).astype(np.uint8))


def test_metadata_round_trips(tiny_model, tmp_path):
    out = torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz=(64, 96), classes=CLASSES,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), ignore_index=11, batch=2)
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert all(k.startswith("edgeseg.") for k in props)
    meta = ModelMeta.from_props(props)
    assert meta.classes == tuple(CLASSES) and meta.mean == (0.5, 0.5, 0.5) and meta.ignore_index == 11
    assert meta.precision == "fp32" and meta.batch == 2 and meta.input_size == (64, 96)
    assert len(meta.palette) == len(CLASSES) and meta.edgeseg_version
    assert _session(out).get_inputs()[0].shape == [2, 3, 64, 96]


def test_byo_model_without_classes_is_refused(tiny_model, tmp_path):
    with pytest.raises(UsageError, match="classes"):
        torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="64x96")


def test_incompatible_imgsz_is_refused_with_a_hint(tmp_path):
    # Adding a skip from a stride-2 branch without a resize only works on even sizes.
    class EvenOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1)
            self.up = torch.nn.ConvTranspose2d(5, 5, 2, stride=2)
            self.skip = torch.nn.Conv2d(3, 5, 1)

        def forward(self, x):
            return self.up(self.down(x)) + self.skip(x)  # (N, 5, H, W) only when H, W are even

    with pytest.raises(UsageError, match=r"--imgsz 63x95 is incompatible.*try --imgsz 64x96"):
        torch_to_onnx(EvenOnly().eval(), tmp_path / "m.onnx", imgsz="63x95", classes=CLASSES)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("opset", [13, 16, 99, "newest+1"])
def test_unsupported_opset_is_refused_with_the_range(tiny_model, tmp_path, opset):
    from edgeseg.export.onnx_export import newest_opset

    opset = newest_opset() + 1 if opset == "newest+1" else opset  # one the exporter writes but ORT cannot load
    with pytest.raises(UsageError, match=rf"--opset {opset} is not supported: choose 17 to {newest_opset()}"):
        torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="64x96", classes=CLASSES, opset=opset)
    assert not (tmp_path / "m.onnx").exists()


def test_the_opset_asked_for_is_the_one_written_and_recorded(tmp_path):
    from edgeseg.models import create_model

    torch.manual_seed(0)
    model = create_model("unet_lite", len(CLASSES), base=8).eval()  # torch's dynamo export keeps opset 18 for it
    path = torch_to_onnx(model, tmp_path / "m.onnx", imgsz="32x64", classes=CLASSES, opset=17)
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert read_meta(path).extra["opset"] == "17"


def test_an_exporter_that_ignores_the_opset_is_an_error_not_a_mislabel(tiny_model, tmp_path, monkeypatch):
    from edgeseg.export import onnx_export
    from edgeseg.runtime.errors import ExportError

    real = torch.onnx.export

    def stuck_at_18(*a, **kw):  # what torch does when its opset converter fails: keep its own opset
        return real(*a, **{**kw, "opset_version": 18})

    monkeypatch.setattr(torch.onnx, "export", stuck_at_18)
    with pytest.raises(ExportError, match="neither ONNX exporter could write opset 17.*wrote 18"):
        onnx_export.torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="32x48", classes=CLASSES, opset=17)
    assert not (tmp_path / "m.onnx").exists()


def test_corrupt_onnx_is_refused(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx model at all\xff" * 10)
    with pytest.raises(ModelFormatError, match="bad.onnx"):
        read_meta(bad)
    with pytest.raises(ModelFormatError, match="does not exist"):
        read_meta(tmp_path / "missing.onnx")


def test_interrupted_write_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    def boom(proto, path, *a, **k):
        with open(path, "wb") as f:
            f.write(proto.SerializeToString()[:100])  # half a file, then the "crash"
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        torch_to_onnx(tiny_model, tmp_path / "m.onnx", imgsz="64x96", classes=CLASSES)
    assert list(tmp_path.iterdir()) == []
