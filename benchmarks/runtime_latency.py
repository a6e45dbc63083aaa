"""Runtime latency breakdown: pre-processing / inference / post-processing / overlay per frame.

The target: pre + post + overlay within 15 % of the frame time for an INT8 model at 360x480 on
frames of 960x540. This script measures that for one or more models, interleaved in rounds
(timing on 2 shared vCPUs is bimodal), and reports
medians plus the overhead share::

    python benchmarks/runtime_latency.py model.int8.onnx [model.onnx] --threads 2 --runs 60 \
        --source highway_960x540.mp4 --json latency.json

The frame is the source's first frame (a real dashcam frame with the clip above), resized
to ``--frame-size``; without ``--source`` a procedural driving scene.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from edgeseg.cli.bench_cmd import bench_frame, environment, interleaved, model_row
from edgeseg.runtime import Segmenter
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.sizes import parse_hw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help=".onnx / .engine / .pt files or bundled names")
    ap.add_argument("--imgsz", default=None, help="inference size for dynamic models (default: the model's)")
    ap.add_argument("--frame-size", default="540x960", help="HxW of the camera frame (default 540x960)")
    ap.add_argument("--runs", type=int, default=60, help="timed frames per model (default 60)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=6, help="interleaving rounds (default 6)")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: backend's)")
    ap.add_argument("--source", default=None, help="take the frame from this video / URI")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)

    size = parse_hw(args.frame_size, "--frame-size")
    frame, kind = bench_frame(size, args.source)
    segs = [Segmenter(m, threads=args.threads, imgsz=args.imgsz) for m in args.models]
    try:
        samples = interleaved(segs, frame, args.runs, args.warmup, args.rounds)
        rows = [model_row(seg, s, args.rounds) for seg, s in zip(segs, samples, strict=True)]
    finally:
        for seg in segs:
            seg.close()

    print(f"frame {size[1]}x{size[0]} ({kind}); {args.runs} runs/model in {args.rounds} interleaved rounds; "
          f"threads {args.threads or 'default'}; medians in ms")
    print(f"{'model':<34} {'input':>8} {'pre':>6} {'infer':>7} {'post':>6} {'overlay':>7} {'frame':>7} "
          f"{'pre+post+ovl %':>14}")
    for r in rows:
        st = r["stage_p50_ms"]
        print(f"{os.path.basename(r['model'])[:34]:<34} {'x'.join(map(str, r['input_size'])):>8} "
              f"{st['preprocess_ms']:6.2f} {st['infer_ms']:7.2f} {st['postprocess_ms']:6.2f} "
              f"{st['overlay_ms']:7.2f} {st['total_ms']:7.2f} {r['overhead_pct']:14.1f}")
        print(f"{'':<34} infer p50/p90/p99 {r['infer_ms']['p50']:.2f}/{r['infer_ms']['p90']:.2f}/"
              f"{r['infer_ms']['p99']:.2f}; round medians {r['round_infer_p50_ms']}")
    result = {"frame": {"size": list(size), "kind": kind}, "config": vars(args), "environment": environment(),
              "models": rows}
    if args.json:
        write_json(args.json, result)
    else:
        json.dump({"models": [{k: r[k] for k in ("model", "stage_p50_ms", "overhead_pct")} for r in rows]},
                  sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
