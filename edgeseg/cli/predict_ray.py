"""edgeseg predict --ray: segment an archive of videos on a Ray cluster, one file per task.

    edgeseg predict model.onnx --source 'archive/**/*.mp4' --save out/ --ray
    edgeseg predict model.onnx --source 'archive/**/*.mp4' --save out/ --ray ray://head:10001

Outputs keep predict's names (``out/<sub-folders>/<name>.mp4``); ``out/manifest.jsonl`` gets one
line per finished file; a rerun skips files whose outputs are complete and valid.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import finite_float

RAY_HELP = ("run every input file as a task on a Ray cluster: no ADDRESS starts a local one; 'auto' joins the one "
            "'ray start' runs on this machine; ray://HOST:10001 or HOST:PORT joins a remote one (pip install "
            "'edgeseg[ray]'); --threads sets the CPUs (and inference threads) of each worker")


MODEL_SUFFIXES = (".onnx", ".engine", ".plan", ".pt")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS", help=RAY_HELP)
    parser.add_argument("--file-timeout", type=finite_float, default=None, metavar="SECONDS",
                        help="with --ray: a file still running after this long is reported as failed and its "
                             "worker restarted (a hung decoder, a stalled network mount); default: no limit")


def wanted(args: argparse.Namespace) -> bool:
    """Whether this is a --ray run (the --ray options without --ray are refused, not ignored)."""
    if getattr(args, "ray", None) is not None:
        return True
    if getattr(args, "file_timeout", None) is not None:
        from edgeseg.runtime.errors import UsageError

        raise UsageError("--file-timeout applies to --ray runs (one task per file); add --ray or drop it")
    return False


def run(args: argparse.Namespace) -> int:
    from edgeseg.runtime.archive import MANIFEST_NAME, Manifest, model_fingerprint, plan, split_done
    from edgeseg.runtime.cluster import import_ray
    from edgeseg.runtime.fileio import check_writable
    from edgeseg.runtime.visualize import check_alpha

    from .predict_cmd import DEFAULT_SAVE_DIR, check_max_frames, quiet_video_logs

    check_alpha(args.alpha, "--alpha")
    check_max_frames(args.max_frames)
    quiet_video_logs(args)
    from edgeseg.runtime.cluster import parse_address

    import_ray()  # a missing extra or a malformed address is one line before anything else happens
    if args.ray != "local" and (Path(args.ray).suffix.lower() in MODEL_SUFFIXES or Path(args.ray).exists()):
        from edgeseg.runtime.errors import UsageError

        raise UsageError(f"--ray {args.ray!r} is a file, not a Ray address; put --ray after the model "
                         "(edgeseg predict MODEL --source ... --ray) or give an address (--ray auto)")
    parse_address(None if args.ray == "local" else args.ray)
    if args.file_timeout is not None and not args.file_timeout > 0:
        from edgeseg.runtime.errors import UsageError

        raise UsageError(f"--file-timeout {args.file_timeout:g} must be a positive number of seconds")
    out = _output_folder(args.save, DEFAULT_SAVE_DIR)
    jobs = plan(args.source, out)
    check_writable(out, "--save", folder_ok=True)
    model = _check_model(args)
    fingerprint = model_fingerprint(model)
    manifest = Manifest(out / MANIFEST_NAME)
    with manifest.exclusive():
        todo, done = split_done(jobs, manifest, fingerprint)
        print(f"{len(jobs)} input files: {len(done)} already done, {len(todo)} to run; manifest {manifest.path}",
              file=sys.stderr)
        tally = _Tally(len(jobs), len(done))
        if todo:
            _run_cluster(args, todo, model, fingerprint, manifest, tally)
    return _finish(args, tally, manifest)


def _output_folder(save: str | None, default: Path) -> Path:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.sinks import VIDEO_SUFFIXES

    out = Path(save) if save else default
    if out.suffix.lower() in VIDEO_SUFFIXES and not out.is_dir():
        raise UsageError(f"--save {save}: --ray writes one video per input file, so --save takes a folder (out/)")
    return out


def _check_model(args: argparse.Namespace) -> str:
    """Load the model once here, so a bad model or option is one line before any cluster starts;
    the workers load it by this resolved path."""
    from edgeseg.runtime import Segmenter

    if args.threads is not None and args.threads < 1:
        from edgeseg.runtime.errors import UsageError

        raise UsageError(f"--threads {args.threads} must be at least 1")
    with Segmenter(args.model, backend=args.backend, device=args.device, threads=1, imgsz=args.imgsz,
                   fit=args.fit) as seg:
        return str(seg.path)


class _Tally:
    """Counts for the progress line and the summary."""

    def __init__(self, total: int, skipped: int) -> None:
        self.total, self.skipped = total, skipped
        self.ok = self.failed = self.frames = 0
        self.nodes: set[str] = set()
        self.first_failure: dict[str, Any] | None = None
        self.start = time.perf_counter()
        self.seconds = 0.0
        self.actors = 0
        self.stopped: list = []  # [signal name, number] when a signal ended the run

    def add(self, rec: dict[str, Any]) -> None:
        if rec.get("status") == "ok":
            self.ok += 1
            self.frames += int(rec.get("frames") or 0)
        else:
            self.failed += 1
            self.first_failure = self.first_failure or rec
        if rec.get("node"):
            self.nodes.add(rec["node"])
        self.seconds = time.perf_counter() - self.start

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _run_cluster(args: argparse.Namespace, todo: list, model: str, fingerprint: str, manifest: Any,
                 tally: _Tally) -> None:
    from edgeseg.runtime.archive import finish_record
    from edgeseg.runtime.cluster import connected, run_jobs
    from edgeseg.runtime.progress import Progress
    from edgeseg.runtime.sources import available_cpus

    from .predict_cmd import stop_on_signals

    by_input = {str(j.input): j for j in todo}
    options = {"backend": args.backend, "device": args.device, "imgsz": args.imgsz, "fit": args.fit}
    address = None if args.ray == "local" else args.ray
    stop = threading.Event()
    # connected before the progress line starts: a dead address is one line
    with connected(address, num_cpus=available_cpus()), Progress(len(todo), "files") as progress, \
            stop_on_signals(stop) as caught:
        def on_record(rec: dict[str, Any]) -> None:
            manifest.append(finish_record(rec, by_input[rec["input"]], fingerprint))
            tally.add(rec)
            progress.update(1, frames=tally.frames, fps=round(tally.fps, 1), nodes=len(tally.nodes),
                            failed=tally.failed)

        def on_event(kind: str, info: dict) -> None:
            if kind == "retry":
                print(f"\nedgeseg: the worker holding {info['input']} died ({info['reason']}); retrying it "
                      f"(attempt {info['attempt']})", file=sys.stderr)
            elif kind == "node_lost":
                print(f"\nedgeseg: node {info['node']} left the cluster during the run; its files were retried "
                      "on the others", file=sys.stderr)

        run = run_jobs(todo, model, address=address, options=options,
                       render=args.visualize, alpha=args.alpha, max_frames=args.max_frames,
                       cpus_per_actor=float(args.threads or 1), on_record=on_record, on_event=on_event, stop=stop,
                       file_timeout_s=args.file_timeout)
    tally.actors = run.actors
    tally.stopped = list(caught)


def _finish(args: argparse.Namespace, tally: _Tally, manifest: Any) -> int:
    from edgeseg.runtime.errors import SourceError
    from edgeseg.runtime.fileio import write_json

    nodes, actors = len(tally.nodes), tally.actors
    if tally.skipped == tally.total:
        print(f"{tally.total} files: all done before (outputs complete and valid); nothing to run\n"
              f"manifest: {manifest.path}")
    else:
        print(f"{tally.total} files: {tally.ok} done, {tally.skipped} already done, {tally.failed} failed; "
              f"{tally.frames} frames in {tally.seconds:.1f} s: {tally.fps:.1f} FPS over {nodes} "
              f"node{'s' if nodes != 1 else ''} ({actors} worker{'s' if actors != 1 else ''})\n"
              f"manifest: {manifest.path}")
    if args.json:
        write_json(args.json, {"command": "predict", "ray": args.ray, "files": tally.total, "ok": tally.ok,
                               "skipped": tally.skipped, "failed": tally.failed, "frames": tally.frames,
                               "seconds": round(tally.seconds, 3), "fps": round(tally.fps, 2), "nodes": nodes,
                               "workers": actors, "manifest": str(manifest.path)})
    if tally.stopped:
        print(f"edgeseg: stopped by {tally.stopped[0]}; finished files are in the manifest, rerun to resume",
              file=sys.stderr)
        return 128 + int(tally.stopped[1])
    if tally.failed:
        bad = tally.first_failure or {}
        raise SourceError(f"{tally.failed} of {tally.total} files failed (first: {bad.get('input')}: {bad.get('error')}); "
                          f"see {manifest.path}; a rerun retries only those")
    return 0
