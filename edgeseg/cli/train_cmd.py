"""edgeseg train: train a registered model on a dataset."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from . import finite_float

HELP = "train a model on a dataset"


def _parse_scale(text: str) -> tuple[float, float]:
    from edgeseg.runtime.errors import UsageError

    try:
        lo, hi = (float(v) for v in text.replace(",", "-").split("-"))
    except ValueError:
        raise UsageError(f"--scale {text!r} is not a range; write MIN-MAX, e.g. 0.5-2.0") from None
    return lo, hi


def _parse_kwargs(items: list[str]) -> dict:
    from edgeseg.runtime.errors import UsageError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--model-arg {item!r} must look like NAME=VALUE, e.g. width=0.5")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="unet_lite", help="registered model name (see 'edgeseg models')")
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="extra model argument, e.g. width=0.5 (repeatable)")
    p.add_argument("--data", default="synthetic://",
                   help="dataset folder (CamVid, Cityscapes, images/+masks/) or synthetic://?n=200&size=240x320")
    p.add_argument("--layout", default="auto", help="dataset layout: auto, camvid, cityscapes, folder, synthetic")
    p.add_argument("--holdout-sequence", default="", metavar="SEQ",
                   help="train on the other sequences of train+val and validate on sequence SEQ "
                        "(file-name prefix, e.g. 0016E5): leave-one-sequence-out validation")
    p.add_argument("--train-split", default="train", metavar="SPLIT[+SPLIT]",
                   help="split(s) to train on (default train); train+val trains the final model on both with a "
                        "schedule chosen by --holdout-sequence cross-validation (val mIoU then scores seen images)")
    p.add_argument("--sequences", default="", metavar="A,B,..",
                   help="file-name prefixes that name the sequences (default: CamVid's; 'auto': up to the first '_')")
    p.add_argument("--imgsz", default="360x480", help="training crop HxW (validation runs at native size)")
    p.add_argument("--scale", default="0.5-2.0", help="random rescale range before cropping")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs to train (default 100; with --resume: the saved run's, or this many to extend it)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--optimizer", default="adamw", help="adamw or sgd")
    p.add_argument("--lr", type=finite_float, default=None, help="base LR (default 2e-3 for adamw, 0.01 for sgd)")
    p.add_argument("--weight-decay", type=finite_float, default=1e-4)
    p.add_argument("--class-weights", default="sqrt_median", help="none, median or sqrt_median")
    p.add_argument("--class-weight-cap", type=finite_float, default=5.0)
    p.add_argument("--ohem", type=finite_float, default=0.0, metavar="FRACTION",
                   help="train on the hardest FRACTION of pixels (0 = off)")
    p.add_argument("--no-flip", action="store_true")
    p.add_argument("--no-photometric", action="store_true")
    p.add_argument("--augment", default="", metavar="A,B,..",
                   help="robustness augmentations: exposure, gamma, lowlight, noise, blur, shadow, horizon, or all")
    p.add_argument("--time-budget", type=finite_float, default=0.0, metavar="MIN",
                   help="fit the LR schedule to this many minutes and stop on time")
    p.add_argument("--out", default=None,
                   help="output folder for best.pt, last.pt, metrics.csv (default runs/train, or the --resume folder)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    p.add_argument("--no-cache", action="store_true", help="decode images every time instead of caching in RAM")
    p.add_argument("--val-every", type=int, default=1, help="epochs between validations")
    p.add_argument("--val-images", type=int, default=0, help="validate on the first N images only (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after N optimizer steps (smoke runs)")
    p.add_argument("--weights", default="", metavar="CKPT",
                   help="start from this checkpoint's weights with a fresh schedule (fine-tuning); "
                        "layers whose shape differs, e.g. a head for other classes, start fresh")
    p.add_argument("--resume", default=None, metavar="LAST_PT",
                   help="continue an interrupted run from last.pt with its saved recipe (honours only --out, --data, "
                        "--epochs, --device, --workers, --threads, --no-cache, --val-every, --val-images)")
    p.add_argument("--exist-ok", action="store_true",
                   help="let a fresh run replace the run already in --out (refused otherwise)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the result summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):
    from pathlib import Path

    from edgeseg.data.robust_transforms import parse_augment
    from edgeseg.runtime.sizes import parse_hw
    from edgeseg.train.config import TrainConfig

    out = args.out or (str(Path(args.resume).parent) if args.resume else "runs/train")
    lr = args.lr if args.lr is not None else (0.01 if args.optimizer == "sgd" else 2e-3)
    return TrainConfig(
        model=args.model, model_kwargs=_parse_kwargs(args.model_arg), data=args.data, layout=args.layout,
        out=out, imgsz=parse_hw(args.imgsz), scale=_parse_scale(args.scale), flip=not args.no_flip,
        photometric=not args.no_photometric, epochs=100 if args.epochs is None else args.epochs, batch=args.batch, optimizer=args.optimizer,
        lr=lr, weight_decay=args.weight_decay, class_weighting=args.class_weights,
        class_weight_cap=args.class_weight_cap, ohem_fraction=args.ohem, device=args.device,
        amp=not args.no_amp, workers=args.workers, threads=args.threads, cache=not args.no_cache,
        seed=args.seed, max_steps=args.max_steps, time_budget_min=args.time_budget, val_every=args.val_every,
        val_max_images=args.val_images, init_weights=args.weights, holdout_sequence=args.holdout_sequence,
        train_split=args.train_split,
        sequences=tuple(s for s in args.sequences.split(",") if s.strip()),
        augment=parse_augment(args.augment))


# flag dest -> TrainConfig field a resumed run takes from the command line (see trainer.RESUME_FIELDS)
RESUME_OPTIONS = {"out": "out", "data": "data", "device": "device", "workers": "workers", "threads": "threads",
                  "no_cache": "cache", "val_every": "val_every", "val_images": "val_max_images"}
NOT_RECIPE = {"resume", "epochs", "json", "quiet", "verbose", "command", "exist_ok"}


def _resume_fields(args: argparse.Namespace) -> tuple[str, ...]:
    """The config fields a resume takes from the command line; UsageError listing every given
    option it cannot honour (they would change the saved recipe)."""
    from edgeseg.runtime.errors import UsageError

    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    given = {k for k, v in vars(args).items() if k in defaults and v != defaults[k] and k not in NOT_RECIPE}
    refused = sorted(given - set(RESUME_OPTIONS))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        raise UsageError(f"--resume continues the saved run's recipe and cannot apply {flags}; drop them, or start "
                         f"a fresh run from its weights with --weights {args.resume} --out NEWDIR")
    return ("out", *(RESUME_OPTIONS[k] for k in sorted(given & set(RESUME_OPTIONS)) if k != "out"))


def run(args: argparse.Namespace) -> int:
    from edgeseg.models import list_models
    from edgeseg.runtime.errors import UsageError, unknown_name
    from edgeseg.runtime.fileio import write_json
    from edgeseg.train.trainer import train

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    cfg = config_from_args(args)
    if cfg.holdout_sequence and cfg.train_split != "train":
        raise UsageError("--holdout-sequence already trains on train+val minus the held-out sequence; "
                         "drop --train-split")
    if cfg.model not in list_models():
        raise unknown_name("model", cfg.model, list_models())
    fields = _resume_fields(args) if args.resume else ()
    result = train(cfg, resume=args.resume, progress=not args.quiet, resume_epochs=args.epochs,
                   resume_fields=fields, exist_ok=args.exist_ok)
    best = result.best_metrics
    summary = {
        "model": cfg.model, "data": cfg.data, "epochs": result.epochs, "steps": result.steps,
        "images_per_s": round(result.images_per_s, 2), "minutes": round(result.elapsed_s / 60, 2),
        "best_miou": best.get("miou"), "best_epoch": best.get("epoch"),
        "best": str(result.best_path), "last": str(result.last_path),
    }
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        shown = f"{value:.2f}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    if args.json:
        write_json(args.json, {**summary, "best_metrics": best})
    return 0
