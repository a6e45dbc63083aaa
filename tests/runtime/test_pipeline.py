"""The threaded pipeline: every frame for files, latest-frame drops for live, clean failure paths."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgeseg.cli.predict_cmd import stop_on_signals
from edgeseg.runtime import Segmenter
from edgeseg.runtime.errors import SourceError, UsageError
from edgeseg.runtime.metadata import ModelMeta, default_palette
from edgeseg.runtime.mjpeg import MjpegServer
from edgeseg.runtime.pipeline import (
    STAGES,
    LatencyHistogram,
    StopEvent,
    StreamError,
    plan_workers,
    run_pipeline,
)
from edgeseg.runtime.sinks import Sink, open_sink
from edgeseg.runtime.sources import open_source
from edgeseg.runtime.visualize import colorize, palette_lut

pytestmark = pytest.mark.timing  # wall-clock checks: 'make test' runs them apart from the parallel rest


class FakePreprocessor:
    """The pre-processor protocol over plain frames: a 'batch' is the list of frames."""

    def reserve(self, n: int) -> list:
        self.batch = [None] * n
        return self.batch

    def one(self, image: np.ndarray, index: int = 0) -> None:
        self.batch[index] = image


class FakeSegmenter:
    """Class 1 where the blue channel is bright; records the order of the frames it saw.

    It has the stages the pipeline runs in separate threads (pre-process, infer, finish), the
    same as a Segmenter, so the pipeline under test takes its one real path."""

    meta = ModelMeta(classes=("dark", "bright", "other"), palette=default_palette(3))
    fixed_batch = 1
    concurrent_infer = False

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.delay, self.fail_at = delay, fail_at
        self.seen: list[int] = []

    def new_preprocessor(self) -> FakePreprocessor:
        return FakePreprocessor()

    def infer_prepared(self, batch: list) -> list[np.ndarray]:
        if self.fail_at is not None and len(self.seen) == self.fail_at:
            raise RuntimeError("model exploded")
        self.seen.extend(int(image[0, 0, 0]) for image in batch)
        if self.delay:
            time.sleep(self.delay)
        return [(image[:, :, 0] > 127).astype(np.uint8) for image in batch]  # (H, W) uint8 each

    def finish(self, image: np.ndarray, out: list, index: int = 0, preprocess_ms: float = 0.0,
               infer_ms: float = 0.0) -> SimpleNamespace:
        return SimpleNamespace(class_map=out[index], timings={"preprocess_ms": preprocess_ms, "infer_ms": infer_ms,
                                                              "postprocess_ms": 0.0})


class ListSink(Sink):
    name = "list"

    def __init__(self, fail_after: int | None = None) -> None:
        self.images: list[np.ndarray] = []
        self.names: list[str] = []
        self.stamps: list[float] = []  # capture time of each frame written
        self.closed = False
        self.fail_after = fail_after

    def write(self, image, frame=None) -> None:
        if self.fail_after is not None and len(self.images) >= self.fail_after:
            raise OSError(28, "No space left on device")
        self.images.append(image.copy())
        self.names.append(frame.name if frame is not None else "")
        self.stamps.append(frame.timestamp if frame is not None else 0.0)

    def close(self) -> None:
        self.closed = True


def image_folder(folder: Path, n: int, hw: tuple[int, int] = (24, 32)) -> list[int]:
    folder.mkdir(parents=True, exist_ok=True)
    levels = [(i * 13) % 256 for i in range(n)]
    for i, level in enumerate(levels):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), np.full((*hw, 3), level, np.uint8))  # lossless
    return levels


def count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.isOpened(), f"{path} is not playable"
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_files_every_frame_in_order_none_dropped(tmp_path: Path) -> None:
    levels = image_folder(tmp_path / "in", 20)
    seg, sink = FakeSegmenter(delay=0.002), ListSink()
    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(seg, src, [sink], render="mask")
    assert seg.seen == levels  # in order
    assert stats.frames == 20 and len(sink.images) == 20 and stats.drops == 0
    assert sink.names == [f"img_{i:03d}.png" for i in range(20)]
    assert sink.closed and stats.stopped_by == "eos"
    d = stats.to_dict()
    assert set(d["latency_ms"]) == set(STAGES)
    assert all(d["latency_ms"][s]["n"] == 20 for s in STAGES)
    assert d["capture_to_render_ms"]["p50"] > 0 and d["fps"] > 0


def test_slow_model_on_live_stream_drops_old_frames_and_lag_stays_bounded() -> None:
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 60, 120, 180, 240)]
    seg = FakeSegmenter(delay=0.06)  # ~16 FPS model on a 60 FPS stream
    with MjpegServer(port=0) as srv:
        srv.play(frames, fps=60)
        with open_source(srv.url, timeout=2.0) as src:
            stats = run_pipeline(seg, src, [ListSink()], max_frames=30)
    assert stats.frames == 30 and stats.stopped_by == "max_frames"
    assert stats.drops >= 30  # most of the ~120 frames that arrived meanwhile were skipped
    c2r = stats.capture_to_render
    # Lag stays near one model latency (60 ms) plus one frame wait. A backlog would grow by ~43 ms a
    # frame (60 ms per inference, a frame every 16.7 ms): a median past 600 ms by frame 30. The median,
    # not the 99th percentile, so one scheduling stall on a loaded 2-core machine cannot fail it.
    assert c2r.percentile(50) < 300, stats.to_dict()["capture_to_render_ms"]


def test_stream_dying_mid_run_raises_clearly_and_video_stays_valid(tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    srv = MjpegServer(port=0)
    srv.play([np.full((48, 64, 3), v, np.uint8) for v in (0, 100, 200)], fps=30)
    src = open_source(srv.url, timeout=1.0, reconnect=2, backoff=(0.05, 0.1))
    killer = threading.Timer(0.8, srv.stop)
    killer.start()
    try:
        with pytest.raises(StreamError) as e:
            run_pipeline(FakeSegmenter(), src, [open_sink(out, fps=30)])
    finally:
        killer.cancel()
        srv.stop()
        src.close()
    assert "stopped and did not come back after 2 reconnect attempts" in str(e.value)
    stats = e.value.stats
    assert stats.stopped_by == "error" and stats.frames > 5
    # finalised, playable, every frame written (and the NO SIGNAL cards of the outage before the end)
    assert out.is_file() and count_frames(out) == stats.frames + stats.no_signal_cards


def test_sink_failure_stops_and_other_outputs_are_finalised(tmp_path: Path) -> None:
    image_folder(tmp_path / "in", 10)
    out = tmp_path / "o.mp4"
    bad = ListSink(fail_after=3)
    with open_source(tmp_path / "in") as src, pytest.raises(SourceError, match="output list failed: No space left"):
        run_pipeline(FakeSegmenter(), src, [open_sink(out, fps=5), bad])
    assert bad.closed
    assert count_frames(out) in (3, 4)  # frames written before the failure, playable


def test_model_error_is_reraised_after_cleanup(tmp_path: Path) -> None:
    image_folder(tmp_path / "in", 6)
    sink = ListSink()
    with open_source(tmp_path / "in") as src, pytest.raises(RuntimeError, match="model exploded"):
        run_pipeline(FakeSegmenter(fail_at=2), src, [sink])
    assert sink.closed and len(sink.images) == 2


def test_stop_event_and_max_frames(tmp_path: Path) -> None:
    image_folder(tmp_path / "in", 30)
    stop = threading.Event()

    def progress(stats) -> None:
        if stats.frames == 4:
            stop.set()

    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(FakeSegmenter(), src, [ListSink()], stop=stop, on_progress=progress)
    assert stats.stopped_by == "stop" and 4 <= stats.frames <= 6
    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(FakeSegmenter(), src, [], max_frames=7)
    assert stats.frames == 7 and stats.stopped_by == "max_frames"


def test_a_second_interrupt_while_outputs_close_still_closes_them_all(tmp_path: Path) -> None:
    """The first Ctrl-C stops at the next frame; an impatient second one during the cleanup is held
    until every output is finalised and every worker joined, then raised."""
    image_folder(tmp_path / "in", 30)
    stop = StopEvent()

    class InterruptedClose(ListSink):
        def close(self) -> None:
            signal.raise_signal(signal.SIGINT)  # the second Ctrl-C, in the middle of the cleanup
            super().close()

    first, second = InterruptedClose(), ListSink()

    def progress(stats) -> None:
        if stats.frames == 3 and not stop.is_set():
            signal.raise_signal(signal.SIGINT)  # the first Ctrl-C

    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(stop) as caught, open_source(tmp_path / "in") as src:
        with pytest.raises(KeyboardInterrupt):
            run_pipeline(FakeSegmenter(), src, [first, second], stop=stop, on_progress=progress)
    assert caught and caught[0] == "SIGINT"
    assert first.closed and second.closed and len(first.images) >= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("pipeline-")]
    assert signal.getsignal(signal.SIGINT) is before


def test_render_modes_with_real_segmenter(tiny_onnx: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    frame = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)  # (60, 80, 3)
    cv2.imwrite(str(tmp_path / "in" / "x.png"), frame)
    seg = Segmenter(tiny_onnx)
    expected_mask = colorize(seg(frame).class_map, palette_lut(seg.meta.palette))  # (60, 80, 3)
    shapes = {}
    for mode in ("overlay", "mask", "side", None):
        sink = ListSink()
        with open_source(tmp_path / "in") as src:
            run_pipeline(seg, src, [sink], render=mode)
        shapes[mode] = sink.images[0].shape
        if mode == "mask":
            assert np.array_equal(sink.images[0], expected_mask)
        if mode == "side":
            assert np.array_equal(sink.images[0][:, :80], frame)
            assert np.array_equal(sink.images[0][:, 80:], expected_mask)
        if mode is None:
            assert np.array_equal(sink.images[0], frame)
    assert shapes == {"overlay": (60, 80, 3), "mask": (60, 80, 3), "side": (60, 160, 3), None: (60, 80, 3)}
    res = seg(frame)
    for ignore in ([res.classes[1]], [1], [res.classes[1].lower()]):  # names (any case) or ids
        sink = ListSink()
        with open_source(tmp_path / "in") as src:
            run_pipeline(seg, src, [sink], render="overlay", ignore=ignore)
        assert np.array_equal(sink.images[0], res.overlay(0.5, ignore=[1]))


def test_hud_draws_on_a_copy_not_the_source_frame(tmp_path: Path) -> None:
    image_folder(tmp_path / "in", 2, hw=(120, 200))
    sink = ListSink()
    with open_source(tmp_path / "in") as src:
        run_pipeline(FakeSegmenter(), src, [sink], render=None, hud=True)
    assert sink.images[0].std() > 0  # text and legend were drawn on a flat grey frame


@pytest.mark.parametrize("kw, words", [({"render": "blur"}, "unknown render mode"), ({"alpha": 1.5}, "alpha"),
                                       ({"max_frames": 0}, "max_frames"), ({"workers": 0}, "workers 0"),
                                       ({"ignore": ["nope"]}, "unknown class 'nope'"),
                                       ({"workers": 2}, "runs one at a time")])
def test_bad_arguments(tmp_path: Path, kw: dict, words: str) -> None:
    image_folder(tmp_path / "in", 1)
    with open_source(tmp_path / "in") as src, pytest.raises(UsageError, match=words):
        run_pipeline(FakeSegmenter(), src, [], **kw)


def test_latency_histogram_percentiles_match_numpy() -> None:
    rng = np.random.default_rng(0)
    samples = rng.lognormal(3.0, 0.5, 5000)  # ms, around 20
    h = LatencyHistogram()
    for v in samples:
        h.add(float(v))
    for q in (50, 90, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(samples, q), rel=0.02)
    before = h.copy()
    for v in (100.0, 100.0, 100.0):
        h.add(v)
    window = h.since(before)
    assert window.n == 3 and window.percentile(50) == pytest.approx(100.0, rel=0.02)
    assert LatencyHistogram().summary()["p50"] is None


@pytest.mark.parametrize("workers", [1, 3])
def test_staged_pipeline_matches_the_segmenter_frame_by_frame(tiny_onnx: Path, tmp_path: Path, workers: int) -> None:
    """Pre-processing in the capture thread, argmax beside rendering and several inference workers
    change nothing: with more frames than input buffers in flight (2 x workers + 1), every mask
    equals seg(frame)'s, in order."""
    rng = np.random.default_rng(1)
    (tmp_path / "in").mkdir()
    frames = [rng.integers(0, 256, (48 + 4 * i, 64, 3), dtype=np.uint8) for i in range(22)]
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / "in" / f"f{i:02d}.png"), f)
    seg = Segmenter(tiny_onnx, threads=1)
    assert hasattr(seg, "infer_prepared") and seg.concurrent_infer  # the staged path is the one under test
    lut = palette_lut(seg.meta.palette)
    expected = [colorize(seg(f).class_map, lut) for f in frames]
    sink = ListSink()
    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(seg, src, [sink], render="mask", workers=workers)
    assert stats.frames == len(frames) and stats.latency["preprocess"].n == len(frames)
    assert stats.drops == 0 and stats.stopped_by == "eos"
    for got, want in zip(sink.images, expected, strict=True):
        assert np.array_equal(got, want)


