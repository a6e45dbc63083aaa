"""Per-frame cost of the result sinks (what the pipeline's writer stage spends on each frame).

    python benchmarks/result_sinks_bench.py                        # 1280x720, 60 frames a round, 3 rounds
    python benchmarks/result_sinks_bench.py --size 540x960 --frames 100 --json sinks.json

Sinks: class-id PNG folder; ROS 2 bag (MCAP) of class maps; the same with bgr8 frames
(--bag-images). Class maps are a synthetic driving scene's labels (realistic runs of equal ids,
which is what PNG and zstd compress); frames are its pictures. Rounds are interleaved
(A B C A B C ...) so a contended second core does not bias one sink. Reports the median
milliseconds per frame over rounds and the bytes written per frame. The bag sinks need the
``ros`` extra.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.result_sinks import open_result_sink
from edgeseg.runtime.sizes import parse_hw
from edgeseg.runtime.synthetic import SceneGenerator

T0 = 1_764_979_200.0


def scenes(hw: tuple[int, int], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    gen = SceneGenerator(size=hw, seed=0)
    return [gen.scene(i) for i in range(n)]  # [(frame (H, W, 3) uint8, labels (H, W) uint8)]


def one_round(spec: Path, images: bool, data, classes, palette) -> float:
    sink = open_result_sink(spec, classes=classes, palette=palette, ignore_index=SceneGenerator.ignore_index,
                            images=images)
    t = time.perf_counter()
    for i, (frame, ids) in enumerate(data):
        sink.write_result("cam0", i, T0 + i / 25, frame, ids)
    sink.close()
    return (time.perf_counter() - t) * 1000 / len(data)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="720x1280", help="HxW of the frames (default 720x1280)")
    ap.add_argument("--frames", type=int, default=60, help="frames per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    hw = parse_hw(args.size)
    data = scenes(hw, min(args.frames, 8))
    data = [data[i % len(data)] for i in range(args.frames)]
    classes, palette = SceneGenerator.classes, SceneGenerator.palette
    sinks = {"ids-png": ("ids", False), "bag": ("out.mcap", False), "bag+images": ("out.mcap", True)}
    times: dict[str, list[float]] = {k: [] for k in sinks}
    sizes: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (spec, images) in sinks.items():
            work = Path(tempfile.mkdtemp(prefix="edgeseg-sinks-"))
            try:
                times[name].append(one_round(work / spec, images, data, classes, palette))
                sizes[name] = size_of(work / spec) / len(data)
            finally:
                shutil.rmtree(work)
    results = {name: {"ms_per_frame": round(statistics.median(t), 2), "bytes_per_frame": round(sizes[name])}
               for name, t in times.items()}
    print(f"{hw[0]}x{hw[1]}, {args.frames} frames x {args.rounds} rounds, {platform.processor() or platform.machine()}")
    for name, r in results.items():
        print(f"  {name:12s} {r['ms_per_frame']:8.2f} ms/frame  {r['bytes_per_frame'] / 1024:9.1f} KiB/frame")
    if args.json:
        write_json(args.json, {"size": list(hw), "frames": args.frames, "rounds": args.rounds, "results": results})


if __name__ == "__main__":
    main()
