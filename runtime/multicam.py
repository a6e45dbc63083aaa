"""Several cameras through one model: one batched inference per tick.

    stats = run_cameras(seg, ["rtsp://10.0.0.5/front", "rtsp://10.0.0.6/rear"],
                        sinks=[[open_sink("front.mp4")], [open_sink("rear.mp4")]],
                        mosaic_sinks=[MjpegSink()])
    print(stats.to_dict())            # {"cameras": [...one entry per camera...], "aggregate": {...}}

Each tick takes the newest frame of every camera that has one (waiting a little for the others,
so a batch is full when the cameras run at similar rates) and runs ONE inference on all of them
when the artifact allows it (a dynamic batch, or a fixed batch of at least that many; a
batch-1 artifact runs them in turn). The calling thread post-processes, renders and writes each
camera's record, and tiles the cameras into a mosaic for a window or the web view.

A camera that cannot be opened, or dies, does not stop the others: it is reported at once
(``on_event``), reopened with backoff in its own thread, and its recordings get "NO SIGNAL"
cards for the outage, so the gap shows. The run ends when every camera has ended (files), at
``max_frames`` per camera, or when ``stop`` is set.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EdgesegError, SourceError, UsageError
from .metadata import class_ids
from .pipeline import Outputs, StopEvent, _finishing, _guard, postprocess, timed, wall_time
from .render import RENDERS, Mosaic, Renderer, hud_lines
from .ros2_messages import CAMERA_NAME, MAX_CAMERA_NAME
from .runners import POLL_S, FrameRecord, prepare_each
from .sinks import Sink
from .sources import Frame, FrameStatus, Source, open_source
from .stats import PipelineStats
from .visualize import check_alpha

log = logging.getLogger(__name__)

MAX_CAMERAS = 16
REOPEN_BACKOFF = (0.5, 8.0)  # first delay and cap (seconds) between attempts to reopen a lost camera
GATHER_S = 0.03  # after the first new frame of a tick, how long to wait for the other cameras'
CARD_EVERY_S = 0.2  # a lost camera's recordings get a NO SIGNAL card this often


def camera_names(uris: Sequence[str], names: Sequence[str | None] | None = None) -> list[str]:
    """``cam0``, ``cam1``, ... or the names given (checked: ROS-safe and unique)."""
    names = list(names or [None] * len(uris))
    out = [n or f"cam{i}" for i, n in enumerate(names)]
    for n in out:
        if len(n) > MAX_CAMERA_NAME or not CAMERA_NAME.fullmatch(n):  # the rule of the bags' topic names
            raise UsageError(f"camera name {n!r} must start with a letter and hold only letters, digits and _, "
                             f"at most {MAX_CAMERA_NAME} characters (it becomes a topic name)")
    if len(set(out)) != len(out):
        raise UsageError(f"camera names must differ: {', '.join(out)}")
    return out


def per_camera_path(pattern: str, index: int, name: str, cameras: int, option: str = "--save") -> str:
    """``cam{i}.mp4`` / ``{name}.mp4`` -> this camera's path; one clear error without a placeholder."""
    if cameras > 1 and "{i}" not in pattern and "{name}" not in pattern:
        raise UsageError(f"{option} {pattern} would be written by all {cameras} cameras; put {{i}} or {{name}} "
                         f"in it, e.g. {option} 'cam{{i}}.mp4'")
    return pattern.replace("{i}", str(index)).replace("{name}", name)


LIVE_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "v4l2://", "csi://")


def retryable(uri: str, error: BaseException) -> bool:
    """Whether a source that failed to open may work later: a camera or a stream, not a file or a typo."""
    if isinstance(error, UsageError):
        return False
    low = uri.strip().lower()
    return low.startswith(LIVE_SCHEMES) or low.isdigit() or low.startswith("/dev/video")


