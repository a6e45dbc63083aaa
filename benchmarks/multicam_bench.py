"""Several cameras through one model: one batched inference per tick vs the cameras in turn.

    python benchmarks/multicam_bench.py --cameras 4 --fps 15 --seconds 20 --rounds 3 --json multicam.json

Serves ``--cameras`` loopback MJPEG streams at ``--fps`` each (``--video``, e.g. a real dashcam
clip, else a synthetic driving clip), and runs :func:`edgeseg.runtime.multicam.run_cameras` on them, interleaved A B A B:

* ``batched``: the bundled INT8 model re-batched to ``--cameras`` frames per inference (one
  inference per tick);
* ``in_turn``: the bundled INT8 model as shipped (batch 1), one inference per camera frame.

Reports aggregate result FPS and each camera's capture-to-render p50/p99 per run, and medians.

Why re-batching: ``edgeseg export --batch N`` needs the training checkpoint, which is not bundled.
The bundled INT8 graph has a fixed batch of 1 in its input and in three Reshape nodes of its final
upsampling (depth-to-space written as reshapes); :func:`rebatch_bundled` rewrites those for batch
N, adds one Transpose to put the batch first again, and checks that every item of a batch-N run
equals the batch-1 model's output on the same frame before it is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeseg.runtime import Segmenter, zoo
from edgeseg.runtime.fileio import write_json
from edgeseg.runtime.mjpeg import MjpegServer, encode_jpeg
from edgeseg.runtime.multicam import run_cameras
from edgeseg.runtime.sources import open_source

BUNDLED = "camvid-unet-lite.int8"
# outputs of the three fixed-batch Reshape nodes of the bundled graph's final 2x depth-to-space
D2S_ROWS, D2S_SPLIT, D2S_OUT = "_d2s_split_phase_last_nhwc_rows", "_d2s_split_rows", "_d2s_split_out"


def rebatch_bundled(src: Path, dst: Path, n: int) -> Path:
    """The bundled INT8 ONNX with a fixed batch of ``n``; raises RuntimeError where the graph differs."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    for vi in (*m.graph.input, *m.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_value = n
    del m.graph.value_info[:]  # intermediate shapes recorded for batch 1; ONNX Runtime infers them again
    inits = {i.name: i for i in m.graph.initializer}
    for node in m.graph.node:  # constant borders concatenated to the frame (in-graph padding) get N copies
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if node.op_type != "Concat" or axis == 0:
            continue
        for k, name in enumerate(node.input):
            if name in inits and len(inits[name].dims) == 4 and inits[name].dims[0] == 1:
                arr = np.repeat(numpy_helper.to_array(inits[name]), n, axis=0)
                node.input[k] = f"{name}_b{n}"
                m.graph.initializer.append(numpy_helper.from_array(arr, node.input[k]))
    done = set()
    for idx, node in enumerate(list(m.graph.node)):
        if node.op_type != "Reshape" or node.input[1] not in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]]).copy()
        out = node.output[0]
        if D2S_ROWS in out:  # (rows = N*h*w, 2C, 2): the batch is folded into the rows
            shape[0] *= n
        elif D2S_SPLIT in out:  # (C, 2, N*h, 2w): the batch is folded into the height
            shape[2] *= n
        elif D2S_OUT in out:  # (1, C, 2h, 2w) -> (C, N, 2h, 2w), then a Transpose puts N first
            shape = np.array([shape[1], n, shape[2], shape[3]], shape.dtype)
            node.output[0] = out + "_cn"
            m.graph.node.insert(idx + 1, helper.make_node("Transpose", [out + "_cn"], [out], perm=[1, 0, 2, 3]))
        else:
            if (shape > 0).all():
                raise RuntimeError(f"Reshape {out} has a fixed shape {shape.tolist()} this script cannot re-batch")
            continue
        name = f"{node.input[1]}_b{n}"
        m.graph.initializer.append(numpy_helper.from_array(shape, name))
        node.input[1] = name
        done.add(next(k for k in (D2S_ROWS, D2S_SPLIT, D2S_OUT) if k in out))
    if len(done) != 3:
        raise RuntimeError(f"expected the bundled graph's 3 depth-to-space reshapes, found {sorted(done)}")
    for p in m.metadata_props:
        if p.key == "edgeseg.batch":
            p.value = str(n)
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    _check_rebatched(src, dst, n)
    return dst