class ConcurrencyProbe:
    """A real Segmenter whose inference sleeps, counting how many run at once (and failing on cue)."""

    def __init__(self, seg: Segmenter, delay: float, fail_at: int | None = None, first_delay: float | None = None) -> None:
        self.seg, self.delay, self.fail_at = seg, delay, fail_at
        self.first_delay = delay if first_delay is None else first_delay  # the first call's sleep
        self.meta, self.fixed_batch, self.concurrent_infer = seg.meta, seg.fixed_batch, True
        self.running = self.most = self.calls = 0
        self.lock = threading.Lock()

    def new_preprocessor(self):
        return self.seg.new_preprocessor()

    def infer_prepared(self, batch: np.ndarray) -> np.ndarray:
        with self.lock:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("model exploded")
            self.running += 1
            self.most = max(self.most, self.running)
            delay = self.first_delay if self.calls == 1 else self.delay
        out = self.seg.infer_prepared(batch)
        time.sleep(delay)
        with self.lock:
            self.running -= 1
        return out

    def finish(self, *args, **kw):
        return self.seg.finish(*args, **kw)


def test_workers_run_inferences_side_by_side_and_keep_file_order(tiny_onnx: Path, tmp_path: Path) -> None:
    levels = image_folder(tmp_path / "in", 12)
    probe = ConcurrencyProbe(Segmenter(tiny_onnx, threads=1), delay=0.03)
    sink = ListSink()
    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(probe, src, [sink], render=None, workers=2)
    assert probe.most == 2 and stats.frames == 12  # two at once, every frame
    assert [int(img[0, 0, 0]) for img in sink.images] == levels  # in order


