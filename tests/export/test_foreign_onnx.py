"""``edgeseg export model.onnx``: segmentation ONNX files made elsewhere (export/foreign.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeseg.export import ImageSet, read_meta
from edgeseg.export.foreign import export_onnx_model
from edgeseg.export.passes import pass_counts
from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import ModelFormatError, UsageError

ZOO = Path(__file__).resolve().parents[2] / "runtime" / "zoo"
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def _images(n: int, size: tuple[int, int], seed: int = 0) -> ImageSet:
    """Smooth random RGB images (blurred noise: regions, not pixel noise), no labels."""
    import cv2

    rng = np.random.default_rng(seed)
    imgs = []
    for _ in range(n):
        small = rng.integers(0, 256, (max(size[0] // 8, 2), max(size[1] // 8, 2), 3), dtype=np.uint8)
        imgs.append(cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))  # (H, W, 3)
    return ImageSet(source=f"random:{seed}", ids=tuple(f"img{i}" for i in range(n)), images=tuple(imgs), labels=None)


def _classes(tmp_path: Path, n: int) -> Path:
    path = tmp_path / f"classes{n}.txt"
    path.write_text("".join(f"class {i}\n" for i in range(n)), encoding="utf-8")
    return path


def _ort(path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _conv_net(classes: int = 4, opset: int = 17, dynamic: bool = False, size=(32, 48), argmax: bool = False,
              first: str = "Conv", input_name: str = "pixel_values") -> onnx.ModelProto:
    """x -> [Mul 1.0 ->] Conv 3x3 (3 -> 8) -> Relu -> Conv 1x1 (8 -> classes) [-> ArgMax]: a plain ONNX model."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.5, "w1"),
             numpy_helper.from_array(rng.standard_normal((classes, 8, 1, 1)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b2")]
    x = input_name
    nodes = []
    if first == "Mul":  # something other than a convolution reads the image
        inits.append(numpy_helper.from_array(np.array(1.0, np.float32), "one"))
        nodes.append(helper.make_node("Mul", [x, "one"], ["scaled"]))
        x = "scaled"
    nodes += [helper.make_node("Conv", [x, "w1"], ["h"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["h"], ["r"]),
              helper.make_node("Conv", ["r", "w2", "b2"], ["logits"])]
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)
    if argmax:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["labels"], axis=1, keepdims=0))
        out = helper.make_tensor_value_info("labels", TensorProto.INT64, None)
    dims = ["n", 3, "h", "w"] if dynamic else [1, 3, *size]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
                              [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _save(proto: onnx.ModelProto, path: Path) -> Path:
    onnx.save(proto, str(path))
    return path


# -- models made elsewhere ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def segformer_onnx(tmp_path_factory) -> Path:
    """A SegFormer (Hugging Face transformers, random weights) exported by torch.onnx: logits at 1/4 size."""
    transformers = pytest.importorskip("transformers", reason="pip install transformers for this test")
    import torch

    torch.manual_seed(0)
    cfg = transformers.SegformerConfig(num_labels=5, hidden_sizes=[16, 32, 64, 128], decoder_hidden_size=64,
                                       depths=[1, 1, 1, 1], num_attention_heads=[1, 2, 4, 8])
    net = transformers.SegformerForSemanticSegmentation(cfg).eval()

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(pixel_values=x).logits  # (N, 5, H/4, W/4)

    path = tmp_path_factory.mktemp("segformer") / "segformer.onnx"
    with torch.no_grad():
        torch.onnx.export(Logits().eval(), (torch.randn(1, 3, 64, 96),), str(path), dynamo=True, opset_version=18,
                          input_names=["pixel_values"], output_names=["logits"], external_data=False)
    return path


def test_a_segformer_from_transformers_becomes_a_native_int8_artifact(segformer_onnx, tmp_path):
    res = export_onnx_model(segformer_onnx, classes=_classes(tmp_path, 5), **IMAGENET, precision="int8",
                            calib=_images(4, (64, 96)), out=tmp_path / "seg", max_miou_drop=100, threads=1,
                            progress=False)
    fp32, int8 = (Path(r["artifact"]) for r in res.rows)
    assert (fp32.name, int8.name) == ("seg.onnx", "seg.int8.onnx")
    assert res.rows[0]["parity"]["pixel_agreement"] == 100.0
    meta = read_meta(int8)
    assert meta.output_stride == 4 and meta.precision == "int8" and meta.classes[0] == "class 0"
    assert meta.extra["source"] == "onnx" and meta.source_sha256
    # every ORT pass ran or was skipped cleanly (a transformer has no U-Net Concats or image Resizes to fence)
    assert {"sink_dequantize", "keep_nearest_resizes_nchw", "pad_input_channels"} <= set(pass_counts(meta.extra))
    frame = np.random.default_rng(2).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    with Segmenter(int8, threads=1) as seg:
        assert seg(frame).class_map.shape == (70, 100)  # the runtime upsamples the 1/4 map like a native one


def test_the_bundled_fp32_file_without_its_metadata_comes_back_equal(tmp_path):
    plain = onnx.load(str(ZOO / "camvid-unet-lite.onnx"))
    names = read_meta(ZOO / "camvid-unet-lite.onnx").classes
    del plain.metadata_props[:]
    src = _save(plain, tmp_path / "plain.onnx")
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(names) + "\n", encoding="utf-8")
    res = export_onnx_model(src, classes=classes, **IMAGENET, calib=_images(2, (360, 480)), threads=1,
                            progress=False)
    out = Path(res.artifact)
    assert out.name == "plain.edgeseg.onnx" and res.rows[0]["parity"]["pixel_agreement"] == 100.0
    frame = np.random.default_rng(3).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    with Segmenter(out, threads=1) as a, Segmenter(ZOO / "camvid-unet-lite.onnx", threads=1) as b:
        assert a.meta.classes == b.meta.classes and a.meta.input_size == (360, 480)
        assert np.array_equal(a(frame).class_map, b(frame).class_map)


