"""edgeseg val on an exported model: --imgsz sets the size of a dynamic-size model."""

from __future__ import annotations

from pathlib import Path

from testkit.data_trees import camvid_tree

from edgeseg.cli import main


def test_val_takes_imgsz_for_a_dynamic_size_model(make_tiny_onnx, tmp_path: Path, capsys) -> None:
    model = make_tiny_onnx(hw=None).path  # any H x W, no preferred size in its metadata
    data = camvid_tree(tmp_path / "camvid")
    assert main(["val", str(model), "--data", str(data), "--quiet"]) == 2
    assert "pass imgsz" in capsys.readouterr().err
    # With --imgsz the model loads at that size; what stops it then is the class list (4 vs CamVid's 11).
    assert main(["val", str(model), "--data", str(data), "--quiet", "--imgsz", "48x64"]) == 2
    assert "predicts 4 classes" in capsys.readouterr().err


def test_val_imgsz_is_refused_for_a_checkpoint(capsys) -> None:
    assert main(["val", "best.pt", "--imgsz", "48x64"]) == 2
    assert "--imgsz is for exported models" in capsys.readouterr().err
