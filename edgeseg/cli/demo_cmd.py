"""edgeseg demo: the live camera demo, with FPS, latency and a legend drawn on the frame.

    edgeseg demo --source 0 --show
    edgeseg demo model.onnx --source rtsp://192.168.1.10/stream --serve 127.0.0.1:8080
    edgeseg demo --source 'synthetic://?realtime=1' --save demo.mp4 --ignore-class Sky Road
    edgeseg demo --source front=rtsp://10.0.0.5/s --source rear=rtsp://10.0.0.6/s --save '{name}.mp4' --serve

Live sources keep only the newest frame (lag never grows; dropped frames are counted). Several
``--source`` run as one batched inference per tick (see :mod:`edgeseg.runtime.multicam`).
``--serve`` shows a web page with the stream (a mosaic of the cameras), the legend and live
figures, on loopback unless a host is given.
"""

from __future__ import annotations

import argparse
import re
import sys
import time

from . import finite_float
from .predict_cmd import (
    add_model_arguments,
    check_max_frames,
    check_some_frames,
    finish_report,
    load_segmenter,
    print_summary,
    quiet_video_logs,
    refuse_overwriting_inputs,
    status_fields,
    stop_on_signals,
)
from .run_outputs import add_result_arguments, is_bag, open_result_sinks

HELP = "live camera / stream demo with overlay, FPS and latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--source", action="append", default=None, metavar="[NAME=]URI",
                        help="camera index, v4l2:///dev/videoN, csi://0, rtsp:// or http:// URL, a video file, "
                             "or synthetic://?realtime=1 (default: camera 0); repeat it for several cameras, "
                             "optionally named (front=rtsp://...)")
    parser.add_argument("--show", action="store_true", help="show a window (needs a display and OpenCV with GUI)")
    parser.add_argument("--save", metavar="FILE", default=None,
                        help="also record the rendered video (demo.mp4; several cameras: 'cam{i}.mp4' or "
                             "'{name}.mp4'), or a ROS 2 bag of class ids (out.mcap)")
    parser.add_argument("--serve", metavar="ADDR", nargs="?", const="127.0.0.1:8080", default=None,
                        help="serve MJPEG at http://ADDR/ (default 127.0.0.1:8080; IPv6 as [::1]:8080; another "
                             "host is reachable from the network)")
    parser.add_argument("--ignore-class", metavar="NAME", nargs="+", action="extend", default=[],
                        help="classes left unpainted (names or ids), e.g. Sky Road")
    parser.add_argument("--visualize", choices=("overlay", "mask", "side"), default="overlay",
                        help="overlay (default), mask or side (frame | mask)")
    parser.add_argument("--no-hud", action="store_true", help="do not draw FPS, latency and the legend")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--duration", type=finite_float, default=None, help="stop after this many seconds")
    parser.add_argument("--timeout", type=finite_float, default=5.0,
                        help="seconds without a frame before a live read times out (default 5)")
    parser.add_argument("--reconnect", type=int, default=5,
                        help="reconnect attempts when a live stream drops, with backoff (default 5; 0 = none); with "
                             "several cameras each one is retried until the run ends")
    parser.add_argument("--loop", action="store_true", help="loop a video file or clip source")
    parser.add_argument("--no-wait-fresh", action="store_true",
                        help="live sources: always take the newest frame at once (more FPS) instead of waiting "
                             "for the next one when it is over a quarter of a frame interval old (less latency)")
    parser.add_argument("--in-turn", action="store_true",
                        help="several cameras: one inference per camera frame instead of one batched inference "
                             "per tick (on some CPUs a batch does not pay; see benchmarks/multicam_bench.py)")
    add_result_arguments(parser)


NAMED_SOURCE = re.compile(r"([A-Za-z][A-Za-z0-9_]*)=(.+)")


def parse_sources(values: list[str] | None) -> tuple[list[str], list[str | None]]:
    """``--source`` values -> URIs and names (``front=rtsp://...``; a URI's own ``=`` is left alone)."""
    uris, names = [], []
    for text in values or ["0"]:
        m = NAMED_SOURCE.fullmatch(text)
        if m and "://" not in m.group(1) and not m.group(1).isdigit():
            names.append(m.group(1))
            uris.append(m.group(2))
        else:
            names.append(None)
            uris.append(text)
    return uris, names


