"""Leave-one-sequence-out cross-validation of training recipes on CamVid train + val.

    python benchmarks/camvid_cv.py --data data/camvid --minutes 20 --model unet_lite --out runs/cv
    python benchmarks/camvid_cv.py --data data/camvid --minutes 20 --out runs/ablation \\
        --recipe "base=" --recipe "road-aug=--augment shadow,exposure,horizon" -- --scale 0.5-1.5

Each fold trains ``edgeseg train --holdout-sequence SEQ`` in its own process for ``--minutes``
(the LR schedule fits the budget) on every other sequence of train + val, and scores the model
it ends with on sequence SEQ. Only that final validation runs (unless the arguments set
``--val-every``): picking the best epoch on the held-out sequence would tune on it.

``--recipe NAME=ARGS`` (repeatable) adds one row of an ablation: ARGS go to ``edgeseg train``
for that recipe only; arguments after ``--`` (or in ``--train-args "..."``) go to every recipe.
``--jobs N`` trains N folds at once (``--threads 1 --jobs 2`` on a 2-core machine). Without ``--recipe`` there is
one recipe, ``default``. Writes ``cv.json`` and ``cv.md`` (per-fold and mean mIoU per recipe,
per-class IoU, the command of every fold) into ``--out`` (and ``cv.json`` to ``--json OUT`` too);
fold runs go to ``OUT/RECIPE/fold-SEQ``.
Rerunning the same command reuses the folds that finished and resumes an interrupted one from
its ``last.pt`` (``--fresh`` retrains all).

SegNet's CamVid copy (train 367, val 101) holds three sequences, 0001TP, 0006R0 and 0016E5;
Seq05VD frames are in its test split, so they form a fold only where train/ or val/ has them.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgeseg.data import build_dataset
from edgeseg.data.sequences import concat, group_by_sequence, parse_sequences
from edgeseg.runtime.fileio import atomic_open, write_json


def parse_recipe(text: str) -> tuple[str, list[str]]:
    """``NAME=ARGS`` -> (name, argument list); the name becomes a folder, so it stays plain."""
    name, sep, rest = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise SystemExit(f"error: --recipe {text!r} must look like NAME=ARGS with NAME of letters, digits, "
                         "'_', '-' or '.', e.g. --recipe \"shadow=--augment shadow\"")
    return name, shlex.split(rest)


def fold_command(args: argparse.Namespace, seq: str, out: Path, extra: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "edgeseg", "train", "--data", args.data, "--holdout-sequence", seq,
           "--model", args.model, "--time-budget", str(args.minutes), "--epochs", str(args.epochs),
           "--seed", str(args.seed), "--out", str(out), "--json", str(out / "summary.json"), "--quiet"]
    if args.sequences:
        cmd += ["--sequences", args.sequences]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if not any(a.startswith("--val-every") for a in extra):
        cmd += ["--val-every", "100000"]  # the most train accepts: validate once, at the end of the schedule
    return cmd + extra


def final_miou(run_dir: Path) -> float | None:
    """The last validated mIoU in metrics.csv: the model the fixed schedule ends with."""
    scored = [r for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get("val_miou")]
    return float(scored[-1]["val_miou"]) if scored else None


def run_fold(args: argparse.Namespace, seq: str, out: Path, extra: list[str]) -> dict[str, Any]:
    """Train and score one fold; a fold finished earlier is reused, an interrupted one resumed."""
    cmd = fold_command(args, seq, out, extra)
    t0 = time.perf_counter()
    if (out / "summary.json").is_file() and not args.fresh:
        print(f"{out}: done earlier, reusing its summary.json (--fresh retrains)", flush=True)
    else:
        run = cmd
        if (out / "last.pt").is_file() and not args.fresh:  # interrupted: carry on with its saved config
            run = [*cmd[:4], "--resume", str(out / "last.pt"), "--out", str(out),
                   "--json", str(out / "summary.json"), "--quiet"]
        print(f"{out}: {' '.join(run[1:])}", flush=True)
        done = subprocess.run(run, check=False)
        if done.returncode != 0:
            raise SystemExit(f"error: fold {out} failed (exit {done.returncode}); see the output above; "
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


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    seqs = list(report["frames"])
    common = " ".join(report["common_args"]) or "none"
    lines = [f"Leave-one-sequence-out CV: `{report['model']}`, {report['minutes']} min per fold, "
             f"data {report['data']}, arguments of every recipe: {common}", "",
             "| recipe | arguments | " + " | ".join(f"{s} ({report['frames'][s]})" for s in seqs) + " | mean |",
             "|---|---|" + "---|" * (len(seqs) + 1)]
    for r in report["recipes"]:
        by_seq = {f["sequence"]: f["final_miou"] for f in r["folds"]}
        lines.append(f"| {r['name']} | {' '.join(r['args']) or '-'} | "
                     + " | ".join(_num(by_seq.get(s)) for s in seqs)
                     + f" | **{_num(r['summary']['mean_miou'])}** |")
    classes = list(report["recipes"][0]["summary"]["mean_per_class_iou"]) if report["recipes"] else []
    lines += ["", "Per class (mean IoU over the folds where the class occurs):", "",
              "| recipe | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for r in report["recipes"]:
        per = r["summary"]["mean_per_class_iou"]
        lines.append(f"| {r['name']} | " + " | ".join(_num(per.get(c), 1) for c in classes) + " |")
    lines += ["", "Command of each fold:", ""]
    lines += [f"    {f['command']}" for r in report["recipes"] for f in r["folds"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    argv = sys.argv[1:]
    common = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CamVid folder (train/ trainannot/ val/ valannot/)")
    p.add_argument("--minutes", type=float, required=True, help="training minutes per fold")
    p.add_argument("--model", default="unet_lite")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME=ARGS",
                   help="one ablation row: edgeseg train arguments for this recipe (repeatable)")
    p.add_argument("--epochs", type=int, default=10 ** 4, help="epoch cap (the minutes usually end training)")
    p.add_argument("--folds", default="", help="comma-separated sequences to hold out (default: all present)")
    p.add_argument("--sequences", default="", help="file-name prefixes of the sequences (default: CamVid's)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per fold (0 = all cores)")
    p.add_argument("--jobs", type=int, default=1,
                   help="folds trained at once, each in its own process (with --threads 1: one per core)")
    p.add_argument("--train-args", default="", metavar="ARGS",
                   help="edgeseg train arguments for every recipe (as after --, in one quoted string)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/cv", help="folder for the fold runs, cv.json and cv.md")
    p.add_argument("--fresh", action="store_true",
                   help="retrain every fold (default: reuse finished folds, resume interrupted ones from last.pt)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write cv.json's report here")
    args = p.parse_args(argv)
    common = [*shlex.split(args.train_args), *common]
    if not args.minutes > 0:
        p.error("--minutes must be > 0")
    if args.jobs < 1:
        p.error("--jobs must be >= 1")
    recipes = [parse_recipe(r) for r in args.recipe] or [("default", [])]
    if len({n for n, _ in recipes}) != len(recipes):
        p.error("two --recipe options share a name; give each its own")
    joined = concat([build_dataset(args.data, s) for s in ("train", "val")], "train+val")
    groups = group_by_sequence(joined, parse_sequences(args.sequences))
    folds = [s.strip() for s in args.folds.split(",") if s.strip()] or sorted(groups)
    unknown = [s for s in folds if s not in groups]
    if unknown:
        p.error(f"--folds {','.join(unknown)} not in {args.data}; sequences present: {', '.join(sorted(groups))}")
    out = Path(args.out)
    # fold by fold, every recipe on it: a run stopped early still compares the recipes on the same folds
    runs = [(name, seq, [*common, *extra]) for seq in folds for name, extra in recipes]
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each fold is a process
        done = list(pool.map(lambda r: run_fold(args, r[1], out / r[0] / f"fold-{r[1]}", r[2]), runs))
    rows = []
    for name, extra in recipes:
        results = [res for (n, _, _), res in zip(runs, done, strict=True) if n == name]
        rows.append({"name": name, "args": extra, "folds": results, "summary": summarise(results)})
    report = {"model": args.model, "data": str(args.data), "minutes": args.minutes, "common_args": common,
              "frames": {s: len(groups[s]) for s in folds}, "recipes": rows}
    write_json(out / "cv.json", report)
    if args.json:
        write_json(args.json, report)
    with atomic_open(out / "cv.md") as f:
        f.write(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