def test_a_dynamic_shape_model_keeps_dynamic_sizes(tmp_path):
    src = _save(_conv_net(dynamic=True), tmp_path / "dyn.onnx")
    res = export_onnx_model(src, classes=_classes(tmp_path, 4), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                            precision="int8", calib=_images(4, (32, 48)), imgsz="32x48", max_miou_drop=100,
                            threads=1, progress=False)
    int8 = Path(res.artifact)
    meta = read_meta(int8)
    assert meta.dynamic_hw and meta.dynamic_batch and meta.input_size == (32, 48)
    for shape in [(1, 3, 32, 48), (2, 3, 40, 64)]:
        assert _ort(int8, np.zeros(shape, np.float32)).shape == (shape[0], 4, *shape[2:])


def test_fp16_of_a_foreign_model_is_gated_on_agreement_without_labels(tmp_path):
    src = _save(_conv_net(), tmp_path / "h.onnx")
    res = export_onnx_model(src, classes=_classes(tmp_path, 4), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                            precision="fp16", calib=_images(3, (32, 48)), threads=1, progress=False)
    fp16 = res.rows[-1]
    assert fp16["precision"] == "fp16" and fp16["passed"] and fp16["parity"]["pixel_agreement"] >= 99.0
    assert fp16["parity"]["metrics"] == {}  # no labels: agreement only
    assert _ort(fp16["artifact"], np.zeros((1, 3, 32, 48), np.float32)).dtype == np.float32  # float32 IO kept


@pytest.mark.parametrize("first", ["Conv", "Mul"])
def test_a_bgr_model_takes_rgb_after_export(tmp_path, first):
    src = _save(_conv_net(first=first), tmp_path / "bgr.onnx")
    res = export_onnx_model(src, classes=_classes(tmp_path, 4), mean=(104, 117, 123), std=(58, 57, 57),
                            channel_order="bgr", pixel_range=255, calib=_images(2, (32, 48)), threads=1,
                            progress=False)
    meta = read_meta(res.artifact)
    np.testing.assert_allclose(meta.mean, (123 / 255, 117 / 255, 104 / 255))  # RGB, [0, 1] units
    x = np.random.default_rng(4).standard_normal((1, 3, 32, 48)).astype(np.float32)  # RGB in
    np.testing.assert_allclose(_ort(res.artifact, x), _ort(src, x[:, ::-1].copy()), rtol=1e-5, atol=1e-5)
    ops = [n.op_type for n in onnx.load(str(res.artifact)).graph.node]
    assert ("Gather" in ops) is (first == "Mul")  # a conv reading the image gets its weights swapped instead


# -- bad input: one clear line each; nothing good replaced ---------------------------------------------

