"""Each ONNX Runtime graph pass's gain on the installed onnxruntime: INT8 latency with the pass vs without it.

For every pass of the ``ort`` INT8 stages (export/passes/) that changes the given model, the model is
quantized twice from the same calibration (all passes, and all but that one) and the two sessions are
timed interleaved (A B A B ...), so a pass that stops paying after an onnxruntime upgrade shows up here
and can be dropped. Passes that do not apply to the model are listed as such (e.g. the fused-pre-processing
ones need an ``--fuse-preprocess`` export). Records the onnxruntime version with every figure.

    python benchmarks/passes_bench.py                                   # the bundled FP32 model
    python benchmarks/passes_bench.py model.onnx --calib DIR --threads 1,2 --rounds 6 --json passes.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUNDLED = Path(__file__).resolve().parents[1] / "runtime" / "zoo" / "camvid-unet-lite.onnx"
ORT_STAGES = ("ort_before_calibration", "ort_ranges", "ort_after_qdq")


def _session(path: Path, threads: int):  # noqa: ANN202 - onnxruntime is imported lazily
    from edgeseg.export.parity import ort_session

    return ort_session(path, threads)


def _time(sess, x: np.ndarray, runs: int) -> list[float]:  # noqa: ANN001
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench(model: Path, calib: str, calib_images: int, threads: list[int], rounds: int, runs: int,
          only: list[str]) -> dict:
    import onnxruntime

    from edgeseg.export import load_images, quantize_onnx, read_meta
    from edgeseg.export.calibration import preprocess
    from edgeseg.export.passes import STAGES, pass_counts

    meta = read_meta(model)
    images = load_images(calib, "train", calib_images, what="calibration")
    x = preprocess([images.images[0]], meta, meta.input_size)
    names = [n for stage in ORT_STAGES for n in STAGES[stage] if not only or n in only]
    report = {"model": str(model), "onnxruntime": onnxruntime.__version__, "threads": threads, "rounds": rounds,
              "runs_per_round": runs, "calib_images": len(images), "passes": {}}
    with tempfile.TemporaryDirectory(prefix="edgeseg-passes-") as tmp:
        work = Path(tmp)
        cache = work / "calib.json"
        full = quantize_onnx(model, work / "all.onnx", calib=images, cache_path=cache)
        counts = pass_counts(read_meta(full.path).extra)
        for name in dict.fromkeys(names):
            if not counts.get(name):
                report["passes"][name] = {"count": 0, "note": "does not apply to this model"}
                continue
            without = quantize_onnx(model, work / f"no_{name}.onnx", calib=images, cache_path=cache,
                                    skip_passes=[name])
            row = {"count": counts[name]}
            for t in threads:
                a, b = _session(full.path, t), _session(without.path, t)
                with_ms, without_ms = [], []
                for _ in range(rounds):  # interleaved: a contended second core hits both alike
                    with_ms += _time(a, x, runs)
                    without_ms += _time(b, x, runs)
                w, wo = statistics.median(with_ms), statistics.median(without_ms)
                row[f"{t}_threads"] = {"with_ms": round(w, 3), "without_ms": round(wo, 3),
                                       "gain_ms": round(wo - w, 3), "gain_pct": round(100 * (wo - w) / wo, 1)}
            report["passes"][name] = row
            print(json.dumps({name: row}), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=str(BUNDLED), help="FP32 ONNX with edgeseg metadata (default: bundled)")
    p.add_argument("--calib", default="synthetic://?n=16", help="calibration images (default: procedural scenes)")
    p.add_argument("--calib-images", type=int, default=8)
    p.add_argument("--threads", default="1", help="comma-separated ONNX Runtime thread counts (default 1)")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds (default 6)")
    p.add_argument("--runs", type=int, default=10, help="timed runs per round and variant (default 10)")
    p.add_argument("--only", default="", help="comma-separated pass names (default: all ort passes)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    args = p.parse_args(argv)
    report = bench(Path(args.model), args.calib, args.calib_images, [int(t) for t in args.threads.split(",")],
                   args.rounds, args.runs, [n for n in args.only.split(",") if n])
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
