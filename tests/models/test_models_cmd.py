"""The 'edgeseg models' command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.models import list_models, model_stats


def test_models_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models.json"
    assert main(["models", "--imgsz", "360x480", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "params (M)" in line)
    assert "GFLOPs@360x480" in lines[head]
    for name in list_models():
        assert any(line.split()[0] == name for line in lines[head + 2:]), name
    data = json.loads(out.read_text())
    assert data["imgsz"] == [360, 480]
    rows = {r["name"]: r for r in data["models"]}
    assert set(rows) == set(list_models())
    ref = model_stats("unet_lite", 11, (360, 480))
    assert rows["unet_lite"]["params_m"] == round(ref.params / 1e6, 3)
    assert rows["unet_lite"]["gflops"] == round(ref.gflops, 2)
    assert rows["fcn8s"]["description"].startswith("FCN-8s")


def test_models_bad_size_is_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--imgsz", "big"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--imgsz 'big'" in err


def test_bundled_models_are_listed_with_precision_and_miou(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edgeseg.runtime.zoo import DEFAULT_MODEL
    from edgeseg.runtime.zoo import list_models as bundled_names

    out = tmp_path / "models.json"
    assert main(["models", "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("bundled models")
    for name in bundled_names():
        assert any(line.split()[0] == name for line in lines[3:3 + len(bundled_names())]), name
    rows = {r["name"]: r for r in json.loads(out.read_text())["bundled"]}
    assert set(rows) == set(bundled_names())
    assert rows[DEFAULT_MODEL]["default"] and rows[DEFAULT_MODEL]["precision"] == "int8"
    assert all(r["miou"] > 60 for r in rows.values())  # every bundled file has a recorded accuracy