@pytest.mark.parametrize("model, kw, error, match", [
    ({"argmax": True}, {}, ModelFormatError, r"output is 3-D .* edgeseg needs logits \(N, C, h, w\)"),
    ({}, {"classes_n": 3}, UsageError, "outputs 4 channels but --classes lists 3 names"),
    ({}, {"mean": (0.5, 0.5)}, UsageError, "--mean has 2 values; give three"),
    ({}, {"std": (0.2, 0.0, 0.2)}, UsageError, "--std 0.2,0.0,0.2 must be positive"),
    ({"opset": 99}, {}, ModelFormatError, "uses ONNX opset 99, newer than the installed onnxruntime"),
    ({}, {"precision": "int8", "int8_target": "openvino"}, UsageError, "openvino is not available for an ONNX input"),
])
def test_bad_input_is_one_clear_line(tmp_path, model, kw, error, match):
    src = _save(_conv_net(**model), tmp_path / "m.onnx")
    args = {"mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2), **kw}
    classes = _classes(tmp_path, args.pop("classes_n", 4))
    with pytest.raises(error, match=match) as info:
        export_onnx_model(src, classes=classes, calib=_images(1, (32, 48)), progress=False, **args)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.glob("m.edgeseg*"))  # nothing written


def test_a_failed_export_keeps_the_earlier_artifact_and_never_overwrites_the_input(tmp_path):
    src = _save(_conv_net(), tmp_path / "m.onnx")
    kw = {"classes": _classes(tmp_path, 4), "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2),
          "calib": _images(1, (32, 48)), "progress": False}
    good = Path(export_onnx_model(src, out=tmp_path / "m.edgeseg", **kw).artifact)
    before = good.read_bytes()
    broken = _conv_net()
    broken.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((8, 3, 3, 3), np.nan, np.float32), "w1"))
    with pytest.raises(ModelFormatError, match="outputs NaN or inf"):
        export_onnx_model(_save(broken, tmp_path / "nan.onnx"), out=tmp_path / "m.edgeseg", **kw)
    assert good.read_bytes() == before
    with pytest.raises(UsageError, match="would overwrite the input"):
        export_onnx_model(src, out=tmp_path / "m", **kw)


# -- the command, with torch unavailable ------------------------------------------------------------------

_CLI = textwrap.dedent("""
    import sys, json
    sys.modules["torch"] = None  # every "import torch" fails, as where torch is not installed
    from edgeseg.cli import main
    rc = main(sys.argv[1:])
    print(json.dumps({"rc": rc, "torch": sys.modules.get("torch") is not None}))
""")


def test_the_command_runs_without_torch_and_the_result_is_native(tmp_path):
    import cv2

    plain = onnx.load(str(ZOO / "camvid-unet-lite.onnx"))
    del plain.metadata_props[:]
    src = _save(plain, tmp_path / "model.onnx")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, img in enumerate(_images(2, (90, 120)).images):
        cv2.imwrite(str(calib / f"{i}.png"), img)
    classes = _classes(tmp_path, 11)
    args = ["export", str(src), "--classes", str(classes), "--mean", "0.485,0.456,0.406", "--std",
            "0.229,0.224,0.225", "--precision", "int8", "--calib", str(calib), "--max-miou-drop", "100",
            "--threads", "1", "--quiet", "--no-pass", "pad_input_channels", "--json", str(tmp_path / "r.json")]
    proc = subprocess.run([sys.executable, "-c", _CLI, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rc": 0, "torch": False}
    int8 = tmp_path / "model.edgeseg.int8.onnx"
    meta = read_meta(int8)
    assert meta.precision == "int8" and meta.extra["passes_disabled"] == "pad_input_channels"
    info = subprocess.run([sys.executable, "-c", _CLI, "info", str(int8)], capture_output=True, text=True,
                          timeout=60)
    assert info.returncode == 0 and "int8" in info.stdout, info.stderr[-2000:]
    bad = subprocess.run([sys.executable, "-c", _CLI, *args[:2], "--classes", str(classes), "--mean", "1,2",
                          "--std", "1,1,1"], capture_output=True, text=True, timeout=60)
    assert json.loads(bad.stdout.strip().splitlines()[-1])["rc"] != 0
    assert bad.stderr.strip().splitlines() == ["error: --mean has 2 values; give three, one per channel: --mean A,B,C"]
