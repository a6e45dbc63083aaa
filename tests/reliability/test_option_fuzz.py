"""Every numeric option of every command, with odd values: one ``error:`` line or success, never a
traceback or the catch-all "unexpected" line. Options are discovered from the parsers."""

from __future__ import annotations

import argparse
import re
import time

import pytest

import edgeseg.cli as cli
from edgeseg.cli import finite_float

NUMBERS = ["0", "-1", "-3", "1", "0.5", "7", "1e3", "1e12", "99999999999999999999", "abc", "nan", "inf", "", "0x10"]
SIZES = ["0", "-1", "1x1", "8x8", "100000x100000", "16384x16384", "abc", "360x", "nan", "1e3x1e3"]
# Arguments that make each command stop at its first real step (a missing file), so that values
# that pass every check end fast with their own one-line error instead of doing the work.
DEAD_ENDS = {
    "quickstart": ["--data", "{tmp}/no-such-dataset", "--out", "{tmp}/qs"],
    "models": [],
    "train": ["--data", "{tmp}/no-such-dataset", "--out", "{tmp}/run"],
    "val": ["{tmp}/missing.onnx", "--data", "{tmp}/no-such-dataset"],
    "export": ["{tmp}/missing.pt"],
    "predict": ["{tmp}/missing.onnx", "--source", "{tmp}/missing.mp4"],
    "demo": ["{tmp}/missing.onnx", "--source", "{tmp}/missing.mp4", "--json", "{tmp}/d.json"],
    "bench": ["{tmp}/missing.onnx"],
    "info": ["{tmp}/missing.onnx"],
}
SIZE_HINT = re.compile(r"HxW|\d+x\d+")


def _parser(command: str) -> argparse.ArgumentParser:
    parser = cli._Parser(prog=f"edgeseg {command}")
    cli._load(command).add_arguments(parser)
    return parser


def numeric_options() -> list[tuple[str, str, str]]:
    """(command, flag, kind) for every option that takes a number or an HxW size."""
    found = []
    for command in cli.COMMANDS:
        for action in _parser(command)._actions:
            flags = [s for s in action.option_strings if s.startswith("--")]
            if not flags or action.nargs == 0:
                continue
            text = f"{action.help or ''} {action.metavar or ''} {action.default or ''}"
            if action.type in (int, float, finite_float) or getattr(action.type, "__name__", "").endswith("_value"):
                found.append((command, flags[0], "number"))
            elif action.type is None and SIZE_HINT.search(text) and "size" in text.lower() + action.dest:
                found.append((command, flags[0], "size"))
    return found


OPTIONS = numeric_options()


def test_discovery_finds_the_options_that_matter() -> None:
    flags = {(c, f) for c, f, _ in OPTIONS}
    assert {("predict", "--threads"), ("train", "--imgsz"), ("bench", "--frame-size"), ("train", "--seed"),
            ("demo", "--timeout"), ("export", "--opset")} <= flags
    assert len(OPTIONS) > 40


