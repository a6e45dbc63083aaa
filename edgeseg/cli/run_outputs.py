"""Class-id outputs of ``predict`` and ``demo``: ``--save-ids DIR``, ``--save out.mcap``, ``--bag-images``."""

from __future__ import annotations

import argparse
from typing import Any

BAG_SUFFIX = ".mcap"


def add_result_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--save-ids", metavar="DIR", default=None,
                        help="also write each frame's class ids as lossless 8-bit PNGs (pixel = class id) with "
                             "capture times, into DIR/<camera>/")
    parser.add_argument("--bag-images", action="store_true",
                        help=f"with --save out{BAG_SUFFIX}: also record the camera frames (bgr8) in the bag")
    if "--exist-ok" not in parser._option_string_actions:  # other options of the command may define it too
        parser.add_argument("--exist-ok", action="store_true",
                            help="write into an output folder that already holds files (never replacing one)")


def is_bag(path: str | None) -> bool:
    return bool(path) and str(path).lower().endswith(BAG_SUFFIX)


def open_result_sinks(args: argparse.Namespace, meta: Any) -> list[Any]:
    """The result sinks the options ask for (the class table from the model's metadata)."""
    from edgeseg.runtime.errors import UsageError

    specs = [s for s in (getattr(args, "save_ids", None), args.save if is_bag(getattr(args, "save", None)) else None)
             if s]
    if getattr(args, "bag_images", False) and not is_bag(getattr(args, "save", None)):
        raise UsageError(f"--bag-images records frames into a ROS 2 bag; add --save out{BAG_SUFFIX}")
    if getattr(args, "save_ids", None) and is_bag(args.save_ids):
        raise UsageError(f"--save-ids takes a folder; for a ROS 2 bag use --save {args.save_ids}")
    if not specs:
        return []
    try:
        from edgeseg.runtime.result_sinks import open_result_sink
    except ImportError:
        raise UsageError("this edgeseg install has no class-id outputs (edgeseg.runtime.result_sinks is "
                         "missing); reinstall edgeseg") from None
    sinks: list[Any] = []
    try:
        for spec in specs:
            sinks.append(open_result_sink(spec, classes=meta.classes, palette=meta.palette,
                                          ignore_index=meta.ignore_index, images=bool(args.bag_images),
                                          exist_ok=bool(getattr(args, "exist_ok", False))))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return sinks
