"""edgeseg export: checkpoint -> ONNX / TensorRT (fp32, fp16, int8), each checked against PyTorch."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from edgeseg.runtime.errors import UsageError

from . import finite_float

HELP = "export a checkpoint to ONNX / TensorRT (fp32, fp16, int8)"
# Literal here so that '--help' needs no torch; the library checks the same names.
FORMATS = ("onnx", "engine")
PRECISIONS = ("fp32", "fp16", "int8")
CALIB_METHODS = ("minmax", "entropy", "percentile")

EPILOG = """\
artifacts (x = the checkpoint name, or --out; --out dir/ writes dir/<checkpoint name>.onnx, ...):
  x.onnx  x.fp16.onnx  x.int8.onnx (ONNX Runtime CPU, U8S8)  x.int8.trt.onnx (TensorRT, S8S8)
  x.int8.ov.xml + .bin (OpenVINO IR, --int8-target openvino)
  x.<precision>.engine (+ .engine.json manifest); a report x.<precision>.json beside each ONNX
examples:
  edgeseg export runs/camvid/best.pt
  edgeseg export runs/camvid/best.pt --precision int8 --calib-images 64 --calib-method percentile
  edgeseg export best.pt --fuse-preprocess --fuse-argmax --dynamic --val-images 20
  edgeseg export best.pt --precision int8 --output-stride 2   # unet_lite: class map at half size
  edgeseg export model.onnx --classes classes.txt --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \
      --precision int8 --calib images/ --val data/   # a segmentation ONNX made elsewhere (no torch)
  edgeseg export camvid-unet-lite --precision int8 --int8-target openvino --output-stride 2 --data data/
      # an edgeseg FP32 .onnx (or bundled name) alone: output-stride cuts and the OpenVINO INT8 flavour
"""


def _choices(names: tuple[str, ...]) -> str:
    return "{" + ",".join(names) + "}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("checkpoint", help="edgeseg checkpoint (.pt) from 'edgeseg train', or a segmentation .onnx "
                                      "made elsewhere (see 'ONNX input' below)")
    # Names are checked by the library (not argparse choices) so a typo gets the closest match.
    p.add_argument("--format", default="onnx", metavar=_choices(FORMATS + ("triton",)),
                   help="onnx, engine (TensorRT; needs a GPU) or triton (a Triton model repository in --out: "
                        "uint8 frames in, class map out; the input may also be an exported .onnx/.engine) "
                        "(default: %(default)s)")
    p.add_argument("--precision", default="fp32", metavar=_choices(PRECISIONS),
                   help="fp16 and int8 are checked against fp32 (mIoU gate) (default: %(default)s)")
    p.add_argument("--imgsz", default=None, metavar="HxW", help="input size (default: the checkpoint's)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--batch", type=int, default=1, help="batch size of a static export (default 1)")
    p.add_argument("--calib", default=None, metavar="DATA",
                   help="calibration images: a dataset root (train split) or an image folder "
                        "(default: the checkpoint's dataset)")
    p.add_argument("--calib-images", type=int, default=32, metavar="N", help="calibration images (default 32)")
    p.add_argument("--calib-method", default="minmax", metavar=_choices(CALIB_METHODS),
                   help="how int8 activation ranges are chosen from the calibration images "
                        "(docs/export.md#int8) (default: %(default)s)")
    p.add_argument("--int8-target", default=None,
                   help="ort (uint8 activations, fast on x86 CPUs), tensorrt (symmetric int8) or openvino "
                        "(NNCF into OpenVINO IR x.int8.ov.xml, needs edgeseg[openvino-export]); "
                        "default ort for --format onnx, tensorrt for --format engine")
    p.add_argument("--max-miou-drop", type=finite_float, default=1.0, metavar="POINTS",
                   help="largest allowed mIoU drop of fp16/int8 below fp32 (default 1.0)")
    p.add_argument("--fuse-preprocess", action="store_true", help="graph input: uint8 BGR (N,H,W,3) frame")
    p.add_argument("--fuse-argmax", action="store_true", help="graph output: uint8 class map (N,H,W)")
    p.add_argument("--output-stride", type=int, default=1, metavar="S",
                   help="end the graph before the head's upsampling: logits at 1/S of the input size, "
                        "argmax there and nearest-upsampled by the runtime (faster, ~0.2 mIoU on unet_lite "
                        "with S=2; the model's head stride or 1, the default)")
    p.add_argument("--opset", type=int, default=18,
                   help="ONNX opset: 17 up to the newest the installed ONNX Runtime loads (default 18)")
    p.add_argument("--workspace", type=finite_float, default=4.0, metavar="GB", help="TensorRT workspace limit")
    p.add_argument("--out", default=None, metavar="PATH",
                   help="artifact base name, e.g. out/model; an existing folder or one ending in / gets the "
                        "artifacts inside, named after the checkpoint (default: beside the checkpoint)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="validation data for parity and mIoU (default: the checkpoint's dataset, val split)")
    p.add_argument("--val-images", type=int, default=0, metavar="N", help="validation images to check (0 = all)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads for checks (0 = default)")
    p.add_argument("--keep-failed", action="store_true", help="keep an artifact that failed its gate")
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim graph simplification")
    p.add_argument("--json", default=None, metavar="OUT", help="write the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--no-pass", action="append", default=[], metavar="NAME",
                   help="switch off one graph pass (repeatable; for debugging; names: docs/byo-onnx.md)")
    _add_onnx_input_arguments(p)


def _add_onnx_input_arguments(p: argparse.ArgumentParser) -> None:
    """Flags for ``edgeseg export model.onnx``: what a foreign ONNX does not say about itself."""
    g = p.add_argument_group("ONNX input (edgeseg export model.onnx --classes FILE --mean A,B,C --std A,B,C)")
    g.add_argument("--classes", default=None, metavar="FILE",
                   help="text file, one class name per line in output-channel order (required)")
    g.add_argument("--mean", default=None, metavar="A,B,C", help="per-channel mean the model subtracts (required)")
    g.add_argument("--std", default=None, metavar="A,B,C", help="per-channel std the model divides by (required)")
    g.add_argument("--channel-order", default="rgb", help="rgb (default) or bgr: the order the model was trained on")
    g.add_argument("--pixel-range", type=int, default=1,
                   help="1 (default): pixels scaled to 0-1 before (x - mean) / std; 255: mean/std in 0-255 units")
    g.add_argument("--ignore-index", type=int, default=255, metavar="K",
                   help="label value of unlabelled pixels in --val masks (default 255)")
    g.add_argument("--val", default=None, metavar="DIR",
                   help="check images: a labelled dataset (mIoU) or an image folder (agreement with the float "
                        "model); default: the --calib images")


def _out_base(checkpoint: str, out: str | None) -> str | None:
    """``--out`` as the pipeline's base name: a folder (existing, or written ``dir/``) gets ``dir/<stem>``."""
    from edgeseg.export.pipeline import base_path

    if out and (out.endswith(("/", os.sep)) or Path(out).is_dir()):
        # Path() drops a trailing slash, so the pipeline alone would write dir.onnx beside the folder.
        return str(Path(out) / base_path(checkpoint, None).name)
    return out