@pytest.mark.parametrize(("command", "flag", "kind"), OPTIONS, ids=[f"{c}{f}" for c, f, _ in OPTIONS])
def test_odd_values_give_one_error_line(command, flag, kind, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # defaults such as runs/... land here
    base = [a.format(tmp=tmp_path) for a in DEAD_ENDS[command]]
    for value in SIZES if kind == "size" else NUMBERS:
        t0 = time.perf_counter()
        try:
            rc = cli.main([command, *base, flag, value])
        except SystemExit as e:  # argparse refusals
            rc = e.code
        took = time.perf_counter() - t0
        out = capsys.readouterr()
        err = out.err.strip()
        where = f"{command} {flag} {value!r}: rc {rc}, {took:.1f} s, stderr: {err[-400:]}"
        assert "Traceback" not in err and "unexpected" not in err, where
        assert rc in (0, 1, 2), where
        if rc:
            assert len([line for line in err.splitlines() if "error:" in line]) == 1, where
        assert took < 20, where


@pytest.mark.parametrize(("argv", "words"), [
    (["predict", "m.onnx", "--source", "v.mp4", "--threads", "100000"], "--threads 100000 must be at most"),
    (["train", "--imgsz", "4000x4000"], "above the limit of 4,194,304"),
    (["train", "--imgsz", "1024x2048", "--batch", "64"], "lower --batch or --imgsz"),
    (["bench", "m.onnx", "--frame-size", "16384x16384"], "--frame-size 16384x16384 is 268,435,456 pixels"),
    (["train", "--seed", "-1"], "--seed -1 must be at least 0"),
    (["train", "--max-steps", "-3"], "--max-steps -3 must be at least 0"),
    (["demo", "--source", "x", "--json", "d.json", "--reconnect", "-2"], "--reconnect -2 must be at least 0"),
    (["export", "x.pt", "--workspace", "0"], "--workspace 0.0 must be positive"),
    (["export", "x.pt", "--calib-images", "100000"], "--calib-images 100000 must be at most 2000"),
    (["train", "--scale", "0.5-1000"], "a factor above 8 is beyond the limit"),
])
def test_resource_caps_name_the_limit_before_any_work(argv, words, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    ran = []
    real_load = cli._load
    monkeypatch.setattr(cli, "_load", lambda name: type("M", (), {
        "add_arguments": staticmethod(real_load(name).add_arguments), "run": staticmethod(ran.append)}))
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not ran


def test_bad_model_arguments_are_one_line(tmp_path, capsys) -> None:
    from edgeseg.models import create_model
    from edgeseg.runtime.errors import UsageError

    with pytest.raises(UsageError, match="must be positive"):
        create_model("unet_lite", 3, width=-1)
    with pytest.raises(UsageError, match="does not fit in memory"):
        create_model("unet_lite", 3, width=1e9)


@pytest.mark.parametrize(("uri", "words"), [
    ("synthetic://?n=1000000000", "must be from 1 to 1,000,000"),
    ("synthetic://?size=16384x16384", "over the limit of 4,194,304 pixels"),
])
def test_synthetic_dataset_uris_are_bounded(uri, words) -> None:
    from edgeseg.data.synthetic import parse_synthetic_uri
    from edgeseg.runtime.errors import UsageError

    with pytest.raises(UsageError, match=words):
        parse_synthetic_uri(uri)


def test_synthetic_video_size_is_bounded() -> None:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.sources import open_source

    with pytest.raises(UsageError, match="over the limit of 16,777,216 pixels"):
        open_source("synthetic://?size=16384x16384")


CHECKED_BY_COMMAND = {("predict", "alpha"), ("demo", "alpha")}  # the commands range-check it (0-1) up front


def test_every_numeric_option_has_a_declared_limit() -> None:
    """A new numeric option without a floor and ceiling fails here: huge values hang or eat memory."""
    from edgeseg.cli.limits import BOUNDS, SIZE_OPTIONS

    missing = []
    for command, flag, kind in OPTIONS:
        dest = flag[2:].replace("-", "_")
        table = SIZE_OPTIONS if kind == "size" else BOUNDS
        if (command, dest) not in table and dest not in table and (command, dest) not in CHECKED_BY_COMMAND \
                and not (kind == "size" and dest == "data"):  # train --data's help shows a size= example
            missing.append(f"{command} {flag}")
    assert not missing, f"no limit declared in edgeseg/cli/limits.py for: {', '.join(missing)}"


@pytest.mark.parametrize(("command", "flag", "kind"), [o for o in OPTIONS if o[2] == "number"],
                         ids=[f"{c}{f}" for c, f, k in OPTIONS if k == "number"])
def test_huge_numbers_are_refused_up_front_unless_they_mean_all(command, flag, kind, tmp_path, monkeypatch,
                                                                capsys) -> None:
    from edgeseg.cli.limits import BOUNDS

    dest = flag[2:].replace("-", "_")
    bound = BOUNDS.get((command, dest), BOUNDS.get(dest))
    if bound is not None and bound.hi is None:
        pytest.skip(f"{flag}: any count is fine (it stops at the end of the input)")
    monkeypatch.chdir(tmp_path)
    if (command, dest) in CHECKED_BY_COMMAND:
        base = ["--source", "synthetic://", "--json", "d.json"] if command == "demo" else ["--source", "x.mp4"]
        assert cli.main([command, *base, flag, "99999999999999999999"]) == 2
        return
    base = [a.format(tmp=tmp_path) for a in DEAD_ENDS[command]]
    try:
        rc = cli.main([command, *base, flag, "99999999999999999999"])
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and flag in err, err
