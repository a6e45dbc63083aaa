"""Fixtures for runtime tests: tiny ONNX segmentation models built without torch.

Each model is a 1x1 convolution from 3 colour channels to C class logits (so the class
of a pixel depends on its colour only), optionally ending in an in-graph argmax
(``output_kind="class_map"``) or taking uint8 BGR NHWC frames with the normalisation
folded into the convolution (``input_layout="NHWC_BGR_U8"``). ``TinyModel.reference``
computes the expected full-resolution class map in plain numpy.

    def test_x(tiny_onnx):            # Path to a 4-class, 48x64, float-input ONNX with metadata
    def test_y(make_tiny_onnx):       # factory: make_tiny_onnx(classes=5, output_kind="class_map", ...)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime.metadata import LAYOUT_UINT8, OUTPUT_CLASS_MAP, ModelMeta, default_palette

TINY_HW = (48, 64)
TINY_MEAN = (0.485, 0.456, 0.406)
TINY_STD = (0.229, 0.224, 0.225)


@dataclass
class TinyModel:
    path: Path
    meta: ModelMeta | None  # None for a model written without edgeseg metadata
    weight: np.ndarray  # (C, 3) over normalised RGB
    bias: np.ndarray  # (C,)
    size: tuple[int, int]  # (h, w) the reference resizes to
    mean: tuple[float, float, float] = TINY_MEAN
    std: tuple[float, float, float] = TINY_STD

    def logits(self, frame: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) BGR -> float64 (C, h, w) logits at model resolution."""
        h, w = self.size
        small = frame if frame.shape[:2] == (h, w) else cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)
        rgb = small[:, :, ::-1].astype(np.float64) / 255.0  # (h, w, 3)
        x = (rgb - np.asarray(self.mean)) / np.asarray(self.std)  # (h, w, 3)
        return np.einsum("kc,hwc->khw", self.weight, x) + self.bias[:, None, None]  # (C, h, w)

    def reference(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected (H, W) uint8 class map, and the (H, W) top-1 minus top-2 logit margin.

        Nearest resize samples source pixel floor((i + 0.5) * h / H): pixel centres. Where that
        position falls exactly on a source pixel border either neighbour is right, so the
        margin there is 0 (a comparison then accepts any value).
        """
        logits = self.logits(frame)  # (C, h, w)
        ids = logits.argmax(0).astype(np.uint8)  # (h, w)
        top2 = np.sort(logits, axis=0)[-2:]  # (2, h, w)
        margin = top2[1] - top2[0]  # (h, w)
        H, W = frame.shape[:2]
        h, w = ids.shape
        pos_r = (np.arange(H) + 0.5) * h / H  # (H,) source row position of each pixel centre
        pos_c = (np.arange(W) + 0.5) * w / W  # (W,)
        rows = np.minimum(pos_r.astype(int), h - 1)
        cols = np.minimum(pos_c.astype(int), w - 1)
        out_margin = margin[rows][:, cols]  # (H, W)
        tie_r = np.isclose(pos_r, np.round(pos_r)) & (H != h)
        tie_c = np.isclose(pos_c, np.round(pos_c)) & (W != w)
        out_margin[tie_r, :] = 0.0
        out_margin[:, tie_c] = 0.0
        return ids[rows][:, cols], out_margin


def build_tiny_onnx(path: Path, *, classes: int = 4, hw: tuple[int, int] | None = TINY_HW,
                    input_layout: str = "NCHW_RGB_F32", output_kind: str = "logits", batch: int | None = 1,
                    with_meta: bool = True, preferred_hw: tuple[int, int] | None = None, seed: int = 0,
                    precision: str = "fp32") -> TinyModel:
    """Write a tiny segmentation ONNX to ``path``.

    ``hw=None`` makes height/width dynamic (``preferred_hw`` goes into the metadata's input_size);
    ``batch=None`` makes the batch dynamic.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, 1.0, (classes, 3))  # (C, 3) on normalised RGB
    bias = rng.normal(0.0, 0.3, classes)  # (C,)
    n = batch if batch is not None else "batch"
    h, w = hw if hw is not None else ("height", "width")
    fused = input_layout == LAYOUT_UINT8
    nodes = []
    inits = []
    if fused:
        # uint8 BGR NHWC -> float NCHW, with (bgr / 255 - mean) / std folded into the conv weights.
        x_in = helper.make_tensor_value_info("frames", TensorProto.UINT8, [n, h, w, 3])
        nodes.append(helper.make_node("Cast", ["frames"], ["f"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Transpose", ["f"], ["x"], perm=[0, 3, 1, 2]))
        std, mean = np.asarray(TINY_STD), np.asarray(TINY_MEAN)
        w_rgb = weight / (255.0 * std)  # (C, 3) per raw RGB value
        conv_w = w_rgb[:, ::-1]  # (C, 3) per raw BGR value
        conv_b = bias - (weight * mean / std).sum(1)
    else:
        x_in = helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, 3, h, w])
        conv_w, conv_b = weight, bias
    inits.append(numpy_helper.from_array(np.ascontiguousarray(conv_w, np.float32).reshape(classes, 3, 1, 1), "W"))
    inits.append(numpy_helper.from_array(np.asarray(conv_b, np.float32), "B"))
    nodes.append(helper.make_node("Conv", ["x" if fused else "images", "W", "B"], ["logits"]))
    if output_kind == OUTPUT_CLASS_MAP:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["ids"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Cast", ["ids"], ["class_map"], to=TensorProto.UINT8))
        y_out = helper.make_tensor_value_info("class_map", TensorProto.UINT8, [n, h, w])
    else:
        y_out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, classes, h, w])
    graph = helper.make_graph(nodes, "tiny_seg", [x_in], [y_out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edgeseg-tests")
    model.ir_version = 8  # IR version of opset 17; keeps older onnxruntime builds happy
    meta = None
    if with_meta:
        meta = ModelMeta(
            classes=tuple(f"class{i}" for i in range(classes)), palette=default_palette(classes),
            mean=TINY_MEAN, std=TINY_STD, input_size=hw if hw is not None else preferred_hw,
            dynamic_hw=hw is None, dynamic_batch=batch is None, batch=batch or 1,
            input_layout=input_layout, output_kind=output_kind, precision=precision, model_name="tiny",
        )
        helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return TinyModel(path, meta, weight, bias, hw or preferred_hw or TINY_HW)


@pytest.fixture(scope="session")
def make_tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., TinyModel]:
    """Factory: ``make_tiny_onnx(**build_tiny_onnx kwargs) -> TinyModel`` (cached per argument set)."""
    folder = tmp_path_factory.mktemp("tiny_onnx")
    cache: dict[tuple, TinyModel] = {}

    def make(**kw: object) -> TinyModel:
        key = tuple(sorted(kw.items()))
        if key not in cache:
            name = "tiny_" + "_".join(f"{k}-{v}" for k, v in key).replace(" ", "").replace(",", "x")
            name = "".join(ch if ch.isalnum() or ch in "-_." else "" for ch in name) or "tiny_default"
            cache[key] = build_tiny_onnx(folder / f"{name}.onnx", **kw)  # type: ignore[arg-type]
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_model(make_tiny_onnx: Callable[..., TinyModel]) -> TinyModel:
    """The default tiny model: 4 classes, static 1x3x48x64 float input, logits output, with metadata."""
    return make_tiny_onnx()


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model: TinyModel) -> Path:
    """Path to the default tiny model (for tests that only need a working .onnx)."""
    return tiny_model.path


@pytest.fixture
def frame_960x540() -> np.ndarray:
    """A deterministic uint8 (540, 960, 3) BGR frame with smooth colour regions and noise."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:540, 0:960]
    base = np.stack([(xx * 255 // 959), (yy * 255 // 539), ((xx + yy) * 255 // 1498)], axis=-1)  # (540, 960, 3)
    noise = rng.integers(-20, 21, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)
