"""edgeseg predict: segment images, folders and videos, every frame, into images or a video.

    edgeseg predict model.onnx --source clip.mp4 --save out.mp4
    edgeseg predict camvid-unet-lite --source frames/ --save masks/ --visualize mask

Images in give images out with the same names; a video in gives a video out. Ctrl-C or
SIGTERM stops at the next frame and still leaves a finished, playable video.

The helpers at the bottom (model options, signal handling, the summary) are shared with
``edgeseg demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from . import finite_float

HELP = "segment images, folders and videos (every frame)"
DEFAULT_MODEL = "camvid-unet-lite"
DEFAULT_SAVE_DIR = Path("runs") / "predict"
WORKERS_HELP = ("frames in inference at once, each on its own thread (ONNX Runtime), or 'auto': for clips and "
                "folders on ONNX Runtime's CPU provider, 2 side by side on half the cores each (on 2 cores, 1.2x the "
                "FPS of one 2-thread inference, at one-thread latency per frame), otherwise 1")


def workers_value(text: str) -> int | str:
    """argparse type for --workers: a whole number or 'auto' (ranges are checked with the model)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor 'auto'") from None


def add_model_arguments(parser: argparse.ArgumentParser, workers_default: int | str = 1) -> None:
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL,
                        help=f"a .onnx / .engine / .pt file or a bundled model name (default: {DEFAULT_MODEL})")
    parser.add_argument("--imgsz", default=None, help="inference size HxW for dynamic-size models, e.g. 360x480")
    parser.add_argument("--fit", choices=("stretch", "letterbox"), default="stretch",
                        help="how frames meet the input size: stretch, or letterbox to keep their aspect ratio")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--backend", default="auto", help="auto (by file suffix), onnxruntime, tensorrt or pytorch")
    parser.add_argument("--threads", type=int, default=None, help="inference threads (default: the backend's)")
    parser.add_argument("--workers", type=workers_value, default=workers_default,
                        help=f"{WORKERS_HELP} (default {workers_default})")
    parser.add_argument("--alpha", type=finite_float, default=0.5, help="mask opacity for --visualize overlay (0-1)")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the run's statistics to this JSON file")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, workers_default="auto")
    parser.add_argument("--source", required=True,
                        help="a video file, an image, an image folder or a glob ('frames/*.png'), or synthetic://")
    parser.add_argument("--save", metavar="PATH", default=None,
                        help="out.mp4 (video), out/ (folder: images keep their names, a video becomes "
                             f"out/<name>.mp4) or out.png; default: {DEFAULT_SAVE_DIR}/")
    parser.add_argument("--visualize", choices=("overlay", "mask", "side"), default="overlay",
                        help="overlay (mask blended over the frame), mask (colour mask) or side (frame | mask)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    from . import predict_ray

    predict_ray.add_arguments(parser)  # --ray: archives of videos on a Ray cluster


def run(args: argparse.Namespace) -> int:
    from . import predict_ray

    if predict_ray.wanted(args):  # one task per input file, on a Ray cluster
        return predict_ray.run(args)
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.pipeline import run_pipeline
    from edgeseg.runtime.sources import open_source
    from edgeseg.runtime.visualize import check_alpha

    check_alpha(args.alpha, "--alpha")
    check_max_frames(args.max_frames)
    quiet_video_logs(args)
    with open_source(args.source) as source:
        if source.is_live:
            raise UsageError(f"predict reads files, folders and clips, and {args.source!r} is a live source; "
                             "use 'edgeseg demo --source ...' for cameras and streams")
        total = source.frame_count
        if args.max_frames is not None:
            total = min(args.max_frames, total or args.max_frames)
        seg = load_segmenter(args, frames=total)
        stop = threading.Event()
        try:
            sink = _output_sink(source, args.save, total)
            with _progress(total, "predict") as progress, stop_on_signals(stop) as caught:
                stats = run_pipeline(seg, source, [sink], render=args.visualize, alpha=args.alpha,
                                     max_frames=args.max_frames, stop=stop, workers=args.workers,
                                     on_progress=lambda s: progress.update(1, **status_fields(s)))
            finish_report(stats, seg, args)
        finally:
            seg.close()
    if not caught:  # a signal before the first frame is not a failure
        check_some_frames(stats.frames, stats.corrupt, source.uri, unreadable=stats.unreadable)
    print_summary(stats, sys.stdout, args)
    if caught:
        print(f"edgeseg: stopped by {caught[0]}; outputs so far are complete", file=sys.stderr)
        return 128 + int(caught[1])
    return 0


def _output_sink(source: Any, save: str | None, frames: int | None = None):
    """The sink for ``--save`` given what the source is (images keep names; video stays video),
    refused up front when it would overwrite an input or one of its own outputs."""
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.sinks import VIDEO_SUFFIXES, ImageFileSink, ImageFolderSink

    files = [Path(f) for f in getattr(source, "files", None) or []]  # image sources list their inputs
    seen: dict[str, Path] = {}
    if save is None or Path(save).suffix.lower() not in VIDEO_SUFFIXES:  # images out keep input names
        for f in files:  # checked before the output folder is made
            name = ImageFolderSink.output_name(f.name)
            if name in seen:
                raise UsageError(f"{seen[name]} and {f} would both be written as {name} (outputs keep input names); "
                                 "segment them in separate runs or save a video")
            seen[name] = f
    sink = _pick_sink(source, save)
    if isinstance(sink, ImageFileSink) and frames is not None and frames > 1:
        raise UsageError(f"--save {save} is a single image but the source has {frames} frames; "
                         "save to a folder (out/) or a video (out.mp4) instead")
    refuse_overwriting_inputs(source, sink)
    return sink


def refuse_overwriting_inputs(source: Any, sink: Any) -> None:
    """UsageError when the sink would write onto one of the source's own files."""
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.sinks import ImageFolderSink

    files = [Path(f) for f in getattr(source, "files", None) or []]  # image sources list their inputs
    if isinstance(sink, ImageFolderSink) and sink.keep_names:
        outputs = [sink.folder / sink.output_name(f.name) for f in files]
    else:
        outputs = [Path(p) for p in (getattr(sink, "path", None),) if p is not None]
    inputs = {os.path.realpath(f) for f in files} or {os.path.realpath(source.uri)}
    for out in outputs:
        if os.path.realpath(out) in inputs:
            raise UsageError(f"--save would overwrite the input {out}; save somewhere else (default: "
                             f"{DEFAULT_SAVE_DIR}/)")


def _pick_sink(source: Any, save: str | None):
    from edgeseg.runtime.sinks import VIDEO_SUFFIXES, ImageFolderSink, VideoSink, open_sink

    files = getattr(source, "files", None)  # image sources list their input files
    image_input = files is not None
    stem = "synthetic" if source.uri.startswith("synthetic://") else Path(source.uri).stem
    if save is None:
        if image_input:
            if len(files) == 1:
                return open_sink(DEFAULT_SAVE_DIR / files[0].name)
            return ImageFolderSink(DEFAULT_SAVE_DIR / _plain_name(source.uri, "images"))
        return VideoSink(DEFAULT_SAVE_DIR / f"{stem}.mp4", source.fps)
    path = Path(save)
    suffix = path.suffix.lower()
    if not (save.endswith(("/", "\\")) or path.is_dir()) and suffix:
        if suffix in VIDEO_SUFFIXES:
            return VideoSink(path, source.fps)
        return open_sink(path)  # a single image, or the standard 'unknown suffix' error
    # A folder: images keep their names; a video becomes <folder>/<input name>.mp4.
    if image_input:
        return ImageFolderSink(path, keep_names=True)
    return VideoSink(path / f"{stem}.mp4", source.fps)


def _plain_name(uri: str, fallback: str) -> str:
    """A folder's name, or a glob's last folder before any wildcard: 'frames/*.png' -> 'frames'."""
    name = ""
    for part in Path(uri).parts:
        if any(c in part for c in "*?["):
            break
        name = part.strip("/\\")
    return name or fallback


# -- shared with demo ------------------------------------------------------------------------------
def quiet_video_logs(args: argparse.Namespace) -> None:
    """Silence FFmpeg's and OpenCV's own stderr chatter (a dropped stream prints several lines);
    our one-line errors say what happened. ``--verbose`` keeps them."""
    if getattr(args, "verbose", False):
        return
    import os

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg starts
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def check_max_frames(max_frames: int | None) -> None:
    from edgeseg.runtime.errors import UsageError

    if max_frames is not None and max_frames < 1:
        raise UsageError(f"--max-frames {max_frames} must be at least 1")


def check_some_frames(frames: int, corrupt: int, uri: str, outcome: str = "nothing was written",
                      unreadable: Sequence[str] = ()) -> None:
    """A run that read no frame at all failed, even though nothing raised (every image unreadable,
    a stream of garbage): say so instead of naming outputs that were never written."""
    from edgeseg.runtime.errors import SourceError

    if not frames:
        example = f", e.g. {unreadable[0]}" if unreadable else ""
        why = f" ({corrupt} unreadable{example})" if corrupt else ""
        raise SourceError(f"no frame of {uri} could be read{why}; {outcome}")


def unreadable_line(names: Sequence[str], corrupt: int) -> str | None:
    """The summary line naming the skipped files (None when none was skipped)."""
    if not names:
        return None
    more = f" and {corrupt - len(names)} more" if corrupt > len(names) else ""
    return f"skipped {corrupt} unreadable image{'s' if corrupt != 1 else ''}: {', '.join(names)}{more}"


def load_segmenter(args: argparse.Namespace, frames: int | None = None):
    """The Segmenter for the model options; ``--workers auto`` is resolved here (``frames``: how
    many the run will see, None if unknown), and ``args.workers``/``args.threads`` then hold
    what was chosen."""
    from edgeseg.runtime import Segmenter
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.pipeline import can_overlap, check_workers, plan_workers
    from edgeseg.runtime.segmenter import backend_kind
    from edgeseg.runtime.sources import available_cpus

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads} must be at least 1")
    asked_threads = args.threads
    auto = args.workers == "auto"
    if auto:
        args.workers, args.threads = plan_workers("auto", args.threads, backend_kind(args.model, args.backend),
                                                  args.device, frames, available_cpus())
    check_workers(args.workers, label="--workers")

    def load() -> Segmenter:
        return Segmenter(args.model, backend=args.backend, device=args.device, threads=args.threads,
                         imgsz=args.imgsz, fit=args.fit)

    seg = load()
    if auto and args.workers > 1 and not can_overlap(seg):
        # Seen only once loaded (e.g. a fixed batch of 4): one worker, with the threads the user asked for.
        seg.close()
        args.workers, args.threads = 1, asked_threads
        seg = load()
    try:
        check_workers(args.workers, seg, label="--workers")  # refused before any output file is created
    except UsageError:
        seg.close()
        raise
    return seg