@dataclass(eq=False)
class Camera:
    """One camera of a multi-camera run: its source (None while it is being opened), outputs and stats."""

    name: str
    uri: str
    sinks: list[Sink]
    renderer: Renderer
    stats: PipelineStats = field(default_factory=PipelineStats)
    source: Source | None = None
    state: str = "opening"  # opening | live | lost | ended
    image: np.ndarray | None = None  # its last rendered image (for the mosaic)
    last_card: float = 0.0
    outputs: Outputs | None = None
    past_drops: int = 0  # drops counted by this camera's earlier (closed) sources
    opened_once: bool = False
    failed_first: bool = False

    @property
    def live(self) -> bool:
        return self.state == "live"


@dataclass
class CameraEvent:
    """A camera's state change, travelling to the calling thread in order with the frames."""

    camera: Camera
    kind: str  # opened | failed | lost | ended
    message: str
    source: Source | None = None


class MultiStats:
    """Per-camera :class:`PipelineStats` and their aggregate."""

    def __init__(self, cameras: list[Camera]) -> None:
        self.cameras = cameras
        self.started = time.perf_counter()
        self.duration_s = 0.0
        self.stopped_by = ""
        self.error = ""
        self.batch = 0  # frames per inference the artifact allows (0: any)
        self.batched = False
        self.ticks = 0
        self.sinks: list[dict[str, Any]] = []

    @property
    def frames(self) -> int:
        return sum(c.stats.frames for c in self.cameras)

    @property
    def fps(self) -> float:
        elapsed = self.duration_s or (time.perf_counter() - self.started)
        return self.frames / elapsed if elapsed > 0 else 0.0

    def status_line(self) -> str:
        parts = []
        for c in self.cameras:
            s = c.stats
            if c.state in ("lost", "opening"):
                parts.append(f"{c.name} NO SIGNAL {s.outage_s_total:.0f} s")
                continue
            f = s.live()
            p = f"{c.name} {f['fps']:.1f} fps"
            if f["latency_p50_ms"] is not None:
                p += f" p50 {f['latency_p50_ms']:.0f} p99 {f['latency_p99_ms']:.0f} ms"
            if s.drops:
                p += f" drops {s.drops}"
            if s.reconnects:
                p += f" reconnects {s.reconnects}"
            parts.append(p + (" (ended)" if c.state == "ended" else ""))
        return " | ".join(parts + [f"total {sum(c.stats.recent_fps for c in self.cameras if c.live):.1f} fps"])

    def to_dict(self) -> dict[str, Any]:
        cams = []
        for c in self.cameras:
            d = c.stats.to_dict()
            d.update(name=c.name, uri=c.uri, state=c.state)
            cams.append(d)
        elapsed = self.duration_s or (time.perf_counter() - self.started)
        return {
            "cameras": cams,
            "aggregate": {
                "cameras": len(cams), "frames": self.frames, "fps": round(self.fps, 3),
                "drops": sum(d["drops"] for d in cams), "reconnects": sum(d["reconnects"] for d in cams),
                "duration_s": round(elapsed, 3), "ticks": self.ticks,
                "batch": self.batch or "dynamic", "batched": self.batched,
                "stopped_by": self.stopped_by, "error": self.error,
            },
            "sinks": self.sinks,
        }


