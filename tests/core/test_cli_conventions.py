"""Command-line conventions: help that lists choices and defaults."""

from __future__ import annotations

import pytest

from edgeseg.cli import main


def test_export_help_lists_choices_and_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in ("{onnx,engine}", "{fp32,fp16,int8}", "{minmax,entropy,percentile}",
                 "(default: onnx)", "(default: fp32)", "(default: minmax)"):
        assert text in out, text


def test_export_refuses_an_unknown_precision_in_one_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["export", "best.pt", "--precision", "int4"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "invalid choice: 'int4'" in err and len(err.splitlines()) == 1
