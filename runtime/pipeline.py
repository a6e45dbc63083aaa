"""Capture -> inference -> render -> sinks, overlapped in threads, with latency statistics.

    with open_source("video.mp4") as src:
        stats = run_pipeline(seg, src, sinks=[open_sink("out.mp4")], render="overlay")
    print(stats.to_dict())

Three threads work at once: a capture thread reads the source, an inference thread runs the
segmenter, and the calling thread renders and writes (so a window and signal handlers live in
the main thread). Between them sit small queues:

* live sources ("latest frame wins"): the source's own reader thread keeps only the newest
  frame and the inference thread takes it from there (a newer frame replaces an unread one and
  is counted in ``drops``), so a model slower than the camera never builds a backlog and lag
  stays constant; with ``latest_frame_wins=True`` on a file, a capture thread and a one-frame
  slot do the same;
* files, folders and clips: blocking queues; every frame is processed, in order, none dropped.

With ``workers=N`` there are N inference threads: files deal frames to them round-robin and
collect the results in the same rotation (still in order); live runs let each take the newest
frame and drop a result that finishes after a newer frame's.

Statistics (per-stage latency, capture-to-render latency, FPS, drops, reconnects) go into a
:class:`PipelineStats`. Latencies are kept in fixed log-spaced histograms (1 % resolution), so
memory stays flat however long the run. Beside each stage's wall time, the CPU time its thread
spent in pre-processing, post-processing and rendering is summed: on a machine with fewer cores
than busy threads, wall time also counts the time a stage waited for a core.
"""

from __future__ import annotations

import contextlib
import math
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EdgesegError, SourceError, UsageError
from .metadata import class_ids
from .sinks import Sink
from .sources import Frame, FrameStatus, Source
from .visualize import check_alpha, colorize, draw_legend, draw_text_panel, legend_width, overlay, palette_lut

RENDERS = ("overlay", "mask", "side", None)
STAGES = ("capture", "preprocess", "infer", "postprocess", "render", "write")
CPU_STAGES = ("preprocess", "postprocess", "render")  # the cheap stages whose CPU time is summed
POLL_S = 0.1  # how often blocked threads look at the stop flag
MAX_FRESH_INTERVAL_S = 0.1  # waiting for a fresh frame only pays on sources of 10 FPS and more
MAX_WORKERS = 16  # inference threads; more than this is a typo rather than a configuration


class LatencyHistogram:
    """Milliseconds in log-spaced bins (1 % wide, 0.01 ms to ~100 s): constant memory, 1 % percentiles."""

    LO_MS = 0.01
    RATIO = 1.01
    BINS = int(math.log(1e7) / math.log(1.01)) + 2

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS, np.int64)  # (BINS,)
        self.n = 0
        self.total = 0.0
        self.max = 0.0
        self._log_ratio = math.log(self.RATIO)

    def add(self, ms: float) -> None:
        i = int(math.log(ms / self.LO_MS) / self._log_ratio) if ms > self.LO_MS else 0
        self.counts[min(i, self.BINS - 1)] += 1
        self.n += 1
        self.total += ms
        if ms > self.max:
            self.max = ms

    def copy(self) -> LatencyHistogram:
        h = LatencyHistogram()
        h.counts[:] = self.counts
        h.n, h.total, h.max = self.n, self.total, self.max
        return h

    def since(self, earlier: LatencyHistogram) -> LatencyHistogram:
        """The samples added after ``earlier`` was copied (for consecutive windows); max is approximate."""
        h = LatencyHistogram()
        np.subtract(self.counts, earlier.counts, out=h.counts)
        h.n, h.total = self.n - earlier.n, self.total - earlier.total
        nz = np.flatnonzero(h.counts)
        h.max = self.LO_MS * self.RATIO ** (nz[-1] + 1) if len(nz) else 0.0
        return h

    def percentile(self, q: float) -> float:
        if self.n == 0:
            return float("nan")
        cum = np.cumsum(self.counts)  # (BINS,)
        i = int(np.searchsorted(cum, q / 100.0 * self.n, side="left"))
        return min(self.LO_MS * self.RATIO ** (i + 0.5), self.max) if i else self.LO_MS

    def summary(self) -> dict[str, float]:
        if self.n == 0:
            return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None, "n": 0}
        return {"p50": round(self.percentile(50), 3), "p90": round(self.percentile(90), 3),
                "p99": round(self.percentile(99), 3), "mean": round(self.total / self.n, 3),
                "max": round(self.max, 3), "n": self.n}


