"""Runners: the threads that turn a source's frames into inferred :class:`FrameRecord` s.

A runner owns capture, pre-processing and inference; the frame loop (:func:`run_pipeline`) takes
its records one by one and does the rest (post-processing, rendering, writing) in the calling
thread. Two kinds:

* :class:`InOrderRunner` (files, folders, clips): every frame, in order. A capture thread reads
  and pre-processes into input buffers lent from a small pool, and deals the frames round-robin
  to ``workers`` inference threads; the records are collected in the same rotation, so they
  come out in order.
* :class:`LatestFrameRunner` (live sources): the newest frame wins. Each inference thread takes
  the newest frame straight from the live source (whose own reader keeps only that one), so a
  model slower than the camera never builds a backlog; with several workers a result that
  finishes after a newer frame's is dropped, so the output never steps back in time.

The segmenter is anything with the stage methods of :class:`~edgeseg.runtime.Segmenter`:
``meta``, ``fixed_batch``, ``concurrent_infer``, ``new_preprocessor()``, ``infer_prepared(batch)``
and ``finish(image, output, index, preprocess_ms, infer_ms)``.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .sources import Frame, FrameStatus, Source
from .stats import PipelineStats

POLL_S = 0.1  # how often blocked threads look at the halt flag
# Frames older than this share of a frame interval are skipped for the next one (wait_for_fresh):
# the trade of latency against frame rate, measured in docs/runtime.md#sources.
FRESH_AGE = 0.25
MAX_FRESH_INTERVAL_S = 0.1  # waiting for a fresh frame only pays on sources of 10 FPS and more


@dataclass(eq=False)
class FrameRecord:
    """One frame on its way through the pipeline: everything known about it travels together."""

    camera: str
    frame: Frame  # .image (H, W, 3) uint8 BGR; .timestamp = capture time (perf_counter)
    batch: np.ndarray | None = None  # the prepared model input it sits in
    output: Any = None  # the raw model output of its inference (the whole batch)
    slot: int = 0  # its item in ``batch`` and ``output``
    result: Any = None  # the Result, once post-processed
    timings: dict[str, float] = field(default_factory=dict)  # preprocess_ms, infer_ms, postprocess_ms, ...
    _pre: Any = None  # the pre-processor lent from ``_free`` whose buffer holds ``batch``
    _free: queue.Queue | None = None

    @property
    def capture_time(self) -> float:
        return self.frame.timestamp

    def free_input(self) -> None:
        """Give the pre-processor (and its buffer) back once the model has read the batch."""
        if self._pre is not None and self._free is not None:
            self._free.put(self._pre)
        self._pre, self.batch = None, None

    def release(self) -> None:
        self.free_input()
        self.frame.release()


@dataclass
class End:
    """End-of-run marker travelling behind the last frame: eos | max_frames | error."""

    reason: str
    message: str = ""
    exc: BaseException | None = None


def prepare_each(pre: Any, images: list[np.ndarray], slots: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Pre-process ``images`` into ``pre``'s batch buffer of ``slots`` items (a fixed-batch model
    gets the last image repeated as padding); the batch and each image's (wall ms, CPU ms)."""
    n = len(images)
    batch = pre.reserve(max(slots, n))  # (N, 3, h, w) float32 or (N, h, w, 3) uint8
    times = []
    for i, image in enumerate(images):
        t, c = time.perf_counter(), time.thread_time()
        pre.one(image, i)
        times.append(((time.perf_counter() - t) * 1e3, (time.thread_time() - c) * 1e3))
    for i in range(n, len(batch)):
        batch[i] = batch[n - 1]
    return batch, times


def prepare(pre: Any, images: list[np.ndarray], slots: int, stats: PipelineStats) -> tuple[np.ndarray, float]:
    """:func:`prepare_each` for one camera: the batch and the milliseconds it took; the CPU time goes
    into ``stats``."""
    batch, times = prepare_each(pre, images, slots)
    stats.add_cpu("preprocess", sum(c for _, c in times))
    return batch, sum(w for w, _ in times)


def batch_slots(segmenter: Any) -> int:
    """Items in one inference of ``segmenter``'s artifact for one frame (its fixed batch, else 1)."""
    return getattr(segmenter, "fixed_batch", None) or 1


def infer(segmenter: Any, rec: FrameRecord) -> FrameRecord:
    """Run the model on the record's prepared input; the input buffer is free again afterwards."""
    t = time.perf_counter()
    rec.output = segmenter.infer_prepared(rec.batch)  # (N, C, h, w) logits or (N, h, w) ids
    rec.timings["infer_ms"] = (time.perf_counter() - t) * 1e3
    rec.free_input()
    return rec


class LatestSlot:
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


