"""edgeseg predict: segment images, folders and videos, every frame, into images or a video.

    edgeseg predict clip.mp4                              # the default model; out: runs/predict/clip.mp4
    edgeseg predict model.onnx clip.mp4 --save out.mp4
    edgeseg predict camvid-unet-lite --source frames/ --save masks/ --visualize mask

Positional arguments: ``[MODEL] SOURCE``. Two positionals are MODEL then SOURCE; a single one is the
SOURCE (with the default model), unless ``--source`` is given, in which case it is the MODEL.

Images in give images out with the same names; a video in gives a video out. Without ``--save``
each run writes into a new folder (runs/predict, runs/predict2, ...); an output that already exists
is never overwritten without ``--exist-ok``. Ctrl-C or SIGTERM stops at the next frame and still
leaves a finished, playable video.

The helpers at the bottom (model options, signal handling, the summary) are shared with
``edgeseg demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeseg.runtime.zoo import DEFAULT_MODEL

from . import finite_float
from .signals import stop_on_signals  # noqa: F401 - shared with demo and bench

HELP = "segment images, folders and videos (every frame)"
DEFAULT_SAVE_DIR = Path("runs") / "predict"
WORKERS_HELP = ("frames in inference at once, each on its own thread (ONNX Runtime), or 'auto': for clips and "
                "folders on ONNX Runtime's CPU provider, 2 side by side on half the cores each (more frames per "
                "second than one inference on all cores, at one-thread latency per frame), otherwise 1")


def workers_value(text: str) -> int | str:
    """argparse type for --workers: a whole number or 'auto' (ranges are checked with the model)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a whole number nor 'auto'") from None


def add_model_arguments(parser: argparse.ArgumentParser, workers_default: int | str = 1) -> None:
    parser.add_argument("model", nargs="?", default=DEFAULT_MODEL, metavar="MODEL",
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
    parser.add_argument("--temporal-filter", type=finite_float, default=None, metavar="ALPHA",
                        help="smooth class scores over frames (weight of the newest frame, e.g. 0.5; "
                             "resets on scene cuts; runs frames one at a time)")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the run's statistics to this JSON file")


SOURCE_HELP = "a video file, an image, an image folder or a glob ('frames/*.png'), or synthetic://"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, workers_default="auto")
    parser.epilog = ("MODEL SOURCE: both given; one positional: the SOURCE, with the default model; "
                     "MODEL --source SOURCE: the positional is the model.")
    parser.set_defaults(model=None)  # resolved with the source: a lone positional is the SOURCE
    parser.add_argument("source_arg", nargs="?", metavar="SOURCE",
                        help=f"{SOURCE_HELP}; 'edgeseg predict clip.mp4' uses the default model")
    parser.add_argument("--source", default=None, help=f"the source, as an option: {SOURCE_HELP}")
    parser.add_argument("--save", metavar="PATH", default=None,
                        help="out.mp4 (video), out/ (folder: images keep their names, a video becomes "
                             f"out/<name>.mp4) or out.png; default: a new {DEFAULT_SAVE_DIR}, "
                             f"{DEFAULT_SAVE_DIR}2, ... folder per run")
    parser.add_argument("--exist-ok", action="store_true",
                        help=f"write into an existing output (default: refuse; without --save, reuse {DEFAULT_SAVE_DIR})")
    parser.add_argument("--visualize", choices=("overlay", "mask", "side"), default="overlay",
                        help="overlay (mask blended over the frame), mask (colour mask) or side (frame | mask)")
    parser.add_argument("--legend", action="store_true", help="draw the class legend on every output image")
    parser.add_argument("--ignore-class", metavar="NAME", nargs="+", action="extend", default=[],
                        help="classes left unpainted (names or ids), e.g. Sky Road")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    from . import predict_ray

    predict_ray.add_arguments(parser)  # --ray: archives of videos on a Ray cluster
    from .run_outputs import add_result_arguments

    add_result_arguments(parser)  # --save-ids DIR, --save out.mcap, --bag-images


