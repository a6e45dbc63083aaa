"""edgeseg quickstart: the whole path on one machine, no downloads.

procedural driving scenes (or --data) -> train unet_lite briefly -> export FP32 and INT8
ONNX (each checked against PyTorch, with mIoU) -> run the torch-free runtime on a driving
clip -> overlay video + a summary table.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path
from typing import Any

from edgeseg.runtime.fileio import TEMP_NAME

from . import finite_float

HELP = "train -> export -> video on procedural scenes (or --data), end to end"

SYNTHETIC_DATA = "synthetic://?n=240&size=240x320&val=40"
SYNTHETIC_CLIP = "synthetic://?size=360x480&frames=150&fps=25"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="real dataset folder (CamVid, Cityscapes, images/+masks/); "
                                                "default: procedural driving scenes")
    p.add_argument("--model", default="unet_lite", help="model to train (see 'edgeseg models')")
    p.add_argument("--minutes", type=finite_float, default=2.0, help="training time budget in minutes")
    p.add_argument("--imgsz", default=None, help="training crop and export size HxW (default 240x320)")
    p.add_argument("--source", default=None,
                   help="video for the runtime step (default: a procedural driving clip)")
    p.add_argument("--frames", type=int, default=150, help="frames of the video to segment")
    p.add_argument("--out", default="runs/quickstart", help="output folder")
    p.add_argument("--device", default="auto", help="training device: auto, cpu, cuda")
    p.add_argument("--json", default=None, metavar="PATH", help="write the summary as JSON")


def run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from edgeseg.export import export_checkpoint
    from edgeseg.runtime import Segmenter
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import write_json
    from edgeseg.runtime.pipeline import plan_workers, run_pipeline
    from edgeseg.runtime.sinks import open_sink
    from edgeseg.runtime.sizes import format_hw, parse_hw
    from edgeseg.runtime.sources import available_cpus, open_source
    from edgeseg.train.config import TrainConfig
    from edgeseg.train.trainer import train

    if not args.minutes > 0:
        raise UsageError(f"--minutes {args.minutes:g} must be a positive training time")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        handler.addFilter(FinalNames())
    out = Path(args.out)
    data = args.data or SYNTHETIC_DATA
    imgsz = parse_hw(args.imgsz) if args.imgsz else (240, 320)
    source_uri = args.source or SYNTHETIC_CLIP
    with open_source(source_uri):  # a missing or unreadable --source fails now, not after the training
        pass
    t0 = time.perf_counter()

    _step(1, f"train {args.model} on {data} for {args.minutes:g} min")
    cfg = TrainConfig(model=args.model, data=data, out=str(out / "train"), imgsz=imgsz,
                      scale=(0.75, 1.5) if args.data is None else (0.5, 2.0), epochs=10_000, batch=8,
                      lr=3e-3, warmup_steps=20, time_budget_min=args.minutes, val_every=5,
                      device=args.device, workers=1)
    result = train(cfg, progress=True, exist_ok=True)  # the quickstart folder is rebuilt each run
    ckpt = result.best_path

    _step(2, "export FP32 and INT8 ONNX, each checked against PyTorch on validation images")
    onnx_base = out / f"{args.model}.onnx"
    # One call: the INT8 export writes and checks the FP32 model it quantizes, too.
    exported = export_checkpoint(ckpt, precision="int8", imgsz=format_hw(imgsz), out=onnx_base, val_images=0,
                                 calib_images=32, calib_method="percentile")
    print(exported.table())

    _step(3, "segment a driving clip with the torch-free runtime (INT8)")
    video = out / "quickstart_overlay.mp4"
    # As 'edgeseg predict' runs a clip: --workers auto.
    workers, threads = plan_workers("auto", None, "onnxruntime", "cpu", args.frames, available_cpus())
    with Segmenter(exported.artifact, threads=threads) as seg:
        source = open_source(source_uri)
        sink = open_sink(video, fps=source.fps or 25)
        stats = run_pipeline(seg, source, sinks=[sink], render="overlay", max_frames=args.frames, hud=True,
                             workers=workers)
    s = stats.to_dict()

    _print_summary(result, exported, s, workers, video)
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min. Next: edgeseg predict {exported.artifact} "
          f"YOUR_VIDEO.mp4 --save out.mp4")
    if args.json:
        write_json(args.json, {"train": {"best": str(ckpt), "best_metrics": result.best_metrics,
                                         "images_per_s": result.images_per_s, "epochs": result.epochs},
                               "export": exported.to_dict(), "runtime": {**s, "workers": workers},
                               "video": str(video), "minutes": (time.perf_counter() - t0) / 60})
    return 0


def _print_summary(result: Any, exported: Any, s: dict[str, Any], workers: int, video: Path) -> None:
    """One row per step: what it measured and the file it left."""
    ckpt = result.best_path
    rows = [("train", f"{result.epochs} epochs, {result.images_per_s:.1f} img/s, "
                      f"val mIoU {result.best_metrics.get('miou', float('nan')):.1f}", str(ckpt))]
    for r in exported.rows:
        miou = ((r.get("parity") or {}).get("metrics") or {}).get("miou")
        lat = (r.get("parity") or {}).get("latency_ms")
        rows.append((f"export {r.get('precision')}",
                     f"mIoU {miou:.1f}, {lat:.1f} ms/frame (ONNX Runtime)" if miou is not None and lat else "",
                     str(r["artifact"])))
    rows.append(("runtime", f"{s['frames']} frames, {s['fps']:.1f} FPS end to end ({workers} inference "
                            f"worker{'s' if workers > 1 else ''}), capture-to-render p50 "
                            f"{s['capture_to_render_ms']['p50']:.0f} ms", str(video)))
    width = max(len(r[0]) for r in rows)
    print()
    for stage, figure, path in rows:
        print(f"{stage:<{width}}  {figure}\n{'':<{width}}  -> {path}")


# fileio.atomic_path's hidden temporary name, at the start of a path component in a log line
_TEMP_NAME = re.compile(r"(^|[/\\\s'\"(])" + TEMP_NAME.pattern)


class FinalNames(logging.Filter):
    """Log lines name the file a user will find (x.onnx), not the hidden temporary file an export
    writes and checks before publishing it under the final name."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        plain = _TEMP_NAME.sub(r"\1\2\3", message)
        if plain != message:
            record.msg, record.args = plain, ()
        return True


def _step(n: int, text: str) -> None:
    print(f"\n[{n}/3] {text}", flush=True)
