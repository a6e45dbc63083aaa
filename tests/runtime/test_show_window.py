"""demo --show opens a real window where OpenCV has a GUI: checked under Xvfb with a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.runtime.sinks import gui_problem

XVFB, IMPORT = shutil.which("Xvfb"), shutil.which("import")
NO_GUI = "NONE" in (next((ln for ln in cv2.getBuildInformation().splitlines() if "GUI:" in ln), "GUI: NONE").upper())


@pytest.mark.timing
@pytest.mark.skipif(NO_GUI, reason="this OpenCV has no GUI (opencv-python-headless); --show falls back to the web view")
@pytest.mark.skipif(XVFB is None or IMPORT is None, reason="needs Xvfb and ImageMagick's import (Debian: xvfb imagemagick)")
def test_show_opens_a_window_with_the_overlay_under_xvfb(tmp_path: Path) -> None:
    display = f":{90 + os.getpid() % 9}"
    xvfb = subprocess.Popen([XVFB, display, "-screen", "0", "800x600x24"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {**os.environ, "DISPLAY": display}
    try:
        time.sleep(1.0)
        assert gui_problem() is None or "DISPLAY" in (gui_problem() or "")
        demo = subprocess.Popen([sys.executable, "-m", "edgeseg", "demo", "camvid-unet-lite",
                                 "--source", "synthetic://?realtime=1&size=240x320", "--show", "--duration", "8"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        shot = tmp_path / "screen.png"
        time.sleep(5.0)
        subprocess.run([IMPORT, "-display", display, "-window", "root", str(shot)], check=True, timeout=20)
        out, err = demo.communicate(timeout=30)
    finally:
        xvfb.terminate()
        xvfb.wait(timeout=10)
    assert demo.returncode == 0, err
    assert "output: window (" in out and "(0 frames)" not in out
    img = cv2.imread(str(shot))  # (600, 800, 3): the X screen
    window = img[:400, :400]
    assert window.std() > 20  # a picture was drawn, not a black screen
    assert np.abs(window.astype(int) - (128, 64, 128)[::-1]).sum(axis=2).min() < 90  # road-ish purple overlay
