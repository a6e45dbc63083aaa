"""Video files and subprocess runs shared by the runtime's command tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def make_video(path: Path, n: int, hw: tuple[int, int] = (60, 80), fps: float = 12.0) -> None:
    rng = np.random.default_rng(3)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (hw[1], hw[0]))
    assert writer.isOpened()
    for _ in range(n):
        writer.write(rng.integers(0, 256, (*hw, 3), dtype=np.uint8))  # (h, w, 3)
    writer.release()


def count_frames(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.isOpened(), f"{path} is not playable"
    fps = cap.get(cv2.CAP_PROP_FPS)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n, fps


def run_until_writing_then_signal(cmd: list[str], out: Path, sig: int = signal.SIGTERM,
                                  after_s: float = 0.7) -> subprocess.CompletedProcess:
    """Start ``cmd``, wait for the hidden temp video beside ``out`` to appear, then send ``sig``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.perf_counter() + 30.0
        while time.perf_counter() < deadline and proc.poll() is None:
            if any(p.name.startswith(f".{out.stem}.") for p in out.parent.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        time.sleep(after_s)  # some frames into the file
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