def _progress(total: int | None, desc: str):
    from edgeseg.runtime.progress import Progress

    return Progress(total, desc)


def status_fields(stats: Any) -> dict[str, Any]:
    """The live status line's fields (the pipeline's statistics, rounded for reading)."""
    fields: dict[str, Any] = {"fps": round(stats.recent_fps or stats.fps, 1)}
    infer = stats.latency["infer"]
    if infer.n:
        fields["infer_ms"] = round(infer.percentile(50), 1)
    if stats.capture_to_render.n:
        fields["lat_p99_ms"] = round(stats.capture_to_render.percentile(99), 1)
    if stats.drops:
        fields["drops"] = stats.drops
    if stats.reconnects:
        fields["reconnects"] = stats.reconnects
    if stats.corrupt:
        fields["corrupt"] = stats.corrupt
    return fields


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[list]:
    """SIGINT/SIGTERM set ``stop`` (the run ends at the next frame and outputs are finalised).

    A second signal raises KeyboardInterrupt for a user who does not want to wait. Yields a
    list that holds ``[signal name, number]`` once a signal arrived.
    """
    caught: list = []
    if threading.current_thread() is not threading.main_thread():
        yield caught  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        caught[:] = [signal.Signals(signum).name, signum]
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def finish_report(stats: Any, seg: Any, args: argparse.Namespace, extra: dict | None = None) -> dict:
    """The run's JSON report (written when ``--json`` was given)."""
    from edgeseg.runtime.fileio import write_json

    info = seg.info
    report = {"command": args.command, "model": info.get("model"), "backend": info.get("backend"),
              "precision": info.get("precision"), "input_size": info.get("input_size"),
              "workers": args.workers, "threads": info.get("backend_details", {}).get("threads"),
              **(extra or {}), **stats.to_dict()}
    if getattr(args, "json", None):
        write_json(args.json, report)
    return report


