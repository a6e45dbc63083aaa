"""Multi-process training through torchrun: real torch.distributed (gloo on CPU, NCCL on GPUs)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow


def test_torchrun_two_processes_train_and_write_one_checkpoint(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "edgeseg", "train", "--model", "unet_lite", "--data", "synthetic://?n=8&size=64x96&seed=1",
           "--imgsz", "64x96", "--batch", "2", "--epochs", "1", "--workers", "0", "--threads", "1",
           "--device", "cpu", "--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1  # only rank 0 writes
    # 8 images, 2 ranks x batch 2 -> 2 optimizer steps per epoch on each rank
    assert rows[0]["step"] == "2"
    ckpt = torch.load(out / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["state_dict"])  # saved unwrapped, loadable anywhere
