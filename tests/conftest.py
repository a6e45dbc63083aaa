"""Shared test fixtures: where the real data lives, and hardware gates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGESEG_SHARED", REPO.parent / "shared"))
CAMVID = SHARED / "data" / "camvid"
HIGHWAY = SHARED / "data" / "videos" / "highway_960x540.mp4"


@pytest.fixture
def camvid_root() -> Path:
    if not (CAMVID / "train").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID} (../shared absent)")
    return CAMVID


@pytest.fixture
def highway_video() -> Path:
    if not HIGHWAY.is_file():
        pytest.skip(f"highway clip not found at {HIGHWAY} (../shared absent)")
    return HIGHWAY


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    need_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    need_trt = pytest.mark.skip(reason="needs TensorRT and a CUDA GPU; TensorRT cannot be installed on this machine")
    gpu = trt = None
    for item in items:
        if "trt" in item.keywords:
            trt = _has_tensorrt() and _has_cuda() if trt is None else trt
            if not trt:
                item.add_marker(need_trt)
        elif "gpu" in item.keywords:
            gpu = _has_cuda() if gpu is None else gpu
            if not gpu:
                item.add_marker(need_gpu)
