"""Flicker with and without the temporal filter, its latency, and its accuracy cost.

    python benchmarks/temporal_stability.py --video highway.mp4 --synthetic-frames 60 --json temporal.json

For each clip the model (default: the bundled INT8 CamVid model) runs once per frame and every
filter setting (``--alphas``; "off" = the plain class maps, ``logit:0.5`` = averaging logits) sees the same results, so the
settings differ only by the filter. Per setting: flicker (share of pixels changing class between
consecutive frames), plain and motion-compensated; the filter's milliseconds per frame (median);
agreement with the unfiltered maps; and, on the procedural clip (exact labels), mIoU. Clips: a
video file (``--video``, skipped when absent) and a procedural driving clip from
``edgeseg.runtime.synthetic`` (``--synthetic-frames``, 0 = skip).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.runtime import Segmenter
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.metrics import ConfusionMatrix
from edgeseg.runtime.temporal import FlickerMeter, TemporalFilter


class Setting:
    """One filter setting's meters over a clip."""

    def __init__(self, alpha: float | None, num_classes: int, space: str = "probability") -> None:
        self.alpha, self.space = alpha, space
        self.filter = TemporalFilter(alpha, space=space) if alpha is not None else None
        self.plain, self.moved = FlickerMeter(), FlickerMeter(compensate=True)
        self.ms: list[float] = []
        self.agree: list[float] = []
        self.cm = ConfusionMatrix(num_classes, 255)
        self.labelled = False

    def add(self, res: Any, label: np.ndarray | None) -> None:
        class_map = res.class_map
        if self.filter is not None:
            class_map = self.filter.update(res)
            self.ms.append(self.filter.last_ms)
            self.agree.append(float(np.mean(class_map == res.class_map)))
        self.plain.update(class_map)
        self.moved.update(class_map, res.frame)
        if label is not None:
            self.cm.update(class_map, label)
            self.labelled = True

    def summary(self) -> dict[str, Any]:
        p, m = self.plain.summary(), self.moved.summary()
        name = "off" if self.alpha is None else f"alpha={self.alpha}" + (" (logit)" if self.space == "logit" else "")
        return {"filter": name,
                "flicker_mean": round(100 * p["mean"], 3), "flicker_p90": round(100 * p["p90"], 3),
                "flicker_compensated_mean": round(100 * m["mean"], 3),
                "filter_ms_median": round(statistics.median(self.ms), 2) if self.ms else 0.0,
                "agreement_with_unfiltered": round(100 * statistics.fmean(self.agree), 2) if self.agree else 100.0,
                "miou": round(self.cm.summary().miou, 2) if self.labelled else None,
                "scene_cuts": self.filter.cuts if self.filter else 0}


def video_frames(path: str, limit: int) -> Iterator[tuple[np.ndarray, None]]:
    cap = cv2.VideoCapture(path)
    n = 0
    while not limit or n < limit:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        yield frame, None
    cap.release()


def synthetic_frames(n: int, size: tuple[int, int], seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from edgeseg.runtime.synthetic import SceneGenerator

    gen = SceneGenerator(size, seed=seed, fps=25.0)
    for i in range(n):
        yield gen.clip_frame(i)  # (H, W, 3) uint8 BGR, (H, W) uint8 exact labels


def parse_setting(text: str) -> tuple[float | None, str]:
    """'off', '0.5' (probability space) or 'logit:0.5' -> (alpha or None, space)."""
    text = text.strip()
    if text == "off":
        return None, "probability"
    space, _, value = text.rpartition(":")
    return float(value), space or "probability"


def run_clip(seg: Segmenter, frames: Iterator, alphas: list[tuple[float | None, str]]) -> list[dict[str, Any]]:
    settings = [Setting(a, len(seg.classes), space) for a, space in alphas]
    for frame, label in frames:
        res = seg(frame)
        for s in settings:
            s.add(res, label)
    return [s.summary() for s in settings]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="camvid-unet-lite.int8")
    p.add_argument("--video", default="", help="a video file (skipped when absent)")
    p.add_argument("--frames", type=int, default=0, help="video frames (0 = all)")
    p.add_argument("--synthetic-frames", type=int, default=60, help="procedural clip length (0 = skip)")
    p.add_argument("--synthetic-size", default="360x480")
    p.add_argument("--alphas", default="off,0.7,0.5,0.3,logit:0.5",
                   help="filter settings: 'off', the newest frame's weight, or logit:WEIGHT (averaging logits)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args()
    alphas = [parse_setting(a) for a in args.alphas.split(",")]
    report: dict[str, Any] = {"model": args.model, "threads": args.threads, "clips": {}}
    with Segmenter(args.model, threads=args.threads) as seg:
        if args.video and Path(args.video).is_file():
            report["clips"]["video:" + Path(args.video).name] = run_clip(seg, video_frames(args.video, args.frames),
                                                                         alphas)
        elif args.video:
            print(f"skipped video: {args.video} not found")
        if args.synthetic_frames > 0:
            h, w = (int(v) for v in args.synthetic_size.lower().split("x"))
            name = f"synthetic:{args.synthetic_frames}x{h}x{w}"
            report["clips"][name] = run_clip(seg, synthetic_frames(args.synthetic_frames, (h, w), 0), alphas)
    cols = ["filter", "flicker_mean", "flicker_p90", "flicker_compensated_mean", "filter_ms_median",
            "agreement_with_unfiltered", "miou", "scene_cuts"]
    print(" | ".join(["clip", *cols]))
    for clip, rows in report["clips"].items():
        for row in rows:
            print(" | ".join([clip, *("-" if row[k] is None else str(row[k]) for k in cols)]))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