class Runner:
    """Threads around one source; :meth:`next` hands out records (or the :class:`End`) in the
    calling thread. Use as a context manager: leaving it halts and joins every thread."""

    def __init__(self, segmenter: Any, source: Source, stats: PipelineStats, *, camera: str = "cam0",
                 workers: int = 1, max_frames: int | None = None) -> None:
        self.seg, self.source, self.stats, self.camera = segmenter, source, stats, camera
        self.workers, self.max_frames = workers, max_frames
        self.halt = threading.Event()  # set when the run must end for any reason
        self.drops = 0  # frames this runner skipped (on top of the source's own drops)
        self.failures: list[End] = []  # a worker's error, seen while the caller waits on another lane
        self.threads: list[threading.Thread] = []
        self.slots = batch_slots(segmenter)

    def _thread(self, target: Any, name: str, *args: Any) -> None:
        self.threads.append(threading.Thread(target=target, args=args, name=f"pipeline-{name}", daemon=True))

    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Put, waiting for room unless halted; False once halted."""
        while not self.halt.is_set():
            try:
                q.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _record(self, frame: Frame) -> FrameRecord:
        return FrameRecord(self.camera, frame)

    def __enter__(self) -> Runner:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for t in self.threads:
            t.join(timeout=10.0)
        self._drain()

    def next(self) -> FrameRecord | End | None:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError


def _drain(q: Any) -> None:
    """Release records and frames left in a queue so their buffers go back to the pools."""
    while True:
        try:
            item = q.get(timeout=0) if isinstance(q, LatestSlot) else q.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, (FrameRecord, Frame)):
            item.release()


class InOrderRunner(Runner):
    """Every frame, in order, with ``workers`` inferences side by side (files, folders, clips)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        lanes = self.workers
        self.q_ins = [queue.Queue(maxsize=4 if lanes == 1 else 2) for _ in range(lanes)]
        self.q_outs = [queue.Queue(maxsize=2) for _ in range(lanes)]
        self.free_pre: queue.Queue = queue.Queue()  # pre-processors (input buffers) not in flight
        for _ in range(2 * lanes + 1):  # one being filled, and per worker one in inference and one queued
            self.free_pre.put(self.seg.new_preprocessor())
        self.taken = 0  # records handed out: the next comes from lane taken % lanes
        self._thread(self._capture, "capture")
        for i in range(lanes):
            self._thread(self._infer, f"infer{i if lanes > 1 else ''}", i)

    def _prepare(self, frame: Frame) -> FrameRecord | None:
        """Pre-process into a free input buffer (waits for one); None once halted."""
        while not self.halt.is_set():
            try:
                pre = self.free_pre.get(timeout=POLL_S)
            except queue.Empty:
                continue
            rec = self._record(frame)
            rec.batch, rec.timings["preprocess_ms"] = prepare(pre, [frame.image], self.slots, self.stats)
            rec._pre, rec._free = pre, self.free_pre
            return rec
        return None

    def _capture(self) -> None:
        read, lanes = 0, len(self.q_ins)
        try:
            while not self.halt.is_set():
                if self.max_frames is not None and read >= self.max_frames:
                    end = End("max_frames")
                    break
                frame = self.source.read()
                if frame.status is FrameStatus.OK:
                    rec = self._prepare(frame)
                    if rec is None or not self._put(self.q_ins[read % lanes], rec):
                        (rec or frame).release()
                        return
                    read += 1
                elif frame.status is FrameStatus.TIMEOUT:
                    self.stats.timeouts += 1
                elif frame.status is FrameStatus.EOS:
                    end = End("eos", frame.message)
                    break
                else:
                    end = End("error", frame.message)
                    break
            else:
                return
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread and re-raised there
            end = End("error", str(e), e)
        self._put(self.q_ins[read % lanes], end)  # the lane whose turn is next ends the rotation

    def _infer(self, lane: int) -> None:
        q_in, q_out = self.q_ins[lane], self.q_outs[lane]
        while not self.halt.is_set():
            try:
                rec = q_in.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if isinstance(rec, End):
                self._put(q_out, rec)
                return
            try:
                infer(self.seg, rec)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread and re-raised there
                rec.release()
                end = End("error", str(e), e)
                self.failures.append(end)
                self._put(q_out, end)
                return
            if not self._put(q_out, rec):
                rec.release()
                return

    def next(self) -> FrameRecord | End | None:
        try:
            item = self.q_outs[self.taken % len(self.q_outs)].get(timeout=POLL_S)
        except queue.Empty:
            return self.failures[0] if self.failures else None  # a worker failed on another lane
        self.taken += 1
        return item

    def _drain(self) -> None:
        for q in (*self.q_ins, *self.q_outs):
            _drain(q)


