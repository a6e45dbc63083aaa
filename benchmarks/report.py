"""Regenerate docs/benchmarks.md: run the registered benchmarks and write one section per benchmark.

    python benchmarks/report.py                       # every benchmark, full length (quiet machine!)
    python benchmarks/report.py --quick               # few runs each: proves the report works
    python benchmarks/report.py --only bundled-models --only pipeline
    python benchmarks/report.py --checkpoint runs/camvid_unet_lite/best.pt   # enables export-precisions
    python benchmarks/report.py --data data/camvid --video highway.mp4      # the accuracy sections, a real clip
    python benchmarks/report.py --with-training --data data/camvid --only camvid-cv   # trains: tens of minutes

Each section records the exact command, the machine (CPU model, cores), the versions (Python, numpy,
ONNX Runtime, OpenCV, torch when installed) and the date, then the benchmark's table, parsed from its
``--json`` output. With ``--only`` the other sections of the existing report are kept as they are. A
benchmark that cannot run here (a missing extra, no ``--data``, training not asked for) still gets its
section, saying why it was not run.

Adding a benchmark: give it a ``--json OUT`` option, then append one :class:`Benchmark` to
``BENCHMARKS`` with a parser from that JSON to a markdown table (see ``_table``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "benchmarks.md"
BUNDLED = ["camvid-unet-lite", "camvid-unet-lite.int8", "camvid-unet-lite-s2.int8"]


@dataclass(frozen=True)
class Context:
    """What the commands may refer to: ``{json}`` (the output file), ``{video}``, ``{checkpoint}``, ``{data}``
    (a labelled CamVid-layout dataset, ``--data``) and ``{work}`` (a scratch folder of this benchmark)."""

    json: str
    video: str
    checkpoint: str | None
    has_torch: bool
    data: str | None = None
    work: str = ""
    with_training: bool = False
    video_shown: str = "CLIP.mp4"  # how the report prints {video}


@dataclass(frozen=True)
class Benchmark:
    name: str  # the section's anchor in docs/benchmarks.md
    what: str  # one line: what it measures and why it matters
    command: list[str]  # benchmarks/<script>.py and its arguments; {json} {video} {checkpoint} {data} {work} filled in
    parse: Callable[[dict[str, Any]], str]  # the script's --json output -> a markdown table
    quick: list[str] = field(default_factory=list)  # arguments added with --quick (fewer runs)
    skip: Callable[[Context], str | None] = lambda ctx: None  # why it cannot run here, or None
    timeout_s: float = 3600.0
    with_data: list[str] = field(default_factory=list)  # arguments added when --data names a dataset
    setup: list[str] = field(default_factory=list)  # a command run first (e.g. training), same placeholders
    setup_quick: list[str] = field(default_factory=list)  # arguments added to ``setup`` with --quick


# -- parsers: --json output -> markdown --------------------------------------------------------------
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return "-" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def parse_runtime_latency(d: dict[str, Any]) -> str:
    rows = []
    for r in d["models"]:
        st = r["stage_p50_ms"]
        rows.append((Path(r["model"]).name, r["precision"], "x".join(map(str, r["input_size"])), r["threads"],
                     st["infer_ms"], r["infer_ms"]["p99"], st["preprocess_ms"] + st["postprocess_ms"],
                     st["overlay_ms"], st["total_ms"], r["frame_fps"]))
    frame = "x".join(map(str, d["frame"]["size"]))
    return (f"Frame {frame} ({d['frame']['kind']}), medians in ms over interleaved rounds.\n\n"
            + _table(("model", "precision", "input", "threads", "infer p50", "infer p99", "pre+post",
                      "overlay", "frame", "frames/s"), rows))


def parse_bench_models(d: dict[str, Any]) -> str:
    env = d["env"]
    rows = [(r["model"], r["params_m"], r["gflops"], r["latency_ms_median"], r["latency_runs"],
             r["train_images_per_s"]) for r in d["models"]]
    return (f"PyTorch {env['torch']} eager, {env['threads']} threads, {env['device']}, batch 1 at "
            f"{'x'.join(map(str, env['imgsz']))}; training batch {env['batch']} at "
            f"{'x'.join(map(str, env['crop']))}.\n\n"
            + _table(("model", "params (M)", "GFLOPs", "latency median (ms)", "runs", "train images/s"), rows))


def parse_export_precisions(d: dict[str, Any]) -> str:
    parts = []
    for name, r in d["models"].items():
        threads = list(r["latency_ms"])
        rows = [(c, r["miou"].get(c), *(r["latency_ms"][t].get(c) for t in threads))
                for c in ("pytorch", "ort_fp32", "ort_fp16", "ort_int8")]
        parts.append(f"**{name}** (val images: {r['val_images']})\n\n"
                     + _table(("candidate", "mIoU", *(f"ms @ {t} thread(s)" for t in threads)), rows))
    return "\n\n".join(parts)


def parse_int8_flavours(d: dict[str, Any]) -> str:
    threads = d["threads"]
    rows = [(r["candidate"], f"{r['integer_convs']} / {r['convs']}", *(r[f"ms_{t}_threads"] for t in threads),
             *(r[f"over_fp32_{t}_threads"] for t in threads)) for r in d["rows"]]
    return (f"`{Path(d['model']).name}`, ONNX Runtime {d['onnxruntime']}, medians of {d['runs']} interleaved runs; "
            f"both INT8 files from ONNX Runtime's quantizer alone (no edgeseg rewrites).\n\n"
            + _table(("candidate", "integer convs", *(f"ms @ {t} thread(s)" for t in threads),
                      *(f"x FP32 @ {t}" for t in threads)), rows))


def parse_pipeline(d: dict[str, Any]) -> str:
    e = d["efficiency"]
    rows = [(Path(str(d["model"].get("model"))).name, d["workers"], d["threads"], e["e2e_fps_median"],
             e["inference_only_fps_median"], e["e2e_over_inference"], e["overhead_share_pct_median"],
             e["overhead_cpu_share_pct_median"])]
    text = (f"Every frame of the clip through decode, pre-processing, inference, argmax and overlay (no output "
            f"written), against the model alone; medians of {e['rounds']} interleaved rounds.\n\n"
            + _table(("model", "workers", "threads", "end-to-end FPS", "inference-only FPS", "ratio",
                      "pre+post+overlay % (wall)", "(CPU)"), rows))
    if "memory" in d:
        m = d["memory"]
        text += (f"\n\nMemory: {m['frames']} frames, RSS {m['rss_mb_start']:.0f} -> {m['rss_mb_end']:.0f} MB.")
    return text


def parse_live(d: dict[str, Any]) -> str:
    lv = d["live"]
    target = lv["target_p99_over_infer_p99"]
    rows = [(i + 1, w["t_end_s"], w["fps"], w["drops"], w["c2r_p50_ms"], w["c2r_p99_ms"], w["infer_p50_ms"],
             w["infer_p99_ms"], w["p99_over_infer_p99"], "yes" if w["p99_over_infer_p99"] <= target else "no")
            for i, w in enumerate(lv["windows"])]
    o = lv["overall"]
    policy = (f"frames older than {lv['fresh_age']:g} of a frame interval skipped for the next one"
              if lv.get("fresh_age") else "the newest frame taken at once (--no-wait-fresh)")
    return (f"`{Path(str(d['model'].get('model'))).name}` at {d['threads']} thread(s), the clip served at "
            f"{lv['serve_fps']:g} FPS over loopback MJPEG by another process for {lv['seconds']:g} s; {policy}. "
            f"Target: in every {lv['window_s']:g} s window, capture-to-render p99 <= {target:g}x the model's own "
            f"p99 in that window.\n\n"
            + _table(("window", "ends at (s)", "FPS", "drops", "c2r p50 (ms)", "c2r p99 (ms)", "infer p50 (ms)",
                      "infer p99 (ms)", "c2r p99 / infer p99", "met"), rows)
            + f"\n\nMet in {lv['windows_meeting_target']} of {len(lv['windows'])} windows; over the run "
            f"{o['fps']:.1f} FPS, capture-to-render p50 / p99 {o['capture_to_render_ms']['p50']:.1f} / "
            f"{o['capture_to_render_ms']['p99']:.1f} ms, last window's p99 / the first's "
            f"{lv['last_over_first_window_p99']}.")


def _pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}"


def parse_openvino_vs_ort(d: dict[str, Any]) -> str:
    threads = list(d["latency"])
    labels = {"ort_fp32": "ONNX Runtime FP32",
              "ov_fp32": f"OpenVINO FP32 (its default precision here: {d.get('openvino_default_precision')})",
              "ov_fp32_f32": "OpenVINO FP32 held to float32", "ov_int8": "OpenVINO INT8 flavour (NNCF)",
              "ov_int8_s2": "OpenVINO INT8 flavour (NNCF), output stride 2 (class map upsampled by the runtime)",
              "ov_fp32_s2": "OpenVINO FP32 cut at output stride 2 (default precision; not shipped, for comparison)",
              "ort_int8_on_ort": "ONNX Runtime INT8 flavour on ONNX Runtime",
              "ort_int8_on_ov": "ONNX Runtime INT8 flavour on OpenVINO"}
    runners = list(d["latency"][threads[0]])
    rows = [(labels.get(r, r), *(d["latency"][t][r]["p50_ms"] for t in threads)) for r in runners]
    ratio_names = [k for k in d["ratios"][threads[0]] if k != "targets_met"]
    rows += [(f"ratio {k.replace('_vs_', ' / ')}", *(f"{d['ratios'][t][k]:.3f}" for t in threads))
             for k in ratio_names]
    text = (f"`{Path(d['model']).name}`, inference only on a pre-processed {d['frame']} frame, medians of "
            f"{d['runs']} runs in {d['rounds']} interleaved rounds.\n\n"
            + _table(("runner", *(f"ms @ {t} thread(s)" for t in threads)), rows))
    if d.get("end_to_end"):
        e2e = d["end_to_end"]
        rows = [(labels.get(r, r), *(e2e[t][r]["p50_ms"] for t in threads)) for r in e2e[threads[0]]]
        text += ("\n\nEnd to end through `Segmenter` (the 960x540 frame in, its full-size class map out: resizing, "
                 "inference, argmax and, for the output-stride flavour, the nearest upsampling of the class map):\n\n"
                 + _table(("runner", *(f"ms @ {t} thread(s)" for t in threads)), rows))
    flavours = d["int8"] if "ov_int8" in d["int8"] else {"ov_int8": d["int8"]}  # older reports: one flavour
    for name, q in flavours.items():
        what = labels.get(name, name)
        if "int8_miou" in q:
            cut = f" (the cut FP32 graph: {q['fp32_cut_miou']:.2f})" if "fp32_cut_miou" in q else ""
            text += (f"\n\n{what}: mIoU {q['fp32_miou']:.2f} (full-resolution FP32){cut} -> {q['int8_miou']:.2f} "
                     f"(INT8), drop {q['miou_drop']:.2f} on {q['val_images']} labelled images; gate "
                     f"{'passed' if q['gate_passed'] else 'FAILED'}; {q['calib_images']} calibration images.")
        else:
            text += (f"\n\n{what} calibrated on {q['calib_images']} procedural scenes: no accuracy figure "
                     "(run with `--data` for the mIoU).")
    if d.get("load_check"):
        rows = [(t, {"pinned": "on", "not_pinned": "off"}.get(pin, pin), r["infer_p50_ms"], r["render_blends_per_s"])
                for t, by_pin in d["load_check"].items() for pin, r in by_pin.items()]
        text += ("\n\nCPU pinning beside a thread that blends overlays (OpenVINO FP32):\n\n"
                 + _table(("threads", "pinning", "infer p50 (ms)", "render blends/s"), rows))
    return text


def parse_passes(d: dict[str, Any]) -> str:
    threads = d["threads"]
    rows = []
    for name, r in d["passes"].items():
        if not r.get("count"):
            rows.append((f"`{name}`", 0, *(["-"] * 3 * len(threads)), r.get("note", "")))
            continue
        cells = []
        for t in threads:
            x = r[f"{t}_threads"]
            cells += [x["with_ms"], x["without_ms"], f"{x['gain_pct']:+.1f}"]
        rows.append((f"`{name}`", r["count"], *cells, ""))
    head = [h for t in threads for h in (f"with (ms) @ {t}", f"without (ms) @ {t}", f"gain % @ {t}")]
    return (f"`{Path(d['model']).name}`, ONNX Runtime {d['onnxruntime']}, {d['calib_images']} calibration images; "
            f"\"without\" is the INT8 model quantized with every pass but that one; medians of {d['rounds']} "
            f"interleaved rounds of {d['runs_per_round']} runs.\n\n"
            + _table(("pass", "rewrites", *head, "note"), rows))


def parse_multicam(d: dict[str, Any]) -> str:
    rows = []
    for mode, s in d["summary"].items():
        runs = d["runs"][mode]
        drops = sum(c["drops"] for r in runs for c in r["cameras"])
        p99 = " / ".join(f"{v:.0f}" for v in s["c2r_p99_ms_median_per_camera"])
        rows.append((mode.replace("_", " "), d["models"][mode], s["aggregate_fps_median"], p99, drops))
    return (f"{d['cameras']} loopback MJPEG cameras at {d['camera_fps']:g} FPS each (clip "
            f"`{Path(d['clip']).name}`), {d['rounds']} interleaved round(s) of {d['seconds']:g} s per mode; "
            f"medians over the rounds.\n\n"
            + _table(("mode", "model", "results/s (all cameras)", "capture-to-render p99 per camera (ms)",
                      "dropped frames"), rows))


def parse_archive(d: dict[str, Any]) -> str:
    labels = {"predict_1_thread": "`edgeseg predict --threads 1 --workers 1`, file by file",
              "ray_1_node": "Ray, 1 node of 1 CPU", "predict_auto": "`edgeseg predict` (defaults), file by file",
              "ray_2_nodes": "Ray, 2 nodes of 1 CPU"}
    rows = [(label, d[k]["files"], d[k]["frames"], d[k]["wall_s"], d[k]["fps"]) for k, label in labels.items()]
    return (f"`{d['model']}`; Ray times include cluster connection, actor start-up and model loading.\n\n"
            + _table(("run", "files", "frames", "wall (s)", "frames/s"), rows)
            + f"\n\nRay overhead: {d['overhead_1_cpu']:+.1%} on 1 CPU, {d['overhead_2_cpus']:+.1%} on 2; "
              f"2 nodes vs 1: {d['speedup_2_nodes']:.2f}x.")


def parse_predict_vs_loop(d: dict[str, Any]) -> str:
    names = {"predict": "`edgeseg predict` (the pipeline)", "loop": "read -> seg() -> overlay -> write, by hand",
             "predict@other": "`edgeseg predict` of another install (--compare-python)"}
    rows = [(names.get(k, k), v) for k, v in d["median_fps"].items()]
    h, w = d["size"]
    return (f"`{d['model']}` on a {w}x{h} clip ({d['video']}, {d['frames']} frames), {d['rounds']} interleaved "
            f"round(s), each arm in its own process; medians.\n\n" + _table(("run", "frames/s"), rows)
            + f"\n\npredict / hand-written loop: {d['predict_over_loop']:.2f}x.")


def parse_result_sinks(d: dict[str, Any]) -> str:
    rows = [(name, r["ms_per_frame"], f"{r['bytes_per_frame'] / 1024:.1f}") for name, r in d["results"].items()]
    return (f"{d['size'][0]}x{d['size'][1]} procedural scenes, {d['frames']} frames per round, medians of "
            f"{d['rounds']} interleaved round(s).\n\n" + _table(("sink", "ms per frame", "KiB per frame"), rows))


def parse_temporal_stability(d: dict[str, Any]) -> str:
    rows = [(clip, r["filter"], r["flicker_mean"], r["flicker_p90"], r["flicker_compensated_mean"],
             r["filter_ms_median"], r["agreement_with_unfiltered"], r["miou"], r["scene_cuts"])
            for clip, settings in d["clips"].items() for r in settings]
    return (f"`{d['model']}`, {d['threads']} thread(s). Flicker: % of pixels changing class between consecutive "
            "frames (compensated: after motion compensation); mIoU only where exact labels exist (the "
            "procedural clip).\n\n"
            + _table(("clip", "filter", "flicker %", "flicker p90 %", "compensated %", "filter ms",
                      "agreement %", "mIoU", "scene cuts"), rows))


def parse_confidence_shift(d: dict[str, Any]) -> str:
    rows = [(name, r["frames"], f"{r['mean_confidence']:.3f}", _pct(r["low_confidence_share"]),
             f"{r['mean_margin']:.3f}", _pct(r["low_margin_share"]), f"{r['worst_frame_confidence']:.3f}",
             r["miou"], r["confidence_ms_median"]) for name, r in d["conditions"].items()]
    return (f"`{d['model']}`, {d['threads']} thread(s); \"low\" = below {d['threshold']:g}.\n\n"
            + _table(("condition", "frames", "mean confidence", "low-confidence pixels %", "mean top-2 margin",
                      "low-margin pixels %", "worst frame", "mIoU", "confidence ms"), rows))


def parse_foreign_int8(d: dict[str, Any]) -> str:
    def nodes(v: Any) -> Any:
        return (", ".join(v) or "none") if isinstance(v, list) else v

    rows = [(p, r["miou"], r.get("gate_set_miou"), nodes(r.get("nodes_in_float")), r.get("latency_ms_1_thread"))
            for p, r in d["artifacts"].items()]
    text = (f"Scored on {d['held_out']}; {d['calib_images']} calibration images ({d['calib_method']}), "
            f"{d['gate_images']} gate images; ONNX Runtime {d['onnxruntime']}.\n\n"
            + _table(("precision", "mIoU (held out)", "mIoU (gate set)", "nodes kept in float", "ms @ 1 thread"),
                     rows))
    if "int8_minus_fp32" in d:
        text += f"\n\nINT8 - FP32: {d['int8_minus_fp32']:+.2f} mIoU points."
    return text


def parse_camvid_cv(d: dict[str, Any]) -> str:
    seqs = list(d["frames"])
    rows = []
    for r in d["recipes"]:
        by_seq = {f["sequence"]: f["final_miou"] for f in r["folds"]}
        rows.append((r["name"], " ".join(r["args"]) or "-", *(by_seq.get(s) for s in seqs),
                     r["summary"]["mean_miou"]))
    return (f"`{d['model']}`, {d['minutes']:g} min of training per fold; each fold holds one sequence out and "
            f"is scored once, at the end of its schedule; arguments of every recipe: "
            f"{' '.join(d['common_args']) or 'none'}.\n\n"
            + _table(("recipe", "arguments", *(f"{s} ({d['frames'][s]} frames)" for s in seqs), "mean mIoU"), rows))


# -- the registry --------------------------------------------------------------------------------------
def _needs_torch(ctx: Context) -> str | None:
    return None if ctx.has_torch else "needs torch (pip install 'edgeseg[train]')"


def _needs_onnx(ctx: Context) -> str | None:
    try:
        importlib.metadata.version("onnx")
    except importlib.metadata.PackageNotFoundError:
        return "needs onnx (pip install 'edgeseg[export]')"
    return None


def _needs_checkpoint(ctx: Context) -> str | None:
    if not ctx.has_torch:
        return "needs torch and onnx (pip install 'edgeseg[export]')"
    return None if ctx.checkpoint else "needs a trained checkpoint: pass --checkpoint runs/NAME/best.pt"


def _needs_packages(*names: str, extra: str) -> Callable[[Context], str | None]:
    def skip(ctx: Context) -> str | None:
        for name in names:
            try:
                importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return f"needs {name} (pip install 'edgeseg[{extra}]')"
        return None

    return skip


def _needs_data(ctx: Context) -> str | None:
    return None if ctx.data else "needs a labelled CamVid-layout dataset: pass --data DIR"


def _needs_training(ctx: Context) -> str | None:
    """Benchmarks that train a model for tens of minutes run only when asked to."""
    if not ctx.with_training:
        return "trains models for tens of minutes: pass --with-training (and --data DIR)"
    return _needs_data(ctx) or _needs_torch(ctx)


BENCHMARKS: list[Benchmark] = [
    Benchmark("bundled-models", "The bundled models through the runtime, 2 threads: inference and the whole frame "
              "(960x540 in, pre-processing, argmax, overlay).",
              ["benchmarks/runtime_latency.py", *BUNDLED, "--threads", "2", "--json", "{json}"],
              parse_runtime_latency, quick=["--runs", "12", "--rounds", "2", "--warmup", "3"]),
    Benchmark("bundled-models-1-thread", "The same at 1 thread (steadier on small shared CPUs).",
              ["benchmarks/runtime_latency.py", *BUNDLED, "--threads", "1", "--json", "{json}"],
              parse_runtime_latency, quick=["--runs", "12", "--rounds", "2", "--warmup", "3"]),
    Benchmark("pipeline", "The video pipeline against the model alone (the INT8 default model).",
              ["benchmarks/pipeline_bench.py", "camvid-unet-lite.int8", "--video", "{video}", "--parts",
               "efficiency,memory", "--threads", "2", "--json", "{json}"],
              parse_pipeline, quick=["--rounds", "1", "--mem-frames", "300"]),
    Benchmark("live-latency", "Capture-to-render latency on a fast live stream, window by window, against the "
              "model's own latency tail: what a robot acting on the picture waits for.",
              ["benchmarks/pipeline_bench.py", "camvid-unet-lite.int8", "--video", "{video}", "--parts", "live",
               "--threads", "1", "--live-seconds", "300", "--window-seconds", "30", "--json", "{json}"],
              parse_live, quick=["--live-seconds", "40", "--window-seconds", "10"]),
    Benchmark("int8-flavours", "Why two INT8 flavours: the bundled FP32 model quantized with uint8 activations "
              "(the ONNX Runtime flavour) and with symmetric int8 activations (the TensorRT flavour), on ONNX Runtime's "
              "CPU provider.",
              ["benchmarks/int8_flavours.py", "--json", "{json}"], parse_int8_flavours,
              quick=["--calib-images", "4", "--runs", "8", "--warmup", "2"], skip=_needs_onnx),
    Benchmark("architectures", "Every registered architecture in PyTorch: size, latency, training throughput.",
              ["benchmarks/bench_models.py", "--json", "{json}"], parse_bench_models,
              quick=["--models", "unet_lite,fcn8s_lite", "--runs", "5", "--no-train"], skip=_needs_torch),
    Benchmark("export-precisions", "PyTorch vs ONNX Runtime FP32 / FP16 / INT8 of a trained checkpoint: mIoU and "
              "latency side by side (the export's accuracy gate and the INT8 speed-up).",
              ["benchmarks/export_precisions.py", "{checkpoint}", "--json", "{json}"], parse_export_precisions,
              quick=["--runs", "10", "--val-images", "10", "--threads", "1"], skip=_needs_checkpoint),
    Benchmark("graph-passes", "Each ONNX Runtime graph pass of the INT8 export: latency of the INT8 model with every "
              "pass against the same model without that one pass, on the installed ONNX Runtime (a pass that "
              "stops paying after an upgrade shows here).",
              ["benchmarks/passes_bench.py", "--threads", "1,2", "--rounds", "6", "--json", "{json}"], parse_passes,
              quick=["--threads", "1", "--rounds", "2", "--runs", "3", "--calib-images", "2"],
              skip=_needs_onnx),
    Benchmark("openvino-vs-ort", "OpenVINO against ONNX Runtime on the bundled FP32 model, the OpenVINO INT8 flavour "
              "(NNCF) against OpenVINO FP32, and CPU pinning beside a rendering thread; inference only.",
              ["benchmarks/openvino_vs_ort.py", "--threads", "1,2", "--runs", "20", "--rounds", "5", "--load-check",
               "--int8-output-stride", "2", "--end-to-end", "--json", "{json}"], parse_openvino_vs_ort,
              quick=["--threads", "1", "--runs", "4", "--rounds", "2", "--calib-images", "4", "--val-images", "8"],
              skip=_needs_packages("openvino", "nncf", extra="openvino-export"), with_data=["--data", "{data}"]),
    Benchmark("predict-vs-loop", "`edgeseg predict` against the sequential loop a user would write with the same "
              "model, on a 1280x720 clip with the video saved.",
              ["benchmarks/predict_vs_loop.py", "--video", "{video}", "--rounds", "3", "--json", "{json}"],
              parse_predict_vs_loop, quick=["--rounds", "1", "--frames", "40"]),
    Benchmark("multicam", "Several cameras through one model: one batched inference per tick against the cameras "
              "in turn, on loopback MJPEG streams of the clip.",
              ["benchmarks/multicam_bench.py", "--cameras", "4", "--fps", "15", "--seconds", "20", "--rounds", "3",
               "--video", "{video}", "--json", "{json}"], parse_multicam,
              quick=["--cameras", "2", "--seconds", "3", "--rounds", "1", "--clip-frames", "20"],
              skip=_needs_onnx),
    Benchmark("archive-ray", "Archive inference on Ray (a real loopback cluster, 1 and 2 nodes of 1 CPU) against "
              "plain `edgeseg predict` file by file on the same synthetic clips.",
              ["benchmarks/archive_bench.py", "--clips", "8", "--frames", "60", "--json", "{json}"], parse_archive,
              quick=["--clips", "2", "--frames", "10"], skip=_needs_packages("ray", extra="ray")),
    Benchmark("result-sinks", "Per-frame cost and size of the result sinks: class-id PNGs, a ROS 2 bag of class "
              "maps, and the same bag with the frames.",
              ["benchmarks/result_sinks_bench.py", "--json", "{json}"], parse_result_sinks,
              quick=["--size", "360x480", "--frames", "10", "--rounds", "1"],
              skip=_needs_packages("mcap", extra="ros")),
    Benchmark("temporal-stability", "Flicker with and without the temporal filter, the filter's cost per frame and "
              "its agreement with the unfiltered maps (the bundled INT8 model, on the clip and a labelled "
              "procedural clip).",
              ["benchmarks/temporal_stability.py", "--video", "{video}", "--synthetic-frames", "60", "--threads", "1",
               "--json", "{json}"], parse_temporal_stability,
              quick=["--frames", "30", "--synthetic-frames", "20"]),
    Benchmark("confidence-shift", "Whether the frame confidence drops when the scene leaves the training "
              "distribution: CamVid val as it is, darkened and fogged, and the clip.",
              ["benchmarks/confidence_shift.py", "--data", "{data}", "--video", "{video}", "--images", "20",
               "--threads", "1", "--json", "{json}"], parse_confidence_shift,
              quick=["--images", "4", "--frames", "20"], skip=_needs_data),
    Benchmark("foreign-int8-accuracy", "FP32 against INT8 mIoU of a model trained outside edgeseg (ESPNet-like), "
              "quantized through the bring-your-own-ONNX path, on a CamVid sequence neither training nor the gate "
              "saw.",
              ["benchmarks/foreign_int8_accuracy.py", "evaluate", "--data", "{data}", "--out", "{work}",
               "--json", "{json}"], parse_foreign_int8,
              quick=["--calib-images", "8", "--val-images", "8"], skip=_needs_training, timeout_s=2 * 3600.0,
              setup=["benchmarks/foreign_int8_accuracy.py", "train", "--data", "{data}", "--out", "{work}",
                     "--minutes", "13"], setup_quick=["--minutes", "0.5"]),
    Benchmark("camvid-cv", "Leave-one-sequence-out cross-validation on CamVid train + val of the bundled model's "
              "training recipe (shortened) with and without the road-robustness augmentations: the mIoU of each "
              "held-out sequence.",
              ["benchmarks/camvid_cv.py", "--data", "{data}", "--minutes", "20", "--threads", "1", "--jobs", "2",
               "--recipe", "default=", "--recipe", "road=--augment all",
               "--train-args=--imgsz 240x320 --scale 0.5-2.0 --batch 8 --optimizer adamw --lr 2e-3 "
               "--class-weights sqrt_median --workers 0", "--out", "{work}", "--json", "{json}"], parse_camvid_cv,
              quick=["--minutes", "0.5", "--folds", "0006R0"], skip=_needs_training, timeout_s=3 * 3600.0),
]


# -- the report ----------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name, dist in (("numpy", "numpy"), ("onnxruntime", "onnxruntime"), ("opencv", "opencv-python-headless"),
                       ("opencv", "opencv-python"), ("torch", "torch")):
        if name in found:
            continue
        try:
            found[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def machine_line() -> str:
    v = ", ".join(f"{k} {x}" for k, x in versions().items())
    return f"{cpu_model()}, {os.cpu_count()} logical cores, {platform.system()}; {v}"


def make_clip(path: Path, frames: int) -> str:
    """A 960x540 procedural driving clip (so the report needs no data beside the repository)."""
    from edgeseg.runtime.sinks import VideoSink
    from edgeseg.runtime.sources import open_source

    with open_source(f"synthetic://?size=540x960&frames={frames}&fps=25") as src:
        sink = VideoSink(path, fps=25)
        for frame in src:
            sink.write(frame.image)
            frame.release()
        sink.close()
    return str(path)


def _placeholders(ctx: Context) -> list[tuple[str, str]]:
    return [(p, name) for p, name in ((ctx.json, "OUT.json"), (ctx.work, "WORK"), (ctx.data, "CAMVID"),
                                      (ctx.video, ctx.video_shown)) if p]


def _shown(argv: list[str], ctx: Context) -> str:
    """The command as the report prints it: temporary and local paths replaced by placeholders."""
    names = _placeholders(ctx)

    def show(arg: str) -> str:
        for path, name in names:
            if arg == path or arg.startswith(path + os.sep):
                return name + arg[len(path):]
        return arg

    return "python " + " ".join(shlex.quote(show(a)) for a in argv)


def run_one(bench: Benchmark, ctx: Context, quick: bool) -> tuple[str, str]:
    """Run ``bench`` (its setup first, when it has one); returns (the command as run, the section body)."""
    subst = {"json": ctx.json, "video": ctx.video, "checkpoint": ctx.checkpoint or "CHECKPOINT.pt",
             "data": ctx.data or "CAMVID", "work": ctx.work or "WORK"}
    steps = [[*bench.setup, *(bench.setup_quick if quick else [])]] if bench.setup else []
    steps.append([*bench.command, *(bench.with_data if ctx.data else []), *(bench.quick if quick else [])])
    steps = [[a.format(**subst) for a in step] for step in steps]
    shown = " && ".join(_shown(step, ctx) for step in steps)
    reason = bench.skip(ctx)
    if reason:
        return shown, f"Not run: {reason}."
    print(f"== {bench.name}: {shown}", file=sys.stderr, flush=True)
    for step in steps:
        proc = subprocess.run([sys.executable, *step], cwd=REPO, capture_output=True, text=True,
                              timeout=bench.timeout_s)
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            for path, name in _placeholders(ctx):
                tail = tail.replace(path, name)
            return shown, f"Failed (exit {proc.returncode}): `{tail}`"
    return shown, bench.parse(json.loads(Path(ctx.json).read_text(encoding="utf-8")))


def section(bench: Benchmark, command: str, body: str, quick: bool, note: str | None) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    how = " (`--quick`: few runs, indicative only)" if quick else ""
    lines = [f"<!-- benchmark:{bench.name} -->", f"## {bench.name}", "", bench.what, "",
             f"- command: `{command}`", f"- machine: {machine_line()}", f"- date: {date}{how}"]
    if note:
        lines.append(f"- note: {note}")
    lines += ["", body, f"<!-- /benchmark:{bench.name} -->"]
    return "\n".join(lines)


HEADER = """# Benchmarks