class BatchRunner:
    """The capture + inference thread of a multi-camera run, and one reopening thread per lost camera."""

    def __init__(self, segmenter: Any, cameras: list[Camera], opener: Callable[[str], Source],
                 max_frames: int | None, batched: bool) -> None:
        self.seg, self.cameras, self.opener, self.max_frames = segmenter, cameras, opener, max_frames
        cap = getattr(segmenter, "fixed_batch", None)
        self.capacity = cap if batched else 1  # frames per inference (None: any number)
        self.slots = cap  # a fixed batch is always filled (padding), a dynamic one takes what comes
        self.halt = threading.Event()
        self.q_out: queue.Queue = queue.Queue(maxsize=2 * len(cameras) + 4)
        self.threads = [threading.Thread(target=self._loop, name="pipeline-batch", daemon=True)]
        self.read = dict.fromkeys((c.name for c in cameras), 0)
        self.stats_of = {c.name: c.stats for c in cameras}

    def __enter__(self) -> BatchRunner:
        self.threads[0].start()  # the batch thread; openers start as they are made
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for t in list(self.threads):
            t.join(timeout=10.0)
        while True:
            try:
                item = self.q_out.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, FrameRecord):
                item.release()
            elif isinstance(item, CameraEvent) and item.source is not None:
                item.source.close()

    def _put(self, item: Any) -> bool:
        while not self.halt.is_set():
            try:
                self.q_out.put(item, timeout=POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def reopen(self, cam: Camera, first: bool = False) -> None:
        """Open ``cam`` again in its own thread, with backoff, until it works or the run ends."""
        def run() -> None:
            delay, attempt = (0.0 if first else REOPEN_BACKOFF[0]), 0
            while not self.halt.wait(delay):
                attempt += 1
                try:
                    source = self.opener(cam.uri)
                except EdgesegError as e:
                    if first and not retryable(cam.uri, e):
                        self._put(e)  # a missing file or a bad URI: waiting will not fix it
                        return
                    delay = min(max(delay * 2, REOPEN_BACKOFF[0]), REOPEN_BACKOFF[1])
                    why = f"cannot open {cam.uri}: {e}" if first else "stream lost"
                    self._put(CameraEvent(cam, "failed", f"camera {cam.name}: {why}; reconnecting "
                                                         f"(attempt {attempt + 1} in {delay:.1f} s)"))
                    continue
                if not self._put(CameraEvent(cam, "opened", f"camera {cam.name} is back", source)):
                    source.close()
                return

        t = threading.Thread(target=run, name=f"pipeline-open:{cam.name}", daemon=True)
        self.threads.append(t)
        t.start()

    def _gather(self) -> list[FrameRecord]:
        """The newest frame of every live camera; after the first, waits up to GATHER_S for the rest."""
        recs: list[FrameRecord] = []
        deadline = None
        for cam in self.cameras:
            if not cam.live or cam.source is None:
                continue
            if self.max_frames is not None and self.read[cam.name] >= self.max_frames:
                continue
            wait = 0.0 if deadline is None else max(0.0, deadline - time.perf_counter())
            frame = cam.source.read(timeout=wait)
            if frame.status is FrameStatus.OK:
                recs.append(FrameRecord(cam.name, frame))
                self.read[cam.name] += 1
                if deadline is None:
                    deadline = time.perf_counter() + GATHER_S
            elif frame.status is not FrameStatus.TIMEOUT:
                self._lost(cam, frame)
        return recs

    def _lost(self, cam: Camera, frame: Frame) -> None:
        cam.state = "ended" if frame.status is FrameStatus.EOS and cam.source.finite else "lost"
        self._put(CameraEvent(cam, cam.state, f"camera {cam.name}: {frame.message}"))

    def _loop(self) -> None:
        pre = self.seg.new_preprocessor()
        while not self.halt.is_set():
            recs = self._gather()
            if not recs:
                if all(c.state == "ended" for c in self.cameras) or self._all_done():
                    self._put("end")
                    return
                self.halt.wait(0.002)  # nothing new yet
                continue
            step = self.capacity or len(recs)
            try:
                for start in range(0, len(recs), step):
                    self._infer(pre, recs[start:start + step])
            except BaseException as e:  # noqa: BLE001 - handed to the calling thread and re-raised there
                for r in recs:
                    r.release()
                self._put(e)
                return
            for r in recs:
                if not self._put(r):
                    r.release()
            self._put("tick")  # the tick's records are all out: time to draw the mosaic

    def _all_done(self) -> bool:
        """Every live camera has given ``max_frames`` (cameras that are not live do not hold the run up)."""
        if self.max_frames is None:
            return False
        live = [c for c in self.cameras if c.live]
        return bool(live) and all(self.read[c.name] >= self.max_frames for c in live)

    def _infer(self, pre: Any, chunk: list[FrameRecord]) -> None:
        """ONE inference on the chunk's frames (padded to a fixed batch); timings shared out."""
        n = len(chunk)
        batch, times = prepare_each(pre, [rec.frame.image for rec in chunk], self.slots or n)
        for rec, (wall_ms, cpu_ms) in zip(chunk, times, strict=True):
            rec.timings["preprocess_ms"] = wall_ms
            self.stats_of[rec.camera].add_cpu("preprocess", cpu_ms)
        t = time.perf_counter()
        out = self.seg.infer_prepared(batch)  # (N, C, h, w) logits or (N, h, w) class ids
        infer_ms = (time.perf_counter() - t) * 1e3 / n
        for i, rec in enumerate(chunk):
            rec.output, rec.slot = out, i
            rec.timings["infer_ms"] = infer_ms


def run_cameras(segmenter: Any, sources: Sequence[str | Source], sinks: Sequence[Sequence[Sink]] = (),
                *, mosaic_sinks: Sequence[Sink] = (), result_sinks: Sequence[Any] = (),
                names: Sequence[str | None] | None = None, render: str | None = "overlay", alpha: float = 0.5,
                ignore: Sequence[int | str] = (), hud: bool = False, stop: threading.Event | None = None,
                max_frames: int | None = None, batched: bool = True,
                open_kw: dict[str, Any] | None = None, on_event: Callable[[str], None] | None = None,
                on_progress: Callable[[MultiStats], None] | None = None) -> MultiStats:
    """Segment several cameras with one batched inference per tick; returns per-camera statistics.

    ``sources``: URIs (opened here, and reopened when they die) or open sources. ``sinks[i]``:
    camera i's outputs; ``mosaic_sinks`` get all cameras tiled; ``result_sinks`` get every
    camera's class ids (``write_result(camera, ...)``), in order per camera. ``names``: camera
    names (default ``cam0``, ``cam1``, ...). ``batched=False`` runs the cameras one at a time
    (to compare). ``on_event(line)`` hears at once of cameras that fail, die or come back.
    Other arguments as :func:`~edgeseg.runtime.pipeline.run_pipeline`.
    """
    uris = _check(sources, sinks, render, alpha, max_frames)
    cameras = _cameras(segmenter.meta, uris, names, sinks, render, alpha, ignore, hud)
    notify = on_event or (lambda line: log.warning("%s", line))
    stats = MultiStats(cameras)
    _say_batching(segmenter, stats, batched, notify)
    runner = BatchRunner(segmenter, cameras, _opener(open_kw or {}), max_frames, batched)
    shared = Outputs(mosaic_sinks, result_sinks)
    mosaic = Mosaic(len(cameras), [c.name for c in cameras])
    for cam, src in zip(cameras, sources, strict=True):
        if isinstance(src, str):
            runner.reopen(cam, first=True)
        else:
            cam.source, cam.state, cam.opened_once = src, "live", True
            cam.stats.source = src.describe()
            _fit_recordings(cam)
    stop = stop if stop is not None else threading.Event()
    end = "stop"
    failure: BaseException | None = None
    try:
        with runner:
            while not stop.is_set():
                _cards(cameras, shared, mosaic)
                item = _next(runner)
                if item is None:
                    continue
                if item == "end":
                    end = "max_frames" if max_frames is not None and runner._all_done() else "eos"
                    break
                if item == "tick":
                    stats.ticks += 1
                    _write_mosaic(shared, mosaic, [c.image for c in cameras])
                    continue
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, CameraEvent):
                    _camera_event(item, runner, notify)
                    if all(c.failed_first and not c.opened_once for c in cameras):
                        raise SourceError(f"none of the {len(cameras)} cameras could be opened; check the "
                                          "--source values (each camera's error is above)")
                    continue
                cam = next(c for c in cameras if c.name == item.camera)
                _show(segmenter, item, cam, shared)
                if on_progress is not None:
                    on_progress(stats)
                if shared.stop_requested or any(c.outputs.stop_requested for c in cameras):
                    end = "sink"
                    break
    except BaseException as e:
        failure = e
        stats.stopped_by = "interrupt" if isinstance(e, KeyboardInterrupt) else "error"
        stats.error = "" if isinstance(e, KeyboardInterrupt) else str(e)
        raise
    finally:
        stats.duration_s = time.perf_counter() - stats.started
        for cam in cameras:
            cam.stats.outage(False)  # an outage still running ends with the run
            cam.stats.duration_s = stats.duration_s
        if failure is None:
            stats.stopped_by = (getattr(stop, "reason", "") or "stop") if end == "stop" else end
        with _finishing(stop):
            _close_all(cameras, shared, stats, quiet=failure is not None)
    return stats


