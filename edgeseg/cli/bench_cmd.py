"""``edgeseg bench MODEL [MODEL ...]``: latency and throughput side by side, and the video pipeline.

Timing on small shared machines is bimodal (a contended second vCPU), so models
are measured interleaved in rounds (A B A B ...) and summarised by percentiles, never by a
single mean; each round's median is kept in the JSON to show the spread.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from . import finite_float

HELP = "latency and throughput of models and the video pipeline"
STAGES = ("preprocess_ms", "infer_ms", "postprocess_ms", "overlay_ms")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=".onnx / .engine / .pt files or bundled names")
    parser.add_argument("--imgsz", help="inference size HxW for models with dynamic H/W")
    parser.add_argument("--runs", type=int, default=100, help="timed frames per model (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames per model first (default 10)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaving rounds A B A B ... (default 5)")
    parser.add_argument("--threads", type=int, help="intra-op threads per model (default: the backend's)")
    parser.add_argument("--backend", default="auto",
                        help="auto | onnxruntime (ort) | openvino (ov) | tensorrt | pytorch; several, comma-separated "
                             "(--backend ort,openvino), time every model on each, interleaved")
    parser.add_argument("--device", default="cpu",
                        help="cpu | cuda | cuda:N; OpenVINO: CPU | GPU | NPU | AUTO (default: cpu)")
    parser.add_argument("--frame-size", default="540x960",
                        help="HxW of the frame pre/post-processing is timed on (default 540x960)")
    parser.add_argument("--alpha", type=finite_float, default=0.5, help="overlay opacity timed in the breakdown")
    parser.add_argument("--source", help="also run the end-to-end pipeline on this source URI")
    parser.add_argument("--frames", type=int, default=200, help="frames for the pipeline run (default 200)")
    parser.add_argument("--workers", type=int, default=1,
                        help="inference workers in the pipeline run (see 'edgeseg predict --help'; default 1)")
    parser.add_argument("--json", metavar="OUT", help="write all figures as JSON")


# -- measurement (also used by benchmarks/runtime_latency.py) --------------------------------------
def time_frame(seg: Any, frame: np.ndarray, alpha: float = 0.5) -> dict[str, float]:
    """One frame through ``seg`` plus the overlay: ms per stage and their total."""
    res = seg(frame)
    t = time.perf_counter()
    res.overlay(alpha)
    stages = dict(res.timings)
    stages["overlay_ms"] = (time.perf_counter() - t) * 1e3
    stages["total_ms"] = sum(stages[s] for s in STAGES)
    return stages


def summarize(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, np.float64)
    if a.size == 0:
        return {"p50": math.nan, "p90": math.nan, "p99": math.nan, "mean": math.nan}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": round(float(p50), 3), "p90": round(float(p90), 3), "p99": round(float(p99), 3),
            "mean": round(float(a.mean()), 3)}


def interleaved(segs: list[Any], frame: np.ndarray, runs: int, warmup: int, rounds: int,
                alpha: float = 0.5) -> list[list[dict[str, float]]]:
    """Time every Segmenter on ``frame`` in ``rounds`` rounds (A B A B ...); samples per Segmenter."""
    if runs < 1 or warmup < 0 or rounds < 1:
        from edgeseg.runtime.errors import UsageError

        raise UsageError(f"--runs {runs}, --warmup {warmup}, --rounds {rounds}: need runs >= 1, "
                         "warmup >= 0 and rounds >= 1")
    for seg in segs:
        for _ in range(warmup):
            time_frame(seg, frame, alpha)
    samples: list[list[dict[str, float]]] = [[] for _ in segs]
    for r in range(rounds):
        n = runs // rounds + (r < runs % rounds)  # exactly ``runs`` samples in all
        for i, seg in enumerate(segs):
            for _ in range(n):
                samples[i].append({**time_frame(seg, frame, alpha), "round": r})
    return samples


def model_row(seg: Any, samples: list[dict[str, float]], rounds: int) -> dict[str, Any]:
    """Summary of one model's samples: infer latency percentiles, stage medians, FPS, overhead share."""
    info = seg.info
    infer = [s["infer_ms"] for s in samples]
    medians = {s: float(np.median([x[s] for x in samples])) for s in (*STAGES, "total_ms")}
    overhead = medians["preprocess_ms"] + medians["postprocess_ms"] + medians["overlay_ms"]
    return {
        "model": info["model"], "backend": info["backend"], "device": info["device"],
        "providers": info["providers"], "precision": info["precision"], "int8_target": info["int8_target"],
        "input_size": info["input_size"], "layout": info["layout"], "output_kind": info["output_kind"],
        "threads": info["backend_details"].get("threads"),
        "runs": len(samples),
        "infer_ms": summarize(infer),
        "frame_ms": summarize([s["total_ms"] for s in samples]),
        "stage_p50_ms": {k: round(v, 3) for k, v in medians.items()},
        "infer_fps": round(1000.0 / medians["infer_ms"], 2) if medians["infer_ms"] > 0 else math.inf,
        "frame_fps": round(1000.0 / medians["total_ms"], 2) if medians["total_ms"] > 0 else math.inf,
        "overhead_pct": round(100.0 * overhead / medians["total_ms"], 2) if medians["total_ms"] > 0 else 0.0,
        "round_infer_p50_ms": [round(float(np.median(by_round)), 3) for by_round in
                               ([s["infer_ms"] for s in samples if s.get("round", 0) == r] for r in range(rounds))
                               if by_round],
    }


