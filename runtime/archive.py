"""Archive inference: many video files in, one output video per file, a manifest, resumable.

The parts that do not depend on where the work runs (one process or a Ray cluster, see
:mod:`edgeseg.runtime.cluster`):

- :func:`plan` expands the input glob (with a limit), names each output as ``edgeseg predict``
  does (``OUT/<name>.mp4``; files below the glob's fixed folder keep their sub-folders, so
  ``a/x.mp4`` and ``b/x.mp4`` do not collide) and refuses an output folder inside the inputs;
- :func:`process_file` segments one file into a hidden staging file, checks that the finished
  video re-opens with every frame, and only then renames it onto the output name;
- :class:`Manifest` appends one JSON line per finished file (input, output, frames, fps, node,
  status, error) and, on a rerun, says which inputs already have a complete, valid output.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from .errors import EdgesegError, UsageError
from .fileio import remove_stale_temporaries, sha256_file

VIDEO_INPUT_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".ts", ".mpg", ".mpeg")
OUTPUT_SUFFIX = ".mp4"  # what predict writes for a video saved into a folder
MANIFEST_NAME = "manifest.jsonl"
MAX_INPUTS = 100_000  # files one run takes; split larger archives into several runs
MAX_MANIFEST_BYTES = 256 << 20  # a manifest read back for resuming (about a million lines)
MAX_MANIFEST_LINE = 64 << 10  # one record; longer lines are not ours and are skipped
ERROR_CHARS = 500  # an error message kept in the manifest


@dataclass(frozen=True)
class Job:
    """One unit of work: an input video and the output video it becomes."""

    input: Path
    output: Path


# -- planning ---------------------------------------------------------------------------------------
def glob_root(pattern: str) -> Path:
    """The fixed folder in front of the first wildcard: ``'archive/**/*.mp4'`` -> ``archive``."""
    parts: list[str] = []
    for part in Path(os.path.expanduser(pattern)).parts:
        if any(c in part for c in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def expand_inputs(pattern: str, limit: int = MAX_INPUTS) -> tuple[list[Path], Path]:
    """The video files ``pattern`` names (a glob, a folder searched recursively, or one file),
    sorted, and the folder their output names are relative to."""
    text = os.path.expanduser(pattern)
    path = Path(text)
    if path.is_file():
        return [path], path.parent
    if path.is_dir():
        text, root = str(path / "**" / "*"), path
    else:
        root = glob_root(pattern)
    files: list[Path] = []
    for name in glob.iglob(text, recursive=True):
        p = Path(name)
        if p.suffix.lower() in VIDEO_INPUT_SUFFIXES and p.is_file():
            files.append(p)
            if len(files) > limit:
                raise UsageError(f"{pattern!r} matches more than {limit} video files; split the archive into "
                                 "several runs (e.g. one glob per folder)")
    if not files:
        raise UsageError(f"no video files match {pattern!r} (looked for {', '.join(VIDEO_INPUT_SUFFIXES)}); "
                         "check the pattern, and quote it so the shell does not expand it")
    return sorted(files), root


def output_for(input_path: Path, root: Path, out_dir: Path) -> Path:
    """``OUT/<sub-folders below root>/<name>.mp4``, as predict names a video saved into a folder."""
    try:
        rel = input_path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(input_path.name)
    return out_dir / rel.parent / (rel.stem + OUTPUT_SUFFIX)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def plan(pattern: str, out_dir: str | os.PathLike, limit: int = MAX_INPUTS) -> list[Job]:
    """The jobs for a run; refuses an output folder among or inside the inputs, and two inputs
    that would share an output name."""
    files, root = expand_inputs(pattern, limit)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--save {out} is a file; archive runs write one video per input into a folder (out/)")
    real_out = Path(os.path.realpath(out))
    input_dirs = {Path(os.path.realpath(f.parent)) for f in files}
    # A recursive pattern would read the outputs of this run as inputs of the next one.
    recursive = "**" in pattern or Path(os.path.expanduser(pattern)).is_dir()
    if real_out in input_dirs or (recursive and _inside(real_out, Path(os.path.realpath(root)))):
        raise UsageError(f"--save {out} is inside the input folder {root}: outputs would replace inputs or be read "
                         "as inputs by the next run; save outside it")
    jobs, seen = [], {}
    inputs = {os.path.realpath(f) for f in files}
    for f in files:
        job = Job(f, output_for(f, root, out))
        if os.path.realpath(job.output) in inputs:
            raise UsageError(f"--save {out} would write {job.output} over an input; save somewhere else")
        if job.output in seen:
            raise UsageError(f"{seen[job.output]} and {f} would both be written as {job.output}; rename one of them "
                             "or run them separately")
        seen[job.output] = f
        jobs.append(job)
    return jobs


# -- one file ---------------------------------------------------------------------------------------
def video_frame_count(path: Path) -> int | None:
    """Frames a finished video's index declares (None: not a playable video)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    try:
        if not cap.isOpened():
            return None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return n if n > 0 else None
    finally:
        cap.release()


def staging_path(output: Path) -> Path:
    """The hidden name a file is written under before its check (same folder: the rename is atomic)."""
    return output.with_name(f".{output.stem}.partial{output.suffix}")


