"""OpenVINO vs ONNX Runtime on one FP32 model, and the OpenVINO INT8 flavour vs OpenVINO FP32.

One interleaved run (A B C ... A B C ..., medians; timing on small shared machines is bimodal) at
each thread count, inference only (the pre-processed frame in, the raw output out):

* ONNX Runtime FP32, OpenVINO FP32 (OpenVINO's default precision: bfloat16 on CPUs that have it)
  and OpenVINO FP32 held to float32;
* the OpenVINO INT8 flavour (NNCF, made here from the FP32 ONNX through the accuracy gate);
* the ONNX Runtime INT8 flavour beside it (``--ort-int8``), on ONNX Runtime and on OpenVINO;
* CPU pinning on/off with a concurrent rendering thread (``--load-check``).

mIoU of the INT8 flavour vs FP32 comes from the gate when ``--data`` names a labelled dataset
(CamVid layout: calibration on its train split, scoring on val)::

    python benchmarks/openvino_vs_ort.py --data path/to/camvid --threads 1,2 --json ov.json

Without ``--data`` calibration uses procedural scenes and no accuracy figure is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeseg.cli.bench_cmd import bench_frame, environment
from edgeseg.export.coarse_onnx import to_output_stride
from edgeseg.export.onnx_io import load_onnx, save_onnx
from edgeseg.runtime import zoo
from edgeseg.runtime.backends.ort import OnnxRuntimeBackend
from edgeseg.runtime.backends.ov import OpenVinoBackend
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.preprocess import Preprocessor
from edgeseg.runtime.segmenter import Segmenter

TARGET_OV_VS_ORT = 0.75  # OpenVINO FP32 latency <= 0.75 x ONNX Runtime FP32
TARGET_INT8_VS_FP32 = 0.5  # OpenVINO INT8 <= 0.5 x OpenVINO FP32
TARGET_MIOU_DROP = 0.5


def make_int8(fp32: Path, out: Path, data: str | None, calib_images: int, val_images: int,
              max_drop: float, threads: int) -> dict[str, Any]:
    """The OpenVINO INT8 flavour of ``fp32`` at ``out`` (kept even when the gate fails, to time it)."""
    from edgeseg.export.calibration import load_images
    from edgeseg.export.gate import GateFailed
    from edgeseg.export.ov_int8 import quantize_for_openvino, read_model_meta

    size = read_model_meta(fp32)[1].input_size or (360, 480)
    source = data or f"synthetic://?n={max(calib_images, 8)}&size={size[0]}x{size[1]}&seed=0&val=8"
    calib = load_images(source, "train", calib_images, what="calibration")
    val = load_images(source, "val", val_images if data else 8, need_labels=True, what="validation")
    t = time.perf_counter()
    try:
        res, gate = quantize_for_openvino(fp32, out, calib=calib, val=val, max_miou_drop=max_drop if data else 100.0,
                                          threads=threads, failed_out=out)
        passed = True
    except GateFailed as e:
        res, gate, passed = e.result, e.report, False
    row = {"artifact": str(out), "seconds": round(time.perf_counter() - t, 1), "gate_passed": passed,
           "quantization": res.to_dict(), "calib_images": len(calib), "val_images": len(val)}
    if data:
        row.update(fp32_miou=gate.fp32_miou, int8_miou=gate.int8_miou, miou_drop=gate.drop,
                   miou_target_met=gate.drop <= TARGET_MIOU_DROP, gate=gate.to_dict())
    return row


def backends(fp32: Path, int8_ov: dict[str, Path], ort_int8: Path | None, threads: int) -> dict[str, Any]:
    t = threads
    out = {"ort_fp32": OnnxRuntimeBackend(fp32, threads=t),
           "ov_fp32": OpenVinoBackend(fp32, "CPU", threads=t),
           "ov_fp32_f32": OpenVinoBackend(fp32, "CPU", threads=t, precision_hint="f32")}
    out.update({name: OpenVinoBackend(path, "CPU", threads=t) for name, path in int8_ov.items()})
    if ort_int8 is not None:
        out["ort_int8_on_ort"] = OnnxRuntimeBackend(ort_int8, threads=t)
        out["ort_int8_on_ov"] = OpenVinoBackend(ort_int8, "CPU", threads=t)
    return out


def interleave(runners: dict[str, Any], inputs: dict[str, np.ndarray], runs: int, rounds: int,
               warmup: int = 3) -> dict[str, dict[str, Any]]:
    """Median inference ms per runner, A B C ... in every round."""
    for name, b in runners.items():
        for _ in range(warmup):
            b.infer(inputs[name])
    times: dict[str, list[float]] = {k: [] for k in runners}
    per_round: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(rounds):
        n = runs // rounds + (r < runs % rounds)
        for name, b in runners.items():
            block = []
            for _ in range(n):
                t = time.perf_counter()
                b.infer(inputs[name])
                block.append((time.perf_counter() - t) * 1e3)
            times[name] += block
            per_round[name].append(round(statistics.median(block), 2))
    return {k: {"p50_ms": round(statistics.median(v), 2), "round_p50_ms": per_round[k]} for k, v in times.items()}


class _EndToEnd:
    """A Segmenter timed like a backend: ``infer(frame)`` is the whole call, frame in, full-size class map out."""

    def __init__(self, path: Path, threads: int) -> None:
        self.seg = Segmenter(path, backend="openvino", device="CPU", threads=threads)

    def infer(self, frame: np.ndarray) -> Any:
        return self.seg(frame).class_map

    def close(self) -> None:
        self.seg.close()


def end_to_end(fp32: Path, int8_ov: dict[str, Path], frame: np.ndarray, threads: int, runs: int,
               rounds: int) -> dict[str, dict[str, Any]]:
    """OpenVINO FP32 and each INT8 flavour through ``Segmenter``: pre-processing, inference, the class map at
    the frame's size (an output-stride flavour's smaller argmax and its nearest upsampling included)."""
    runners = {"ov_fp32": _EndToEnd(fp32, threads), **{k: _EndToEnd(v, threads) for k, v in int8_ov.items()}}
    try:
        return interleave(runners, {k: frame for k in runners}, runs, rounds)
    finally:
        for r in runners.values():
            r.close()


def load_check(fp32: Path, frame: np.ndarray, threads: int, runs: int) -> dict[str, Any]:
    """OpenVINO FP32 with and without CPU pinning while a thread blends overlays, as a pipeline's renderer does."""
    a = np.ascontiguousarray(frame, np.float32)
    out: dict[str, Any] = {}
    runners = {pin: OpenVinoBackend(fp32, "CPU", threads=threads, pin=pin) for pin in (False, True)}
    x = _inputs(runners, frame)
    samples: dict[bool, list[float]] = {False: [], True: []}
    blends: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(max(runs // 4, 1)):
        for pin, b in runners.items():
            stop, count = threading.Event(), [0]
            th = threading.Thread(target=_render, args=(a, stop, count))
            t0 = time.perf_counter()
            th.start()
            for _ in range(4):
                t = time.perf_counter()
                b.infer(x[pin])
                samples[pin].append((time.perf_counter() - t) * 1e3)
                time.sleep(0.005)  # the gap between frames
            stop.set()
            th.join()
            blends[pin].append(count[0] / (time.perf_counter() - t0))
    for pin in runners:
        out["pinned" if pin else "not_pinned"] = {"infer_p50_ms": round(statistics.median(samples[pin]), 2),
                                                  "render_blends_per_s": round(statistics.median(blends[pin]), 1)}
    return out


def _render(a: np.ndarray, stop: threading.Event, count: list[int]) -> None:
    while not stop.is_set():
        (a * 0.5 + a * 0.5).astype(np.uint8)  # (H, W, 3) blend
        count[0] += 1


def _inputs(runners: dict[Any, Any], frame: np.ndarray) -> dict[Any, np.ndarray]:
    """The frame pre-processed for each runner's model (float NCHW, or uint8 NHWC for a fused input)."""
    out = {}
    for k, b in runners.items():
        size = b.meta.input_size or (360, 480)
        out[k] = Preprocessor(b.meta, size)([frame]).copy()  # (1, 3, h, w) f32 or (1, h, w, 3) u8
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="camvid-unet-lite", help="FP32 edgeseg ONNX (default: the bundled one)")
    ap.add_argument("--ort-int8", default="camvid-unet-lite.int8",
                    help="ONNX Runtime INT8 flavour timed beside it ('' to skip)")
    ap.add_argument("--data", default=None, help="labelled dataset root (CamVid layout) for calibration and mIoU")
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--val-images", type=int, default=0, help="validation images (0 = all)")
    ap.add_argument("--max-miou-drop", type=float, default=TARGET_MIOU_DROP)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated (default 1,2)")
    ap.add_argument("--runs", type=int, default=40, help="timed inferences per runner and thread count")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--int8-output-stride", type=int, default=1, metavar="S",
                    help="also quantize the FP32 graph cut at output stride S (the head's factor; 2 for the bundled "
                         "model) and time it as ov_int8_sS: the class map comes out at 1/S and the runtime upsamples it")
    ap.add_argument("--end-to-end", action="store_true",
                    help="also time Segmenter calls (frame in, full-size class map out) of OpenVINO FP32 and INT8")
    ap.add_argument("--load-check", action="store_true", help="also time CPU pinning on/off beside a render thread")
    ap.add_argument("--out-dir", default=None, help="where the INT8 IR goes (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)

    fp32 = zoo.resolve(args.model) if not Path(args.model).is_file() else Path(args.model)
    ort_int8 = (zoo.resolve(args.ort_int8) if not Path(args.ort_int8).is_file() else Path(args.ort_int8)) \
        if args.ort_int8 else None
    thread_counts = [int(t) for t in args.threads.split(",")]
    frame, kind = bench_frame((540, 960), None)
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.out_dir or tmp)
        stem = fp32.name.removesuffix(".onnx")
        int8_ov = {"ov_int8": out_dir / f"{stem}.int8.ov.xml"}
        int8 = {"ov_int8": make_int8(fp32, int8_ov["ov_int8"], args.data, args.calib_images, args.val_images,
                                     args.max_miou_drop, thread_counts[0])}
        s, cut_fp32 = args.int8_output_stride, {}
        if s > 1:
            cut = out_dir / f"{stem}-s{s}.onnx"
            save_onnx(to_output_stride(load_onnx(fp32), s), cut)
            cut_fp32[f"ov_fp32_s{s}"] = cut  # the cut alone, in float: how much of the gain is the cut's
            int8_ov[f"ov_int8_s{s}"] = out_dir / f"{stem}-s{s}.int8.ov.xml"
            int8[f"ov_int8_s{s}"] = make_int8(cut, int8_ov[f"ov_int8_s{s}"], args.data, args.calib_images,
                                              args.val_images, args.max_miou_drop, thread_counts[0])
            if args.data:  # the cut flavour's drop counts against the full-resolution FP32 the user had
                row, full = int8[f"ov_int8_s{s}"], int8["ov_int8"]["fp32_miou"]
                row.update(fp32_cut_miou=row["fp32_miou"], fp32_miou=full, miou_drop=full - row["int8_miou"],
                           miou_target_met=full - row["int8_miou"] <= TARGET_MIOU_DROP)
        timing, ratios, load, e2e, precision = {}, {}, {}, {}, None
        for t in thread_counts:
            runners = backends(fp32, int8_ov, ort_int8, t)
            runners.update({k: OpenVinoBackend(v, "CPU", threads=t) for k, v in cut_fp32.items()})
            precision = runners["ov_fp32"].describe().get("inference_precision_hint")
            timing[t] = interleave(runners, _inputs(runners, frame), args.runs, args.rounds)
            p = {k: v["p50_ms"] for k, v in timing[t].items()}
            ratios[t] = {"ov_fp32_vs_ort_fp32": round(p["ov_fp32"] / p["ort_fp32"], 3),
                         "ov_fp32_f32_vs_ort_fp32": round(p["ov_fp32_f32"] / p["ort_fp32"], 3)}
            for name in cut_fp32:
                ratios[t][f"ov_int8_s{s}_vs_{name}"] = round(p[f"ov_int8_s{s}"] / p[name], 3)
            for name in int8_ov:
                ratios[t][f"{name}_vs_ov_fp32"] = round(p[name] / p["ov_fp32"], 3)
                ratios[t][f"{name}_vs_ov_fp32_f32"] = round(p[name] / p["ov_fp32_f32"], 3)
            ratios[t]["targets_met"] = {"ov_fp32 <= 0.75 x ort_fp32": ratios[t]["ov_fp32_vs_ort_fp32"] <= TARGET_OV_VS_ORT,
                                        **{f"{name} <= 0.5 x ov_fp32": ratios[t][f"{name}_vs_ov_fp32"]
                                           <= TARGET_INT8_VS_FP32 for name in int8_ov}}
            if args.end_to_end:
                e2e[t] = end_to_end(fp32, int8_ov, frame, t, args.runs, args.rounds)
                ratios[t].update({f"e2e_{k}_vs_ov_fp32": round(v["p50_ms"] / e2e[t]["ov_fp32"]["p50_ms"], 3)
                                  for k, v in e2e[t].items() if k != "ov_fp32"})
            if args.load_check:
                load[t] = load_check(fp32, frame, t, args.runs)
            for b in runners.values():
                b.close()
    result = {"model": str(fp32), "ort_int8": str(ort_int8) if ort_int8 else None, "frame": kind,
              "runs": args.runs, "rounds": args.rounds, "openvino_default_precision": precision,
              "environment": environment(), "int8": int8, "latency": timing, "end_to_end": e2e, "ratios": ratios,
              "load_check": load}
    print(f"{fp32.name}, inference only, medians of {args.runs} runs in {args.rounds} interleaved rounds; "
          f"OpenVINO's default precision here: {precision}")
    for t in thread_counts:
        row = "  ".join(f"{k} {v['p50_ms']:.1f}" for k, v in timing[t].items())
        if t in e2e:
            row += "; end to end " + "  ".join(f"{k} {v['p50_ms']:.1f}" for k, v in e2e[t].items())
        print(f"{t} thread(s): {row} ms; ratios {json.dumps({k: v for k, v in ratios[t].items() if k != 'targets_met'})}")
    for name, row in int8.items():
        if "miou_drop" in row:
            print(f"mIoU FP32 {row['fp32_miou']:.2f} -> {name} {row['int8_miou']:.2f} "
                  f"(drop {row['miou_drop']:.2f}, gate {'passed' if row['gate_passed'] else 'FAILED'})")
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    else:
        json.dump({"ratios": ratios}, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
