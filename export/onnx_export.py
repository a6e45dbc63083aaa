"""PyTorch -> ONNX with edgeseg metadata, optional in-graph pre-processing and argmax.

Exporter choice: ``torch.onnx.export(..., dynamo=True)``. The TorchScript exporter
(``dynamo=False``) still works in torch 2.13 but is deprecated and slated for removal, and the
dynamo graph is cleaner (BatchNorm folded, fewer shape ops). A model
that ``torch.export`` cannot trace falls back to the TorchScript exporter, and the
artifact records which one was used (``extra["exporter"]``).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn
from torch.nn import functional as F

from edgeseg import __version__
from edgeseg.models.subpixel import with_subpixel_upsampling
from edgeseg.runtime.errors import CheckpointError, ExportError, UsageError, first_line
from edgeseg.runtime.metadata import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYOUT_FLOAT,
    LAYOUT_UINT8,
    OUTPUT_CLASS_MAP,
    OUTPUT_LOGITS,
    ModelMeta,
    default_palette,
)
from edgeseg.runtime.sizes import parse_hw

from .onnx_io import (  # noqa: F401 - re-exported: callers import these from here
    DEFAULT_OPSET,
    MIN_OPSET,
    check_opset,
    get_meta,
    load_onnx,
    newest_opset,
    opset_of,
    quiet,
    read_meta,
    run_onnx,
    save_onnx,
    set_meta,
    simplify_onnx,
)
from .passes import passes_meta, run_stage

log = logging.getLogger("edgeseg.export")

INPUT_NAME = "images"
OUTPUT_NAMES = {OUTPUT_LOGITS: "logits", OUTPUT_CLASS_MAP: "class_map"}
EXPORTERS = ("dynamo", "torchscript")


class FusedPreprocess(nn.Module):
    """uint8 BGR (N, H, W, 3) frame -> normalised float RGB (N, 3, H, W) -> wrapped model.

    The BGR -> RGB swap and ``(x/255 - mean)/std = x*scale + shift`` are one 1x1 convolution
    (3 -> 3, one non-zero weight per output channel), so the exported graph is Transpose -> Cast
    -> Conv, which ONNX Runtime runs much faster than a channel flip and broadcast Mul/Add
    (docs/export.md#graph-forms-for-speed). The ONNX Runtime INT8 flavour folds the conv into the first real one
    (the ``fold_input_normalization`` pass); elsewhere it stays float (``quantize.input_preprocessing``).
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        scale = [1.0 / (255.0 * s) for s in std]  # per RGB channel
        weight = torch.zeros(3, 3, 1, 1)  # (out RGB, in BGR, 1, 1)
        for c in range(3):
            weight[c, 2 - c, 0, 0] = scale[c]
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], dtype=torch.float32),
                             persistent=False)  # (3,)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        x = frame.permute(0, 3, 1, 2).float()  # (N, 3, H, W) BGR, 0..255
        return self.model(F.conv2d(x, self.weight, self.bias))  # normalised RGB in, (N, C, H, W) out


