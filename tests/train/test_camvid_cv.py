"""benchmarks/camvid_cv.py runs its folds and writes the table (a tiny tree, one short fold)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO
from tests.testkit import data_trees as dt


def test_cv_script_runs_a_fold_and_writes_json_and_markdown(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    out = tmp_path / "cv"
    argv = [sys.executable, str(REPO / "benchmarks" / "camvid_cv.py"), "--data", str(root), "--minutes", "0.05",
            "--folds", "0006R0", "--threads", "1", "--epochs", "1", "--out", str(out), "--",
            "--imgsz", "12x16", "--scale", "1-1", "--batch", "2", "--workers", "0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "fold-0006R0" / "summary.json").read_text())
    assert summary["best_metrics"]["split"] == "0006R0"  # validated on the held-out sequence
    (out / "fold-0006R0" / "summary.json").unlink()  # as if killed before the end: last.pt is there
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "--resume" in done.stdout, done.stderr[-2000:]
    report = json.loads((out / "cv.json").read_text())
    assert [f["sequence"] for f in report["folds"]] == ["0006R0"] and report["frames"] == {"0006R0": 1}
    assert report["summary"]["mean_miou"] == report["folds"][0]["final_miou"]
    table = (out / "cv.md").read_text()
    assert "| 0006R0 | 1 |" in table and "--holdout-sequence 0006R0" in table


def test_cv_script_names_the_sequences_present(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "camvid_cv.py"), "--data", str(root), "--minutes", "1",
         "--folds", "Seq06XX"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "sequences present: 0001TP, 0006R0, 0016E5, Seq05VD" in done.stderr


def test_cv_script_reuses_a_finished_fold(tmp_path):
    root = dt.camvid_sequence_tree(tmp_path / "camvid")
    fold = tmp_path / "cv" / "fold-0001TP"
    fold.mkdir(parents=True)
    (fold / "summary.json").write_text(json.dumps(
        {"epochs": 3, "best_metrics": {"miou": 41.5, "epoch": 3, "per_class_iou": {"Sky": 90.0, "Pole": None}}}))
    (fold / "metrics.csv").write_text("epoch,val_miou\n1,\n2,\n3,41.5\n")
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "camvid_cv.py"), "--data", str(root), "--minutes", "5",
         "--folds", "0001TP", "--out", str(tmp_path / "cv")], capture_output=True, text=True, timeout=60,
        check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "reusing" in done.stdout
    report = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert report["summary"]["mean_miou"] == 41.5
    assert report["summary"]["mean_per_class_iou"] == {"Sky": 90.0, "Pole": None}