Generated by `python benchmarks/report.py` (do not edit by hand: rerun it). Each section names the
command that produced it, the machine, the library versions and the date. Timings on CPUs with few
cores vary between runs (a second core that is shared can halve or double a figure): benchmarks
interleave what they compare (A B A B ...) and report medians; compare figures within one section.
"""


def assemble(old: str, sections: dict[str, str]) -> str:
    """The report: the header, then one section per registered benchmark, new ones replacing old."""
    kept = {m.group(1): m.group(0) for m in
            re.finditer(r"<!-- benchmark:([\w.-]+) -->.*?<!-- /benchmark:\1 -->", old, flags=re.S)}
    kept.update(sections)
    names = [b.name for b in BENCHMARKS] + sorted(set(kept) - {b.name for b in BENCHMARKS})
    return HEADER + "\n" + "\n\n".join(kept[n] for n in names if n in kept) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help=f"run only these benchmarks (repeatable): {', '.join(b.name for b in BENCHMARKS)}")
    ap.add_argument("--quick", action="store_true", help="few runs per benchmark: checks the report, not the speed")
    ap.add_argument("--video", default=None,
                    help="clip for the video benchmarks (default: a procedural one); the report shows its name only")
    ap.add_argument("--checkpoint", default=None, help="trained checkpoint for export-precisions")
    ap.add_argument("--data", default=None, metavar="DIR",
                    help="labelled CamVid-layout dataset (train/ trainannot/ val/ valannot/): enables the accuracy "
                         "sections (confidence-shift; the mIoU of openvino-vs-ort; the training ones)")
    ap.add_argument("--with-training", action="store_true",
                    help="also run the benchmarks that train models (foreign-int8-accuracy, camvid-cv): tens of "
                         "minutes each, and they need --data")
    ap.add_argument("--json-dir", default=None, metavar="DIR",
                    help="keep each benchmark's raw --json output here as NAME.json")
    ap.add_argument("--work-dir", default=None, metavar="DIR",
                    help="keep each benchmark's work folder as DIR/NAME (default: a temporary one); a training "
                         "benchmark run again with the same DIR reuses the runs that finished")
    ap.add_argument("--note", default=None, help="a line added to every section run now (e.g. 'shared machine')")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"report file (default {DEFAULT_OUT.relative_to(REPO)})")
    args = ap.parse_args(argv)
    known = {b.name for b in BENCHMARKS}
    unknown = [n for n in args.only if n not in known]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(sorted(known))}")
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    out = Path(args.out)
    try:
        importlib.metadata.version("torch")
        has_torch = True
    except importlib.metadata.PackageNotFoundError:
        has_torch = False
    data = str(Path(args.data).resolve()) if args.data else None
    with tempfile.TemporaryDirectory(prefix="edgeseg-report-") as tmp:
        video = (str(Path(args.video).resolve()) if args.video
                 else make_clip(Path(tmp) / "clip.mp4", 60 if args.quick else 220))
        sections = {}
        for bench in chosen:
            work = Path(args.work_dir or tmp).resolve() / bench.name
            work.mkdir(parents=True, exist_ok=True)
            ctx = Context(json=str(Path(tmp) / f"{bench.name}.json"), video=video, checkpoint=args.checkpoint,
                          has_torch=has_torch, data=data, work=str(work), with_training=args.with_training,
                          video_shown=Path(video).name if args.video else "CLIP.mp4")
            command, body = run_one(bench, ctx, args.quick)
            if args.json_dir and Path(ctx.json).is_file():
                Path(args.json_dir).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ctx.json, Path(args.json_dir) / f"{bench.name}.json")
            sections[bench.name] = section(bench, command, body, args.quick, args.note)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    from edgeseg.runtime.fileio import atomic_path

    with atomic_path(out) as tmp_out:
        tmp_out.write_text(assemble(old, sections), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