def test_worker_failure_ends_the_run_with_the_model_error(tiny_onnx: Path, tmp_path: Path) -> None:
    levels = image_folder(tmp_path / "in", 12)
    probe = ConcurrencyProbe(Segmenter(tiny_onnx, threads=1), delay=0.01, fail_at=4)
    sink = ListSink()
    with open_source(tmp_path / "in") as src, pytest.raises(RuntimeError, match="model exploded"):
        run_pipeline(probe, src, [sink], render=None, workers=3)
    # The 4th inference to start fails (which frame that is depends on the workers' timing): what was
    # written before is the clip's first frames, in order, and the output is closed.
    shown = [int(img[0, 0, 0]) for img in sink.images]
    assert sink.closed and len(shown) < 12 and shown == levels[:len(shown)]


def test_workers_on_a_live_stream_never_step_back_in_time(tiny_onnx: Path) -> None:
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 60, 120, 180, 240)]
    probe = ConcurrencyProbe(Segmenter(tiny_onnx, threads=1), delay=0.05)
    with MjpegServer(port=0) as srv:
        srv.play(frames, fps=60)
        with open_source(srv.url, timeout=2.0) as src:
            stats = run_pipeline(probe, src, [], max_frames=12, workers=2)
    assert stats.frames == 12 and stats.stopped_by == "max_frames" and probe.most == 2
    assert stats.capture_to_render.percentile(99) < 300  # no backlog with two slow workers either


