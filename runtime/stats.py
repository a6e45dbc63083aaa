"""Run statistics: per-stage latency histograms, capture-to-render latency, FPS, drops.

Latencies are kept in fixed log-spaced histograms (1 % resolution), so memory stays flat however
long the run. Beside each stage's wall time, the CPU time its thread spent in pre-processing,
post-processing and rendering is summed: on a machine with fewer cores than busy threads, wall
time also counts the time a stage waited for a core.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import SourceError

STAGES = ("capture", "preprocess", "infer", "postprocess", "render", "write")
CPU_STAGES = ("preprocess", "postprocess", "render")  # the cheap stages whose CPU time is summed


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
        return self.percentiles(q)[0]

    def percentiles(self, *qs: float) -> list[float]:
        """Several percentiles from one pass over the bins (live displays ask for a few every frame)."""
        if self.n == 0:
            return [float("nan")] * len(qs)
        cum = np.cumsum(self.counts)  # (BINS,)
        out = []
        for q in qs:
            i = int(np.searchsorted(cum, q / 100.0 * self.n, side="left"))
            out.append(min(self.LO_MS * self.RATIO ** (i + 0.5), self.max) if i else self.LO_MS)
        return out

    def summary(self) -> dict[str, float]:
        if self.n == 0:
            return {"p50": None, "p90": None, "p99": None, "mean": None, "max": None, "n": 0}
        p50, p90, p99 = self.percentiles(50, 90, 99)
        return {"p50": round(p50, 3), "p90": round(p90, 3), "p99": round(p99, 3), "mean": round(self.total / self.n, 3),
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
    outage_s: float = 0.0  # seconds a live source was lost, outages that ended
    outage_since: float | None = None  # perf_counter() when the current outage began
    no_signal_cards: int = 0  # "NO SIGNAL" pictures written to the outputs during outages

    @property
    def elapsed_s(self) -> float:
        return self.duration_s or (time.perf_counter() - self.started)

    @property
    def outage_s_total(self) -> float:
        """Seconds without a live source so far (ended outages and the current one)."""
        now = self.outage_s + (time.perf_counter() - self.outage_since if self.outage_since is not None else 0.0)
        return now

    @property
    def fps(self) -> float:
        """Frames per second of live time (outages, reported apart, do not count)."""
        live = self.elapsed_s - self.outage_s_total
        return self.frames / live if live > 0 else 0.0

    def outage(self, lost: bool) -> None:
        """Mark the start (``lost``) or end of a live source's outage."""
        now = time.perf_counter()
        if lost and self.outage_since is None:
            self.outage_since = now
            self._recent.clear()  # the HUD's FPS starts afresh after the outage
        elif not lost and self.outage_since is not None:
            self.outage_s += now - self.outage_since
            self.outage_since = None

    def add_frame(self, rec: Any, done: float) -> None:
        """Count one frame written to every output at ``done`` (perf_counter), with its timings."""
        t, lat = rec.timings, self.latency
        lat["capture"].add(rec.frame.capture_ms)
        for stage in ("preprocess", "infer", "postprocess", "render", "write"):
            lat[stage].add(t[f"{stage}_ms"])
        self.capture_to_render.add((done - rec.capture_time) * 1e3)
        self.frames += 1
        self._recent.append(done)

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

    def live(self) -> dict[str, float | None]:
        """The figures every live display shows (HUD, status lines, the web view): the recent frame rate,
        the model's p50 and capture-to-render p50/p99 in ms (None until measured)."""
        c2r, infer = self.capture_to_render, self.latency["infer"]
        p50, p99 = c2r.percentiles(50, 99) if c2r.n else (None, None)
        return {"fps": self.recent_fps, "infer_ms": infer.percentile(50) if infer.n else None,
                "latency_p50_ms": p50, "latency_p99_ms": p99}

    def status_line(self) -> str:
        f = self.live()
        parts = [f"{f['fps'] or self.fps:.1f} fps",
                 f"infer {f['infer_ms']:.1f} ms" if f["infer_ms"] is not None else "infer -",
                 f"latency p50 {f['latency_p50_ms']:.0f} p99 {f['latency_p99_ms']:.0f} ms"
                 if f["latency_p50_ms"] is not None else "latency -"]
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
            "duration_s": round(self.elapsed_s, 3),
            "outage_s": round(self.outage_s_total, 3),
            "no_signal_cards": self.no_signal_cards,
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