def run(args: argparse.Namespace) -> int:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.pipeline import StopEvent
    from edgeseg.runtime.visualize import check_alpha

    check_alpha(args.alpha, "--alpha")
    quiet_video_logs(args)
    if not (args.show or args.save or args.serve or args.json or args.save_ids):
        raise UsageError("demo has nowhere to put its output; add --show, --save FILE, --serve 127.0.0.1:8080, "
                         "--save-ids DIR or --json OUT")
    check_max_frames(args.max_frames)
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration {args.duration} must be positive")
    uris, names = parse_sources(args.source)
    if len(uris) > 1:
        from edgeseg.runtime.multicam import camera_names, per_camera_path

        names = camera_names(uris, names)
        if args.save and not is_bag(args.save):
            for i, n in enumerate(names):
                per_camera_path(args.save, i, n, len(uris))  # {i} missing: refused before any work
    window = _window_or_web(args)  # fails (or falls back to --serve) before the model loads
    seg = load_segmenter(args)
    stop = StopEvent()
    try:
        result_sinks = open_result_sinks(args, seg.meta)
        if len(uris) == 1:
            return _run_one(args, seg, uris[0], names[0] or "cam0", window, result_sinks, stop)
        return _run_many(args, seg, uris, names, window, result_sinks, stop)
    finally:
        seg.close()


def _window_or_web(args: argparse.Namespace):
    """The window for --show; without a GUI OpenCV or a display, one line and the web view instead."""
    if not args.show:
        return None
    from edgeseg.runtime.sinks import WindowSink, gui_problem

    problem = gui_problem()
    if problem is None:
        return WindowSink("edgeseg demo")
    print(f"edgeseg: {problem.split(';')[0]}; showing the web view instead", file=sys.stderr)
    args.serve = args.serve or "127.0.0.1:8080"
    return None


def _web_view(args: argparse.Namespace, seg, names: list[str]):
    """The --serve sink: the page at /, the stream (mosaic) and /stats.json."""
    from edgeseg.runtime.mjpeg import parse_address
    from edgeseg.runtime.sinks import MjpegSink

    host, port = parse_address(args.serve)
    server = MjpegSink(host, port, page={"title": "edgeseg demo", "classes": list(seg.meta.classes),
                                         "palette": [list(c) for c in seg.meta.palette], "cameras": names})
    print(f"serving the demo at {server.page_url} (stream {server.url}, figures /stats.json)", file=sys.stderr)
    return server


def _timer(args: argparse.Namespace, stop):
    import threading

    if not args.duration:
        return None
    timer = threading.Timer(args.duration, stop.set, kwargs={"reason": "duration"})
    timer.daemon = True
    return timer


def _run_one(args, seg, uri: str, name: str, window, result_sinks: list, stop) -> int:
    from edgeseg.runtime.metadata import class_ids
    from edgeseg.runtime.pipeline import StreamError, run_pipeline
    from edgeseg.runtime.progress import Progress
    from edgeseg.runtime.sinks import open_sink
    from edgeseg.runtime.sources import open_source

    ignore = class_ids(args.ignore_class, seg.meta.classes)
    sinks = [window] if window is not None else []
    try:
        source = open_source(uri, timeout=args.timeout, reconnect=args.reconnect, loop=args.loop)
    except BaseException:
        for s in result_sinks:
            s.close()
        raise
    timer = _timer(args, stop)
    caught: list = []
    server = None
    try:
        if args.save and not is_bag(args.save):
            # A live source's results come at the model's rate: the recording is paced by capture time
            sinks.append(open_sink(args.save, fps=source.fps, pace=source.is_live))
            refuse_overwriting_inputs(source, sinks[-1])  # a file source played with --loop, say
        if args.serve:
            server = _web_view(args, seg, [name])
            sinks.append(server)

        publish = _FigurePublisher(server)

        def progress_cb(s) -> None:
            progress.update(1, **status_fields(s))
            publish(lambda: [(name, s)])

        with Progress(None, "demo", show_rate=False) as progress, stop_on_signals(stop) as caught:
            if timer:
                timer.start()
            try:
                stats = run_pipeline(seg, source, sinks, render=args.visualize, alpha=args.alpha,
                                     max_frames=args.max_frames, ignore=ignore, hud=not args.no_hud, stop=stop,
                                     wait_for_fresh=not args.no_wait_fresh, workers=args.workers,
                                     result_sinks=result_sinks, camera=name, on_progress=progress_cb,
                                     on_event=lambda line: _say(line, progress))
            except StreamError as e:
                finish_report(e.stats, seg, args, {"source_uri": source.uri})
                print_summary(e.stats, sys.stderr, args)
                raise
        finish_report(stats, seg, args, {"source_uri": source.uri})
        if not caught:  # a signal before the first frame is not a failure
            check_some_frames(stats.frames, stats.corrupt, source.uri, unreadable=stats.unreadable)
        print_summary(stats, sys.stdout, args)
    finally:
        if timer:
            timer.cancel()
        for sink in (*sinks, *result_sinks):
            sink.close()  # already closed by the pipeline on every normal path; here for early failures
        source.close()
    return _exit_code(caught)