def resolve_model_and_source(args: argparse.Namespace) -> None:
    """Fill ``args.model`` and ``args.source`` from ``[MODEL] SOURCE`` and ``--source`` (module docstring)."""
    from edgeseg.runtime.errors import UsageError

    if args.source is not None:
        if args.source_arg is not None:
            raise UsageError(f"two sources: {args.source_arg!r} and --source {args.source!r}; give one "
                             "('edgeseg predict [MODEL] SOURCE' or 'edgeseg predict [MODEL] --source SOURCE')")
        args.model = args.model or DEFAULT_MODEL
    elif args.source_arg is not None:
        args.source = args.source_arg
    elif args.model is not None:
        if _looks_like_model(args.model):
            raise UsageError(f"no source for the model {args.model}: 'edgeseg predict {args.model} SOURCE', "
                             "e.g. a video, an image folder or 'synthetic://'")
        args.model, args.source = DEFAULT_MODEL, args.model
    else:
        raise UsageError("no source: 'edgeseg predict [MODEL] SOURCE', e.g. 'edgeseg predict clip.mp4'")


def run(args: argparse.Namespace) -> int:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.metadata import class_ids
    from edgeseg.runtime.pipeline import StopEvent, run_pipeline
    from edgeseg.runtime.sources import open_source
    from edgeseg.runtime.visualize import check_alpha

    from . import predict_ray

    resolve_model_and_source(args)
    if predict_ray.wanted(args):  # one task per input file, on a Ray cluster
        return predict_ray.run(args)
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
        stop = StopEvent()
        try:
            from .run_outputs import is_bag, open_result_sinks

            ignore = class_ids(args.ignore_class, seg.meta.classes)
            sinks = []
            if not is_bag(args.save):
                save_dir = DEFAULT_SAVE_DIR if args.exist_ok else next_run_dir(DEFAULT_SAVE_DIR)
                sink = _output_sink(source, args.save, total, save_dir=save_dir, exist_ok=args.exist_ok)
                if args.legend:
                    sink = LegendSink(sink, seg.meta.classes, seg.meta.palette, ignore)
                sinks.append(sink)
            results = open_result_sinks(args, seg.meta)  # class ids: --save-ids DIR, --save out.mcap
            with _progress(total, "predict") as progress, stop_on_signals(stop) as caught:
                stats = run_pipeline(seg, source, sinks, render=args.visualize, alpha=args.alpha, ignore=ignore,
                                     max_frames=args.max_frames, stop=stop, workers=args.workers,
                                     result_sinks=results,
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


def _looks_like_model(text: str) -> bool:
    """A model file suffix or a bundled model's name (a lone positional is otherwise the source)."""
    from edgeseg.runtime.zoo import list_models

    return Path(text).suffix.lower() in (".onnx", ".engine", ".plan", ".pt") or text in list_models()


def next_run_dir(base: Path) -> Path:
    """The first of ``base``, ``base2``, ``base3``, ... that does not exist yet (one folder per run)."""
    n = 1
    while True:
        path = base if n == 1 else base.with_name(f"{base.name}{n}")
        if not path.exists():
            return path
        n += 1


def _output_sink(source: Any, save: str | None, frames: int | None = None, *, save_dir: Path = DEFAULT_SAVE_DIR,
                 exist_ok: bool = False):
    """The sink for ``--save`` (or a video/images in ``save_dir``) given what the source is (images keep
    names; video stays video), refused up front when it would overwrite an input, one of its own
    outputs, or (without ``exist_ok``) any existing file."""
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
    sink = _pick_sink(source, save, save_dir)
    if isinstance(sink, ImageFileSink) and frames is not None and frames > 1:
        raise UsageError(f"--save {save} is a single image but the source has {frames} frames; "
                         "save to a folder (out/) or a video (out.mp4) instead")
    refuse_overwriting_inputs(source, sink)
    if not exist_ok:
        existing = [p for p in _planned_outputs(source, sink) if p.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise UsageError(f"{existing[0]}{more} already exists; pass --exist-ok to overwrite it, or save "
                             "somewhere else")
    return sink


def _planned_outputs(source: Any, sink: Any) -> list[Path]:
    """The files ``sink`` will write for ``source`` (image folders with kept names: one per input)."""
    from edgeseg.runtime.sinks import ImageFolderSink

    files = [Path(f) for f in getattr(source, "files", None) or []]  # image sources list their inputs
    if isinstance(sink, ImageFolderSink) and sink.keep_names:
        return [sink.folder / sink.output_name(f.name) for f in files]
    return [Path(p) for p in (getattr(sink, "path", None),) if p is not None]


def refuse_overwriting_inputs(source: Any, sink: Any) -> None:
    """UsageError when the sink would write onto one of the source's own files."""
    from edgeseg.runtime.errors import UsageError

    files = [Path(f) for f in getattr(source, "files", None) or []]  # image sources list their inputs
    outputs = _planned_outputs(source, sink)
    inputs = {os.path.realpath(f) for f in files} or {os.path.realpath(source.uri)}
    for out in outputs:
        if os.path.realpath(out) in inputs:
            raise UsageError(f"--save would overwrite the input {out}; save somewhere else (default: "
                             f"{DEFAULT_SAVE_DIR}/)")


def _pick_sink(source: Any, save: str | None, save_dir: Path = DEFAULT_SAVE_DIR):
    from edgeseg.runtime.sinks import VIDEO_SUFFIXES, ImageFolderSink, VideoSink, open_sink

    files = getattr(source, "files", None)  # image sources list their input files
    image_input = files is not None
    stem = "synthetic" if source.uri.startswith("synthetic://") else Path(source.uri).stem
    if save is None:
        if image_input:
            if len(files) == 1:
                return open_sink(save_dir / files[0].name)
            return ImageFolderSink(save_dir / _plain_name(source.uri, "images"))
        return VideoSink(save_dir / f"{stem}.mp4", source.fps)
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


class LegendSink:
    """Draws the class legend (top right) on each image, then hands it to ``sink``."""

    def __init__(self, sink: Any, classes: Sequence[str], palette: Sequence[Sequence[int]],
                 ignore: Sequence[int] = ()) -> None:
        self.sink, self.classes, self.palette = sink, list(classes), palette
        self.ids = [i for i in range(len(self.classes)) if i not in set(ignore)]
        self.name = getattr(sink, "name", "legend")

    def write(self, image: Any, frame: Any = None) -> None:
        from edgeseg.runtime.visualize import draw_legend, legend_width

        scale = min(1.0, max(0.3, image.shape[0] / 1200))  # the same share of a small or a large frame
        x = max(8, image.shape[1] - legend_width(self.classes, self.ids, scale) - 8)
        self.sink.write(draw_legend(image.copy(), self.classes, self.palette, self.ids, origin=(x, 8), scale=scale),
                        frame)

    def close(self) -> None:
        self.sink.close()

    def describe(self) -> dict:
        return self.sink.describe()

    def __getattr__(self, name: str) -> Any:  # path, frames, ... of the wrapped sink
        if name == "sink":
            raise AttributeError(name)
        return getattr(self.sink, name)


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
    smooth = getattr(args, "temporal_filter", None)
    if smooth is not None:  # the filter needs frames in order: one inference at a time
        if args.workers not in ("auto", 1):
            raise UsageError(f"--temporal-filter needs frames in order; use --workers 1, not {args.workers}")
        args.workers = 1
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
        if smooth is not None:
            from edgeseg.runtime.temporal import FilteredSegmenter, TemporalFilter

            return FilteredSegmenter(seg, TemporalFilter(alpha=smooth))
    except UsageError:
        seg.close()
        raise
    return seg


def _progress(total: int | None, desc: str):
    from edgeseg.runtime.progress import Progress

    return Progress(total, desc)


def status_fields(stats: Any) -> dict[str, Any]:
    """The live status line's fields (the pipeline's statistics, rounded for reading)."""
    f = stats.live()
    fields: dict[str, Any] = {"fps": round(f["fps"] or stats.fps, 1)}
    if f["infer_ms"] is not None:
        fields["infer_ms"] = round(f["infer_ms"], 1)
    if f["latency_p99_ms"] is not None:
        fields["lat_p99_ms"] = round(f["latency_p99_ms"], 1)
    if stats.drops:
        fields["drops"] = stats.drops
    if stats.reconnects:
        fields["reconnects"] = stats.reconnects
    if stats.corrupt:
        fields["corrupt"] = stats.corrupt
    return fields


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