def _check(sources: Sequence[str | Source], sinks: Sequence[Sequence[Sink]], render: str | None, alpha: float,
           max_frames: int | None) -> list[str]:
    """The arguments of :func:`run_cameras` checked; the cameras' URIs."""
    if render not in RENDERS:
        raise UsageError(f"unknown render mode {render!r}; choose one of overlay, mask, side or None")
    check_alpha(alpha)
    if not sources:
        raise UsageError("run_cameras needs at least one source")
    if len(sources) > MAX_CAMERAS:
        raise UsageError(f"{len(sources)} cameras is more than {MAX_CAMERAS}; run several processes")
    if max_frames is not None and max_frames < 1:
        raise UsageError(f"max_frames must be at least 1, got {max_frames}")
    if sinks and len(sinks) != len(sources):
        raise UsageError(f"sinks has {len(sinks)} entries for {len(sources)} cameras; give one list per camera")
    return [s if isinstance(s, str) else s.uri for s in sources]


def _cameras(meta: Any, uris: list[str], names: Sequence[str | None] | None, sinks: Sequence[Sequence[Sink]],
             render: str | None, alpha: float, ignore: Sequence[int | str], hud: bool) -> list[Camera]:
    ignore_ids = class_ids(ignore, meta.classes)
    cameras = []
    for i, (name, uri) in enumerate(zip(camera_names(uris, names), uris, strict=True)):
        own = list(sinks[i]) if sinks else []
        cam = Camera(name, uri, own, Renderer(render, meta.palette, meta.classes, alpha, ignore_ids, hud))
        cam.outputs = Outputs(own)
        cameras.append(cam)
    return cameras


