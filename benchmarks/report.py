"""Regenerate docs/benchmarks.md: run the registered benchmarks and write one section per benchmark.

    python benchmarks/report.py                       # every benchmark, full length (quiet machine!)
    python benchmarks/report.py --quick               # few runs each: proves the report works
    python benchmarks/report.py --only bundled-models --only pipeline
    python benchmarks/report.py --checkpoint runs/camvid_unet_lite/best.pt   # enables export-precisions

Each section records the exact command, the machine (CPU model, cores), the versions (Python, numpy,
ONNX Runtime, OpenCV, torch when installed) and the date, then the benchmark's table, parsed from its
``--json`` output. With ``--only`` the other sections of the existing report are kept as they are.

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
    """What the commands may refer to: ``{json}`` (the output file), ``{video}``, ``{checkpoint}``."""

    json: str
    video: str
    checkpoint: str | None
    has_torch: bool


@dataclass(frozen=True)
class Benchmark:
    name: str  # the section's anchor in docs/benchmarks.md
    what: str  # one line: what it measures and why it matters
    command: list[str]  # benchmarks/<script>.py and its arguments; {json} {video} {checkpoint} filled in
    parse: Callable[[dict[str, Any]], str]  # the script's --json output -> a markdown table
    quick: list[str] = field(default_factory=list)  # arguments added with --quick (fewer runs)
    skip: Callable[[Context], str | None] = lambda ctx: None  # why it cannot run here, or None
    timeout_s: float = 3600.0


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


def run_one(bench: Benchmark, ctx: Context, quick: bool) -> tuple[str, str]:
    """Run ``bench``; returns (the command as run, the section body)."""
    subst = {"json": ctx.json, "video": ctx.video, "checkpoint": ctx.checkpoint or "CHECKPOINT.pt"}
    argv = [a.format(**subst) for a in bench.command] + (bench.quick if quick else [])
    shown = "python " + " ".join(shlex.quote(a) for a in argv).replace(ctx.json, "OUT.json")
    reason = bench.skip(ctx)
    if reason:
        return shown, f"Not run: {reason}."
    print(f"== {bench.name}: {shown}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=bench.timeout_s)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
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
    ap.add_argument("--video", default=None, help="clip for the pipeline benchmark (default: a procedural one)")
    ap.add_argument("--checkpoint", default=None, help="trained checkpoint for export-precisions")
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
    with tempfile.TemporaryDirectory(prefix="edgeseg-report-") as tmp:
        video = args.video or make_clip(Path(tmp) / "clip.mp4", 60 if args.quick else 220)
        sections = {}
        for bench in chosen:
            ctx = Context(json=str(Path(tmp) / f"{bench.name}.json"), video=video, checkpoint=args.checkpoint,
                          has_torch=has_torch)
            command, body = run_one(bench, ctx, args.quick)
            if args.video is None:
                command = command.replace(video, "CLIP.mp4")
            sections[bench.name] = section(bench, command, body, args.quick, args.note)
    old = out.read_text(encoding="utf-8") if out.is_file() else ""
    from edgeseg.runtime.fileio import atomic_path

    with atomic_path(out) as tmp_out:
        tmp_out.write_text(assemble(old, sections), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