def run(args: argparse.Namespace) -> int:
    from edgeseg.export.pipeline import export_checkpoint

    if args.format == "triton":  # a Triton model repository (export/triton_repo.py)
        return _run_triton(args)
    if args.checkpoint.lower().endswith(".onnx") or _bundled(args.checkpoint):
        return _run_onnx(args)
    onnx_only = [f for f, v in (("--classes", args.classes), ("--mean", args.mean), ("--std", args.std),
                                ("--val", args.val)) if v is not None]
    if onnx_only:
        raise UsageError(f"{onnx_only[0]} is for an ONNX input (edgeseg export model.onnx ...); a checkpoint carries "
                         "its classes and pre-processing")
    out = _out_base(args.checkpoint, args.out)
    return _report(args, partial(
        export_checkpoint,
        args.checkpoint, fmt=args.format, precision=args.precision, imgsz=args.imgsz, dynamic=args.dynamic,
        batch=args.batch, calib=args.calib, calib_images=args.calib_images, calib_method=args.calib_method,
        int8_target=args.int8_target, max_miou_drop=args.max_miou_drop, fuse_preprocess=args.fuse_preprocess,
        fuse_argmax=args.fuse_argmax, opset=args.opset, workspace_gb=args.workspace, out=out,
        data=args.data, val_images=args.val_images, keep_failed=args.keep_failed,
        simplify=not args.no_simplify, output_stride=args.output_stride, threads=args.threads,
        skip_passes=args.no_pass, progress=not args.quiet))


def _report(args: argparse.Namespace, export: Callable[[], Any]) -> int:
    """Run ``export()`` and print its results table (and write ``--json``), also when a gate fails."""
    from edgeseg.export.pipeline import ExportFailed
    from edgeseg.runtime.fileio import write_json

    try:
        result = export()
    except ExportFailed as e:
        # Show what was measured before the one-line error the CLI prints.
        print(e.result.table(), file=sys.stderr)
        if args.json:
            write_json(args.json, e.result.to_dict())
        raise
    print(result.table())
    if args.json:
        write_json(args.json, result.to_dict())
    return 0


def _floats(flag: str, text: str | None) -> tuple[float, ...]:
    if text is None:
        raise UsageError(f"an ONNX input needs {flag} A,B,C: the per-channel values the model was trained with")
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list of numbers, e.g. {flag} "
                         "0.485,0.456,0.406") from None


def _bundled(name: str) -> bool:
    """A bundled model's name (``camvid-unet-lite``) rather than a file."""
    from edgeseg.runtime import zoo

    return not Path(name).exists() and "/" not in name and name.removesuffix(".onnx") in zoo.list_models()


