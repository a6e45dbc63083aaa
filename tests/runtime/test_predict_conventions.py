"""edgeseg predict's conventions: [MODEL] SOURCE positionals, one run folder per run, nothing
overwritten without --exist-ok, the bundled INT8 model by default, --legend and --ignore-class."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.video import count_frames, make_video

from edgeseg.cli import main
from edgeseg.runtime.zoo import DEFAULT_MODEL, list_models


def _still(path: Path, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((30, 40, 3), value, np.uint8))
    return path


@pytest.mark.parametrize("form", ["model source", "model --source"])
def test_model_then_source_positional_or_option(tiny_onnx: Path, tmp_path: Path, form: str) -> None:
    make_video(tmp_path / "in.mp4", 3)
    src = ["--source", str(tmp_path / "in.mp4")] if "--source" in form else [str(tmp_path / "in.mp4")]
    assert main(["predict", str(tiny_onnx), *src, "--save", str(tmp_path / "o.mp4"),
                 "--json", str(tmp_path / "r.json")]) == 0
    assert count_frames(tmp_path / "o.mp4")[0] == 3
    assert json.loads((tmp_path / "r.json").read_text())["model"] == str(tiny_onnx)


def test_a_lone_positional_is_the_source_with_the_default_int8_model(tmp_path: Path) -> None:
    assert DEFAULT_MODEL in list_models() and "int8" in DEFAULT_MODEL  # fastest bundled file that keeps accuracy
    make_video(tmp_path / "in.mp4", 2)
    assert main(["predict", str(tmp_path / "in.mp4"), "--save", str(tmp_path / "o.mp4"),
                 "--json", str(tmp_path / "r.json"), "--threads", "1", "--workers", "1"]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"].endswith(f"{DEFAULT_MODEL}.onnx") and report["precision"] == "int8"


def test_two_sources_or_none_are_refused(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    make_video(tmp_path / "in.mp4", 2)
    assert main(["predict", str(tiny_onnx), str(tmp_path / "in.mp4"), "--source", str(tmp_path / "in.mp4")]) == 2
    assert "two sources" in capsys.readouterr().err
    assert main(["predict"]) == 2
    assert "no source" in capsys.readouterr().err
    for model in (str(tiny_onnx), "camvid-unet-lite"):  # a lone model is not taken for a source
        assert main(["predict", model]) == 2
        assert f"no source for the model {model}" in capsys.readouterr().err


def test_each_run_gets_a_new_folder_unless_exist_ok(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    make_video(tmp_path / "in.mp4", 2)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["predict", str(tiny_onnx), "in.mp4"]) == 0
    assert count_frames(tmp_path / "runs" / "predict" / "in.mp4")[0] == 2
    assert count_frames(tmp_path / "runs" / "predict2" / "in.mp4")[0] == 2
    assert main(["predict", str(tiny_onnx), "in.mp4", "--exist-ok"]) == 0  # reuses runs/predict
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["predict", "predict2"]


@pytest.mark.parametrize("save", ["o.mp4", "out/"])
def test_an_existing_output_is_never_overwritten_without_exist_ok(tiny_onnx: Path, tmp_path: Path, capsys,
                                                                  save: str) -> None:
    _still(tmp_path / "in" / "a.png")
    target = tmp_path / ("o.mp4" if save == "o.mp4" else "out/a.png")
    source = str(tmp_path / "in") if save == "out/" else str(_make_clip(tmp_path))
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"precious")
    assert main(["predict", str(tiny_onnx), source, "--save", str(tmp_path / save)]) == 2
    assert "already exists; pass --exist-ok" in capsys.readouterr().err
    assert target.read_bytes() == b"precious"
    assert main(["predict", str(tiny_onnx), source, "--save", str(tmp_path / save), "--exist-ok"]) == 0
    assert target.read_bytes() != b"precious"


def _make_clip(tmp_path: Path) -> Path:
    make_video(tmp_path / "clip.mp4", 2)
    return tmp_path / "clip.mp4"


def test_ignoring_every_class_leaves_the_frame_as_it_was(tiny_onnx: Path, tmp_path: Path) -> None:
    src = _still(tmp_path / "in" / "a.png", 77)
    assert main(["predict", str(tiny_onnx), str(src), "--save", str(tmp_path / "plain.png"),
                 "--ignore-class", "0", "1", "2", "3"]) == 0
    assert np.array_equal(cv2.imread(str(tmp_path / "plain.png")), cv2.imread(str(src)))  # nothing painted


def test_legend_is_drawn_top_right(tiny_onnx: Path, tmp_path: Path) -> None:
    src = tmp_path / "in" / "wide.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), np.full((200, 400, 3), 77, np.uint8))
    for name, extra in (("plain.png", []), ("legend.png", ["--legend"])):
        assert main(["predict", str(tiny_onnx), str(src), "--save", str(tmp_path / name), *extra]) == 0
    plain, legend = (cv2.imread(str(tmp_path / n)) for n in ("plain.png", "legend.png"))
    assert np.array_equal(plain[:, :200], legend[:, :200])  # left half untouched
    assert not np.array_equal(plain[:, 200:], legend[:, 200:])