def _say_batching(segmenter: Any, stats: MultiStats, batched: bool, notify: Callable[[str], None]) -> None:
    """Record the artifact's batch capacity; say once when the cameras must take turns."""
    cap, n = getattr(segmenter, "fixed_batch", None), len(stats.cameras)
    stats.batch, stats.batched = cap or 0, batched and cap != 1 and n > 1
    if batched and cap is not None and cap < n:
        name = getattr(getattr(segmenter, "path", None), "name", "the model")
        notify(f"{name} takes {cap} frame{'s' if cap != 1 else ''} per inference, so the {n} cameras "
               "run in turn; export with --batch N or --dynamic for one inference per tick")


def _opener(kw: dict[str, Any]) -> Callable[[str], Source]:
    def open_(uri: str) -> Source:
        return open_source(uri, **kw)
    return open_


def _next(runner: BatchRunner) -> Any:
    try:
        return runner.q_out.get(timeout=POLL_S / 2)
    except queue.Empty:
        return None


def _camera_event(ev: CameraEvent, runner: BatchRunner, notify: Callable[[str], None]) -> None:
    cam = ev.camera
    if ev.kind == "opened":
        if cam.source is not None:  # the source that died
            cam.past_drops += cam.source.drops
            cam.source.close()
            cam.stats.reconnects += 1
        cam.source, cam.state, cam.opened_once = ev.source, "live", True
        _fit_recordings(cam)
        cam.stats.source = ev.source.describe()
        if cam.stats.outage_s_total > 0 and cam.stats.frames:
            notify(f"{ev.message} after {cam.stats.outage_s_total:.1f} s")
        cam.stats.outage(False)
        return
    notify(ev.message)
    if ev.kind == "failed":
        cam.stats.outage(True)
        cam.failed_first = not cam.opened_once
    if ev.kind == "lost":
        cam.stats.outage(True)
        notify(f"camera {cam.name}: stream lost, reconnecting (attempt 1)")
        runner.reopen(cam)
    elif ev.kind == "ended" and cam.source is not None:
        cam.source.close()


