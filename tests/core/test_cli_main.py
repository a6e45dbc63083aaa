"""The CLI's shared behaviour: outputs checked before the work, SIGTERM unwinds like Ctrl-C."""

from __future__ import annotations

import os
import signal
import types

import pytest

import edgeseg.cli as cli
from edgeseg.runtime.errors import UsageError
from edgeseg.runtime.fileio import check_writable


def _fake_command(monkeypatch, run) -> None:
    """Make ``edgeseg info`` run ``run(args)`` (with its usual --json option)."""
    module = types.SimpleNamespace(add_arguments=lambda p: p.add_argument("--json"), run=run)
    monkeypatch.setattr(cli, "_load", lambda name: module)


def test_unwritable_json_is_refused_before_the_command_runs(monkeypatch, tmp_path, capsys) -> None:
    ran = []
    _fake_command(monkeypatch, lambda args: ran.append(args) or 0)
    (tmp_path / "f.txt").write_text("x")
    for target, words in ((tmp_path, "is a folder; give a file name"),
                          (tmp_path / "f.txt" / "r.json", "is a file, so nothing can be written under it")):
        assert cli.main(["info", "--json", str(target)]) == cli.EXIT_USAGE
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
    assert not ran  # refused before any work
    assert cli.main(["info", "--json", str(tmp_path / "new" / "sub" / "r.json")]) == 0  # made when written
    assert len(ran) == 1


def test_check_writable_accepts_folders_when_asked(tmp_path) -> None:
    check_writable(tmp_path, "--out", folder_ok=True)
    with pytest.raises(UsageError, match="--out .* is a folder"):
        check_writable(tmp_path, "--out")


def test_sigterm_unwinds_like_ctrl_c_and_cleans_up(monkeypatch, capsys) -> None:
    cleaned = []

    def run(args) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # Python runs the handler before the next bytecode
            for _ in range(1000):
                pass
            return 0
        finally:
            cleaned.append(True)  # e.g. temporary folders of an interrupted export

    _fake_command(monkeypatch, run)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["info"]) == 143
    assert cleaned == [True] and "edgeseg: terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


@pytest.mark.parametrize("argv, option", [
    (["demo", "--source", "synthetic://", "--json", "x.json", "--duration", "inf"], "--duration"),
    (["demo", "--source", "synthetic://", "--json", "x.json", "--timeout", "nan"], "--timeout"),
    (["predict", "--source", "x.mp4", "--alpha", "nan"], "--alpha"),
    (["export", "best.pt", "--max-miou-drop", "nan"], "--max-miou-drop"),
    (["train", "--data", "synthetic://", "--lr", "inf"], "--lr"),
    (["quickstart", "--minutes", "NaN"], "--minutes"),
])
def test_real_valued_options_refuse_nan_and_inf(argv: list[str], option: str, capsys) -> None:
    """float() accepts 'nan' and 'inf'; no option here means anything by them."""
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert f"argument {option}: " in err and "is not a finite number" in err and len(err.splitlines()) == 1


def test_positive_options_are_checked_before_the_work(tmp_path, capsys) -> None:
    assert cli.main(["quickstart", "--minutes", "0", "--out", str(tmp_path / "q")]) == cli.EXIT_USAGE
    assert "--minutes 0 must be a positive training time" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


def test_quickstart_checks_its_source_before_training(tmp_path, capsys) -> None:
    rc = cli.main(["quickstart", "--source", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "q")])
    assert rc != 0 and "missing.mp4 does not exist" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()  # nothing trained
