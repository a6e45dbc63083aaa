"""Command-line conventions: help that lists choices and defaults."""

from __future__ import annotations

import pytest

from edgeseg.cli import main


def test_export_help_lists_choices_and_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in ("{onnx,engine,triton}", "{fp32,fp16,int8}", "{minmax,entropy,percentile}",
                 "(default: onnx)", "(default: fp32)", "(default: minmax)"):
        assert text in out, text


def test_export_refuses_an_unknown_precision_in_one_line(capsys, tmp_path) -> None:
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"not read: the name is checked first")
    assert main(["export", str(ckpt), "--precision", "int4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "int4" in err and len(err.splitlines()) == 1


def test_quickstart_log_lines_name_final_files_not_hidden_temporaries() -> None:
    import logging

    from edgeseg.cli.quickstart_cmd import FinalNames

    record = logging.LogRecord("edgeseg.export", logging.INFO, "", 0, "wrote %s (%.1f MB)",
                               ("runs/quickstart/.unet_lite.eg0a84t6.onnx", 7.3), None)
    assert FinalNames().filter(record)
    assert record.getMessage() == "wrote runs/quickstart/unet_lite.onnx (7.3 MB)"
    record = logging.LogRecord("edgeseg.export", logging.INFO, "", 0, "checked %s",
                               ("runs/quickstart/.unet_lite.int8.tmp-4242-k3j4h5g6.onnx",), None)
    assert FinalNames().filter(record)
    assert record.getMessage() == "checked runs/quickstart/unet_lite.int8.onnx"