@dataclass
class PipelineStats:
    frames: int = 0  # frames rendered and handed to every sink
    drops: int = 0  # live frames skipped because a newer one arrived (or, with workers, finished) first
    reconnects: int = 0
    corrupt: int = 0  # undecodable frames skipped by the source
    unreadable: list[str] = field(default_factory=list)  # the files among them, by name (image sources)
    timeouts: int = 0  # live reads that got nothing within the source timeout
    fresh_waits: int = 0  # stale live frames skipped for the next one (wait_for_fresh)
    duration_s: float = 0.0
    stopped_by: str = ""  # eos | max_frames | stop | sink | interrupt | error
    error: str = ""
    latency: dict[str, LatencyHistogram] = field(default_factory=lambda: {s: LatencyHistogram() for s in STAGES})
    capture_to_render: LatencyHistogram = field(default_factory=LatencyHistogram)
    source: dict[str, Any] = field(default_factory=dict)
    sinks: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    # Live runs with several inference workers pre-process in each of them: the totals take a lock.
    cpu_total_ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(CPU_STAGES, 0.0))
    _cpu_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recent: deque = field(default_factory=lambda: deque(maxlen=32), repr=False)  # last render times

    @property
    def fps(self) -> float:
        elapsed = self.duration_s or (time.perf_counter() - self.started)
        return self.frames / elapsed if elapsed > 0 else 0.0

    def add_cpu(self, stage: str, ms: float) -> None:
        """Add ``ms`` of the calling thread's CPU time to ``stage``."""
        with self._cpu_lock:
            self.cpu_total_ms[stage] += ms

    def cpu_ms_per_frame(self) -> dict[str, float | None]:
        """CPU time per rendered frame of each cheap stage; frames dropped after pre-processing
        count too (their pre-processing was paid for)."""
        if not self.frames:
            return dict.fromkeys(self.cpu_total_ms)
        return {k: round(v / self.frames, 3) for k, v in self.cpu_total_ms.items()}

    @property
    def recent_fps(self) -> float:
        """Frame rate over the last (up to) 32 frames: what the HUD shows."""
        if len(self._recent) < 2:
            return 0.0
        span = self._recent[-1] - self._recent[0]
        return (len(self._recent) - 1) / span if span > 0 else 0.0

    def status_line(self) -> str:
        c2r = self.capture_to_render
        infer = self.latency["infer"]
        parts = [f"{self.recent_fps or self.fps:.1f} fps",
                 f"infer {infer.percentile(50):.1f} ms" if infer.n else "infer -",
                 f"latency p50 {c2r.percentile(50):.0f} p99 {c2r.percentile(99):.0f} ms" if c2r.n else "latency -"]
        if self.drops:
            parts.append(f"drops {self.drops}")
        if self.reconnects:
            parts.append(f"reconnects {self.reconnects}")
        if self.corrupt:
            parts.append(f"corrupt {self.corrupt}")
        return " | ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        def trio(h: LatencyHistogram) -> dict[str, float | None]:
            return h.summary()

        return {
            "fps": round(self.fps, 3),
            "frames": self.frames,
            "drops": self.drops,
            "reconnects": self.reconnects,
            "corrupt": self.corrupt,
            "unreadable": list(self.unreadable),
            "timeouts": self.timeouts,
            "fresh_waits": self.fresh_waits,
            "duration_s": round(self.duration_s or (time.perf_counter() - self.started), 3),
            "latency_ms": {s: trio(h) for s, h in self.latency.items()},
            "capture_to_render_ms": trio(self.capture_to_render),
            "cpu_ms_per_frame": self.cpu_ms_per_frame(),
            "stopped_by": self.stopped_by,
            "error": self.error,
            "source": self.source,
            "sinks": self.sinks,
        }


class StreamError(SourceError):
    """The source failed mid-run (after its reconnect attempts); ``stats`` holds the run so far."""

    def __init__(self, message: str, stats: PipelineStats) -> None:
        super().__init__(message)
        self.stats = stats