class LatestFrameRunner(Runner):
    """The newest frame wins (live sources): frames that arrive while the model is busy are
    skipped and counted, so lag never grows. ``wait_for_fresh``: see :func:`run_pipeline`."""

    def __init__(self, *args: Any, wait_for_fresh: bool = True, **kw: Any) -> None:
        super().__init__(*args, **kw)
        # A live source already keeps only its newest frame (its own thread reads the device), so
        # the workers take frames from it directly: no second hand-off, and a source that decodes
        # lazily decodes only the frames that are actually used. Anything else (a file played as
        # if live) gets a capture thread and a one-frame slot.
        self.direct = self.source.is_live
        self.slot = None if self.direct else LatestSlot()
        self.wait_for_fresh = wait_for_fresh and self.direct and hasattr(self.source, "wait_newer")
        self.live_timeout = float(getattr(self.source, "timeout", 5.0))
        self.events: queue.SimpleQueue = queue.SimpleQueue()  # (kind, line) of the source's outages
        if hasattr(self.source, "listener"):
            self.source.listener = lambda kind, line: self.events.put((kind, line))
        self.q_out: queue.Queue = queue.Queue(maxsize=self.workers)
        self.newest_shown = -float("inf")  # capture time of the newest record handed out
        self._ended = 0  # workers that have met the end of the source
        self._ended_lock = threading.Lock()
        if not self.direct:
            self._thread(self._capture, "capture")
        for i in range(self.workers):
            self._thread(self._infer, f"infer{i if self.workers > 1 else ''}", self.seg.new_preprocessor())

    def _capture(self) -> None:
        try:
            while not self.halt.is_set():
                frame = self.source.read()
                if frame.status is FrameStatus.OK:
                    old = self.slot.put(frame)
                    if old is not None:
                        self.drops += 1  # the model is busy: the newest frame replaces it
                        old.release()
                elif frame.status is FrameStatus.TIMEOUT:
                    self.stats.timeouts += 1
                else:
                    end = End("eos" if frame.status is FrameStatus.EOS else "error", frame.message)
                    break
            else:
                return
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread and re-raised there
            end = End("error", str(e), e)
        self.slot.finish(end)

    def _wait_if_stale(self) -> None:
        """Skip a frame that has waited more than ``FRESH_AGE`` of a frame interval for the next one.

        Waiting for it (at most three quarters of an interval) returns a result about one interval
        fresher; the price is that wait, in throughput. Capture-to-render latency drops from up to
        ~1 interval + processing to up to ~0.25 interval + processing.
        """
        interval = getattr(self.source, "frame_interval", None)
        newest = self.source.newest_timestamp() if interval else None
        if newest is None or interval > MAX_FRESH_INTERVAL_S:
            return
        age = time.perf_counter() - newest
        if age > interval * FRESH_AGE and self.source.wait_newer(newest, max(interval - age, 0.0) + interval / 2):
            self.stats.fresh_waits += 1

    def _read(self) -> Frame | End | None:
        """The newest frame (or an End); None once halted."""
        waited = 0.0
        while not self.halt.is_set():
            if not self.direct:
                try:
                    return self.slot.get(timeout=POLL_S)
                except queue.Empty:
                    continue
            if self.wait_for_fresh:
                self._wait_if_stale()
            frame = self.source.read(timeout=POLL_S)  # short waits: a halt is seen within POLL_S
            if frame.status is FrameStatus.OK:
                return frame
            if frame.status is FrameStatus.TIMEOUT:
                waited += POLL_S
                if waited >= self.live_timeout:
                    self.stats.timeouts += 1
                    waited = 0.0
                continue
            return End("eos" if frame.status is FrameStatus.EOS else "error", frame.message)
        return None

    def _forward_end(self, end: End) -> None:
        """The workers share one output: the last one to stop passes the end on (errors at once)."""
        if end.reason == "error":
            self.failures.append(end)
        elif self.workers > 1:
            with self._ended_lock:
                self._ended += 1
                if self._ended < self.workers:
                    if not self.direct:
                        self.slot.finish(end)  # the shared slot hands the marker to the next worker too
                    return
        self._put(self.q_out, end)

    def _infer(self, pre: Any) -> None:
        while not self.halt.is_set():
            frame = self._read()
            if frame is None:
                continue
            if isinstance(frame, End):
                self._forward_end(frame)
                return
            rec = self._record(frame)
            try:
                rec.batch, rec.timings["preprocess_ms"] = prepare(pre, [frame.image], self.slots, self.stats)
                infer(self.seg, rec)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread and re-raised there
                rec.release()
                self._forward_end(End("error", str(e), e))
                return
            if not self._put(self.q_out, rec):
                rec.release()
                return

    def next(self) -> FrameRecord | End | None:
        while True:
            try:
                rec = self.q_out.get(timeout=POLL_S)
            except queue.Empty:
                return self.failures[0] if self.failures else None
            if isinstance(rec, End) or self.workers == 1:
                return rec
            if rec.capture_time < self.newest_shown:  # a newer frame's result came first
                self.drops += 1
                rec.release()
                continue
            self.newest_shown = rec.capture_time
            return rec

    def _drain(self) -> None:
        if hasattr(self.source, "listener"):
            self.source.listener = None
        _drain(self.q_out)
        if self.slot is not None:
            _drain(self.slot)

    def outage_events(self) -> list[tuple[str, str]]:
        """The source's outage news since the last call: ``("lost" | "retry" | "back", line)``."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out
