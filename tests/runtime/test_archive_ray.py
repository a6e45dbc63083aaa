"""predict --ray on a real cluster of two Ray nodes (1 CPU each) on loopback, started and stopped here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from testkit.ray_nodes import AUTH_ENV, RayNodes
from testkit.video import count_frames, make_video

from edgeseg.cli import main

os.environ.update(AUTH_ENV)  # before Ray is imported: a driver reads its authentication mode once
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'edgeseg[ray]')")

from edgeseg.runtime.archive import Manifest, model_fingerprint, plan  # noqa: E402
from edgeseg.runtime.cluster import connect, run_jobs  # noqa: E402

pytestmark = pytest.mark.ray
HW = (64, 96)
CLIP_FRAMES = 10


@pytest.fixture(scope="module")
def cluster():
    nodes = RayNodes(nodes=2, cpus=1)
    try:
        nodes.start()
    except Exception as e:  # pragma: no cover - a machine where Ray cannot start its daemons
        pytest.skip(f"cannot start a two-node Ray cluster here: {e}")
    try:
        connect(nodes.address)
        yield nodes
    finally:
        ray.shutdown()
        nodes.stop()


def _when_writing(output: Path, action, *args) -> None:
    """Run ``action(*args)`` in a thread once the hidden file of ``output`` appears (10 s at most)."""
    def wait() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not list(output.parent.glob(f"*.{output.stem}.*")):
            time.sleep(0.01)
        action(*args)

    threading.Thread(target=wait, daemon=True).start()


def _archive(root: Path, n: int = 7, frames: int = CLIP_FRAMES) -> list[Path]:
    clips = []
    for i in range(n):
        clip = root / ("day1" if i % 2 else "day2") / f"clip{i}.mp4"
        clip.parent.mkdir(parents=True, exist_ok=True)
        make_video(clip, frames + i, HW)
        clips.append(clip)
    return clips


def test_every_file_on_both_nodes_then_resume(cluster, tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    clips = _archive(tmp_path / "archive")
    (tmp_path / "archive" / "day1" / "broken.mp4").write_bytes(b"\0not a video" * 50)
    out = tmp_path / "out"
    argv = ["predict", str(tiny_onnx), "--source", str(tmp_path / "archive" / "**" / "*.mp4"), "--save", str(out),
            "--ray", cluster.address, "--json", str(tmp_path / "r.json")]
    assert main(argv) == 1  # one corrupt file fails the run, not the others
    err = capsys.readouterr().err
    assert "1 of 8 files failed" in err and "broken.mp4" in err
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 8
    by_name = {Path(r["input"]).name: r for r in records}
    assert by_name["broken.mp4"]["status"] == "failed" and "cannot decode" in by_name["broken.mp4"]["error"]
    for i, clip in enumerate(clips):
        rec = by_name[clip.name]
        out_file = out / clip.parent.name / clip.name  # predict's name, below the glob's folder
        assert rec["status"] == "ok" and rec["output"] == str(out_file) and rec["error"] is None
        assert rec["frames"] == CLIP_FRAMES + i and rec["fps"] > 0
        assert count_frames(out_file)[0] == CLIP_FRAMES + i
    node_ids = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert {r["node"] for r in records} == node_ids and len(node_ids) == 2  # work landed on both nodes
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["nodes"] == 2 and report["ok"] == 7 and report["failed"] == 1
    assert [p.name for p in out.rglob(".*") if p.is_file()] == [".manifest.jsonl.lock"]  # no staging leftovers

    # A rerun skips the complete, valid outputs and tries only the broken file again.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")}
    assert main(argv) == 1
    assert "8 input files: 7 already done, 1 to run" in capsys.readouterr().err
    lines = (out / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 9 and json.loads(lines[-1])["input"].endswith("broken.mp4")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.mp4")} == before


def test_a_killed_worker_file_is_retried_and_completes(cluster, tiny_onnx: Path, tmp_path: Path) -> None:
    clips = _archive(tmp_path / "archive", n=6)
    make_video(clips[0], 150, HW)  # long enough to be killed while writing it
    jobs = plan(str(tmp_path / "archive" / "**" / "*.mp4"), tmp_path / "out")
    victim = next(j for j in jobs if j.input == clips[0])
    killed: list[int] = []

    def on_event(kind: str, info: dict) -> None:
        if kind == "start" and info["input"] == str(victim.input) and not killed:
            killed.append(info["pid"])  # the worker dies while it writes the file's output
            _when_writing(victim.output, os.kill, info["pid"], signal.SIGKILL)

    records: list[dict] = []
    run = run_jobs(jobs, str(tiny_onnx), address=cluster.address, on_record=records.append, on_event=on_event)
    assert killed
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    retried = next(r for r in records if r["input"] == str(victim.input))
    assert retried["attempts"] == 2 and retried["pid"] != killed[0] and retried["frames"] == 150
    for job in jobs:
        assert count_frames(job.output)[0] == next(r["frames"] for r in records if r["input"] == str(job.input))
    assert not [p for p in (tmp_path / "out").rglob(".*") if p.is_file()]  # the killed try left nothing behind
    assert run.actors == 2


def test_a_file_past_its_deadline_fails_and_the_rest_go_on(cluster, tiny_onnx: Path, tmp_path: Path) -> None:
    clips = _archive(tmp_path / "archive", n=4)
    make_video(clips[0], 12000, HW)  # over ten seconds of work: a stand-in for a decoder that hangs
    jobs = plan(str(tmp_path / "archive" / "**" / "*.mp4"), tmp_path / "out")
    records: list[dict] = []
    t = time.monotonic()
    # 3 s: the other files take ~0.1 s each on an idle machine, and still well under 3 s on a loaded one
    run_jobs(jobs, str(tiny_onnx), address=cluster.address, on_record=records.append, file_timeout_s=3.0)
    by_input = {r["input"]: r for r in records}
    slow = by_input[str(clips[0])]
    assert slow["status"] == "failed" and "took longer than 3 s" in slow["error"]
    assert all(by_input[str(c)]["status"] == "ok" for c in clips[1:])
    assert not (tmp_path / "out" / clips[0].parent.name / clips[0].name).exists()
    assert time.monotonic() - t < 60


def test_resume_redoes_a_file_whose_output_was_damaged(cluster, tiny_onnx: Path, tmp_path: Path, capsys) -> None:
    clips = _archive(tmp_path / "archive", n=2)
    out = tmp_path / "out"
    argv = ["predict", str(tiny_onnx), "--source", str(tmp_path / "archive"), "--save", str(out),
            "--ray", cluster.address]
    assert main(argv) == 0
    damaged = out / clips[0].parent.name / clips[0].name
    damaged.write_bytes(damaged.read_bytes()[:1000])  # truncated after the run, e.g. a bad copy
    assert main(argv) == 0
    assert "2 input files: 1 already done, 1 to run" in capsys.readouterr().err
    assert count_frames(damaged)[0] == CLIP_FRAMES
    manifest = Manifest(out / "manifest.jsonl").records()
    assert len(manifest) == 3 and manifest[-1]["model"] == model_fingerprint(tiny_onnx)
    assert main(argv) == 0 and "all done before" in capsys.readouterr().out  # nothing left: no cluster needed


def test_a_node_lost_mid_run_leaves_the_rest_to_the_other(cluster, tiny_onnx: Path, tmp_path: Path) -> None:
    # Runs last: the cluster has one node after it.
    clips = _archive(tmp_path / "archive", n=6, frames=60)
    jobs = plan(str(tmp_path / "archive" / "**" / "*.mp4"), tmp_path / "out")
    events: list[tuple[str, dict]] = []

    def on_event(kind: str, info: dict) -> None:
        events.append((kind, info))
        # the second node (not the head, which holds the cluster's state) drops out under a file
        if kind == "start" and cluster.node_of(info["pid"]) == 1 and not any(k == "lost" for k, _ in events):
            events.append(("lost", info))
            _when_writing(Path(next(j.output for j in jobs if str(j.input) == info["input"])), cluster.kill_node, 1)

    records: list[dict] = []
    run_jobs(jobs, str(tiny_onnx), address=cluster.address, on_record=records.append, on_event=on_event,
             restart_wait_s=20)
    lost = next(info for k, info in events if k == "lost")
    assert len(records) == 6 and all(r["status"] == "ok" for r in records)
    assert next(r for r in records if r["input"] == lost["input"])["attempts"] == 2  # finished on the other node
    assert any(k == "retry" and info["input"] == lost["input"] for k, info in events)
    for i, clip in enumerate(clips):
        assert count_frames(tmp_path / "out" / clip.parent.name / clip.name)[0] == 60 + i


def test_no_address_runs_a_local_cluster_that_outlives_its_start(tiny_onnx: Path, tmp_path: Path) -> None:
    # Ray kills the processes a thread started when that thread ends: the local cluster must survive.
    clips = _archive(tmp_path / "archive", n=2)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "edgeseg", "predict", str(tiny_onnx), "--source",
                           str(tmp_path / "archive"), "--save", str(out), "--ray"],
                          capture_output=True, text=True, timeout=150, env={**os.environ, **AUTH_ENV})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 files: 2 done" in done.stdout and "over 1 node" in done.stdout
    for i, clip in enumerate(clips):
        assert count_frames(out / clip.parent.name / clip.name)[0] == CLIP_FRAMES + i


def test_an_address_that_never_answers_gives_up_at_the_deadline(tmp_path: Path) -> None:
    code = (
        "import socket, threading\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)\n"
        "threading.Thread(target=lambda: [s.accept() for _ in range(64)], daemon=True).start()\n"
        "from edgeseg.runtime.cluster import connect\n"
        "try:\n"
        "    connect(f'127.0.0.1:{s.getsockname()[1]}', timeout=3)\n"
        "except Exception as e:\n"
        "    print('ERROR', e)\n")
    t = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **AUTH_ENV})
    assert "ERROR Ray did not connect to 127.0.0.1:" in done.stdout and "within 3 s" in done.stdout
    assert time.monotonic() - t < 40
