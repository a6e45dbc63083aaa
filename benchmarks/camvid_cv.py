"""Leave-one-sequence-out cross-validation of one training recipe on CamVid train + val.

    python benchmarks/camvid_cv.py --data data/camvid --minutes 20 --model unet_lite --out runs/cv
    python benchmarks/camvid_cv.py --data data/camvid --minutes 20 -- --class-weights none --scale 0.5-1.5

Each fold trains ``edgeseg train --holdout-sequence SEQ`` in its own process for ``--minutes``
(the LR schedule fits the budget) on every other sequence of train + val, and scores the model
it ends with on sequence SEQ. Only that final validation runs (unless the pass-through arguments
set ``--val-every``): picking the best epoch on the held-out sequence would tune on it. Arguments
after ``--`` go to ``edgeseg train`` unchanged. Writes ``cv.json`` and ``cv.md`` (per-fold and
mean mIoU, per-class IoU) into ``--out``. Rerunning the same command reuses the folds that
finished and resumes an interrupted one from its ``last.pt`` (``--fresh`` retrains all).

SegNet's CamVid copy (train 367, val 101) holds three sequences, 0001TP, 0006R0 and 0016E5;
Seq05VD frames are in its test split, so they form a fold only where train/ or val/ has them.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgeseg.data import build_dataset
from edgeseg.data.sequences import concat, group_by_sequence, parse_sequences
from edgeseg.runtime.fileio import atomic_open, write_json


def fold_command(args: argparse.Namespace, seq: str, out: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "edgeseg", "train", "--data", args.data, "--holdout-sequence", seq,
           "--model", args.model, "--time-budget", str(args.minutes), "--epochs", str(args.epochs),
           "--seed", str(args.seed), "--out", str(out), "--json", str(out / "summary.json"), "--quiet"]
    if args.sequences:
        cmd += ["--sequences", args.sequences]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if not any(a.startswith("--val-every") for a in extra):
        cmd += ["--val-every", str(10 ** 6)]  # validate once, at the end of the schedule
    return cmd + extra


def final_miou(run_dir: Path) -> float | None:
    """The last validated mIoU in metrics.csv: the model the fixed schedule ends with."""
    scored = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get("val_miou")]
    return float(scored[-1]["val_miou"]) if scored else None


def run_fold(args: argparse.Namespace, seq: str, extra: list[str]) -> dict[str, Any]:
    """Train and score one fold; a fold finished earlier is reused, an interrupted one resumed."""
    out = Path(args.out) / f"fold-{seq}"
    cmd = fold_command(args, seq, out, extra)
    t0 = time.perf_counter()
    if (out / "summary.json").is_file() and not args.fresh:
        print(f"fold {seq}: done earlier, reusing {out / 'summary.json'} (--fresh retrains)", flush=True)
    else:
        run = cmd
        if (out / "last.pt").is_file() and not args.fresh:  # interrupted: carry on with its saved config
            run = [*cmd[:4], "--resume", str(out / "last.pt"), "--out", str(out),
                   "--json", str(out / "summary.json"), "--quiet"]
        print(f"fold {seq}: {' '.join(run[1:])}", flush=True)
        done = subprocess.run(run, check=False)
        if done.returncode != 0:
            raise SystemExit(f"error: fold {seq} failed (exit {done.returncode}); see the output above; "
                             "rerun to resume it")
    summary = json.loads((out / "summary.json").read_text())
    best = summary["best_metrics"]
    return {"sequence": seq, "final_miou": final_miou(out), "best_miou": best.get("miou"),
            "best_epoch": best.get("epoch"), "per_class_iou": best.get("per_class_iou", {}),
            "epochs": summary["epochs"], "minutes": round((time.perf_counter() - t0) / 60, 2),
            "command": " ".join(["edgeseg", *cmd[3:]])}


def summarise(folds: list[dict[str, Any]]) -> dict[str, Any]:
    finals = [f["final_miou"] for f in folds if f["final_miou"] is not None]
    names = list(folds[0]["per_class_iou"]) if folds else []
    per_class = {}
    for name in names:
        values = [f["per_class_iou"].get(name) for f in folds]
        values = [v for v in values if v is not None]  # a class absent from a held-out sequence
        per_class[name] = round(statistics.fmean(values), 2) if values else None
    return {"mean_miou": round(statistics.fmean(finals), 2) if finals else None,
            "min_miou": min(finals, default=None), "max_miou": max(finals, default=None),
            "mean_per_class_iou": per_class}


def markdown(report: dict[str, Any]) -> str:
    extra = " ".join(report["extra_args"]) or "none"
    lines = [f"Leave-one-sequence-out CV: `{report['model']}`, {report['minutes']} min per fold, "
             f"data {report['data']}, extra train arguments: {extra}", "",
             "| held-out sequence | frames | final mIoU | epochs |", "|---|---|---|---|"]
    for f in report["folds"]:
        shown = "-" if f["final_miou"] is None else f"{f['final_miou']:.2f}"
        lines.append(f"| {f['sequence']} | {report['frames'][f['sequence']]} | {shown} | {f['epochs']} |")
    mean = report["summary"]["mean_miou"]
    lines.append(f"| **mean** | | **{'-' if mean is None else f'{mean:.2f}'}** | |")
    lines += ["", "Per class (mean IoU over the folds where the class occurs):", "",
              "| " + " | ".join(report["summary"]["mean_per_class_iou"]) + " |",
              "|" + "---|" * len(report["summary"]["mean_per_class_iou"]),
              "| " + " | ".join("-" if v is None else f"{v:.1f}"
                                 for v in report["summary"]["mean_per_class_iou"].values()) + " |",
              "", "Command of each fold:", ""]
    lines += [f"    {f['command']}" for f in report["folds"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CamVid folder (train/ trainannot/ val/ valannot/)")
    p.add_argument("--minutes", type=float, required=True, help="training minutes per fold")
    p.add_argument("--model", default="unet_lite")
    p.add_argument("--epochs", type=int, default=10 ** 4, help="epoch cap (the minutes usually end training)")
    p.add_argument("--folds", default="", help="comma-separated sequences to hold out (default: all present)")
    p.add_argument("--sequences", default="", help="file-name prefixes of the sequences (default: CamVid's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per fold (0 = all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/cv", help="folder for the fold runs, cv.json and cv.md")
    p.add_argument("--fresh", action="store_true",
                   help="retrain every fold (default: reuse finished folds, resume interrupted ones from last.pt)")
    args = p.parse_args(argv)
    if not args.minutes > 0:
        p.error("--minutes must be > 0")
    joined = concat([build_dataset(args.data, s) for s in ("train", "val")], "train+val")
    groups = group_by_sequence(joined, parse_sequences(args.sequences))
    folds = [s.strip() for s in args.folds.split(",") if s.strip()] or sorted(groups)
    unknown = [s for s in folds if s not in groups]
    if unknown:
        p.error(f"--folds {','.join(unknown)} not in {args.data}; sequences present: {', '.join(sorted(groups))}")
    results = [run_fold(args, seq, extra) for seq in folds]
    report = {"model": args.model, "data": str(args.data), "minutes": args.minutes, "extra_args": extra,
              "frames": {s: len(groups[s]) for s in folds}, "folds": results, "summary": summarise(results)}
    out = Path(args.out)
    write_json(out / "cv.json", report)
    with atomic_open(out / "cv.md") as f:
        f.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