def test_live_workers_drop_a_result_older_than_one_shown_and_end_once(tiny_onnx: Path) -> None:
    """A slow first inference finishes after later frames were shown: it is dropped, not shown out of
    order; at the end of the stream every worker stops and the run ends once, with eos."""
    src = StaleLiveSource(9)
    probe = ConcurrencyProbe(Segmenter(tiny_onnx, threads=1), delay=0.005, first_delay=0.2)
    sink = ListSink()
    stats = run_pipeline(probe, src, [sink], workers=3, wait_for_fresh=False)
    assert stats.stopped_by == "eos" and probe.calls == 9
    assert stats.drops >= 1 and stats.frames + stats.drops == 9
    assert sink.stamps == sorted(sink.stamps)


class StaleLiveSource:
    """A live source whose waiting frame is always 15 ms old at a 20 ms frame interval."""

    is_live = True
    timeout = 1.0
    frame_interval = 0.020
    drops = reconnects = corrupt = 0

    def __init__(self, n: int, age: float = 0.015) -> None:
        self.n, self.waits, self.age = n, [], age
        self.lock = threading.Lock()  # several pipeline workers may read at once

    def newest_timestamp(self) -> float:
        return time.perf_counter() - self.age

    def wait_newer(self, than: float, timeout: float) -> bool:
        self.waits.append(timeout)
        return True

    def read(self, timeout: float | None = None):
        from edgeseg.runtime.sources import Frame, FrameStatus

        with self.lock:
            if self.n == 0:
                return Frame(FrameStatus.EOS, message="done")
            self.n -= 1
        return Frame(FrameStatus.OK, np.zeros((8, 8, 3), np.uint8), time.perf_counter())

    def describe(self) -> dict:
        return {"uri": "stale://"}