def print_summary(stats: Any, stream: Any, args: argparse.Namespace | None = None) -> None:
    d = stats.to_dict()
    workers = getattr(args, "workers", 1)
    threads = getattr(args, "threads", None)
    each = f", {threads} thread{'s' if threads != 1 else ''} each" if threads else ""
    lines = [f"{d['frames']} frames in {d['duration_s']:.1f} s: {d['fps']:.1f} FPS end to end "
             f"(drops {d['drops']}, reconnects {d['reconnects']}, corrupt {d['corrupt']}; "
             f"{workers} inference worker{'s' if workers != 1 else ''}{each})",
             f"{'stage':<18}{'p50':>9}{'p90':>9}{'p99':>9}  ms"]
    rows = [*d["latency_ms"].items(), ("capture->render", d["capture_to_render_ms"])]
    for name, s in rows:
        if s["n"]:
            lines.append(f"{name:<18}{s['p50']:>9.2f}{s['p90']:>9.2f}{s['p99']:>9.2f}")
    for sink in d["sinks"]:
        where = sink.get("path") or sink.get("url") or sink.get("sink")
        lines.append(f"output: {where} ({sink.get('frames', 0)} frames)")
    skipped = unreadable_line(d["unreadable"], d["corrupt"])
    if skipped:
        lines.append(skipped)
    print("\n".join(lines), file=stream)
