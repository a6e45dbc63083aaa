"""Archive planning, one-file processing, manifest and resume (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit.video import count_frames, make_video

from edgeseg.cli import main
from edgeseg.runtime import Segmenter
from edgeseg.runtime.archive import (
    MAX_MANIFEST_LINE,
    Job,
    Manifest,
    finish_record,
    glob_root,
    model_fingerprint,
    plan,
    process_file,
    split_done,
    staging_path,
)
from edgeseg.runtime.errors import UsageError


def _tree(root: Path) -> None:
    for rel in ("a/x.mp4", "b/x.mp4", "b/deep/y.avi", "notes.txt"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_outputs_keep_predict_names_below_the_glob_folder(tmp_path: Path) -> None:
    _tree(tmp_path / "arc")
    jobs = plan(str(tmp_path / "arc" / "**" / "*"), tmp_path / "out")
    assert [(j.input.relative_to(tmp_path).as_posix(), j.output.relative_to(tmp_path).as_posix()) for j in jobs] == [
        ("arc/a/x.mp4", "out/a/x.mp4"), ("arc/b/deep/y.avi", "out/b/deep/y.mp4"), ("arc/b/x.mp4", "out/b/x.mp4")]
    assert glob_root("arc/2024-*/**/*.mp4") == Path("arc")
    one = plan(str(tmp_path / "arc" / "a" / "x.mp4"), tmp_path / "o2")  # one file: out/<name>.mp4, as predict
    assert one == [Job(tmp_path / "arc" / "a" / "x.mp4", tmp_path / "o2" / "x.mp4")]


@pytest.mark.parametrize("case, message", [
    ("nothing", "no video files match"),
    ("inside", "is inside the input folder"),
    ("same", "is inside the input folder"),
    ("file", "is a file"),
    ("collide", "would both be written as"),
])
def test_bad_plans_are_one_clear_line(tmp_path: Path, case: str, message: str) -> None:
    _tree(tmp_path / "arc")
    pattern, out = str(tmp_path / "arc" / "**" / "*.mp4"), tmp_path / "out"
    if case == "nothing":
        pattern = str(tmp_path / "arc" / "**" / "*.mkv")
    elif case == "inside":
        out = tmp_path / "arc" / "results"
    elif case == "same":
        out = tmp_path / "arc" / "a"
    elif case == "file":
        out.write_text("x")
    elif case == "collide":
        (tmp_path / "arc" / "a" / "x.mkv").write_bytes(b"x")
        pattern = str(tmp_path / "arc" / "a" / "*")
    with pytest.raises(UsageError, match=message):
        plan(pattern, out)


def test_the_input_count_has_a_limit(tmp_path: Path) -> None:
    _tree(tmp_path / "arc")
    with pytest.raises(UsageError, match="more than 2 video files"):
        plan(str(tmp_path / "arc" / "**" / "*"), tmp_path / "out", limit=2)


def test_process_file_writes_a_checked_video_and_reports_corrupt_input(tiny_onnx: Path, tmp_path: Path) -> None:
    make_video(tmp_path / "c.mp4", 9, (64, 96))
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 20)
    out = tmp_path / "out"
    stale = staging_path(out / "c.mp4")
    out.mkdir()
    stale.write_bytes(b"left by a killed run")
    with Segmenter(tiny_onnx, threads=1) as seg:
        good = process_file(seg, Job(tmp_path / "c.mp4", out / "c.mp4"))
        bad = process_file(seg, Job(tmp_path / "bad.mp4", out / "bad.mp4"))
    assert good["status"] == "ok" and good["frames"] == 9 and count_frames(out / "c.mp4")[0] == 9
    assert bad["status"] == "failed" and "cannot decode" in bad["error"] and not (out / "bad.mp4").exists()
    assert sorted(p.name for p in out.iterdir()) == ["c.mp4"]  # no staging file, the stale one cleaned


def test_a_short_written_video_never_replaces_the_output(tiny_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    import edgeseg.runtime.archive as archive

    make_video(tmp_path / "c.mp4", 5, (64, 96))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c.mp4").write_bytes(b"an earlier output")
    monkeypatch.setattr(archive, "video_frame_count", lambda path: 2)  # as a full disk leaves it
    with Segmenter(tiny_onnx, threads=1) as seg:
        rec = process_file(seg, Job(tmp_path / "c.mp4", tmp_path / "out" / "c.mp4"))
    assert rec["status"] == "failed" and "holds 2 of 5 frames" in rec["error"]
    assert (tmp_path / "out" / "c.mp4").read_bytes() == b"an earlier output"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c.mp4"]


def test_resume_trusts_only_matching_complete_outputs(tiny_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):
        make_video(tmp_path / "in" / f"{name}.mp4", 4, (64, 96))
    jobs = plan(str(tmp_path / "in" / "*.mp4"), tmp_path / "out")
    manifest = Manifest(tmp_path / "out" / "manifest.jsonl")
    model = model_fingerprint(tiny_onnx)
    with Segmenter(tiny_onnx, threads=1) as seg:
        for job in jobs:
            manifest.append(finish_record(process_file(seg, job), job, model))
    with open(manifest.path, "ab") as f:  # a torn line from a killed run, and an oversized one
        f.write(b'{"input": "x", "sta')
        f.write(b"\n" + b"{" + b" " * MAX_MANIFEST_LINE + b"}\n")
    assert len(manifest.records()) == 3
    todo, done = split_done(jobs, manifest, model)
    assert not todo and len(done) == 3
    make_video(jobs[1].input, 5, (64, 96))  # the input changed since
    jobs[2].output.write_bytes(b"truncated")  # the output was damaged
    todo, done = split_done(jobs, manifest, model)
    assert todo == jobs[1:] and done == jobs[:1]
    assert split_done(jobs, manifest, "other.onnx:0")[0] == jobs  # another model redoes everything


def test_cli_without_ray_installed_names_the_extra(tiny_onnx: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    make_video(tmp_path / "c.mp4", 3, (64, 96))
    rc = main(["predict", str(tiny_onnx), "--source", str(tmp_path / "c.mp4"), "--save", str(tmp_path / "o"), "--ray"])
    assert rc == 1 and "pip install 'edgeseg[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--ray", "ray://"], "is not a Ray address"),
    (["--ray", "127.0.0.1"], "needs a port"),
    (["--ray", "--save", "x.mp4"], "--save takes a folder"),
    (["--ray", "m.onnx"], "is a file, not a Ray address"),
    (["--ray", "--file-timeout", "0"], "must be positive"),
    (["--file-timeout", "5"], "applies to --ray runs"),
])
def test_cli_bad_ray_options(tiny_onnx: Path, tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgeseg[ray]')")
    make_video(tmp_path / "c.mp4", 3, (64, 96))
    rc = main(["predict", str(tiny_onnx), "--source", str(tmp_path / "c.mp4"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_address_with_no_cluster_is_one_line(tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgeseg[ray]')")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_video(tmp_path / "c.mp4", 3, (64, 96))
    rc = main(["predict", str(tiny_onnx), "--source", str(tmp_path / "c.mp4"), "--save", str(tmp_path / "o"),
               "--ray", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert rc == 1 and f"no Ray cluster at 127.0.0.1:{port}" in err
    assert not list((tmp_path / "o").glob("*.mp4")) and len(err.strip().splitlines()) == 2  # the plan line + error


def test_one_run_at_a_time_per_output_folder(tmp_path: Path) -> None:
    manifest = Manifest(tmp_path / "out" / "manifest.jsonl")
    with manifest.exclusive():
        with pytest.raises(UsageError, match="in use by another run"), Manifest(manifest.path).exclusive():
            pass
    with manifest.exclusive():  # released when the first run ended
        pass