class _LatestSlot:
    """A queue of one where ``put`` replaces an unread item (returned, so it can be released).

    ``finish(end)`` queues an end marker behind whatever frame is still waiting.
    """

    def __init__(self) -> None:
        self._item: Any = None
        self._has = False
        self._end: Any = None
        self._cond = threading.Condition()

    def put(self, item: Any) -> Any:
        with self._cond:
            old = self._item if self._has else None
            self._item, self._has = item, True
            self._cond.notify()
            return old

    def finish(self, end: Any) -> None:
        with self._cond:
            self._end = end
            self._cond.notify()

    def get(self, timeout: float) -> Any:
        with self._cond:
            if not self._has and self._end is None and not self._cond.wait_for(
                    lambda: self._has or self._end is not None, timeout):
                raise queue.Empty
            if self._has:
                item, self._item, self._has = self._item, None, False
                return item
            end, self._end = self._end, None
            return end


class _Prepared:
    """A frame and its pre-processed batch, which lives in a pre-processor lent from ``free``."""

    __slots__ = ("frame", "batch", "pre_ms", "_pre", "_free")

    def __init__(self, frame: Frame, pre: Any, batch: np.ndarray, pre_ms: float, free: queue.Queue) -> None:
        self.frame, self.batch, self.pre_ms, self._pre, self._free = frame, batch, pre_ms, pre, free

    def free_slot(self) -> None:
        """Give the pre-processor (and its buffer) back once the model has read the batch."""
        if self._pre is not None:
            self._free.put(self._pre)
            self._pre = None

    def release(self) -> None:
        self.free_slot()
        self.frame.release()


def _timed_preprocess(pre: Any, image: np.ndarray, stats: PipelineStats) -> tuple[np.ndarray, float]:
    """``pre([image])`` and the milliseconds it took; its CPU time goes into ``stats``."""
    t, c = time.perf_counter(), time.thread_time()
    batch = pre([image])
    stats.add_cpu("preprocess", (time.thread_time() - c) * 1e3)
    return batch, (time.perf_counter() - t) * 1e3


@dataclass
class _End:
    """End-of-run marker travelling down the queues behind the last frame."""

    reason: str
    message: str = ""
    exc: BaseException | None = None


