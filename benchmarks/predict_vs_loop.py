"""``edgeseg predict`` against the loop a user would write by hand, on a 1280x720 clip.

    python benchmarks/predict_vs_loop.py --rounds 3 --json predict_vs_loop.json
    python benchmarks/predict_vs_loop.py --video drive.mp4 --model model.int8.onnx
    python benchmarks/predict_vs_loop.py --compare-python /path/to/other/venv/bin/python   # another edgeseg

Arms, interleaved round by round (A B A B ...), each in its own process so that none inherits
another's threads or caches:

- ``predict``: ``edgeseg predict MODEL CLIP --save out.mp4`` with its defaults (the pipeline that
  overlaps decoding, inference, drawing and encoding);
- ``loop``: read -> ``seg(frame)`` -> ``res.overlay()`` -> write, one frame after the other, with
  the same model, threads left at ONNX Runtime's default;
- ``predict@other`` (with ``--compare-python``): the same predict command run by another Python
  environment, e.g. an older edgeseg, so a change to the pipeline can be checked for speed.

FPS counts frames written per second from the first read to the closed file, model loading
excluded for every arm. Medians over rounds; the ratio is predict / loop.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LOOP = r"""
import json, sys, time
import cv2
from edgeseg.runtime import Segmenter
model, clip, out = sys.argv[1:4]
seg = Segmenter(model)
cap = cv2.VideoCapture(clip)
writer = None
n = 0
t0 = time.perf_counter()
while True:
    ok, frame = cap.read()
    if not ok:
        break
    res = seg(frame)
    image = res.overlay(0.5)  # (H, W, 3) uint8 BGR
    if writer is None:
        h, w = image.shape[:2]
        writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    writer.write(image)
    n += 1
writer.release()
print(json.dumps({"frames": n, "fps": n / (time.perf_counter() - t0)}))
"""


def make_clip(path: Path, video: str | None, size: tuple[int, int], frames: int) -> Path:
    """A ``size`` (H, W) mp4 clip: ``video`` resized, or synthetic driving scenes."""
    import cv2

    from edgeseg.runtime.sources import open_source

    h, w = size
    uri = video if video else f"synthetic://?frames={frames}&size={h}x{w}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    n = 0
    with open_source(uri) as src:
        for frame in src:
            writer.write(cv2.resize(frame.image, (w, h), interpolation=cv2.INTER_LINEAR))  # (h, w, 3) BGR
            frame.release()
            n += 1
            if n >= frames:
                break
    writer.release()
    return path


def run_predict(python: str, model: str, clip: Path, out: Path, work: Path) -> dict:
    stats = out.with_suffix(".json")
    cmd = [python, "-m", "edgeseg", "predict", model, "--source", str(clip), "--save", str(out), "--json", str(stats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({python}): {proc.stderr.strip().splitlines()[-1:]}")
    d = json.loads(stats.read_text())
    return {"frames": d["frames"], "fps": d["fps"], "workers": d.get("workers")}


def run_loop(model: str, clip: Path, out: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", LOOP, model, str(clip), str(out)], capture_output=True,
                          text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the hand-written loop failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="camvid-unet-lite.int8", help="model file or bundled name")
    ap.add_argument("--video", default=None, help="clip to resize to --size (default: synthetic scenes)")
    ap.add_argument("--size", default="720x1280", help="HxW of the clip (default 720x1280)")
    ap.add_argument("--frames", type=int, default=200, help="frames in the clip")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--compare-python", default=None, metavar="PYTHON",
                    help="also time predict run by this interpreter (another edgeseg install)")
    ap.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    arms = {"predict": lambda c, o, d: run_predict(sys.executable, args.model, c, o, d),
            "loop": lambda c, o, d: run_loop(args.model, c, o)}
    if args.compare_python:
        arms["predict@other"] = lambda c, o, d: run_predict(args.compare_python, args.model, c, o, d)
    runs: dict[str, list[dict]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory(prefix="edgeseg-pvl.") as tmp:
        work = Path(tmp)
        clip = make_clip(work / "clip.mp4", args.video, (h, w), args.frames)
        for r in range(args.rounds):
            for name, arm in arms.items():
                res = arm(clip, work / f"{name}{r}.mp4", work)  # a new file each time: nothing to overwrite
                runs[name].append(res)
                print(f"round {r + 1}: {name:14s} {res['fps']:6.1f} FPS ({res['frames']} frames)", flush=True)
    med = {name: statistics.median(x["fps"] for x in rs) for name, rs in runs.items()}
    result = {"model": args.model, "size": [h, w], "frames": args.frames, "rounds": args.rounds,
              "video": Path(args.video).name if args.video else "synthetic",
              "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
              "median_fps": med, "predict_over_loop": med["predict"] / med["loop"], "runs": runs}
    if "predict@other" in med:
        result["predict_over_other"] = med["predict"] / med["predict@other"]
    print(json.dumps({k: result[k] for k in ("median_fps", "predict_over_loop")}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