@pytest.mark.parametrize("fresh", [True, False])
def test_stale_live_frames_wait_for_the_next_one(fresh: bool) -> None:
    src = StaleLiveSource(5)
    stats = run_pipeline(FakeSegmenter(), src, [], wait_for_fresh=fresh)
    assert stats.frames == 5 and stats.stopped_by == "eos"
    if fresh:
        # 15 ms old > a quarter of 20 ms: wait for the next frame, due in 5 ms, at most 5 + 10 ms.
        assert stats.fresh_waits == len(src.waits) >= 5 and all(t == pytest.approx(0.015, abs=0.002) for t in src.waits)
    else:
        assert stats.fresh_waits == 0 and src.waits == []


@pytest.mark.parametrize("age_ms, waits", [(7.0, True), (3.0, False)])
def test_a_frame_older_than_a_quarter_interval_is_skipped_for_the_next(age_ms: float, waits: bool) -> None:
    """7 ms of a 20 ms interval: waiting (at most 13 + 10 ms) returns a frame 13 ms fresher; 3 ms: taken at once."""
    src = StaleLiveSource(4, age=age_ms / 1e3)
    stats = run_pipeline(FakeSegmenter(), src, [])
    assert stats.frames == 4
    assert (stats.fresh_waits >= 4) if waits else (stats.fresh_waits == 0 and src.waits == [])


def test_live_source_measures_its_frame_interval() -> None:
    with MjpegServer(port=0) as server:
        server.play([cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes()], fps=50, loop=True)
        with open_source(server.url, timeout=5.0) as src:
            deadline = time.perf_counter() + 5.0
            while src.frame_interval is None and time.perf_counter() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)  # ~15 more arrivals: the moving average forgets a slow start on a busy machine
            assert src.frame_interval == pytest.approx(0.020, rel=0.5)
            newest = src.newest_timestamp() or time.perf_counter()
            assert src.wait_newer(newest, 1.0) and src.newest_timestamp() > newest


