"""Range limits of the numeric options, checked before any work.

Huge values do not fail by themselves, they hang or eat memory (100,000 threads, a 16384x16384
benchmark frame, 4000x4000 training crops): each number has a floor and a ceiling and the message
names both. Commands keep their own finer checks; these are the outer bounds.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

THREADS_PER_CPU = 4  # more threads than this per core only adds contention
MIN_THREAD_CAP = 16
INFER_PIXELS = 4096 * 4096  # inference sizes and benchmark frames: 4K video fits
TRAIN_PIXELS = 2048 * 2048  # a training crop (Cityscapes' full 1024x2048 fits)
TRAIN_BATCH_PIXELS = 1 << 25  # crop pixels x batch (8 x 2048x2048); activations grow with it (8 x 4000x4000: 17 GB)
SEED_MAX = 2**32 - 1  # numpy and torch seeds
MAX_SCALE = 8.0  # train --scale: a random rescale beyond this makes 360x480 images tens of megapixels


def thread_cap() -> int:
    from edgeseg.runtime.sources import available_cpus

    return max(MIN_THREAD_CAP, THREADS_PER_CPU * available_cpus())


@dataclass(frozen=True)
class Bound:
    lo: float | None  # None: no floor (the command checks its own)
    hi: float | str | None  # a number, "threads" (thread_cap()) or None
    why: str = ""  # appended to the message: what the number means at the edge
    positive: bool = False  # lo is exclusive: the value must be > lo (durations, rates)


# dest -> Bound for every command; (command, dest) overrides.
BOUNDS: dict[str | tuple[str, str], Bound] = {
    "threads": Bound(None, "threads", "more threads than cores only contend"),
    "workers": Bound(None, "threads", "each worker is a thread or process"),
    "batch": Bound(1, 1024),
    "max_frames": Bound(1, None),
    "frames": Bound(1, 10_000_000),
    "runs": Bound(1, 1_000_000),
    "warmup": Bound(0, 100_000),
    "rounds": Bound(1, 10_000),
    "epochs": Bound(1, 100_000),
    "max_steps": Bound(0, 10**9, "0 = no limit"),
    "val_every": Bound(1, 100_000),
    "val_images": Bound(0, None, "0 = all"),
    "max_images": Bound(0, None, "0 = all"),
    "calib_images": Bound(1, 2_000, "images held in memory at once"),
    "seed": Bound(0, SEED_MAX),
    "num_classes": Bound(1, 1000),
    "opset": Bound(7, 100),
    "output_stride": Bound(1, 64),
    "workspace": Bound(0, 1024, "GB", positive=True),
    "lr": Bound(0, 100, positive=True),
    "weight_decay": Bound(0, 10),
    "class_weight_cap": Bound(0, 1e6, positive=True),
    "ohem": Bound(0, 1, "a fraction of pixels"),
    "time_budget": Bound(0, 60 * 24 * 365, "minutes"),
    "minutes": Bound(None, 60 * 24 * 365),
    "max_miou_drop": Bound(0, 100, "mIoU points"),
    "duration": Bound(0, 10**9, "seconds", positive=True),
    "timeout": Bound(0, 86_400, "seconds", positive=True),
    "reconnect": Bound(0, 1_000_000, "attempts per outage"),
    ("train", "threads"): Bound(0, "threads", "0 = all cores"),
    ("export", "threads"): Bound(0, "threads", "0 = the default"),
    ("train", "workers"): Bound(0, "threads", "data-loading processes"),
    ("bench", "alpha"): Bound(0, 1, "overlay opacity"),  # predict and demo check it themselves
    "pixel_range": Bound(1, 255, "1 (pixels scaled to 0-1) or 255 (raw pixel units)"),
    "ignore_index": Bound(0, 255, "a class id in an 8-bit label"),
    "temporal_filter": Bound(0, 1, "the newest frame's weight", positive=True),
    "file_timeout": Bound(0, 7 * 86_400, "seconds per file", positive=True),
}

# HxW options -> (command or "*", pixel cap)
SIZE_OPTIONS: dict[str | tuple[str, str], int] = {
    "imgsz": INFER_PIXELS,
    "frame_size": INFER_PIXELS,
    ("train", "imgsz"): TRAIN_PIXELS,
    ("quickstart", "imgsz"): TRAIN_PIXELS,
}


def check_limits(args: argparse.Namespace) -> None:
    """Raise UsageError naming the option, the value and its limit."""
    command = getattr(args, "command", "")
    for dest, value in vars(args).items():
        bound = BOUNDS.get((command, dest), BOUNDS.get(dest))
        if bound is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_number(dest, value, bound)
        cap = SIZE_OPTIONS.get((command, dest), SIZE_OPTIONS.get(dest))
        if cap is not None and isinstance(value, str) and value:
            _check_size(dest, value, cap, command, args)
    if command == "train" and isinstance(getattr(args, "scale", None), str):
        _check_scale(args.scale)


def _check_scale(text: str) -> None:
    from edgeseg.runtime.errors import UsageError

    try:
        hi = max(float(v) for v in text.replace(",", "-").split("-") if v)
    except ValueError:
        return  # the command says how to write a range
    if hi > MAX_SCALE:
        raise UsageError(f"--scale {text}: a factor above {MAX_SCALE:g} is beyond the limit (images would be "
                         f"rescaled to {hi:g}x their size); use e.g. 0.5-2.0")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _check_number(dest: str, value: float, bound: Bound) -> None:
    from edgeseg.runtime.errors import UsageError

    hi = thread_cap() if bound.hi == "threads" else bound.hi
    why = f" ({bound.why})" if bound.why else ""
    if bound.positive and value <= bound.lo:
        raise UsageError(f"{_flag(dest)} {value} must be positive{why}")
    if bound.lo is not None and value < bound.lo:
        raise UsageError(f"{_flag(dest)} {value} must be at least {bound.lo}{why}")
    if hi is not None and value > hi:
        cpus = f", {THREADS_PER_CPU}x this machine's cores" if bound.hi == "threads" else ""
        raise UsageError(f"{_flag(dest)} {value} must be at most {hi}{cpus}{why}")


def _check_size(dest: str, value: str, cap: int, command: str, args: argparse.Namespace) -> None:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.sizes import parse_hw

    h, w = parse_hw(value, _flag(dest))
    if h * w > cap:
        raise UsageError(f"{_flag(dest)} {h}x{w} is {h * w:,} pixels, above the limit of {cap:,} "
                         f"(e.g. {_side(cap)}x{_side(cap)}); use a smaller size")
    batch = getattr(args, "batch", None)
    if command == "train" and isinstance(batch, int) and batch > 0 and h * w * batch > TRAIN_BATCH_PIXELS:
        raise UsageError(f"--imgsz {h}x{w} with --batch {batch} is {h * w * batch:,} pixels a step, above the "
                         f"limit of {TRAIN_BATCH_PIXELS:,}; lower --batch or --imgsz")


def _side(pixels: int) -> int:
    return int(pixels ** 0.5)
