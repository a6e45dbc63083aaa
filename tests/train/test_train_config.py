"""Training values about data loading and crops fail in TrainConfig, naming the CLI flag.

Here rather than in tests/train: TrainConfig needs no torch, and these values are about the data.
"""

from __future__ import annotations

import pytest

from edgeseg.runtime.errors import UsageError
from edgeseg.train.config import TrainConfig

DATA = "synthetic://?n=4&size=64x96"


@pytest.mark.parametrize("kw,expected", [
    ({"val_max_images": -1}, "--val-images -1 must be at least 0"),  # failed only after a whole epoch
    ({"workers": -1}, "--workers -1 must be at least 0"),  # was torch's "num_workers option should be ..."
    ({"batch": 1, "imgsz": (32, 32)}, "--imgsz 32x32 is too small for --batch 1"),  # BatchNorm on 1x1
    ({"batch": 1, "imgsz": (48, 63)}, "--imgsz 48x63 is too small for --batch 1"),
])
def test_bad_values_are_refused_up_front(kw: dict, expected: str) -> None:
    with pytest.raises(UsageError, match=expected) as e:
        TrainConfig(data=DATA, **kw)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw", [
    {"val_max_images": 0}, {"workers": 0}, {"batch": 2, "imgsz": (32, 32)}, {"batch": 1, "imgsz": (32, 480)},
    {"batch": 1, "imgsz": (64, 64)},
])
def test_boundary_values_are_accepted(kw: dict) -> None:
    TrainConfig(data=DATA, **kw)


@pytest.mark.parametrize("flag,value", [("--val-images", "-1"), ("--workers", "-1")])
def test_cli_names_the_flag_before_training(flag: str, value: str, tmp_path, capsys) -> None:
    from edgeseg.cli import main

    code = main(["train", "--data", DATA, "--out", str(tmp_path / "run"), flag, value, "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and f"{flag} {value} must be at least 0" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # refused before any training started