class _Renderer:
    """Draws the output image into buffers it owns and reuses frame after frame."""

    def __init__(self, mode: str | None, palette: Sequence[Sequence[int]], classes: Sequence[str], alpha: float,
                 ignore: Sequence[int], hud: bool) -> None:
        self.mode, self.alpha, self.ignore, self.hud = mode, alpha, list(ignore), hud
        self.classes, self.palette = list(classes), [tuple(c) for c in palette]
        self.legend_ids = [i for i in range(len(self.classes)) if i not in set(self.ignore)]
        self.lut = palette_lut(palette)  # (256, 1, 3) BGR, built once
        self._color: np.ndarray | None = None  # (H, W, 3) colour mask
        self._canvas: np.ndarray | None = None  # (H, W, 3) or (H, 2W, 3) output

    def _buf(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        buf = getattr(self, name)
        if buf is None or buf.shape != shape:
            buf = np.empty(shape, np.uint8)
            setattr(self, name, buf)
        return buf

    def __call__(self, image: np.ndarray, class_map: np.ndarray, stats: PipelineStats) -> np.ndarray:
        h, w = class_map.shape
        if self.mode is None:
            out = image  # the frame as captured (e.g. to record the raw stream next to stats)
            if self.hud:
                out = self._buf("_canvas", image.shape)
                np.copyto(out, image)  # never draw on the source's buffer
        else:
            color = colorize(class_map, self.lut, out=self._buf("_color", (h, w, 3)))  # (H, W, 3)
            if self.mode == "mask":
                out = color
            elif self.mode == "overlay":
                out = overlay(image, class_map, self.lut, self.alpha, self.ignore, color=color,
                              out=self._buf("_canvas", (h, w, 3)))
            else:  # side: frame | colour mask, in one (H, 2W, 3) buffer
                out = self._buf("_canvas", (h, 2 * w, 3))
                out[:, :w] = image
                out[:, w:] = color
        if self.hud:
            c2r = stats.capture_to_render
            lines = [f"{stats.recent_fps:.1f} FPS",
                     f"infer {stats.latency['infer'].percentile(50):.1f} ms" if stats.latency["infer"].n else "infer -",
                     f"latency {c2r.percentile(50):.0f} ms (p99 {c2r.percentile(99):.0f})" if c2r.n else "latency -"]
            if stats.drops:
                lines.append(f"dropped {stats.drops}")
            # Text scales with the frame so the HUD covers the same share of a 240p or a 1080p frame.
            scale = min(1.0, max(0.3, out.shape[0] / 1200))
            draw_text_panel(out, lines, scale=scale * 1.2)
            legend_x = max(8, out.shape[1] - legend_width(self.classes, self.legend_ids, scale) - 8)
            draw_legend(out, self.classes, self.palette, self.legend_ids, origin=(legend_x, 8), scale=scale)
        return out


def _staged(segmenter: Any) -> bool:
    """Whether the pipeline can run ``segmenter``'s stages in separate threads (a Segmenter, batch 1)."""
    return hasattr(segmenter, "infer_prepared") and (getattr(segmenter, "fixed_batch", None) or 1) == 1


def can_overlap(segmenter: Any) -> bool:
    """Whether the pipeline can run several of ``segmenter``'s inferences at once (workers > 1)."""
    return _staged(segmenter) and bool(getattr(segmenter, "concurrent_infer", False))


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
                 wait_for_fresh: bool = True, workers: int = 1) -> PipelineStats:
    """Segment ``source`` frame by frame into ``sinks``; returns the run's statistics.

    ``render``: ``"overlay"`` (mask blended at ``alpha``), ``"mask"``, ``"side"`` (frame | mask) or
    None (frames pass through unchanged). ``latest_frame_wins``: None picks it from
    ``source.is_live``. ``ignore``: class ids or names left unpainted. ``hud``: draw FPS, latency and a
    legend on the frame. ``stop``: set it (e.g. from a signal handler) to end the run cleanly.
    ``wait_for_fresh`` (live sources): when the newest frame is more than half a frame interval
    old, wait for the next one instead (lower latency, a little less throughput; counted in
    ``fresh_waits``); False always takes the newest frame at once.
    ``workers``: frames in inference at once, each in its own thread (the backend must allow
    concurrent runs, as ONNX Runtime does). On a CPU with few cores, several one-thread
    inferences side by side give more frames per second than one inference spread over the
    cores (short operators scale poorly across threads), at the one-thread latency per frame.
    Files still come out every frame, in order; on live sources a result that finishes after
    a newer frame's is dropped (counted in ``drops``), so the output never steps back in time.
    ``on_progress(stats)`` runs in the calling thread after every frame.

    The sinks are closed (files finalised) when this returns or raises. A source that fails
    mid-run raises :class:`StreamError` (with ``.stats``) after the outputs are closed.
    """
    if render not in RENDERS:
        raise UsageError(f"unknown render mode {render!r}; choose one of overlay, mask, side or None")
    check_alpha(alpha)
    if max_frames is not None and max_frames < 1:
        raise UsageError(f"max_frames must be at least 1, got {max_frames}")
    check_workers(workers, segmenter)
    sinks = list(sinks)
    meta = segmenter.meta
    renderer = _Renderer(render, meta.palette, meta.classes, alpha, class_ids(ignore, meta.classes), hud)
    latest = source.is_live if latest_frame_wins is None else latest_frame_wins
    stop = stop or threading.Event()
    halt = threading.Event()  # internal: set when the run must end for any reason
    stats = PipelineStats(source=source.describe())
    slot_drops = 0
    stale_drops = 0  # live results that finished after a newer frame's (several workers)
    # A live source already keeps only its newest frame (its own thread reads the device), so the
    # inference thread takes frames from it directly: no second hand-off, and a source that
    # decodes lazily decodes only the frames that are actually used.
    direct = latest and source.is_live
    wait_for_fresh = wait_for_fresh and direct and hasattr(source, "wait_newer")
    # With a real Segmenter the three stages run in three threads: pre-processing in the capture
    # thread (in-order runs; live frames are pre-processed when picked, to stay the newest),
    # inference alone in the inference thread, argmax/resize next to rendering. The model then
    # never waits for the cheap stages. Anything else with ``__call__`` and ``meta`` works too,
    # all stages in the inference thread.
    staged = _staged(segmenter)
    if not staged:  # pre- and post-processing happen inside one opaque call: their CPU time is unknown
        for stage in ("preprocess", "postprocess"):
            stats.cpu_total_ms.pop(stage, None)
    # In-order runs give each worker its own queues and deal frames round-robin, so the results can
    # be collected in the same rotation, in order. Live runs share one input (the newest frame goes
    # to whichever worker is free) and one output, in order of completion.
    lanes = 1 if latest else workers
    q_ins: list[Any] = ([_LatestSlot()] if latest else
                        [queue.Queue(maxsize=4 if workers == 1 else 2) for _ in range(lanes)])
    q_outs: list[queue.Queue] = [queue.Queue(maxsize=workers if latest else 2) for _ in range(lanes)]
    free_pre: queue.Queue = queue.Queue()  # in-order runs: pre-processors (input buffers) not in flight
    if staged and not latest:
        # one being filled, and per worker one in inference and one queued
        for _ in range(2 * workers + 1):
            free_pre.put(segmenter.new_preprocessor())
    # live runs: each worker pre-processes the frames it picks, into its own buffer
    own_pres = [segmenter.new_preprocessor() if staged and latest else None for _ in range(workers)]
    failures: list[_End] = []  # a worker's error, for the main thread while it waits on another lane
    ended = 0  # live runs: workers that have met the end of the source
    ended_lock = threading.Lock()
    live_timeout = float(getattr(source, "timeout", 5.0))
    base_drops, base_reconnects, base_corrupt = source.drops, source.reconnects, source.corrupt
    base_unreadable = set(getattr(source, "unreadable", ()))

    def count_source_events() -> None:
        """This run's share of the source's counters (a source may be reused across runs)."""
        stats.drops = source.drops - base_drops + slot_drops + stale_drops
        stats.reconnects = source.reconnects - base_reconnects
        stats.corrupt = source.corrupt - base_corrupt

    def put_blocking(q: queue.Queue, item: Any) -> bool:
        while not halt.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def prepare_in_capture(frame: Frame) -> _Prepared | None:
        """Pre-process into a free input buffer (waits for one); None once halted."""
        while not halt.is_set():
            try:
                pre = free_pre.get(timeout=POLL_S)
            except queue.Empty:
                continue
            batch, pre_ms = _timed_preprocess(pre, frame.image, stats)
            return _Prepared(frame, pre, batch, pre_ms, free_pre)
        return None

    def capture() -> None:
        nonlocal slot_drops
        read = 0
        try:
            while not halt.is_set():
                if max_frames is not None and read >= max_frames and not latest:
                    end: Any = _End("max_frames")
                    break
                frame = source.read()
                if frame.status is FrameStatus.OK:
                    q_in = q_ins[read % lanes]  # round-robin over the workers (in-order runs)
                    read += 1
                    if latest:
                        old = q_in.put(frame)
                        if old is not None:
                            slot_drops += 1  # the model is busy: the newest frame replaces it
                            old.release()
                    elif staged:
                        item = prepare_in_capture(frame)
                        if item is None or not put_blocking(q_in, item):
                            if item is not None:
                                item.release()
                            else:
                                frame.release()
                            return
                    elif not put_blocking(q_in, frame):
                        frame.release()
                        return
                elif frame.status is FrameStatus.TIMEOUT:
                    stats.timeouts += 1
                elif frame.status is FrameStatus.EOS:
                    end = _End("eos", frame.message)
                    break
                else:
                    end = _End("error", frame.message)
                    break
            else:
                return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread and re-raised there
            end = _End("error", str(e), e)
        if latest:
            q_ins[0].finish(end)
        else:
            put_blocking(q_ins[read % lanes], end)  # the lane whose turn is next: it ends the rotation

    def wait_if_stale() -> None:
        """Skip a frame that has waited more than half a frame interval when a new one is due.

        The next frame is then closer than the waiting one is old, so waiting for it (less than
        half an interval) returns a result about one frame interval fresher; the price is that
        wait, in throughput. Capture-to-render latency drops from up to ~1 interval + processing
        to up to ~0.5 interval + processing.
        """
        interval = getattr(source, "frame_interval", None)
        newest = source.newest_timestamp() if interval else None
        if newest is None or interval > MAX_FRESH_INTERVAL_S:
            return
        age = time.perf_counter() - newest
        if age > interval / 2 and source.wait_newer(newest, max(interval - age, 0.0) + interval / 2):
            stats.fresh_waits += 1

    def read_live() -> Any:
        """The newest frame straight from a live source (or an _End); None once halted."""
        waited = 0.0
        while not halt.is_set():
            if wait_for_fresh:
                wait_if_stale()
            frame = source.read(timeout=POLL_S)  # short waits: a stop request is seen within POLL_S
            if frame.status is FrameStatus.OK:
                return frame
            if frame.status is FrameStatus.TIMEOUT:
                waited += POLL_S
                if waited >= live_timeout:
                    stats.timeouts += 1
                    waited = 0.0
                continue
            return _End("eos" if frame.status is FrameStatus.EOS else "error", frame.message)
        return None

    def next_input(q_in: Any) -> Any:
        if direct:
            return read_live()
        try:
            return q_in.get(timeout=POLL_S)
        except queue.Empty:
            return None

    def forward_end(end: _End, q_in: Any, q_out: queue.Queue) -> None:
        """Pass the end on once every earlier frame is out: in-order lanes are already in order;
        live workers share one output, so the last worker to stop forwards it."""
        nonlocal ended
        if latest and workers > 1 and end.reason != "error":
            with ended_lock:
                ended += 1
                last = ended == workers
            if not last:
                if not direct:
                    q_in.finish(end)  # the shared slot hands the marker to the next worker too
                return
        if end.reason == "error":
            failures.append(end)
        put_blocking(q_out, end)

    def infer(lane: int) -> None:
        q_in, q_out, own_pre = q_ins[lane % len(q_ins)], q_outs[lane % lanes], own_pres[lane]
        while not halt.is_set():
            item = next_input(q_in)
            if item is None:
                continue
            if isinstance(item, _End):
                forward_end(item, q_in, q_out)
                return
            try:
                if not staged:
                    res: Any = segmenter(item.image)
                    frame = item
                else:
                    if isinstance(item, _Prepared):  # pre-processed by the capture thread
                        frame, batch, pre_ms = item.frame, item.batch, item.pre_ms
                    else:  # a live frame picked just now: pre-process it here
                        frame = item
                        batch, pre_ms = _timed_preprocess(own_pre, frame.image, stats)
                    t = time.perf_counter()
                    out = segmenter.infer_prepared(batch)  # raw output; the input buffer is free again
                    res = (out, pre_ms, (time.perf_counter() - t) * 1e3)
                    if isinstance(item, _Prepared):
                        item.free_slot()
            except BaseException as e:  # noqa: BLE001 - handed to the main thread and re-raised there
                item.release()
                forward_end(_End("error", str(e), e), q_in, q_out)
                return
            if not put_blocking(q_out, (frame, res)):
                frame.release()
                return

    threads = [threading.Thread(target=infer, args=(i,), name=f"pipeline-infer{i if workers > 1 else ''}",
                                daemon=True) for i in range(workers)]
    if not direct:
        threads.append(threading.Thread(target=capture, name="pipeline-capture", daemon=True))
    end: _End | None = None
    failure: BaseException | None = None
    lat = stats.latency
    taken = 0  # results taken so far: in-order runs read lane taken % lanes next
    newest_shown = -math.inf  # live runs: capture time of the newest frame rendered
    try:
        for t in threads:
            t.start()
        while True:
            if stop.is_set():
                end = _End("stop")
                break
            try:
                item = q_outs[taken % lanes].get(timeout=POLL_S)
            except queue.Empty:
                if failures:  # a worker failed while this thread waits on another worker's lane
                    end = failures[0]
                    break
                continue
            taken += 1
            if isinstance(item, _End):
                end = item
                break
            frame, res = item
            if latest and workers > 1:
                if frame.timestamp < newest_shown:  # a newer frame's result came first
                    stale_drops += 1
                    frame.release()
                    continue
                newest_shown = frame.timestamp
            if staged:  # post-processing (argmax, resize to the frame) runs here, beside rendering
                out, pre_ms, infer_ms = res
                # CPU time is measured inside the wall-time window of the same stage, so that a
                # stage's CPU time never exceeds its wall time (a GC pause lands in both or neither)
                t0, c0 = time.perf_counter(), time.thread_time()
                res = segmenter.finish(frame.image, out, 0, pre_ms, infer_ms)
                stats.add_cpu("postprocess", (time.thread_time() - c0) * 1e3)
                res.timings["postprocess_ms"] = (time.perf_counter() - t0) * 1e3
            t0, c0 = time.perf_counter(), time.thread_time()
            image = renderer(frame.image, res.class_map, stats)  # (H, W, 3) uint8 BGR
            stats.add_cpu("render", (time.thread_time() - c0) * 1e3)
            t1 = time.perf_counter()
            for sink in sinks:
                try:
                    sink.write(image, frame)
                except EdgesegError as e:
                    raise SourceError(f"output {sink.name} failed: {e}") from None
                except OSError as e:
                    raise SourceError(f"output {sink.name} failed: {e.strerror or e}") from None
            t2 = time.perf_counter()
            timings = res.timings
            lat["capture"].add(frame.capture_ms)
            lat["preprocess"].add(timings["preprocess_ms"])
            lat["infer"].add(timings["infer_ms"])
            lat["postprocess"].add(timings["postprocess_ms"])
            lat["render"].add((t1 - t0) * 1e3)
            lat["write"].add((t2 - t1) * 1e3)
            stats.capture_to_render.add((t2 - frame.timestamp) * 1e3)
            stats.frames += 1
            stats._recent.append(t2)
            count_source_events()
            frame.release()
            if on_progress is not None:
                on_progress(stats)
            if max_frames is not None and stats.frames >= max_frames:
                end = _End("max_frames")
                break
            if any(s.stop_requested for s in sinks):
                end = _End("sink")
                break
    except KeyboardInterrupt as e:
        stats.stopped_by = "interrupt"
        failure = e
        raise
    except BaseException as e:
        failure = e
        raise
    finally:
        halt.set()
        close_errors = []
        # A second Ctrl-C must not cut this short: an unclosed video file is unplayable, and a
        # process that exits while a worker is still inside native code aborts.
        with _signals_deferred():
            stats.duration_s = time.perf_counter() - stats.started
            # Sinks first (only this thread writes to them), so outputs are final as soon as possible.
            for sink in sinks:
                try:
                    sink.close()
                except Exception as e:  # noqa: BLE001 - close every sink, report the first failure
                    close_errors.append(f"{sink.name}: {e}")
                stats.sinks.append(sink.describe())
            for t in threads:
                t.join(timeout=10.0)
            for q in (*q_ins, *q_outs):
                _drain(q)
            count_source_events()
            stats.unreadable = [n for n in getattr(source, "unreadable", ()) if n not in base_unreadable]
        if end is not None:
            stats.stopped_by = end.reason
            stats.error = end.message if end.reason == "error" else ""
        elif failure is not None and not stats.stopped_by:
            stats.stopped_by, stats.error = "error", str(failure)
        if close_errors and failure is None and (end is None or end.exc is None):
            # Only when nothing else went wrong: the first failure is the one worth reporting.
            raise SourceError(f"could not finish output {close_errors[0]}")
    if end is not None and end.reason == "error":
        if end.exc is not None and not isinstance(end.exc, SourceError):
            raise end.exc
        raise StreamError(end.message or "the source failed", stats)
    return stats


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs, then deliver any that came to the previous handler.

    Only the main thread can change handlers, and a handler installed outside Python cannot be put
    back; in those cases the block simply runs.
    """
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in wanted}
    if threading.current_thread() is not threading.main_thread() or None in previous.values():
        yield
        return
    held: list[int] = []
    for s in wanted:
        signal.signal(s, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        for signum in dict.fromkeys(held):  # each kind once, in arrival order
            signal.raise_signal(signum)


def _drain(q: Any) -> None:
    """Release frames left in a queue so their buffers go back to the source's pool."""
    while True:
        try:
            item = q.get(timeout=0) if isinstance(q, _LatestSlot) else q.get_nowait()
        except queue.Empty:
            return
        frame = item[0] if isinstance(item, tuple) else item
        if isinstance(frame, (Frame, _Prepared)):
            frame.release()
