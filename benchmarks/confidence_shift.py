"""Does the frame confidence score drop when the scene leaves the training distribution?

    python benchmarks/confidence_shift.py --data data/camvid --video highway.mp4 --images 20 --json conf.json

Scores the model (default: the bundled INT8 CamVid model) on CamVid val images as they are,
on darkened copies (linear light x 0.03, about 5 stops, plus sensor noise, as at dusk) and on fogged copies
(blended 60 % towards a light grey haze), and on the frames of a video. Per condition: mean
frame confidence (max softmax), share of pixels below --threshold, the same for the top-2
margin, mIoU where labels exist (void ignored), and the extra milliseconds per frame the
confidence costs. Conditions are skipped where their input is not given.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.runtime import Segmenter
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.metrics import ConfusionMatrix


def darken(bgr: np.ndarray, rng: np.random.Generator, gain: float = 0.03, noise: float = 4.0) -> np.ndarray:
    ramp = np.arange(256, dtype=np.float32) / 255.0
    lut = np.clip(((ramp ** 2.2) * gain) ** (1 / 2.2) * 255.0 + 0.5, 0, 255).astype(np.uint8)  # in linear light
    dark = cv2.LUT(bgr, lut)  # (H, W, 3) uint8
    return cv2.add(dark, rng.normal(0, noise, bgr.shape).astype(np.float32), dtype=cv2.CV_8U)


def fog(bgr: np.ndarray, density: float = 0.6, haze: int = 215) -> np.ndarray:
    return cv2.addWeighted(bgr, 1.0 - density, np.full_like(bgr, haze), density, 0.0)  # (H, W, 3) uint8


class Tally:
    """Per-frame confidence statistics and timings of one condition."""

    def __init__(self, num_classes: int, ignore: int | None, threshold: float) -> None:
        self.threshold = threshold
        self.mean: list[float] = []
        self.low: list[float] = []
        self.margin_mean: list[float] = []
        self.margin_low: list[float] = []
        self.conf_ms: list[float] = []
        self.cm = ConfusionMatrix(num_classes, ignore)
        self.labelled = False

    def add(self, res: Any, label: np.ndarray | None = None) -> None:
        t = time.perf_counter()
        score = res.frame_confidence(self.threshold)
        self.conf_ms.append((time.perf_counter() - t) * 1e3)
        margin = res.frame_confidence(self.threshold, kind="margin")
        self.mean.append(score.mean)
        self.low.append(score.low_share)
        self.margin_mean.append(margin.mean)
        self.margin_low.append(margin.low_share)
        if label is not None:
            self.cm.update(res.class_map, label)
            self.labelled = True

    def summary(self) -> dict[str, Any]:
        return {"frames": len(self.mean), "mean_confidence": round(statistics.fmean(self.mean), 4),
                "low_confidence_share": round(statistics.fmean(self.low), 4),
                "mean_margin": round(statistics.fmean(self.margin_mean), 4),
                "low_margin_share": round(statistics.fmean(self.margin_low), 4),
                "worst_frame_confidence": round(min(self.mean), 4),
                "miou": round(self.cm.summary().miou, 2) if self.labelled else None,
                "confidence_ms_median": round(statistics.median(self.conf_ms), 2)}


def camvid_pairs(root: Path, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    images = sorted((root / "val").glob("*.png"))[:n]
    pairs = []
    for path in images:
        label = cv2.imread(str(root / "valannot" / path.name), cv2.IMREAD_GRAYSCALE)
        pairs.append((cv2.imread(str(path)), label))  # (H, W, 3) BGR, (H, W) uint8
    return pairs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="camvid-unet-lite.int8")
    p.add_argument("--data", default="", help="CamVid folder with val/ and valannot/ (skipped when absent)")
    p.add_argument("--images", type=int, default=20, help="val images per condition")
    p.add_argument("--video", default="", help="a video file (skipped when absent)")
    p.add_argument("--frames", type=int, default=0, help="video frames to score (0 = all)")
    p.add_argument("--threshold", type=float, default=0.5, help="'low confidence' below this")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ignore", type=int, default=11, help="void label value of the dataset")
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args()

    seg = Segmenter(args.model, threads=args.threads)
    c = len(seg.classes)
    report: dict[str, Any] = {"model": args.model, "threshold": args.threshold, "threads": args.threads,
                              "conditions": {}}
    root = Path(args.data) if args.data else None
    if root is not None and (root / "val").is_dir():
        pairs = camvid_pairs(root, args.images)
        rng = np.random.default_rng(0)
        for name, change in (("camvid_val", lambda f: f), ("camvid_val_dark", lambda f: darken(f, rng)),
                             ("camvid_val_fog", fog)):
            tally = Tally(c, args.ignore, args.threshold)
            for frame, label in pairs:
                tally.add(seg(change(frame)), label)
            report["conditions"][name] = tally.summary()
    elif args.data:
        print(f"skipped CamVid: {root} has no val/")
    if args.video and Path(args.video).is_file():
        cap = cv2.VideoCapture(args.video)
        tally = Tally(c, None, args.threshold)
        while not args.frames or len(tally.mean) < args.frames:
            ok, frame = cap.read()
            if not ok:
                break
            tally.add(seg(frame))
        cap.release()
        report["conditions"]["video:" + Path(args.video).name] = tally.summary()
    elif args.video:
        print(f"skipped video: {args.video} not found")
    seg.close()
    cols = ["frames", "mean_confidence", "low_confidence_share", "mean_margin", "low_margin_share", "miou",
            "confidence_ms_median"]
    print(" | ".join(["condition", *cols]))
    for name, row in report["conditions"].items():
        print(" | ".join([name, *("-" if row[k] is None else str(row[k]) for k in cols)]))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
