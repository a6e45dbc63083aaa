"""benchmarks/camvid_cv.py runs its folds and writes the table (a tiny tree, one short fold)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO
from tests.testkit import data_trees as dt

SCRIPT = str(REPO / "benchmarks" / "camvid_cv.py")


def test_cv_script_runs_resumes_and_writes_json_and_markdown(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    out = tmp_path / "cv"
    argv = [sys.executable, SCRIPT, "--data", str(root), "--minutes", "0.05", "--folds", "0006R0",
            "--threads", "1", "--epochs", "1", "--out", str(out), "--recipe", "plain=--scale 1-1", "--",
            "--imgsz", "12x16", "--batch", "2", "--workers", "0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    fold = out / "plain" / "fold-0006R0"
    summary = json.loads((fold / "summary.json").read_text())
    assert summary["best_metrics"]["split"] == "0006R0"  # validated on the held-out sequence
    (fold / "summary.json").unlink()  # as if killed before the end: last.pt is there
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "--resume" in done.stdout, done.stderr[-2000:]
    report = json.loads((out / "cv.json").read_text())
    (row,) = report["recipes"]
    assert row["name"] == "plain" and row["args"] == ["--scale", "1-1"] and report["frames"] == {"0006R0": 1}
    assert [f["sequence"] for f in row["folds"]] == ["0006R0"]
    assert row["summary"]["mean_miou"] == row["folds"][0]["final_miou"]
    table = (out / "cv.md").read_text()
    assert "| plain | --scale 1-1 |" in table and "--holdout-sequence 0006R0" in table


def test_cv_script_names_the_sequences_present_and_checks_recipes(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    base = [sys.executable, SCRIPT, "--data", str(root), "--minutes", "1"]
    done = subprocess.run([*base, "--folds", "Seq06XX"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "sequences present: 0001TP, 0006R0, 0016E5, Seq05VD" in done.stderr
    done = subprocess.run([*base, "--recipe", "a/b=--augment all"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0 and "NAME=ARGS" in done.stderr


def test_cv_script_reuses_finished_folds_into_an_ablation_table(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    for recipe, miou in (("base", 41.5), ("aug", 44.0)):
        fold = tmp_path / "cv" / recipe / "fold-0001TP"
        fold.mkdir(parents=True)
        (fold / "summary.json").write_text(json.dumps(
            {"epochs": 3, "best_metrics": {"miou": miou, "epoch": 3, "per_class_iou": {"Sky": 90.0, "Pole": None}}}))
        (fold / "metrics.csv").write_text(f"epoch,val_miou\n1,\n2,\n3,{miou}\n")
    done = subprocess.run(
        [sys.executable, SCRIPT, "--data", str(root), "--minutes", "5", "--folds", "0001TP", "--out",
         str(tmp_path / "cv"), "--recipe", "base=", "--recipe", "aug=--augment shadow"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("reusing") == 2
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert [r["summary"]["mean_miou"] for r in report["recipes"]] == [41.5, 44.0]
    assert report["recipes"][0]["summary"]["mean_per_class_iou"] == {"Sky": 90.0, "Pole": None}
    table = (tmp_path / "cv" / "cv.md").read_text()
    assert "| aug | --augment shadow | 44.00 | **44.00** |" in table


def test_cv_script_trains_folds_side_by_side_with_shared_train_args(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    out = tmp_path / "cv"
    argv = [sys.executable, SCRIPT, "--data", str(root), "--minutes", "0.05", "--folds", "0006R0", "--threads", "1",
            "--jobs", "2", "--epochs", "1", "--out", str(out), "--recipe", "a=", "--recipe", "b=--scale 1-1",
            "--train-args=--imgsz 12x16 --batch 2 --workers 0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "cv.json").read_text())
    assert [r["name"] for r in report["recipes"]] == ["a", "b"]  # in the order given, whichever finished first
    assert report["common_args"] == ["--imgsz", "12x16", "--batch", "2", "--workers", "0"]
    assert all((out / name / "fold-0006R0" / "summary.json").is_file() for name in ("a", "b"))
