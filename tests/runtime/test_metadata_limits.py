"""Malformed or hostile metadata in a model file: one line naming the file, before any frame."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import ModelFormatError

onnx = pytest.importorskip("onnx")


def _with_props(src: Path, dest: Path, **changes: str) -> Path:
    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props.update({f"edgeseg.{k}": v for k, v in changes.items()})
    del model.metadata_props[:]
    for k, v in props.items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(dest))
    return dest


@pytest.mark.parametrize(("changes", "words"), [
    ({"mean": "[0.5, 0.5]"}, "mean [0.5, 0.5] must be three finite numbers"),
    ({"std": "[0.2, NaN, 0.2]"}, "must be three finite numbers"),
    ({"std": "[0.2, 0, 0.2]"}, "must be positive"),
    ({"extra": "[1, 2]"}, "'extra' must be a mapping"),
    ({"extra": "[" * 100_000 + "]" * 100_000}, "nested too deeply"),
    ({"output_stride": "1000000000000"}, "output stride must be an integer from 1 to"),
    ({"palette": "[[1, 2], [3, 4], [5, 6], [7, 8]]"}, "is not an RGB triple"),
    ({"model_name": json.dumps("x" * (2 << 20))}, "more than the 1,048,576"),
])
def test_bad_metadata_is_one_line_naming_the_file(tiny_onnx, tmp_path, capsys, changes, words) -> None:
    bad = _with_props(tiny_onnx, tmp_path / "bad.onnx", **changes)
    with pytest.raises(ModelFormatError, match="bad.onnx") as e:
        Segmenter(bad)
    assert words in str(e.value)
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and len(err.splitlines()) == 1


def test_info_escapes_control_characters_in_class_names(tiny_onnx, tmp_path, capsys) -> None:
    names = ["road", "\x1b[31mred\x1b[0m", "a\rb", "sky"]
    bad = _with_props(tiny_onnx, tmp_path / "ansi.onnx", classes=json.dumps(names))
    assert main(["info", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out
    assert "\\x1b[31mred\\x1b[0m" in out