def pipeline_row(seg: Any, uri: str, frames: int, frame: np.ndarray, alpha: float = 0.5,
                 infer_runs: int = 20, workers: int = 1) -> dict[str, Any]:
    """End-to-end pipeline FPS on ``uri`` vs inference-only FPS measured just before and after it
    (one inference at a time: with ``workers`` > 1 the efficiency can exceed 1)."""
    from edgeseg.runtime.pipeline import run_pipeline
    from edgeseg.runtime.sources import open_source  # imported only when a source is given

    from .predict_cmd import check_some_frames

    def infer_block() -> list[float]:
        return [seg(frame).timings["infer_ms"] for _ in range(infer_runs)]

    before = infer_block()
    with open_source(uri) as src:
        stats = run_pipeline(seg, src, sinks=[], render="overlay", alpha=alpha, max_frames=frames,
                             workers=workers).to_dict()
    check_some_frames(stats.get("frames", 0), stats.get("corrupt", 0), uri, "so there is no pipeline figure",
                      stats.get("unreadable", ()))
    after = infer_block()
    infer_p50 = float(np.median(before + after))
    infer_fps = 1000.0 / infer_p50 if infer_p50 > 0 else math.inf
    return {
        "model": seg.info["model"], "source": uri, "workers": workers, "frames": stats.get("frames"),
        "drops": stats.get("drops"),
        "pipeline_fps": stats.get("fps"), "infer_fps": round(infer_fps, 2),
        "efficiency": round(stats["fps"] / infer_fps, 3) if stats.get("fps") and infer_fps else None,
        "capture_to_render_ms": stats.get("capture_to_render_ms"), "latency_ms": stats.get("latency_ms"),
        "infer_p50_before_after_ms": [round(float(np.median(before)), 3), round(float(np.median(after)), 3)],
    }


def bench_frame(size: tuple[int, int], source: str | None) -> tuple[np.ndarray, str]:
    """A realistic frame for the pre/post timing: the source's first frame, else a procedural scene."""
    import cv2

    if source:
        from edgeseg.runtime.sources import open_source

        with open_source(source) as src:
            f = src.read()
            if f.ok and f.image is not None:
                img = f.image.copy()
                f.release()
                if img.shape[:2] != size:
                    img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                return img, f"first frame of {source}"
    from edgeseg.runtime.synthetic import SceneGenerator

    img, _ = SceneGenerator(size, seed=0).scene(0)
    return np.ascontiguousarray(img), "procedural scene"


BACKEND_ALIASES = {"ort": "onnxruntime", "ov": "openvino"}


