"""PyTorch eager vs ONNX Runtime FP32 / FP16 / INT8 (ORT target): latency and mIoU side by side.

For each checkpoint: export FP32, FP16 and INT8 (``--int8-target ort``, accuracy-gated) with
``edgeseg.export``, score each on the validation split (same numpy metric), then time all four
interleaved (A B C D A B C D ...) on one real image, batch 1, at 2 and 1 intra-op threads,
median of ``--runs`` after ``--warmup``. 2-thread latency on small shared CPUs is bimodal, so the
1-thread figures are printed next to them.

Targets: INT8/FP32 latency <= 0.5, ORT FP32/PyTorch <= 0.8, INT8 mIoU drop <= 0.5.

    python benchmarks/export_precisions.py runs/camvid_unet_lite/best.pt runs/camvid_fcn8s_lite/best.pt \\
        --imgsz 360x480 --json runs/export_bench/export_precisions.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

TARGETS = {"int8_over_fp32_latency": 0.5, "ort_fp32_over_pytorch_latency": 0.8, "int8_miou_drop": 0.5}
CANDIDATES = ("pytorch", "ort_fp32", "ort_fp16", "ort_int8")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="edgeseg checkpoints (.pt)")
    p.add_argument("--data", default=None, help="validation dataset (default: each checkpoint's own)")
    p.add_argument("--imgsz", default="360x480", help="input size HxW (default 360x480, CamVid's native size)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per candidate and thread count (>= 50)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", default="2,1", help="comma-separated intra-op thread counts")
    p.add_argument("--val-images", type=int, default=0, help="validation images for mIoU (0 = all)")
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--calib-method", default="percentile", help="minmax, entropy or percentile")
    p.add_argument("--max-miou-drop", type=float, default=0.5, help="INT8 gate limit (target: 0.5)")
    p.add_argument("--output-stride", type=int, default=1, metavar="S",
                   help="export (and time PyTorch) ending before the head's upsampling (edgeseg export --output-stride)")
    p.add_argument("--out", default="runs/export_bench", help="folder for the exported artifacts (git-ignored)")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="re-time the artifacts (and reuse the mIoU) of an earlier run's --json instead of "
                        "exporting again, e.g. export while training runs, time on a quiet machine")
    p.add_argument("--spin", action="store_true",
                   help="let idle ONNX Runtime worker threads spin (its library default; the runtime turns it off)")
    p.add_argument("--json", default=None, help="write all figures here")
    return p.parse_args(argv)


def reused(report: str, ckpt: Path) -> dict[str, Any]:
    """The export part of an earlier run's entry for ``ckpt`` (paths, mIoU, gate), without its timings."""
    models = json.loads(Path(report).read_text(encoding="utf-8"))["models"]
    for entry in models.values():
        if Path(entry["checkpoint"]).resolve() == ckpt.resolve():
            missing = [p for p in entry["paths"].values() if not Path(p).is_file()]
            if missing:
                raise SystemExit(f"{report}: artifact {missing[0]} is gone; run without --from-json")
            return {k: v for k, v in entry.items() if k not in ("checkpoint", "latency_ms", "ratios")}
    raise SystemExit(f"{report} has no entry for {ckpt}; run without --from-json")