def test_cheap_stages_report_their_cpu_time(tiny_onnx: Path, tmp_path: Path) -> None:
    """Each cheap stage's thread CPU time is summed; a stage cannot use more CPU than wall time on
    its own thread."""
    rng = np.random.default_rng(2)
    (tmp_path / "in").mkdir()
    for i in range(6):
        cv2.imwrite(str(tmp_path / "in" / f"f{i}.png"), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    with open_source(tmp_path / "in") as src:
        stats = run_pipeline(Segmenter(tiny_onnx, threads=1), src, [], render="overlay")
    cpu = stats.to_dict()["cpu_ms_per_frame"]
    assert set(cpu) == {"preprocess", "postprocess", "render"}
    for stage, ms in cpu.items():
        wall = stats.latency[stage].total / stats.frames
        assert 0 < ms <= wall * 1.05 + 0.05, (stage, ms, wall)


@pytest.mark.parametrize("workers, threads, kind, device, frames, cpus, planned", [
    ("auto", None, "onnxruntime", "cpu", 300, 2, (2, 1)),  # a clip on 2 cores: 2 one-thread inferences
    ("auto", None, "onnxruntime", "cpu", None, 8, (2, 4)),  # unknown length counts as a clip
    ("auto", 1, "onnxruntime", "cpu", 300, 8, (2, 1)),  # the user's threads kept
    ("auto", 4, "onnxruntime", "cpu", 300, 4, (1, 4)),  # no room beside 4 threads on 4 cores
    ("auto", None, "onnxruntime", "cpu", 1, 8, (1, None)),  # one image: all cores on its inference
    ("auto", None, "onnxruntime", "cpu", 300, 1, (1, None)),  # one core
    ("auto", None, "onnxruntime", "cuda:0", 300, 8, (1, None)),  # GPU: one at a time
    ("auto", None, "onnxruntime-tensorrt", "cpu", 300, 8, (1, None)),
    ("auto", None, "pytorch", "cpu", 300, 8, (1, None)),
    (3, 2, "pytorch", "cpu", 300, 8, (3, 2)),  # a number passes through (check_workers judges it)
])
def test_plan_workers(workers, threads, kind, device, frames, cpus, planned) -> None:
    assert plan_workers(workers, threads, kind, device, frames, cpus) == planned


def test_a_lost_stream_is_announced_at_once_shown_as_no_signal_and_kept_out_of_the_fps() -> None:
    from edgeseg.runtime.mjpeg import free_port

    port = free_port()
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 100, 200)]
    first = MjpegServer(port=port)
    first.play(frames, fps=30)
    src = open_source(first.url, timeout=1.0, reconnect=3, backoff=(0.3, 0.6))
    lines: list[str] = []
    stop, sink, back = threading.Event(), ListSink(), []

    def outage() -> None:
        time.sleep(0.6)
        first.stop()
        time.sleep(1.2)
        back.append(MjpegServer(port=port))
        back[0].play(frames, fps=30)
        time.sleep(1.0)
        stop.set()

    t = threading.Thread(target=outage)
    t.start()
    try:
        stats = run_pipeline(FakeSegmenter(), src, [sink], hud=True, stop=stop, on_event=lines.append)
    finally:
        t.join()
        src.close()
        for s in back:
            s.stop()
    assert any("lost, reconnecting (attempt 1/3)" in ln for ln in lines), lines
    assert any("is back" in ln and "without frames" in ln for ln in lines), lines
    assert stats.reconnects == 1 and 0.5 < stats.outage_s_total < 3.0
    cards = [im for im in sink.images if (im == 32).all(axis=2).mean() > 0.5 and (im[:, :, 2] > 200).any()]
    assert len(cards) == stats.no_signal_cards >= 2
    live = stats.duration_s - stats.outage_s_total
    assert stats.fps == pytest.approx(stats.frames / live, rel=1e-6)  # FPS over live time only
