"""edgeseg demo: the live camera demo, with FPS, latency and a legend drawn on the frame.

    edgeseg demo --source 0 --show
    edgeseg demo model.onnx --source rtsp://192.168.1.10/stream --serve 127.0.0.1:8080
    edgeseg demo --source 'synthetic://?realtime=1' --save demo.mp4 --ignore-class Sky Road

Live sources keep only the newest frame (lag never grows; dropped frames are counted).
``--serve`` streams MJPEG for headless machines, on loopback unless a host is given.
"""

from __future__ import annotations

import argparse
import sys
import threading

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

HELP = "live camera / stream demo with overlay, FPS and latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--source", default="0",
                        help="camera index, v4l2:///dev/videoN, csi://0, rtsp:// or http:// URL, a video file, "
                             "or synthetic://?realtime=1 (default: camera 0)")
    parser.add_argument("--show", action="store_true", help="show a window (needs a display and OpenCV with GUI)")
    parser.add_argument("--save", metavar="FILE", default=None, help="also record the rendered video (e.g. demo.mp4)")
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
                        help="reconnect attempts when a live stream drops, with backoff (default 5; 0 = none)")
    parser.add_argument("--loop", action="store_true", help="loop a video file or clip source")
    parser.add_argument("--no-wait-fresh", action="store_true",
                        help="live sources: always take the newest frame at once (more FPS) instead of waiting "
                             "for the next one when it is over half a frame interval old (less latency)")


def run(args: argparse.Namespace) -> int:
    from edgeseg.runtime.errors import UsageError
    from edgeseg.runtime.metadata import class_ids
    from edgeseg.runtime.pipeline import StopEvent, StreamError, run_pipeline
    from edgeseg.runtime.sinks import MjpegSink, WindowSink, open_sink
    from edgeseg.runtime.sources import open_source
    from edgeseg.runtime.visualize import check_alpha

    check_alpha(args.alpha, "--alpha")
    quiet_video_logs(args)
    if not (args.show or args.save or args.serve or args.json):
        raise UsageError("demo has nowhere to put its output; add --show, --save FILE, --serve 127.0.0.1:8080 "
                         "or --json OUT")
    check_max_frames(args.max_frames)
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration {args.duration} must be positive")
    sinks = []
    if args.show:
        sinks.append(WindowSink("edgeseg demo"))  # fails here, before any work, on a headless machine
    seg = load_segmenter(args)
    ignore = class_ids(args.ignore_class, seg.meta.classes)
    try:
        source = open_source(args.source, timeout=args.timeout, reconnect=args.reconnect, loop=args.loop)
    except BaseException:
        seg.close()
        raise
    stop = StopEvent()
    timer = threading.Timer(args.duration, stop.set) if args.duration else None
    caught: list = []
    try:
        if args.save:
            # A live source's results come at the model's rate: the recording is paced by capture time
            sinks.append(open_sink(args.save, fps=source.fps, pace=source.is_live))
            refuse_overwriting_inputs(source, sinks[-1])  # a file source played with --loop, say
        if args.serve:
            from edgeseg.runtime.mjpeg import parse_address

            host, port = parse_address(args.serve)
            server = MjpegSink(host, port)
            sinks.append(server)
            print(f"serving the demo at {server.url} (also /snapshot.jpg)", file=sys.stderr)
        from edgeseg.runtime.progress import Progress

        with Progress(None, "demo") as progress, stop_on_signals(stop) as caught:
            if timer:
                timer.daemon = True
                timer.start()
            try:
                stats = run_pipeline(seg, source, sinks, render=args.visualize, alpha=args.alpha,
                                     max_frames=args.max_frames, ignore=ignore, hud=not args.no_hud, stop=stop,
                                     wait_for_fresh=not args.no_wait_fresh, workers=args.workers,
                                     on_progress=lambda s: progress.update(1, **status_fields(s)))
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
        for sink in sinks:
            sink.close()  # already closed by the pipeline on every normal path; here for early failures
        source.close()
        seg.close()
    if caught:
        print(f"edgeseg: stopped by {caught[0]}; outputs so far are complete", file=sys.stderr)
        return 128 + int(caught[1])
    return 0
