"""Every output option of every command is checked against the command's inputs before any work."""

from __future__ import annotations

import os
import time
import types

import pytest

import edgeseg.cli as cli
from edgeseg.runtime.fileio import STALE_AFTER_S, atomic_open, remove_stale_temporaries


@pytest.fixture
def no_run(monkeypatch):
    """Commands parse their real options, but their work is replaced by a recorder."""
    ran = []
    real_load = cli._load

    def load(name):
        module = real_load(name)
        return types.SimpleNamespace(add_arguments=module.add_arguments, run=lambda args: ran.append(args) or 0)

    monkeypatch.setattr(cli, "_load", load)
    return ran


def _one_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("argv", [
    ["info", "{m}", "--json", "{m}"],
    ["predict", "{m}", "--source", "{src}", "--json", "{src}"],
    ["predict", "{m}", "--source", "{src}", "--json", "{m}"],
    ["bench", "{m}", "--json", "{m}"],
    ["demo", "{m}", "--source", "{src}", "--save", "{src}"],
    ["val", "{m}", "--data", "{data}", "--json", "{m}"],
    ["export", "{ckpt}", "--json", "{ckpt}"],
    ["train", "--resume", "{ckpt}", "--json", "{ckpt}"],
    ["train", "--weights", "{ckpt}", "--out", "{ckdir}"],
])
def test_an_output_never_replaces_an_input(tmp_path, capsys, no_run, argv) -> None:
    (tmp_path / "m.onnx").write_bytes(b"model")
    (tmp_path / "clip.mp4").write_bytes(b"video")
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "best.pt").write_bytes(b"ckpt")
    names = {"m": tmp_path / "m.onnx", "src": tmp_path / "clip.mp4", "data": tmp_path / "data",
             "ckpt": tmp_path / "ck" / "best.pt", "ckdir": tmp_path / "ck"}
    args = [a.format(**{k: str(v) for k, v in names.items()}) for a in argv]
    assert cli.main(args) == cli.EXIT_USAGE
    _one_error(capsys, "would overwrite")
    assert not no_run
    assert (tmp_path / "m.onnx").read_bytes() == b"model"


def test_links_and_dataset_files_count_as_the_input(tmp_path, capsys, no_run) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    os.symlink(model, tmp_path / "sym.json")
    os.link(model, tmp_path / "hard.json")
    for alias in ("sym.json", "hard.json", "./sub/../m.onnx"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        assert cli.main(["info", str(model), "--json", str(tmp_path / alias)]) == cli.EXIT_USAGE
        _one_error(capsys, "would overwrite the input", "(the model)")
    label = tmp_path / "data" / "trainannot" / "0001.png"
    label.parent.mkdir(parents=True)
    label.write_bytes(b"png")
    assert cli.main(["val", str(model), "--data", str(tmp_path / "data"), "--json", str(label)]) == cli.EXIT_USAGE
    _one_error(capsys, "would overwrite the input", "(--data)")
    assert not no_run


def test_two_outputs_on_one_file_are_refused(tmp_path, capsys, no_run) -> None:
    out = tmp_path / "x.mp4"
    assert cli.main(["demo", "--source", "synthetic://", "--save", str(out), "--json", str(out)]) == cli.EXIT_USAGE
    _one_error(capsys, "the same file")


def test_outputs_that_are_fine_still_run(tmp_path, no_run) -> None:
    (tmp_path / "m.onnx").write_bytes(b"model")
    assert cli.main(["info", str(tmp_path / "m.onnx"), "--json", str(tmp_path / "r.json")]) == 0
    assert cli.main(["info", str(tmp_path / "m.onnx"), "--json", "-"]) == 0
    assert len(no_run) == 2


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc on this system")
def test_outputs_under_proc_or_on_devices_fail_the_precheck(capsys, no_run) -> None:
    assert cli.main(["info", "m.onnx", "--json", "/proc/edgeseg-report.json"]) == cli.EXIT_USAGE
    _one_error(capsys, "not writable")
    assert cli.main(["info", "m.onnx", "--json", "/dev/null"]) == cli.EXIT_USAGE
    _one_error(capsys, "not a regular file")
    assert cli.main(["export", "x.pt", "--out", "/proc/self/m"]) == cli.EXIT_USAGE
    _one_error(capsys, "--out")
    assert not no_run


def test_stale_temporaries_of_killed_writers_are_removed(tmp_path) -> None:
    final = tmp_path / "m.onnx"
    dead = 2**22 + 12345  # above the default pid_max of most systems: no such process
    stale = tmp_path / f".m.tmp-{dead}-abcd1234.onnx"
    live = tmp_path / f".m.tmp-{os.getpid()}-abcd1234.onnx"
    young = tmp_path / f".m.tmp-{dead}-young123.onnx"
    foreign = tmp_path / ".m.user-notes.onnx"
    legacy, legacy_young = tmp_path / ".m.k3j_9x2a.onnx", tmp_path / ".m.q8w2e7r1.onnx"  # the pid-less naming
    for p in (stale, live, young, foreign, legacy, legacy_young):
        p.write_bytes(b"x")
    old = time.time() - STALE_AFTER_S - 60
    for p in (stale, live, foreign, legacy_young):
        os.utime(p, (old, old))
    os.utime(legacy, (old - 86_400, old - 86_400))
    with atomic_open(final, "wb") as f:  # the next write beside it cleans up
        f.write(b"new")
    assert not stale.exists() and not legacy.exists()
    assert live.exists() and young.exists() and foreign.exists() and legacy_young.exists()
    assert remove_stale_temporaries(final) == []
    assert final.read_bytes() == b"new"