def _check_rebatched(one: Path, many: Path, n: int) -> None:
    """Every item of a batch-n inference equals the batch-1 model's output on the same frame."""
    rng = np.random.default_rng(0)
    s1, sn = Segmenter(one, threads=1), Segmenter(many, threads=1)
    try:
        frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(n)]
        pre = sn.new_preprocessor()
        batch = pre(frames)
        out_n = sn.infer_prepared(batch)
        for i, f in enumerate(frames):
            out_1 = s1.infer_prepared(s1.new_preprocessor()([f]))
            if not np.array_equal(out_n[i], out_1[0]):
                raise RuntimeError(f"re-batched model differs from the original on item {i}")
    finally:
        s1.close()
        sn.close()


def clip_jpegs(video: str | None, frames: int) -> tuple[list[bytes], str]:
    uri = video or "synthetic://?size=540x960&frames=1000"
    out = []
    with open_source(uri) as src:
        for frame in src:
            out.append(encode_jpeg(frame.image, 85))
            frame.release()
            if len(out) >= frames:
                break
    return out, uri


def one_run(seg: Segmenter, urls: list[str], seconds: float, batched: bool) -> dict[str, Any]:
    import threading

    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        stats = run_cameras(seg, urls, stop=stop, batched=batched, render="overlay",
                            open_kw={"timeout": 5.0, "reconnect": 0}, on_event=lambda line: None)
    finally:
        timer.cancel()
    d = stats.to_dict()
    return {"aggregate_fps": d["aggregate"]["fps"], "ticks": d["aggregate"]["ticks"],
            "cameras": [{"name": c["name"], "fps": c["fps"], "drops": c["drops"],
                         "c2r_p50_ms": c["capture_to_render_ms"]["p50"],
                         "c2r_p99_ms": c["capture_to_render_ms"]["p99"]} for c in d["cameras"]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--fps", type=float, default=15.0, help="frame rate of each loopback camera")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (batched, in turn, ...)")
    ap.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's)")
    ap.add_argument("--video", default=None, help="the clip to serve (default: a synthetic driving clip)")
    ap.add_argument("--clip-frames", type=int, default=100, help="frames of the clip served (looped)")
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = ap.parse_args(argv)

    jpegs, clip = clip_jpegs(args.video, args.clip_frames)
    one = zoo.resolve(BUNDLED)
    with tempfile.TemporaryDirectory() as tmp:
        many = rebatch_bundled(one, Path(tmp) / f"{BUNDLED}.b{args.cameras}.onnx", args.cameras)
        segs = {"batched": Segmenter(many, threads=args.threads), "in_turn": Segmenter(one, threads=args.threads)}
        servers = [MjpegServer(port=0) for _ in range(args.cameras)]
        try:
            for i, srv in enumerate(servers):
                srv.play(jpegs[i * 7 % len(jpegs):] + jpegs[:i * 7 % len(jpegs)], fps=args.fps)  # offset clips
            urls = [s.url for s in servers]
            runs: dict[str, list] = {"batched": [], "in_turn": []}
            for r in range(args.rounds):
                for mode in ("batched", "in_turn"):
                    res = one_run(segs[mode], urls, args.seconds, batched=mode == "batched")
                    runs[mode].append(res)
                    p99 = ", ".join(f"{c['c2r_p99_ms']}" for c in res["cameras"])
                    print(f"round {r} {mode:8s}: {res['aggregate_fps']:.1f} FPS aggregate, per-camera p99 ms {p99}",
                          flush=True)
        finally:
            for srv in servers:
                srv.stop()
            for seg in segs.values():
                seg.close()
    summary = {mode: {"aggregate_fps_median": statistics.median(x["aggregate_fps"] for x in rs),
                      "c2r_p99_ms_median_per_camera": [
                          statistics.median(x["cameras"][i]["c2r_p99_ms"] or 0 for x in rs)
                          for i in range(args.cameras)]}
               for mode, rs in runs.items()}
    report = {"benchmark": "multicam", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.processor()
              or platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
              "opencv": cv2.__version__, "clip": clip, "cameras": args.cameras, "camera_fps": args.fps,
              "seconds": args.seconds, "rounds": args.rounds, "threads": args.threads,
              "models": {"batched": f"{BUNDLED} re-batched to {args.cameras}", "in_turn": f"{BUNDLED} (batch 1)"},
              "runs": runs, "summary": summary}
    print(json.dumps(summary, indent=1))
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