def _run_edgeseg_onnx(args: argparse.Namespace) -> int:
    """``edgeseg export x.onnx`` for an edgeseg FP32 export: output-stride cuts and the OpenVINO INT8 flavour."""
    from edgeseg.export.from_edgeseg_onnx import export_edgeseg_onnx

    unused = [f for f, v in (("--fuse-preprocess", args.fuse_preprocess), ("--fuse-argmax", args.fuse_argmax),
                             ("--mean", args.mean), ("--std", args.std), ("--format engine", args.format != "onnx"),
                             ("--dynamic", args.dynamic), ("--imgsz", args.imgsz),
                             ("--calib-method", args.calib_method != "minmax"), ("--no-pass", args.no_pass))
              if v]
    if unused:
        raise UsageError(f"{unused[0]} does not apply to an edgeseg ONNX input (its metadata and graph are kept); "
                         "export the checkpoint for that")
    return _report(args, partial(
        export_edgeseg_onnx, args.checkpoint, precision=args.precision, int8_target=args.int8_target,
        output_stride=args.output_stride, data=args.data, calib=args.calib, val=args.val,
        out=_out_base(args.checkpoint, args.out), calib_images=args.calib_images, val_images=args.val_images,
        max_miou_drop=args.max_miou_drop, keep_failed=args.keep_failed, threads=args.threads,
        progress=not args.quiet))


def _run_onnx(args: argparse.Namespace) -> int:
    """``edgeseg export model.onnx``: a segmentation ONNX made elsewhere -> edgeseg artifacts (no torch)."""
    import importlib.util

    from edgeseg.export.from_edgeseg_onnx import has_edgeseg_meta, resolve_input
    from edgeseg.runtime.errors import BackendUnavailableError

    if args.classes is None and has_edgeseg_meta(resolve_input(args.checkpoint)):
        return _run_edgeseg_onnx(args)

    needed = ("onnx", "onnxconverter_common") if args.precision == "fp16" else ("onnx",)
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(f"exporting an ONNX model needs {missing[0]}: pip install 'edgeseg[quantize]'")
    from edgeseg.export.foreign import export_onnx_model

    if args.classes is None:
        raise UsageError("an ONNX input needs --classes FILE: one class name per line, in output-channel order")
    if args.format != "onnx":
        raise UsageError(f"--format {args.format} is not available for an ONNX input yet; use --format onnx")
    unused = [f for f, v in (("--fuse-preprocess", args.fuse_preprocess), ("--fuse-argmax", args.fuse_argmax),
                             ("--output-stride", args.output_stride != 1), ("--data", args.data)) if v]
    if unused:
        raise UsageError(f"{unused[0]} applies to checkpoints only; for an ONNX input use --val for check images")
    out = args.out
    if out and (out.endswith(("/", os.sep)) or Path(out).is_dir()):
        out = str(Path(out) / f"{Path(args.checkpoint).stem}.edgeseg")
    return _report(args, partial(
        export_onnx_model,
        args.checkpoint, classes=args.classes, mean=_floats("--mean", args.mean), std=_floats("--std", args.std),
        channel_order=args.channel_order, pixel_range=args.pixel_range, ignore_index=args.ignore_index,
        precision=args.precision, calib=args.calib, val=args.val, imgsz=args.imgsz, out=out,
        calib_images=args.calib_images, calib_method=args.calib_method, int8_target=args.int8_target,
        max_miou_drop=args.max_miou_drop, val_images=args.val_images, keep_failed=args.keep_failed,
        simplify=not args.no_simplify, skip_passes=args.no_pass, threads=args.threads, progress=not args.quiet))


def _run_triton(args: argparse.Namespace) -> int:
    """--format triton: the ONNX export in the form Triton clients use (uint8 frames in, class map out,
    dynamic batch) written as a model repository entry in --out; an .onnx/.engine goes in as it is."""
    import tempfile

    from edgeseg.export.pipeline import artifact_path
    from edgeseg.export.triton_repo import PLATFORMS, check_free, model_name, write_repository

    repo = Path(args.out) if args.out else Path(args.checkpoint).parent / "triton"
    source = Path(args.checkpoint)
    if source.suffix.lower() in PLATFORMS:
        entry = write_repository(source, repo)
    else:
        name = model_name(source.with_suffix(".onnx"))
        check_free(repo / name)  # before a long export
        repo.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".edgeseg-triton.", dir=repo.parent) as tmp:
            args.format, args.fuse_preprocess, args.fuse_argmax, args.dynamic = "onnx", True, True, True
            args.out = str(Path(tmp) / name)
            run(args)
            onnx = artifact_path(args.out, args.precision, "onnx", args.int8_target or "ort")
            entry = write_repository(onnx, repo, name=name)
    print(f"Triton model repository: {entry} (serve: tritonserver --model-repository {repo.resolve()})")
    return 0