def export_all(ckpt: Path, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """FP16 and INT8 exports (each also writes and checks the FP32 ONNX); returns paths and mIoU."""
    from edgeseg.export.pipeline import ExportFailed, export_checkpoint

    base = out_dir / (ckpt.parent.name + (f"_s{args.output_stride}" if args.output_stride > 1 else ""))
    common = dict(imgsz=args.imgsz, out=base, data=args.data, val_images=args.val_images, threads=1,
                  output_stride=args.output_stride, progress=True)
    t0 = time.perf_counter()
    fp16 = export_checkpoint(ckpt, precision="fp16", max_miou_drop=1.0, **common)
    try:
        int8 = export_checkpoint(ckpt, precision="int8", int8_target="ort", calib_images=args.calib_images,
                                 calib_method=args.calib_method, max_miou_drop=args.max_miou_drop,
                                 keep_failed=True, **common)
        int8_rows, int8_error = int8.rows, ""
    except ExportFailed as e:  # still benchmark the kept artifact, and say that the gate failed
        int8_rows, int8_error = e.result.rows, str(e)
    rows = {r["precision"]: r for r in fp16.rows + int8_rows}
    miou = {"pytorch": fp16.reference.get("miou")}
    for prec in ("fp32", "fp16", "int8"):
        miou[f"ort_{prec}"] = (rows[prec]["parity"]["metrics"] or {}).get("miou") if prec in rows else None
    return {"paths": {p: rows[p]["artifact"] for p in rows}, "miou": miou, "reports": {p: rows[p].get("report")
            for p in rows}, "int8_gate": rows.get("int8", {}).get("gate"), "int8_error": int8_error,
            "export_s": time.perf_counter() - t0, "val_images": fp16.reference.get("images")}


def time_interleaved(ckpt: Path, paths: dict[str, str], imgsz: tuple[int, int], threads: int, runs: int,
                     warmup: int, image: np.ndarray, spin: bool = False) -> dict[str, float]:
    """Median latency (ms) of each candidate, timed in interleaved rounds."""
    import torch

    from edgeseg.export.calibration import preprocess
    from edgeseg.export.onnx_export import read_meta, with_output_stride
    from edgeseg.export.parity import ort_session
    from edgeseg.train.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    meta = read_meta(paths["fp32"])
    model = with_output_stride(load_checkpoint(ckpt).build_model(), meta.output_stride)  # the exported graph
    x = preprocess([image], meta, imgsz)  # (1, 3, H, W) float32, as the runtime feeds it
    xt = torch.from_numpy(x)
    fns = {}
    with torch.inference_mode():
        fns["pytorch"] = lambda: model(xt)
        for prec in ("fp32", "fp16", "int8"):
            if prec in paths and Path(paths[prec]).exists():
                sess = ort_session(paths[prec], threads, spin=spin)  # the runtime's no-spin policy unless --spin
                name = sess.get_inputs()[0].name
                fns[f"ort_{prec}"] = (lambda s=sess, n=name: s.run(None, {n: x}))
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(runs):
            for k, fn in fns.items():  # A B C D A B C D ...: contention hits every candidate alike
                t0 = time.perf_counter()
                fn()
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def ratios(lat: dict[str, float], miou: dict[str, float | None]) -> dict[str, Any]:
    def div(a: str, b: str) -> float | None:
        return lat[a] / lat[b] if a in lat and b in lat and lat[b] else None

    drop = None
    if miou.get("ort_fp32") is not None and miou.get("ort_int8") is not None:
        drop = miou["ort_fp32"] - miou["ort_int8"]
    got = {"int8_over_fp32_latency": div("ort_int8", "ort_fp32"),
           "ort_fp32_over_pytorch_latency": div("ort_fp32", "pytorch"), "int8_miou_drop": drop}
    return {k: {"value": v, "target": TARGETS[k], "met": None if v is None else v <= TARGETS[k]}
            for k, v in got.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.runs < 50:
        print("note: medians of fewer than 50 timed runs are noisy", file=sys.stderr)
    from edgeseg.export.calibration import load_images
    from edgeseg.runtime.sizes import parse_hw
    from edgeseg.train.checkpoint import load_checkpoint

    imgsz = parse_hw(args.imgsz)
    thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
    out_dir = Path(args.out)
    results: dict[str, Any] = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                                           "python": platform.python_version()},
                               "settings": {k: v for k, v in vars(args).items() if k != "checkpoints"},
                               "models": {}}
    import onnxruntime
    import torch

    results["machine"].update(torch=torch.__version__, onnxruntime=onnxruntime.__version__)
    for ck in args.checkpoints:
        ckpt = Path(ck)
        name = f"{load_checkpoint(ckpt).model_name} ({ckpt.parent.name})"
        print(f"== {name}: exporting FP32 / FP16 / INT8 and scoring", file=sys.stderr)
        exp = reused(args.from_json, ckpt) if args.from_json else export_all(ckpt, args, out_dir)
        data = args.data or load_checkpoint(ckpt).dataset.get("root")
        image = load_images(data, "val", 1, need_labels=False, what="benchmark").images[0]
        lat = {}
        for t in thread_counts:
            print(f"== {name}: timing at {t} thread(s), {args.runs} interleaved rounds", file=sys.stderr)
            lat[t] = time_interleaved(ckpt, exp["paths"], imgsz, t, args.runs, args.warmup, image, args.spin)
        results["models"][name] = {"checkpoint": str(ckpt), **exp, "latency_ms": lat,
                                   "ratios": {t: ratios(lat[t], exp["miou"]) for t in thread_counts}}
    print(table(results, thread_counts))
    if args.json:
        from edgeseg.runtime.fileio import write_json

        write_json(args.json, json.loads(json.dumps(results, default=str)))
    return 0


def table(results: dict[str, Any], thread_counts: list[int]) -> str:
    lines = []
    for name, r in results["models"].items():
        lines.append(f"\n{name}  (val images: {r['val_images']}, {results['settings']['imgsz']}, batch 1)")
        head = f"{'candidate':<10} {'mIoU':>6} " + " ".join(f"{f'ms@{t}thr':>9}" for t in thread_counts)
        lines += [head, "-" * len(head)]
        for c in CANDIDATES:
            miou = r["miou"].get(c)
            cells = " ".join(f"{r['latency_ms'][t].get(c, float('nan')):9.1f}" for t in thread_counts)
            lines.append(f"{c:<10} {'-' if miou is None else f'{miou:6.2f}':>6} {cells}")
        for t in thread_counts:
            parts = []
            for k, v in r["ratios"][t].items():
                val = "-" if v["value"] is None else f"{v['value']:.2f}"
                parts.append(f"{k}={val} (<= {v['target']}: {'yes' if v['met'] else 'NO'})")
            lines.append(f"  {t} thr: " + "; ".join(parts))
        gate = r.get("int8_gate") or {}
        lines.append(f"  INT8 gate: nodes in float {gate.get('nodes_in_float')}, drop {gate.get('miou_drop')}"
                     + (f"; FAILED: {r['int8_error']}" if r.get("int8_error") else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
