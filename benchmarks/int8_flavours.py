"""Why edgeseg has two INT8 flavours: the same model quantized with uint8 vs int8 activations, timed on
ONNX Runtime's CPU provider next to the FP32 original.

    python benchmarks/int8_flavours.py --json int8_flavours.json
    python benchmarks/int8_flavours.py --model my.onnx --calib-images 16 --runs 40

Both flavours come from ONNX Runtime's own static quantizer (Q/DQ, per-channel int8 weights, MinMax
ranges on procedural driving scenes), with none of edgeseg's graph rewrites, so the difference is the
activation type alone: U8S8 (uint8 activations, what ``--int8-target ort`` builds on) and S8S8
(symmetric int8 activations, what TensorRT wants). Timing: interleaved rounds (A B C A B C ...), medians,
at each ``--threads`` count. Needs the ``export`` extra (onnx).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.metadata import LAYOUT_FLOAT
from edgeseg.runtime.preprocess import Preprocessor
from edgeseg.runtime.segmenter import Segmenter
from edgeseg.runtime.synthetic import SceneGenerator


def calibration_batches(seg: Segmenter, n: int) -> list[np.ndarray]:
    """``n`` procedural scenes, pre-processed as the model expects: (1, 3, H, W) float32 each."""
    gen = SceneGenerator(seg.input_size, seed=7)
    pre = Preprocessor(seg.meta, seg.input_size)
    return [pre([gen.scene(i)[0]]).copy() for i in range(n)]  # (1, 3, H, W)


def quantize(model: Path, out: Path, batches: list[np.ndarray], activations: str) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    name = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{name: b} for b in batches])

        def get_next(self):  # noqa: ANN201 (onnxruntime's interface)
            return next(self.items, None)

    act = QuantType.QUInt8 if activations == "u8" else QuantType.QInt8
    quantize_static(str(model), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=act,
                    weight_type=QuantType.QInt8, per_channel=True,
                    extra_options={"ActivationSymmetric": activations == "s8"})
    return out


def session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the runtime runs it
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def integer_convs(path: Path, tmp: Path) -> tuple[int, int]:
    """(convolutions ONNX Runtime runs as integer kernels, all convolutions) after its graph optimizations."""
    import onnx

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    integer = sum(op in ("QLinearConv", "ConvInteger") for op in ops)
    return integer, integer + sum(op in ("Conv", "FusedConv", "NchwcConv") for op in ops)


def time_interleaved(paths: dict[str, Path], x: np.ndarray, threads: int, runs: int, warmup: int) -> dict[str, float]:
    sessions = {k: session(p, threads) for k, p in paths.items()}
    feeds = {k: {s.get_inputs()[0].name: x} for k, s in sessions.items()}
    for k, s in sessions.items():
        for _ in range(warmup):
            s.run(None, feeds[k])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, feeds[k])
            times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: round(statistics.median(v), 2) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="camvid-unet-lite", help="FP32 ONNX with float NCHW input (default: bundled)")
    ap.add_argument("--calib-images", type=int, default=16)
    ap.add_argument("--runs", type=int, default=30, help="timed runs per candidate and thread count")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="2,1", help="comma-separated intra-op thread counts")
    ap.add_argument("--json", default=None, metavar="OUT")
    args = ap.parse_args(argv)

    with Segmenter(args.model) as seg:
        if seg.meta.input_layout != LAYOUT_FLOAT or seg.meta.precision != "fp32":
            ap.error(f"{args.model} is not an FP32 model with float NCHW input")
        model, batches = seg.path, calibration_batches(seg, args.calib_images)
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    with tempfile.TemporaryDirectory(prefix="edgeseg-int8-flavours-") as tmp:
        paths = {"fp32": model}
        for act in ("u8", "s8"):
            print(f"quantizing with {act} activations on {len(batches)} images", file=sys.stderr, flush=True)
            paths[f"int8_{act}s8"] = quantize(model, Path(tmp) / f"{act}.onnx", batches, act)
        convs = {k: integer_convs(p, Path(tmp)) for k, p in paths.items()}
        latency = {t: time_interleaved(paths, batches[0], t, args.runs, args.warmup) for t in threads}
    rows = [{"candidate": k, "integer_convs": convs[k][0], "convs": convs[k][1],
             **{f"ms_{t}_threads": latency[t][k] for t in threads},
             **{f"over_fp32_{t}_threads": round(latency[t][k] / latency[t]["fp32"], 3) for t in threads}}
            for k in paths]
    for r in rows:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    result = {"model": str(model), "onnxruntime": ort.__version__, "threads": threads, "runs": args.runs,
              "calib_images": args.calib_images, "machine": {"cpu_count": os.cpu_count(), "python":
              platform.python_version(), "machine": platform.machine()}, "rows": rows}
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