def _fit_recordings(cam: Camera) -> None:
    """Before its first frame, a camera's video takes the source's rate, paced by capture time when
    the source is live (its results come at the model's rate), every frame otherwise."""
    src = cam.source
    for sink in cam.sinks:
        if getattr(sink, "frames", 1) == 0 and hasattr(sink, "pace"):
            sink.pace = src.is_live
            if src.fps:
                sink.fps = float(src.fps)


def _show(seg: Any, rec: FrameRecord, cam: Camera, shared: Outputs) -> None:
    """Post-process, render and write one camera's record (its image waits for the mosaic)."""
    st = cam.stats
    postprocess(seg, rec, st)
    image = timed(cam.renderer, rec, "render", st)(rec.frame.image, rec.result.class_map, st)
    t = time.perf_counter()
    cam.outputs.write(image, rec)
    for sink in shared.result_sinks:
        _guard(sink, sink.write_result, cam.name, rec.frame.index, wall_time(rec.capture_time), rec.frame.image,
               rec.result.class_map)
    if shared.sinks:
        cam.image = image.copy()  # the renderer reuses its buffer for the next frame
    rec.timings["write_ms"] = (time.perf_counter() - t) * 1e3
    st.add_frame(rec, time.perf_counter())
    st.drops = cam.past_drops + (cam.source.drops if cam.source is not None else 0)
    st.corrupt = cam.source.corrupt if cam.source is not None else st.corrupt
    rec.release()


def _write_mosaic(shared: Outputs, mosaic: Mosaic, images: list[np.ndarray | None]) -> None:
    if shared.sinks and any(im is not None for im in images):
        tiled = mosaic(images)  # (rows * h, cols * w, 3)
        frame = Frame(FrameStatus.OK, tiled, time.perf_counter())
        for sink in shared.sinks:
            _guard(sink, sink.write, tiled, frame)


def _cards(cameras: list[Camera], shared: Outputs, mosaic: Mosaic) -> None:
    """Lost cameras: a NO SIGNAL card (with the outage time) into their recordings and the mosaic."""
    now = time.perf_counter()
    changed = False
    for cam in cameras:
        if cam.state not in ("lost", "opening") or cam.renderer.last_shape is None:
            continue
        if now - cam.last_card < CARD_EVERY_S:
            continue
        cam.last_card = now
        card = cam.renderer.no_signal(cam.stats.outage_s_total)
        frame = Frame(FrameStatus.OK, card, now)
        for sink in cam.sinks:
            _guard(sink, sink.write, card, frame)
        if shared.sinks:
            cam.image = card.copy()
            changed = True
    if changed:
        _write_mosaic(shared, mosaic, [c.image for c in cameras])


def _close_all(cameras: list[Camera], shared: Outputs, stats: MultiStats, quiet: bool) -> None:
    """Close every output of every camera, then the shared ones; the first failure is raised."""
    first: BaseException | None = None
    for outputs in [c.outputs for c in cameras] + [shared]:
        scratch = PipelineStats()
        try:
            outputs.close(scratch, quiet=quiet)
        except SourceError as e:
            first = first or e
        stats.sinks.extend(scratch.sinks)
    for cam in cameras:
        if cam.source is not None:
            cam.source.close()
    if first is not None:
        raise first


__all__ = ["MAX_CAMERAS", "CameraEvent", "MultiStats", "StopEvent", "camera_names", "hud_lines",
           "per_camera_path", "run_cameras"]
