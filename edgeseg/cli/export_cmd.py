"""edgeseg export: checkpoint -> ONNX / TensorRT (fp32, fp16, int8), each checked against PyTorch."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import finite_float

HELP = "export a checkpoint to ONNX / TensorRT (fp32, fp16, int8)"

EPILOG = """\
artifacts (x = the checkpoint name, or --out; --out dir/ writes dir/<checkpoint name>.onnx, ...):
  x.onnx  x.fp16.onnx  x.int8.onnx (ONNX Runtime CPU, U8S8)  x.int8.trt.onnx (TensorRT, S8S8)
  x.<precision>.engine (+ .engine.json manifest); a report x.<precision>.json beside each ONNX
examples:
  edgeseg export runs/camvid/best.pt
  edgeseg export runs/camvid/best.pt --precision int8 --calib-images 64 --calib-method percentile
  edgeseg export best.pt --fuse-preprocess --fuse-argmax --dynamic --val-images 20
  edgeseg export best.pt --precision int8 --output-stride 2   # unet_lite: class map at half size
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("checkpoint", help="edgeseg checkpoint (.pt) from 'edgeseg train'")
    p.add_argument("--format", default="onnx",
                   help="onnx, engine (TensorRT; needs a GPU) or triton (a Triton model repository in --out: "
                        "uint8 frames in, class map out; the checkpoint may also be an exported .onnx/.engine)")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or int8")
    p.add_argument("--imgsz", default=None, metavar="HxW", help="input size (default: the checkpoint's)")
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--batch", type=int, default=1, help="batch size of a static export (default 1)")
    p.add_argument("--calib", default=None, metavar="DATA",
                   help="calibration images: a dataset root (train split) or an image folder "
                        "(default: the checkpoint's dataset)")
    p.add_argument("--calib-images", type=int, default=32, metavar="N", help="calibration images (default 32)")
    p.add_argument("--calib-method", default="minmax", help="minmax, entropy or percentile")
    p.add_argument("--int8-target", default=None,
                   help="ort (uint8 activations, fast on x86 CPUs) or tensorrt (symmetric int8); "
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


def _out_base(checkpoint: str, out: str | None) -> str | None:
    """``--out`` as the pipeline's base name: a folder (existing, or written ``dir/``) gets ``dir/<stem>``."""
    from edgeseg.export.pipeline import base_path

    if out and (out.endswith(("/", os.sep)) or Path(out).is_dir()):
        # Path() drops a trailing slash, so the pipeline alone would write dir.onnx beside the folder.
        return str(Path(out) / base_path(checkpoint, None).name)
    return out


def run(args: argparse.Namespace) -> int:
    from edgeseg.export.pipeline import ExportFailed, export_checkpoint
    from edgeseg.runtime.fileio import write_json

    if args.format == "triton":  # a Triton model repository (export/triton_repo.py)
        return _run_triton(args)
    out = _out_base(args.checkpoint, args.out)
    try:
        result = export_checkpoint(
            args.checkpoint, fmt=args.format, precision=args.precision, imgsz=args.imgsz, dynamic=args.dynamic,
            batch=args.batch, calib=args.calib, calib_images=args.calib_images, calib_method=args.calib_method,
            int8_target=args.int8_target, max_miou_drop=args.max_miou_drop, fuse_preprocess=args.fuse_preprocess,
            fuse_argmax=args.fuse_argmax, opset=args.opset, workspace_gb=args.workspace, out=out,
            data=args.data, val_images=args.val_images, keep_failed=args.keep_failed,
            simplify=not args.no_simplify, output_stride=args.output_stride, threads=args.threads,
            progress=not args.quiet)
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
