"""The frame loop: capture -> inference -> render -> outputs, with latency statistics.

    with open_source("video.mp4") as src:
        stats = run_pipeline(seg, src, sinks=[open_sink("out.mp4")], render="overlay")
    print(stats.to_dict())

A runner (:mod:`edgeseg.runtime.runners`) captures, pre-processes and infers in its own threads
(every frame in order for files, the newest frame for live sources); the calling thread
post-processes, renders and writes each :class:`~edgeseg.runtime.runners.FrameRecord`, so a
window lives in the main thread. Statistics are in :mod:`edgeseg.runtime.stats`; drawing is in
:mod:`edgeseg.runtime.render`. Several cameras: :mod:`edgeseg.runtime.multicam`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .errors import EdgesegError, SourceError, UsageError
from .metadata import class_ids
from .render import RENDERS, Renderer
from .runners import End, FrameRecord, InOrderRunner, LatestFrameRunner, Runner, batch_slots
from .sinks import Sink
from .sources import Frame, FrameStatus, Source
from .stats import CPU_STAGES, STAGES, LatencyHistogram, PipelineStats, StreamError
from .visualize import check_alpha

__all__ = ["CPU_STAGES", "STAGES", "LatencyHistogram", "PipelineStats", "StopEvent", "StreamError",
           "can_overlap", "check_workers", "plan_workers", "run_pipeline"]

MAX_WORKERS = 16  # inference threads; more than this is a typo rather than a configuration


class StopEvent(threading.Event):
    """A stop request that also knows when the run is finishing its outputs.

    ``set(reason)`` records why (e.g. ``"SIGINT"``, reported as ``stopped_by``). A signal handler
    that sees a second request while :attr:`finishing` is true should call :meth:`hold` rather
    than raise: the run raises KeyboardInterrupt once every output is final (an unclosed video
    file is unplayable).
    """

    def __init__(self) -> None:
        super().__init__()
        self.reason = ""
        self.finishing = False
        self._held = False

    def set(self, reason: str = "") -> None:  # noqa: A003 - threading.Event's name
        if not self.is_set():
            self.reason = reason
        super().set()

    def hold(self) -> None:
        self._held = True

    @contextlib.contextmanager
    def finishing_outputs(self) -> Iterator[None]:
        self.finishing = True
        try:
            yield
        finally:
            self.finishing = False
            if self._held:
                self._held = False
                raise KeyboardInterrupt


@contextlib.contextmanager
def _finishing(stop: threading.Event) -> Iterator[None]:
    if isinstance(stop, StopEvent):
        with stop.finishing_outputs():
            yield
    else:
        yield


def can_overlap(segmenter: Any) -> bool:
    """Whether the pipeline can run several of ``segmenter``'s inferences at once (workers > 1):
    a backend that allows concurrent runs, with an artifact of batch 1 (or any batch)."""
    return batch_slots(segmenter) == 1 and bool(getattr(segmenter, "concurrent_infer", False))


def check_workers(workers: int, segmenter: Any = None, label: str = "workers") -> None:
    """Raise UsageError unless ``workers`` is 1..MAX_WORKERS and, when more than 1, ``segmenter``
    (if given) can run that many inferences at once. ``label`` names the value in the message
    (``"--workers"`` for the CLI)."""
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"{label} {workers!r} must be at least 1")
    if workers > MAX_WORKERS:
        raise UsageError(f"{label} {workers} must be at most {MAX_WORKERS}")
    if segmenter is not None and workers > 1 and not can_overlap(segmenter):
        name = getattr(getattr(segmenter, "backend", None), "name", type(segmenter).__name__)
        raise UsageError(f"{label} {workers} needs a backend that runs several inferences at once; {name} "
                         f"runs one at a time, so use {label} 1 (more threads per inference instead)")


AUTO_WORKERS = 2  # measured on 2 cores: 2 one-thread inferences side by side, 1.2x the FPS of one 2-thread


def plan_workers(workers: int | str, threads: int | None, backend_kind: str, device: str,
                 frames: int | None, cpus: int) -> tuple[int, int | None]:
    """Resolve ``workers="auto"`` to ``(workers, threads)``; a number passes through unchanged.

    Auto runs AUTO_WORKERS inferences side by side, each on an equal share of the ``cpus``
    cores, when that can pay: a clip or folder of several frames (``frames`` None = unknown,
    e.g. a video without a frame count) on ONNX Runtime's CPU provider (``backend_kind`` from
    :func:`~edgeseg.runtime.segmenter.backend_kind`) with at least 2 cores. A given ``threads``
    is kept, with as many workers as fit beside it. Otherwise one worker: a single image gets
    the whole CPU for its one inference, and the GPU and PyTorch backends run one at a time.
    """
    if workers != "auto":
        return workers, threads
    if backend_kind != "onnxruntime" or device != "cpu" or (frames is not None and frames < 2) or cpus < 2:
        return 1, threads
    if threads is None:
        return AUTO_WORKERS, max(1, cpus // AUTO_WORKERS)
    return max(1, min(AUTO_WORKERS, cpus // threads)), threads


def run_pipeline(segmenter: Any, source: Source, sinks: Iterable[Sink] = (), render: str | None = "overlay",
                 alpha: float = 0.5, max_frames: int | None = None, latest_frame_wins: bool | None = None,
                 on_progress: Callable[[PipelineStats], None] | None = None, *, ignore: Sequence[int | str] = (),
                 hud: bool = False, stop: threading.Event | None = None,
                 wait_for_fresh: bool = True, workers: int = 1, result_sinks: Iterable[Any] = (),
                 camera: str = "cam0", on_event: Callable[[str], None] | None = None) -> PipelineStats:
    """Segment ``source`` frame by frame into ``sinks``; returns the run's statistics.

    ``render``: ``"overlay"`` (mask blended at ``alpha``), ``"mask"``, ``"side"`` (frame | mask) or
    None (frames pass through unchanged). ``latest_frame_wins``: None picks it from
    ``source.is_live``. ``ignore``: class ids or names left unpainted. ``hud``: draw FPS, latency and a
    legend on the frame. ``stop``: set it (e.g. from a signal handler) to end the run cleanly; a
    :class:`StopEvent` also carries the reason into ``stopped_by``.
    ``wait_for_fresh`` (live sources): when the newest frame is more than a quarter of a frame
    interval old, wait for the next one instead (lower latency, a little less throughput; counted in
    ``fresh_waits``); False always takes the newest frame at once.
    ``workers``: frames in inference at once, each in its own thread (the backend must allow
    concurrent runs, as ONNX Runtime does). On a CPU with few cores, several one-thread
    inferences side by side give more frames per second than one inference spread over the
    cores (short operators scale poorly across threads), at the one-thread latency per frame.
    Files still come out every frame, in order; on live sources a result that finishes after
    a newer frame's is dropped (counted in ``drops``), so the output never steps back in time.
    ``result_sinks``: outputs of class ids (``write_result(camera, index, capture_time, frame,
    class_map)``, e.g. :class:`~edgeseg.runtime.id_sink.ClassIdFolderSink`), fed in order under the
    name ``camera``. ``on_progress(stats)`` runs in the calling thread after every frame;
    ``on_event(line)`` hears at once when a live stream is lost, each reconnect attempt, and when
    it is back. While it is lost the picture sinks get a "NO SIGNAL" card (with the outage time)
    a few times a second, so a recording shows the gap; the outage is kept out of the FPS and
    reported as ``outage_s``.

    The sinks are closed (files finalised) when this returns or raises. A source that fails
    mid-run raises :class:`StreamError` (with ``.stats``) after the outputs are closed.
    """
    if render not in RENDERS:
        raise UsageError(f"unknown render mode {render!r}; choose one of overlay, mask, side or None")
    check_alpha(alpha)
    if max_frames is not None and max_frames < 1:
        raise UsageError(f"max_frames must be at least 1, got {max_frames}")
    check_workers(workers, segmenter)
    outputs = Outputs(sinks, result_sinks)
    meta = segmenter.meta
    draw = Renderer(render, meta.palette, meta.classes, alpha, class_ids(ignore, meta.classes), hud)
    latest = source.is_live if latest_frame_wins is None else latest_frame_wins
    stop = stop if stop is not None else threading.Event()
    stats = PipelineStats(source=source.describe())
    kind = LatestFrameRunner if latest else InOrderRunner
    opts = {"wait_for_fresh": wait_for_fresh} if latest else {"max_frames": max_frames}
    runner = kind(segmenter, source, stats, camera=camera, workers=workers, **opts)
    counters = SourceCounters(source, stats, runner)
    outages = NoSignal(outputs)
    end: End | None = None
    try:
        with runner:
            while not stop.is_set():
                rec = runner.next()  # capture, pre-process and inference ran in the runner's threads
                if latest:
                    _outages(runner, stats, on_event)
                if rec is None:
                    if stats.outage_since is not None:
                        outages.card(draw, stats)
                    continue
                if isinstance(rec, End):
                    end = rec
                    break
                postprocess(segmenter, rec, stats)  # argmax, resize to the frame
                image = timed(draw, rec, "render", stats)(rec.frame.image, rec.result.class_map, stats)
                outputs.write(image, rec)
                stats.add_frame(rec, time.perf_counter())
                counters.update()
                rec.release()
                if on_progress is not None:
                    on_progress(stats)
                if max_frames is not None and stats.frames >= max_frames:
                    end = End("max_frames")
                    break
                if outputs.stop_requested:
                    end = End("sink")
                    break
            else:
                end = End("stop")
    except BaseException as e:
        stats.stopped_by = stats.stopped_by or ("interrupt" if isinstance(e, KeyboardInterrupt) else "error")
        stats.error = stats.error or ("" if isinstance(e, KeyboardInterrupt) else str(e))
        with _finishing(stop):
            outputs.close(stats, quiet=True)
        raise
    finally:
        stats.duration_s = time.perf_counter() - stats.started
        stats.outage(False)  # an outage still running ends with the run
        counters.update(final=True)
    return _finish_run(end, stop, stats, outputs)


def _finish_run(end: End, stop: threading.Event, stats: PipelineStats, outputs: Outputs) -> PipelineStats:
    """Close the outputs, say why the run stopped, and raise what ended it (if anything did)."""
    stats.stopped_by = (getattr(stop, "reason", "") or "stop") if end.reason == "stop" else end.reason
    stats.error = end.message if end.reason == "error" else ""
    with _finishing(stop):
        outputs.close(stats, quiet=end.exc is not None)
    if end.reason == "error":
        if end.exc is not None and not isinstance(end.exc, SourceError):
            raise end.exc
        raise StreamError(end.message or "the source failed", stats)
    return stats


def _outages(runner: Any, stats: PipelineStats, on_event: Callable[[str], None] | None) -> None:
    for kind, line in runner.outage_events():
        stats.outage(kind != "back")
        if on_event is not None:
            on_event(line + (f" after {stats.outage_s:.1f} s without frames" if kind == "back" else ""))


CARD_EVERY_S = 0.2  # while a stream is lost, the picture sinks get a NO SIGNAL card this often


class NoSignal:
    """Writes "NO SIGNAL" cards (with the outage time) to the picture sinks while a stream is lost."""

    def __init__(self, outputs: Outputs) -> None:
        self.outputs, self.last = outputs, 0.0

    def card(self, draw: Renderer, stats: PipelineStats) -> None:
        now = time.perf_counter()
        if now - self.last < CARD_EVERY_S or draw.last_shape is None:
            return
        self.last = now
        card = draw.no_signal(stats.outage_s_total)  # (H, W, 3) at the size of the last image
        frame = Frame(FrameStatus.OK, card, now)
        for sink in self.outputs.sinks:
            _guard(sink, sink.write, card, frame)
        stats.no_signal_cards += 1


def postprocess(segmenter: Any, rec: FrameRecord, stats: PipelineStats) -> None:
    """The record's raw output -> ``rec.result`` at the frame's size; timed, CPU time counted."""
    # CPU time is measured inside the wall-time window of the same stage, so that a stage's CPU
    # time never exceeds its wall time (a GC pause lands in both or neither).
    t0, c0 = time.perf_counter(), time.thread_time()
    t = rec.timings
    rec.result = segmenter.finish(rec.frame.image, rec.output, rec.slot, t["preprocess_ms"], t["infer_ms"])
    stats.add_cpu("postprocess", (time.thread_time() - c0) * 1e3)
    rec.timings["postprocess_ms"] = (time.perf_counter() - t0) * 1e3
    rec.output = None


def timed(fn: Callable, rec: FrameRecord, stage: str, stats: PipelineStats) -> Callable:
    """``fn`` wrapped so its wall time goes into ``rec.timings`` and its CPU time into ``stats``."""
    def call(*args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn(*args)
        stats.add_cpu(stage, (time.thread_time() - c0) * 1e3)
        rec.timings[f"{stage}_ms"] = (time.perf_counter() - t0) * 1e3
        return out
    return call


class Outputs:
    """The picture sinks and the class-id result sinks of a run, written and closed together."""

    def __init__(self, sinks: Iterable[Sink], result_sinks: Iterable[Any] = ()) -> None:
        self.sinks, self.result_sinks = list(sinks), list(result_sinks)
        self.closed = False

    @property
    def stop_requested(self) -> bool:
        return any(getattr(s, "stop_requested", False) for s in self.sinks)

    def write(self, image: Any, rec: FrameRecord) -> None:
        t = time.perf_counter()
        for sink in self.sinks:
            _guard(sink, sink.write, image, rec.frame)
        for sink in self.result_sinks:
            _guard(sink, sink.write_result, rec.camera, rec.frame.index, wall_time(rec.capture_time),
                   rec.frame.image, rec.result.class_map)
        rec.timings["write_ms"] = (time.perf_counter() - t) * 1e3

    def close(self, stats: PipelineStats, quiet: bool = False) -> None:
        """Close every output (each one, whatever the others do); raise the first failure unless ``quiet``."""
        if self.closed:
            return
        self.closed = True
        errors = []
        for sink in (*self.sinks, *self.result_sinks):
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001 - close every output, report the first failure
                errors.append(f"{_name(sink)}: {e}")
            stats.sinks.append(sink.describe())
        if errors and not quiet:
            raise SourceError(f"could not finish output {errors[0]}")


def _name(sink: Any) -> str:
    return getattr(sink, "name", None) or type(sink).__name__


def _guard(sink: Any, write: Callable, *args: Any) -> None:
    """Call an output's write; its failure ends the run with one line naming the output."""
    try:
        write(*args)
    except EdgesegError as e:
        raise SourceError(f"output {_name(sink)} failed: {e}") from None
    except OSError as e:
        raise SourceError(f"output {_name(sink)} failed: {e.strerror or e}") from None


_EPOCH_OFFSET = time.time() - time.perf_counter()


def wall_time(perf: float) -> float:
    """A ``time.perf_counter()`` capture time -> seconds since the Unix epoch (``time.time()``)."""
    return perf + _EPOCH_OFFSET


class SourceCounters:
    """This run's share of the source's counters (a source may be reused across runs)."""

    def __init__(self, source: Source, stats: PipelineStats, runner: Runner) -> None:
        self.source, self.stats, self.runner = source, stats, runner
        self.base = (source.drops, source.reconnects, source.corrupt)
        self.base_unreadable = set(getattr(source, "unreadable", ()))

    def update(self, final: bool = False) -> None:
        s, (drops, reconnects, corrupt) = self.source, self.base
        self.stats.drops = s.drops - drops + self.runner.drops
        self.stats.reconnects = s.reconnects - reconnects
        self.stats.corrupt = s.corrupt - corrupt
        if final:
            self.stats.unreadable = [n for n in getattr(s, "unreadable", ()) if n not in self.base_unreadable]