def _say(line: str, progress) -> None:
    """One line on stderr at once (below the live status line on a terminal)."""
    print(f"\nedgeseg: {line}" if progress.tty else f"edgeseg: {line}", file=sys.stderr, flush=True)


def _exit_code(caught: list) -> int:
    if caught:
        print(f"edgeseg: stopped by {caught[0]}; outputs so far are complete", file=sys.stderr)
        return 128 + int(caught[1])
    return 0


class _FigurePublisher:
    """Hands the web view fresh figures a few times a second (its page polls twice a second), not on
    every frame: each set costs percentiles over every camera's histograms."""

    EVERY_S = 0.2

    def __init__(self, server) -> None:
        self.server, self.last = server, -float("inf")

    def __call__(self, named_stats) -> None:
        now = time.monotonic()
        if self.server is not None and now - self.last >= self.EVERY_S:
            self.last = now
            self.server.set_stats(_live_figures(named_stats()))


def _live_figures(named_stats) -> dict:
    """What /stats.json serves: per camera FPS, latency, drops, outage."""
    cams = []
    for name, s in named_stats:
        f = s.live()
        cams.append({"name": name, "fps": round(f.pop("fps"), 2), "frames": s.frames, "drops": s.drops,
                     "reconnects": s.reconnects, "outage_s": round(s.outage_s_total, 1),
                     "no_signal": s.outage_since is not None,
                     **{k: None if v is None else round(v, 1) for k, v in f.items()}})
    return {"cameras": cams}


def _run_many(args, seg, uris: list[str], names: list[str], window, result_sinks: list, stop) -> int:
    from edgeseg.runtime.fileio import write_json
    from edgeseg.runtime.multicam import per_camera_path, run_cameras
    from edgeseg.runtime.progress import Progress
    from edgeseg.runtime.sinks import open_sink

    cam_sinks: list[list] = [[] for _ in uris]
    mosaic = [window] if window is not None else []
    caught: list = []
    timer = _timer(args, stop)
    try:
        if args.save and not is_bag(args.save):
            for i, n in enumerate(names):
                cam_sinks[i].append(open_sink(per_camera_path(args.save, i, n, len(uris)), pace=True))
        server = _web_view(args, seg, names) if args.serve else None
        if server is not None:
            mosaic.append(server)

        publish = _FigurePublisher(server)

        def progress_cb(st) -> None:
            progress.update(1, status=st.status_line())
            publish(lambda: [(c.name, c.stats) for c in st.cameras])

        def event(line: str) -> None:
            _say(line, progress)

        with Progress(None, "demo", show_rate=False) as progress, stop_on_signals(stop) as caught:
            if timer:
                timer.start()
            stats = run_cameras(seg, uris, cam_sinks, mosaic_sinks=mosaic, result_sinks=result_sinks, names=names,
                                render=args.visualize, alpha=args.alpha, ignore=args.ignore_class,
                                hud=not args.no_hud, stop=stop, max_frames=args.max_frames, batched=not args.in_turn,
                                open_kw={"timeout": args.timeout, "reconnect": 0, "loop": args.loop},
                                on_event=event, on_progress=progress_cb)
    finally:
        if timer:
            timer.cancel()
        for sink in (*mosaic, *[s for ss in cam_sinks for s in ss], *result_sinks):
            sink.close()
    report = {"command": args.command, "model": str(seg.path), **stats.to_dict()}
    if args.json:
        write_json(args.json, report)
    agg = report["aggregate"]
    print(f"{agg['frames']} frames from {agg['cameras']} cameras in {agg['duration_s']:.1f} s: {agg['fps']:.1f} FPS "
          f"in all ({'one batched inference per tick' if agg['batched'] else 'one inference per frame'})")
    for cam in report["cameras"]:
        c2r = cam["capture_to_render_ms"]
        lat = f"capture->render p50 {c2r['p50']:.0f} p99 {c2r['p99']:.0f} ms" if c2r["n"] else "no frames"
        print(f"  {cam['name']}: {cam['frames']} frames, {cam['fps']:.1f} FPS, {lat}, drops {cam['drops']}, "
              f"reconnects {cam['reconnects']}, outage {cam['outage_s']:.1f} s")
    for d in stats.sinks:
        where = d.get("path") or d.get("url") or d.get("sink")
        print(f"output: {where} ({d.get('frames', 0)} frames)")
    if not caught and not stats.frames:
        from edgeseg.runtime.errors import SourceError

        raise SourceError(f"no frame of any of the {len(uris)} cameras could be read; nothing was written")
    return _exit_code(caught)
