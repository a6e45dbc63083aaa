"""Archive inference on Ray: frames per second with 1 node and with 2 nodes of 1 CPU each, against
plain ``edgeseg predict`` run file by file on the same clips.

    python benchmarks/archive_bench.py --clips 8 --frames 60 --json archive_bench.json
    python benchmarks/archive_bench.py --videos 'archive/**/*.mp4' --model model.onnx

Each Ray figure starts a real cluster on loopback (``ray start`` per node, 1 CPU each; the same
helper the tests use), then times ``run_jobs`` from connect to the last file: actor start-up and
model loading are inside, as a user sees them. ``predict-1-thread`` runs ``edgeseg predict
--threads 1 --workers 1`` per file (one CPU, like one node); ``predict-auto`` runs it with its
defaults (every core). Overhead = Ray time / predict time on the same CPUs, minus one.

Needs ``pip install 'edgeseg[ray]'``. Without ``--videos`` the clips are synthetic driving scenes.
On a shared machine the figures are indicative only.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # testkit.ray_nodes: the loopback cluster helper


def make_clips(folder: Path, clips: int, frames: int, size: str) -> list[Path]:
    import cv2

    from edgeseg.runtime.sources import open_source

    out = []
    for i in range(clips):
        path = folder / f"clip{i:02d}.mp4"
        src = open_source(f"synthetic://?frames={frames}&size={size}&seed={i}")
        writer = None
        with src:
            for frame in src:
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
                writer.write(frame.image)  # (H, W, 3) uint8 BGR
                frame.release()
        writer.release()
        out.append(path)
    return out


def time_ray(jobs: list, model: str, nodes: int) -> dict:
    from testkit.ray_nodes import RayNodes

    from edgeseg.runtime.cluster import run_jobs

    with RayNodes(nodes=nodes, cpus=1) as cluster:
        t = time.perf_counter()
        run = run_jobs(jobs, model, address=cluster.address)
        wall = time.perf_counter() - t
    frames = sum(r["frames"] for r in run.records if r["status"] == "ok")
    busy = sum(r.get("seconds", 0.0) for r in run.records)
    return {"nodes": nodes, "files": len(run.records), "frames": frames, "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2), "fps_in_files": round(frames / busy * nodes, 2) if busy else None,
            "nodes_used": len(run.nodes), "failed": sum(r["status"] != "ok" for r in run.records)}


def time_predict(files: list[Path], model: str, out: Path, threads: int | None) -> dict:
    from edgeseg.cli import main

    extra = ["--threads", str(threads), "--workers", "1"] if threads else []
    frames = 0
    t = time.perf_counter()
    for f in files:
        report = out / f"{f.stem}.json"
        with contextlib.redirect_stdout(io.StringIO()):  # predict's own summary; ours is the JSON
            rc = main(["predict", model, "--source", str(f), "--save", str(out), "--json", str(report), *extra])
        if rc != 0:
            raise SystemExit(f"predict failed on {f}")
        frames += json.loads(report.read_text())["frames"]
    wall = time.perf_counter() - t
    return {"threads": threads or "auto", "files": len(files), "frames": frames, "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="camvid-unet-lite")
    ap.add_argument("--videos", default=None, help="a glob of real clips (default: synthetic clips)")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--frames", type=int, default=60, help="frames per synthetic clip")
    ap.add_argument("--size", default="360x480", help="synthetic clip size HxW")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from testkit.ray_nodes import AUTH_ENV

    os.environ.update(AUTH_ENV)  # the clusters' token, before Ray is imported
    from edgeseg.runtime.archive import plan
    from edgeseg.runtime.segmenter import resolve_model

    model = str(resolve_model(args.model))
    with tempfile.TemporaryDirectory(prefix="archive-bench.") as tmp:
        root = Path(tmp)
        if args.videos:
            pattern = args.videos
        else:
            (root / "clips").mkdir()
            make_clips(root / "clips", args.clips, args.frames, args.size)
            pattern = str(root / "clips" / "*.mp4")
        files = [j.input for j in plan(pattern, root / "unused")]
        results = {
            "predict_1_thread": time_predict(files, model, root / "p1", threads=1),
            "ray_1_node": time_ray(plan(pattern, root / "r1"), model, nodes=1),
            "predict_auto": time_predict(files, model, root / "pa", threads=None),
            "ray_2_nodes": time_ray(plan(pattern, root / "r2"), model, nodes=2),
        }
    results["overhead_1_cpu"] = round(results["ray_1_node"]["wall_s"] / results["predict_1_thread"]["wall_s"] - 1, 3)
    results["overhead_2_cpus"] = round(results["ray_2_nodes"]["wall_s"] / results["predict_auto"]["wall_s"] - 1, 3)
    results["speedup_2_nodes"] = round(results["ray_2_nodes"]["fps"] / results["ray_1_node"]["fps"], 3)
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    results["model"] = Path(model).name
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