def parse_backends(text: str) -> list[str]:
    """``"ort,openvino"`` -> ["onnxruntime", "openvino"] (short names expanded, duplicates dropped)."""
    names = [BACKEND_ALIASES.get(b.strip().lower(), b.strip().lower()) for b in str(text).split(",")]
    if not all(names):
        from edgeseg.runtime.errors import UsageError

        raise UsageError(f"--backend {text!r} has an empty name; write e.g. --backend ort,openvino")
    return list(dict.fromkeys(names))


def environment() -> dict[str, Any]:
    import onnxruntime as ort

    env = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
           "onnxruntime": ort.__version__, "numpy": np.__version__}
    if "openvino" in sys.modules:  # only when a model ran on it: importing it costs time
        env["openvino"] = sys.modules["openvino"].__version__.split("-")[0]
    return env


# -- command -------------------------------------------------------------------------------------
def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.fileio import write_json
    from edgeseg.runtime.pipeline import check_workers
    from edgeseg.runtime.segmenter import Segmenter
    from edgeseg.runtime.sizes import parse_hw

    if args.frames < 1:
        raise UsageError(f"--frames {args.frames} must be at least 1")
    check_workers(args.workers, label="--workers")
    size = parse_hw(args.frame_size, "--frame-size")
    frame, frame_kind = bench_frame(size, args.source)
    segs = []
    try:
        for m in args.models:
            for backend in parse_backends(args.backend):
                segs.append(Segmenter(m, backend=backend, device=args.device, threads=args.threads,
                                      imgsz=args.imgsz))
        samples = interleaved(segs, frame, args.runs, args.warmup, args.rounds, args.alpha)
        rows = [model_row(seg, s, args.rounds) for seg, s in zip(segs, samples, strict=True)]
        pipes = ([pipeline_row(seg, args.source, args.frames, frame, args.alpha, workers=args.workers) for seg in segs]
                 if args.source else [])
    finally:
        for seg in segs:
            seg.close()

    names = [os.path.basename(r["model"]) for r in rows]
    table = [["model", "backend", "prec", "input", "p50 ms", "p90 ms", "p99 ms", "infer FPS", "pre ms",
              "post ms", "overlay ms", "frame ms", "pre+post %"]]
    for name, r in zip(names, rows, strict=True):
        st = r["stage_p50_ms"]
        table.append([name, r["backend"], r["precision"] + (f"/{r['int8_target']}" if r["int8_target"] else ""),
                      "x".join(map(str, r["input_size"])), f"{r['infer_ms']['p50']:.2f}",
                      f"{r['infer_ms']['p90']:.2f}", f"{r['infer_ms']['p99']:.2f}", f"{r['infer_fps']:.1f}",
                      f"{st['preprocess_ms']:.2f}", f"{st['postprocess_ms']:.2f}", f"{st['overlay_ms']:.2f}",
                      f"{st['total_ms']:.2f}", f"{r['overhead_pct']:.1f}"])
    print(f"{args.runs} runs per model in {args.rounds} interleaved rounds, frame {size[0]}x{size[1]} (HxW, "
          f"{frame_kind}), threads {args.threads or 'default'}")
    print(_table(table))
    if pipes:
        ptable = [["model", "source frames", "drops", "pipeline FPS", "infer FPS", "efficiency",
                   "c2r p50 ms", "c2r p99 ms"]]
        for name, p in zip(names, pipes, strict=True):
            c2r = p.get("capture_to_render_ms") or {}
            ptable.append([name, str(p["frames"]), str(p["drops"]), f"{p['pipeline_fps']:.1f}",
                           f"{p['infer_fps']:.1f}", f"{p['efficiency']:.2f}" if p["efficiency"] else "-",
                           _ms(c2r.get("p50")), _ms(c2r.get("p99"))])
        print(f"\npipeline on {args.source} ({args.frames} frames max, {args.workers} inference worker"
              f"{'s' if args.workers > 1 else ''})")
        print(_table(ptable))
    if args.json:
        write_json(args.json, {
            "config": {k: v for k, v in vars(args).items() if k not in ("verbose",)},
            "frame": {"size": list(size), "kind": frame_kind},
            "environment": environment(), "models": rows, "pipeline": pipes})
        print(f"wrote {args.json}")
    return 0


def _ms(v: Any) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) and not math.isnan(v) else "-"
