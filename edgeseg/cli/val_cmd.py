"""edgeseg val: mIoU of a checkpoint, ONNX model or TensorRT engine on a dataset split."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "mIoU of a checkpoint, ONNX model or engine on a dataset split"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint (.pt), ONNX model (.onnx), engine (.engine/.plan) or zoo name")
    p.add_argument("--data", default=None,
                   help="dataset folder or synthetic:// URI (default: the checkpoint's own dataset)")
    p.add_argument("--split", default="val", help="split to score: train, val or test")
    p.add_argument("--layout", default="auto", help="dataset layout: auto, camvid, cityscapes, folder, synthetic")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--backend", default="auto", help="runtime backend for exported models")
    p.add_argument("--threads", type=int, default=None, help="inference threads")
    p.add_argument("--imgsz", default=None, metavar="HxW",
                   help="inference size of an exported model with a dynamic input size, e.g. 360x480 "
                        "(a checkpoint is scored at each image's own size)")
    p.add_argument("--max-images", type=int, default=0, help="score the first N images only (0 = all)")
    p.add_argument("--flicker", default=None, metavar="SOURCE",
                   help="instead of mIoU: temporal flicker (share of pixels changing class between frames, "
                        "plain and motion-compensated) over a video, folder or synthetic:// clip")
    p.add_argument("--json", default=None, metavar="PATH", help="write the metrics as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from edgeseg.data import build_dataset
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import write_json

    # Checked before any loading: a bad number should fail in a second, not after the model loads.
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads} must be at least 1")
    if args.max_images < 0:
        raise UsageError(f"--max-images {args.max_images} must be at least 0 (0 = all images)")
    if args.flicker:
        return run_flicker(args)
    model_path = Path(args.model)
    is_checkpoint = model_path.suffix == ".pt"
    data = args.data
    if is_checkpoint and args.imgsz:
        raise UsageError(f"--imgsz is for exported models; the checkpoint {model_path} is scored at each "
                         "image's own size")
    if is_checkpoint:
        # Only here does val need torch: a runtime-only install scores exported models.
        import torch

        from edgeseg.train.checkpoint import load_checkpoint
        from edgeseg.train.evaluate import check_classes, evaluate_model
        from edgeseg.train.trainer import resolve_device

        ckpt = load_checkpoint(model_path)
        data = data or ckpt.dataset.get("root")
        if not data:
            raise UsageError(f"{model_path} does not record its dataset; pass --data DIR")
        dataset = build_dataset(data, args.split, layout=args.layout)
        check_classes(ckpt.classes, dataset.classes, str(model_path), f"{data} ({args.split})")
        if args.threads:
            torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        model = ckpt.build_model().to(device)
        metrics = evaluate_model(model, dataset, mean=ckpt.mean, std=ckpt.std, device=device,
                                 max_images=args.max_images, progress=not args.quiet)
        backend = "pytorch"
    else:
        from edgeseg.runtime import Segmenter
        from edgeseg.train.evaluate import check_classes, evaluate_segmenter

        if not data:
            raise UsageError(f"pass --data DIR: an exported model does not record its dataset ({model_path})")
        dataset = build_dataset(data, args.split, layout=args.layout)
        with Segmenter(args.model, backend=args.backend, device=args.device, threads=args.threads,
                       imgsz=args.imgsz) as seg:
            check_classes(seg.meta.classes, dataset.classes, str(model_path), f"{data} ({args.split})")
            metrics = evaluate_segmenter(seg, dataset, max_images=args.max_images, progress=not args.quiet)
            backend = seg.info["backend"]
    print(f"{args.model} on {data} ({args.split}, {len(dataset)} images, {backend}, void ignored)")
    print(metrics.table())
    if args.json:
        write_json(args.json, {"model": str(args.model), "data": str(data), "split": args.split,
                               "backend": backend, **metrics.to_dict()})
    return 0


def run_flicker(args: argparse.Namespace) -> int:
    """``--flicker SOURCE``: flicker of the model's class maps over a clip (first --max-images frames)."""
    from itertools import islice

    from edgeseg.runtime import Segmenter
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import write_json
    from edgeseg.runtime.sources import open_source
    from edgeseg.runtime.temporal import measure_flicker

    with Segmenter(args.model, backend=args.backend, device=args.device, threads=args.threads) as seg, \
            open_source(args.flicker, reconnect=False) as source:
        if source.is_live:
            raise UsageError(f"--flicker {args.flicker!r} is a live source; give a file, folder or synthetic:// clip")
        frames = (f.image for f in source)
        result = measure_flicker(seg, islice(frames, args.max_images or None))
    plain, moved = result["flicker"], result["flicker_compensated"]
    if not plain["pairs"]:
        raise UsageError(f"--flicker {args.flicker}: fewer than 2 frames, so there is nothing to compare")
    print(f"{args.model} on {args.flicker} ({result['frames']} frames): share of pixels changing class per frame")
    print(f"{'':<22}{'mean':>8}{'median':>8}{'p90':>8}")
    for name, s in (("plain", plain), ("motion-compensated", moved)):
        print(f"{name:<22}" + "".join(f"{100 * s[k]:7.2f}%" for k in ("mean", "median", "p90")))
    if args.json:
        write_json(args.json, {"model": str(args.model), "source": str(args.flicker), **result})
    return 0