def clean_stale(output: Path) -> None:
    """Remove hidden leftovers of an earlier, killed attempt at ``output``: its staging file (the
    output folder's lock keeps other runs out) and atomic_path's temporary files of dead writers."""
    staging = staging_path(output)
    if staging.is_file():
        staging.unlink(missing_ok=True)
    remove_stale_temporaries(output, stale_after_s=0.0)  # the lock is ours: any dead writer's file is stale
    remove_stale_temporaries(staging, stale_after_s=0.0)


def process_file(seg: Any, job: Job, *, render: str = "overlay", alpha: float = 0.5,
                 max_frames: int | None = None, stop: threading.Event | None = None) -> dict[str, Any]:
    """Segment ``job.input`` into ``job.output``; returns its manifest record (never raises for a
    bad input file: the record says ``status: failed`` and why)."""
    t0 = time.perf_counter()
    record: dict[str, Any] = {"input": str(job.input), "output": str(job.output), "frames": 0, "fps": 0.0}
    try:
        frames, fps = _segment_checked(seg, job, render, alpha, max_frames, stop)
        record.update(frames=frames, fps=round(fps, 2), status="ok", error=None)
    except EdgesegError as e:
        record.update(status="failed", error=str(e)[:ERROR_CHARS])
    except (OSError, cv2.error) as e:
        record.update(status="failed", error=f"{type(e).__name__}: {e}"[:ERROR_CHARS])
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def _segment_checked(seg: Any, job: Job, render: str, alpha: float, max_frames: int | None,
                     stop: threading.Event | None) -> tuple[int, float]:
    from .errors import SourceError
    from .pipeline import run_pipeline
    from .sinks import VideoSink
    from .sources import open_source

    clean_stale(job.output)
    staged = staging_path(job.output)
    try:
        with open_source(str(job.input)) as source:
            if source.is_live or getattr(source, "files", None) is not None:
                raise SourceError(f"{job.input} is not a video file")
            sink = VideoSink(staged, source.fps)
            stats = run_pipeline(seg, source, [sink], render=render, alpha=alpha, max_frames=max_frames,
                                 stop=stop, workers=1)
        if stats.stopped_by not in ("eos", "max_frames"):
            raise SourceError(f"{job.input}: stopped ({stats.stopped_by}) after {stats.frames} frames")
        if not stats.frames:
            raise SourceError(f"no frame of {job.input} could be read (a corrupt or empty video)")
        written = video_frame_count(staged)
        if written != sink.frames:  # a full disk or a failed encoder leaves a short or unreadable file
            raise SourceError(f"{job.output}: the written video holds {written or 0} of {sink.frames} frames "
                              "(disk full?); nothing was replaced")
        os.replace(staged, job.output)
        return stats.frames, stats.fps
    finally:
        staged.unlink(missing_ok=True)


# -- manifest and resume ----------------------------------------------------------------------------
def model_fingerprint(path: str | os.PathLike) -> str:
    """Name and content hash of the model: a rerun with another model redoes every file."""
    p = Path(path)
    return f"{p.name}:{sha256_file(p)[:16]}"


def input_stamp(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"input_bytes": st.st_size, "input_mtime": round(st.st_mtime, 3)}


class Manifest:
    """``OUT/manifest.jsonl``: one JSON object per finished file, appended and synced as files
    finish, never rewritten (an interrupted run keeps every line it wrote)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def records(self) -> list[dict[str, Any]]:
        """Every well-formed record (a torn last line from a killed run is skipped)."""
        if not self.path.is_file():
            return []
        size = self.path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise UsageError(f"manifest {self.path} is {size >> 20} MB (limit {MAX_MANIFEST_BYTES >> 20} MB); "
                             "move it away to start a fresh one")
        out = []
        with open(self.path, "rb") as f:
            for line in f:
                if len(line) > MAX_MANIFEST_LINE:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                    out.append(rec)
        return out

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the output folder for one run: a second run on it at the same time would redo the
        same files and interleave their records. Released when the process ends, however it ends."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks in the standard library
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(f".{self.path.name}.lock"), "a") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UsageError(f"{self.path.parent} is in use by another run; wait for it to finish, or save "
                                 "elsewhere") from None
            yield

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=False) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)


def is_done(record: dict[str, Any] | None, job: Job, model: str) -> bool:
    """Whether ``record`` (the input's latest) vouches for a complete, valid output of this model
    and this version of the input, and the output on disk is still that file."""
    if not record or record.get("status") != "ok" or record.get("model") != model:
        return False
    if record.get("output") != str(job.output) or not job.output.is_file():
        return False
    try:
        if any(record.get(k) != v for k, v in input_stamp(job.input).items()):
            return False
    except OSError:
        return False
    if job.output.stat().st_size != record.get("output_bytes"):
        return False
    return video_frame_count(job.output) == record.get("frames")


def split_done(jobs: Iterable[Job], manifest: Manifest, model: str) -> tuple[list[Job], list[Job]]:
    """(jobs still to run, jobs whose outputs are complete and valid)."""
    latest = {rec["input"]: rec for rec in manifest.records()}
    todo, done = [], []
    for job in jobs:
        (done if is_done(latest.get(str(job.input)), job, model) else todo).append(job)
    return todo, done


def finish_record(record: dict[str, Any], job: Job, model: str) -> dict[str, Any]:
    """Add what a later resume checks: the model, the input's size and time, the output's size."""
    record["model"] = model
    try:
        record.update(input_stamp(job.input))
        if record.get("status") == "ok":
            record["output_bytes"] = job.output.stat().st_size
    except OSError:
        pass
    return record