class FusedArgmax(nn.Module):
    """Logits (N, C, H, W) -> uint8 class map (N, H, W)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)  # (N, C, H, W)
        return logits.argmax(1).to(torch.uint8)  # (N, H, W)


class CoarseLogits(nn.Module):
    """An edgeseg model ending before its head's upsampling: logits at stride ``head_stride``.

    The runtime takes the argmax at that stride and upsamples the uint8 class map (nearest) to
    the frame: the graph skips upsampling C float planes (``camvid-unet-lite-s2.int8`` in
    docs/benchmarks.md#bundled-models).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_coarse(x)  # (N, C, ceil(H/s), ceil(W/s))


def with_output_stride(model: nn.Module, output_stride: int) -> nn.Module:
    """``model`` itself for stride 1, else a :class:`CoarseLogits` wrapper; raises UsageError
    when the model cannot end at that stride."""
    if output_stride == 1:
        return model
    if output_stride < 1:
        raise UsageError(f"--output-stride {output_stride} must be >= 1 (1: full-resolution output)")
    native = getattr(model, "head_stride", None)
    if native is None or not hasattr(model, "forward_coarse"):
        raise UsageError(f"--output-stride {output_stride} needs an edgeseg model (it ends before the head's "
                         f"upsampling); {type(model).__name__} supports only --output-stride 1")
    if output_stride != native:
        choices = "1" if native == 1 else f"1 or {native}"
        raise UsageError(f"--output-stride {output_stride} does not fit this model: its head upsamples "
                         f"x{native}, so use --output-stride {choices}")
    return CoarseLogits(model).eval()


def resolve_model(model_or_checkpoint: Any, *, meta: ModelMeta | None = None,
                  classes: Sequence[str] | None = None, palette: Sequence[Sequence[int]] | None = None,
                  mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                  ignore_index: int = 255) -> tuple[nn.Module, ModelMeta, Any]:
    """Return ``(model in eval mode, metadata, checkpoint or None)`` for a path, Checkpoint or nn.Module."""
    from edgeseg.train.checkpoint import Checkpoint, load_checkpoint

    ckpt = None
    if isinstance(model_or_checkpoint, (str, os.PathLike)):
        ckpt = load_checkpoint(model_or_checkpoint)
    elif isinstance(model_or_checkpoint, Checkpoint):
        ckpt = model_or_checkpoint
    if ckpt is not None:
        model = ckpt.build_model()
        base = meta or ckpt.meta()
    elif isinstance(model_or_checkpoint, nn.Module):
        model = model_or_checkpoint
        if meta is not None:
            base = meta
        else:
            if not classes:
                raise UsageError("bring-your-own model needs its class names: pass classes=[...] "
                                 "(and mean/std if it was not trained with ImageNet statistics)")
            base = ModelMeta(classes=tuple(str(c) for c in classes),
                             palette=tuple(tuple(int(v) for v in c) for c in palette) if palette
                             else default_palette(len(classes)),
                             mean=tuple(float(v) for v in (mean or IMAGENET_MEAN)),
                             std=tuple(float(v) for v in (std or IMAGENET_STD)),
                             ignore_index=int(ignore_index), model_name=type(model).__name__,
                             edgeseg_version=__version__)
    else:
        raise CheckpointError(f"cannot export a {type(model_or_checkpoint).__name__}; pass a checkpoint "
                              "path, an edgeseg Checkpoint or a torch.nn.Module")
    return model.eval(), base, ckpt


def check_imgsz(model: nn.Module, imgsz: tuple[int, int], num_classes: int, output_stride: int = 1) -> None:
    """Raise UsageError when the model cannot run at ``imgsz`` or does not return logits at that size
    (divided by ``output_stride``, rounded up)."""
    h, w = imgsz
    problem = _shape_problem(model, h, w, num_classes, output_stride)
    if problem is None:
        return
    if problem.startswith("has "):  # wrong number of classes: no size fixes that
        raise UsageError(f"model output {problem}")
    hint = ""
    for mult in (8, 16, 32, 64):
        hh, ww = -(-h // mult) * mult, -(-w // mult) * mult
        if (hh, ww) != (h, w) and _shape_problem(model, hh, ww, num_classes, output_stride) is None:
            hint = f"; try --imgsz {hh}x{ww} (sides divisible by {mult})"
            break
    raise UsageError(f"--imgsz {h}x{w} is incompatible with the model: {problem}{hint}")


def _shape_problem(model: nn.Module, h: int, w: int, num_classes: int, stride: int = 1) -> str | None:
    x = torch.zeros(1, 3, h, w)  # (1, 3, H, W)
    try:
        with torch.inference_mode():
            y = model(x)  # (1, C, H, W)
    except RuntimeError as e:
        return f"forward pass failed ({str(e).strip().splitlines()[0][:160]})"
    if not isinstance(y, torch.Tensor) or y.ndim != 4:
        return f"forward returned {type(y).__name__} instead of a (N, C, H, W) logits tensor"
    if y.shape[1] != num_classes:
        return f"has {y.shape[1]} channels but the metadata lists {num_classes} classes"
    want = (-(-h // stride), -(-w // stride))
    if tuple(y.shape[2:]) != want:
        what = "the input size" if stride == 1 else f"the input size / {stride}"
        return f"output is {y.shape[2]}x{y.shape[3]}, not {what} {want[0]}x{want[1]}"
    return None


def torch_to_onnx(model_or_checkpoint: Any, out: str | os.PathLike, *, imgsz: Any,
                  dynamic: bool = False, batch: int = 1, opset: int = DEFAULT_OPSET,
                  fuse_preprocess: bool = False, fuse_argmax: bool = False,
                  meta: ModelMeta | None = None, classes: Sequence[str] | None = None,
                  palette: Sequence[Sequence[int]] | None = None, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None, ignore_index: int = 255,
                  simplify: bool = True, exporter: str = "dynamo", output_stride: int = 1,
                  subpixel: bool = True, skip_passes: Iterable[str] = ()) -> Path:
    """Export a checkpoint (path or Checkpoint) or any fully convolutional ``nn.Module`` to ONNX.

    ``dynamic=True`` makes batch, height and width dynamic (``imgsz`` is then the preferred size).
    ``output_stride`` > 1 ends the graph before the head's upsampling (see :class:`CoarseLogits`).
    ``subpixel`` exports transposed convolutions as the equal sub-pixel convolutions
    (:mod:`edgeseg.models.subpixel`), which ONNX Runtime runs much faster and can quantize.
    The file carries ``ModelMeta`` in ``metadata_props`` (``extra["opset"]``: the opset it has, which is
    ``opset``; an exporter that cannot write that one is an ExportError) and is written atomically.
    """
    check_opset(opset)
    if exporter not in EXPORTERS:
        from edgeseg.runtime.errors import unknown_name
        raise unknown_name("exporter", exporter, EXPORTERS)
    if batch < 1:
        raise UsageError(f"--batch {batch} must be >= 1")
    imgsz = parse_hw(imgsz)
    model, base, _ = resolve_model(model_or_checkpoint, meta=meta, classes=classes, palette=palette,
                                   mean=mean, std=std, ignore_index=ignore_index)
    if fuse_argmax and base.num_classes > 256:
        raise UsageError(f"--fuse-argmax writes a uint8 class map, which holds at most 256 classes, "
                         f"not {base.num_classes}")
    net: nn.Module = with_output_stride(model, output_stride)
    check_imgsz(net, imgsz, base.num_classes, output_stride)
    rewritten = 0
    if subpixel:
        net, rewritten = with_subpixel_upsampling(net)
    if fuse_preprocess:
        net = FusedPreprocess(net, base.mean, base.std)
    if fuse_argmax:
        net = FusedArgmax(net)
    net.eval()
    h, w = imgsz
    if fuse_preprocess:
        example = torch.randint(0, 256, (batch, h, w, 3), dtype=torch.uint8)  # (N, H, W, 3)
        dyn_axes = {0: "batch", 1: "height", 2: "width"}
    else:
        example = torch.randn(batch, 3, h, w)  # (N, 3, H, W)
        dyn_axes = {0: "batch", 2: "height", 3: "width"}
    output_kind = OUTPUT_CLASS_MAP if fuse_argmax else OUTPUT_LOGITS
    out_name = OUTPUT_NAMES[output_kind]

    proto, used = _export(net, example, opset, dynamic, dyn_axes, out_name, exporter, output_stride)
    new_meta = base.with_(
        input_size=imgsz, dynamic_hw=dynamic, dynamic_batch=dynamic, batch=batch,
        input_layout=LAYOUT_UINT8 if fuse_preprocess else LAYOUT_FLOAT, output_kind=output_kind,
        output_stride=output_stride, precision="fp32", int8_target="", edgeseg_version=__version__,
        extra={**dict(base.extra), "exporter": used, "subpixel_upsampling": str(rewritten)},
    )
    if simplify:
        proto, note = simplify_onnx(proto, example.numpy())
        new_meta = new_meta.with_(extra={**dict(new_meta.extra), "simplified": note})
    records = run_stage("export", proto, skip=skip_passes)  # exact rewrites every float export gets
    written = opset_of(proto)
    if written != opset:  # the exporters were checked; this catches a rewrite after them
        raise ExportError(f"the ONNX graph for {out} ended up at opset {written}, not the --opset {opset} asked "
                          f"for; export with --opset {written} or --no-simplify")
    new_meta = new_meta.with_(extra={**dict(new_meta.extra), "opset": str(written),
                                     **passes_meta(records)})
    set_meta(proto, new_meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"exported ONNX for {out} fails onnx.checker: {str(e).splitlines()[0]}") from None
    return save_onnx(proto, out)


def _export(net: nn.Module, example: torch.Tensor, opset: int, dynamic: bool, dyn_axes: dict[int, str],
            out_name: str, exporter: str, output_stride: int = 1) -> tuple[onnx.ModelProto, str]:
    if exporter == "dynamo":
        try:
            return _export_dynamo(net, example, opset, dynamic, dyn_axes, out_name), "dynamo"
        except Exception as e:  # torch.export raises many types; fall back once, say why
            first = first_line(e)
            log.warning("dynamo exporter failed (%s); falling back to the TorchScript exporter", first)
    proto = _export_torchscript(net, example, opset, dynamic, dyn_axes, out_name, output_stride)
    if opset_of(proto) != opset:
        raise ExportError(f"neither ONNX exporter could write opset {opset} for this model (the TorchScript "
                          f"exporter wrote {opset_of(proto)}); export with --opset {DEFAULT_OPSET}")
    return proto, "torchscript"



def _export_dynamo(net: nn.Module, example: torch.Tensor, opset: int, dynamic: bool,
                   dyn_axes: dict[int, str], out_name: str) -> onnx.ModelProto:
    shapes = None
    if dynamic:
        # Dim.DYNAMIC, not named Dims with ranges: pad-to-stride models branch on H/W (e.g. H > 32),
        # and torch.export refuses a user range that its guards narrow; DYNAMIC lets it record the
        # guard instead. The branches are shape arithmetic only, so the graph still runs at any size
        # (tested at sizes on both sides of such guards).
        shapes = ({i: torch.export.Dim.DYNAMIC for i in dyn_axes},)
    with quiet(), torch.inference_mode(False), torch.no_grad():
        prog = torch.onnx.export(net, (example,), dynamo=True, opset_version=opset, verbose=False,
                                 input_names=[INPUT_NAME], output_names=[out_name], dynamic_shapes=shapes,
                                 external_data=False, optimize=True)
    proto = prog.model_proto
    if opset_of(proto) != opset:
        # torch keeps its native opset when its version converter fails (unet_lite at 17): never mislabel.
        raise ExportError(f"it wrote opset {opset_of(proto)}, not the {opset} asked for")
    if dynamic:
        _name_dynamic_dims(proto, dyn_axes, out_name)
    return proto


def _name_dynamic_dims(proto: onnx.ModelProto, dyn_axes: dict[int, str], out_name: str) -> None:
    """Give the symbolic IO dims readable names (the exporter writes s0, s53, ...)."""
    names = {}
    for axis, dim in enumerate(proto.graph.input[0].type.tensor_type.shape.dim):
        if axis in dyn_axes and dim.dim_param:
            names[dim.dim_param] = dyn_axes[axis]
    for vi in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        for dim in vi.type.tensor_type.shape.dim:
            if dim.dim_param in names:
                dim.dim_param = names[dim.dim_param]


def _export_torchscript(net: nn.Module, example: torch.Tensor, opset: int, dynamic: bool,
                        dyn_axes: dict[int, str], out_name: str, output_stride: int = 1) -> onnx.ModelProto:
    axes = None
    if dynamic:
        h, w = ("height", "width") if output_stride == 1 else ("out_height", "out_width")
        out_axes = {0: "batch", 1: h, 2: w} if out_name == "class_map" else {0: "batch", 2: h, 3: w}
        axes = {INPUT_NAME: dyn_axes, out_name: out_axes}
    buf = io.BytesIO()
    try:
        with quiet(), torch.no_grad():
            torch.onnx.export(net, (example,), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[out_name], dynamic_axes=axes,
                              do_constant_folding=True)
    except Exception as e:
        first = first_line(e)
        raise ExportError(f"neither ONNX exporter could trace the model ({first}); make sure forward "
                          "takes one (N, 3, H, W) tensor and returns one logits tensor") from None
    return onnx.load_from_string(buf.getvalue())


