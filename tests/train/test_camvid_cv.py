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
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "camvid_cv.py"), "--data", str(root), "--minutes", "0.05",
         "--folds", "0006R0", "--threads", "1", "--epochs", "1", "--out", str(out), "--",
         "--imgsz", "12x16", "--scale", "1-1", "--batch", "2", "--workers", "0"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
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
