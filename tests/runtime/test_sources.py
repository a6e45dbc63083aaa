"""Video sources: every kind available on this machine, EOS vs timeout, reconnects, bad input."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from testkit.http_streams import FileHttpServer, RawHttpServer, hold, multipart_head, part

from edgeseg.runtime import sources
from edgeseg.runtime.errors import SourceError, UsageError
from edgeseg.runtime.mjpeg import MjpegServer, encode_jpeg, free_port
from edgeseg.runtime.sources import FrameStatus, has_gstreamer, open_source

pytestmark = pytest.mark.timing  # wall-clock checks: 'make test' runs them apart from the parallel rest

FAST_BACKOFF = (0.05, 0.2)


def write_video(path: Path, n: int, hw: tuple[int, int] = (48, 64), fps: float = 25.0) -> list[int]:
    """A video whose frame i is flat grey level 20 * i mod 240 (far apart: mp4v is lossy); returns the levels."""
    h, w = hw
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    levels = [(20 * i) % 240 for i in range(n)]
    for level in levels:
        writer.write(np.full((h, w, 3), level, np.uint8))  # (h, w, 3)
    writer.release()
    return levels


def grey_frames(n: int, hw: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    return [np.full((*hw, 3), 20 * i % 256, np.uint8) for i in range(n)]  # (h, w, 3) each


# -- files and folders ---------------------------------------------------------------------------------
def test_video_file_every_frame_in_order_then_eos(tmp_path: Path) -> None:
    levels = write_video(tmp_path / "clip.mp4", 12)
    with open_source(tmp_path / "clip.mp4") as src:
        assert not src.is_live and src.fps == pytest.approx(25.0) and src.size == (48, 64)
        assert src.frame_count == 12
        got = []
        while (f := src.read()).ok:
            assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
            got.append((f.index, int(round(f.image.mean()))))
            f.release()
        assert f.status is FrameStatus.EOS
        assert src.read().status is FrameStatus.EOS  # stays at the end
    assert [i for i, _ in got] == list(range(12))
    assert all(abs(m - lv) <= 8 for (_, m), lv in zip(got, levels, strict=True))


@pytest.mark.parametrize("cpus, want", [(1, [cv2.CAP_PROP_N_THREADS, 1]), (2, [cv2.CAP_PROP_N_THREADS, 1]), (8, [])])
def test_small_cpus_decode_on_one_thread_with_the_same_frames(tmp_path: Path, monkeypatch, cpus, want) -> None:
    write_video(tmp_path / "clip.mp4", 6)
    with open_source(tmp_path / "clip.mp4") as src:
        default = [f.image.copy() for f in src]
    monkeypatch.setattr(sources, "available_cpus", lambda: cpus)
    assert sources.decode_params() == want  # FFmpeg's frame threads cost CPU and hold frames back
    with open_source(tmp_path / "clip.mp4") as src:
        got = [f.image.copy() for f in src]
    assert len(got) == 6 and all(np.array_equal(a, b) for a, b in zip(default, got, strict=True))


def test_file_uri_loop_and_resize(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", 5)
    with open_source(f"file://{tmp_path / 'clip.mp4'}", loop=True, size="24x32") as src:
        frames = [src.read() for _ in range(12)]
    assert all(f.ok and f.image.shape == (24, 32, 3) for f in frames)
    assert [f.index for f in frames] == list(range(12))  # looping keeps counting


def test_released_buffers_are_reused(tmp_path: Path) -> None:
    write_video(tmp_path / "clip.mp4", 6)
    with open_source(tmp_path / "clip.mp4") as src:
        a = src.read()
        first = a.image.ctypes.data
        a.release()
        b = src.read()
        assert b.image.ctypes.data == first  # decoded into the same memory: no per-frame allocation


def test_image_folder_sorted_names_and_corrupt_skipped(tmp_path: Path) -> None:
    for name, level in (("b.png", 100), ("a.png", 50), ("c.jpg", 150)):
        cv2.imwrite(str(tmp_path / name), np.full((20, 30, 3), level, np.uint8))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    with open_source(tmp_path) as src:
        frames = list(src)
        assert src.corrupt == 1 and src.unreadable == [str(tmp_path / "bad.png")]
    assert [f.name for f in frames] == ["a.png", "b.png", "c.jpg"]
    assert [int(round(f.image.mean())) for f in frames][:2] == [50, 100]


def test_image_folder_loop_keeps_going_past_unreadable_images(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((20, 30, 3), 80, np.uint8))
    (tmp_path / "b.png").write_bytes(b"")  # zero bytes
    (tmp_path / "c.png").write_bytes(np.random.default_rng(0).bytes(256))
    with open_source(tmp_path, loop=True) as src:
        frames = [src.read() for _ in range(10)]
        assert all(f.ok and f.name == "a.jpg" for f in frames)  # corrupt images of past passes don't end it
        assert src.corrupt == 2 * 9
        assert src.unreadable == [str(tmp_path / "b.png"), str(tmp_path / "c.png")]  # named once, not per pass


def test_image_folder_loop_with_nothing_readable_ends(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(b"")
    (tmp_path / "c.png").write_bytes(b"not an image")
    with open_source(tmp_path, loop=True) as src:
        assert src.read().status is FrameStatus.EOS
        assert src.read().status is FrameStatus.EOS and src.corrupt == 2


def test_glob_and_single_image(tmp_path: Path) -> None:
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.zeros((10, 12, 3), np.uint8))
    with open_source(str(tmp_path / "f[12].png")) as src:
        assert [f.name for f in src] == ["f1.png", "f2.png"]
    with open_source(tmp_path / "f0.png") as src:
        assert [f.name for f in src] == ["f0.png"]


def test_synthetic_clip_is_deterministic_and_finite() -> None:
    with open_source("synthetic://?size=40x56&fps=10&frames=3&seed=2") as a, \
            open_source("synthetic://?size=40x56&frames=3&seed=2&fps=10") as b:
        fa, fb = list(a), list(b)
        assert not a.is_live and a.fps == 10 and a.size == (40, 56)
    assert len(fa) == 3 and all(f.image.shape == (40, 56, 3) for f in fa)
    assert all(np.array_equal(x.image, y.image) for x, y in zip(fa, fb, strict=True))
    assert not np.array_equal(fa[0].image, fa[2].image)  # the camera moves


def test_synthetic_realtime_is_paced_like_a_camera() -> None:
    with open_source("synthetic://?size=32x40&fps=20&frames=6&realtime=1", timeout=2.0) as src:
        assert src.is_live
        t0 = time.perf_counter()
        frames = []
        while (f := src.read()).status is FrameStatus.OK:
            frames.append(f)
        elapsed = time.perf_counter() - t0
    assert f.status is FrameStatus.EOS
    assert 1 <= len(frames) <= 6
    assert elapsed >= 5 / 20 * 0.8  # six frames at 20 fps take ~0.25 s at least


# -- network streams ------------------------------------------------------------------------------------
def test_http_mjpeg_stream_reads_frames() -> None:
    frames = grey_frames(5)
    with MjpegServer(port=0) as srv:
        srv.play(frames, fps=50)
        with open_source(srv.url, timeout=1.0) as src:
            assert src.is_live and src.describe()["reader"] == "mjpeg"  # read natively, not by FFmpeg
            levels = set()
            for _ in range(8):
                f = src.read()
                assert f.ok and f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8, f.message
                assert f.timestamp <= time.perf_counter() and f.capture_ms > 0  # decode time
                levels.add(int(round(f.image.mean() / 20)))
                f.release()
    assert len(levels) >= 3 and levels <= {0, 1, 2, 3, 4}  # real, distinct frames of the clip


def test_silent_stream_times_out_instead_of_ending() -> None:
    with MjpegServer(port=0) as srv:
        srv.play(grey_frames(10), fps=50, loop=False)  # ten frames, then silence on an open connection
        with open_source(srv.url, timeout=3.0, reconnect=0) as src:
            assert src.read().ok
            deadline = time.perf_counter() + 3.0
            while (f := src.read(timeout=0.3)).ok and time.perf_counter() < deadline:
                f.release()
            assert f.status is FrameStatus.TIMEOUT and "within 0.3 s" in f.message


def test_reconnects_after_server_restart_on_same_port() -> None:
    port = free_port()
    srv = MjpegServer(port=port)
    srv.play(grey_frames(4), fps=40)
    src = open_source(f"http://127.0.0.1:{port}/stream", timeout=1.0, reconnect=20, backoff=FAST_BACKOFF)
    try:
        assert src.read().ok
        srv.stop()
        time.sleep(0.3)
        srv = MjpegServer(port=port)
        srv.play(grey_frames(4), fps=40)
        deadline = time.perf_counter() + 8.0
        while src.reconnects == 0 and time.perf_counter() < deadline:
            f = src.read(timeout=0.5)
            assert f.status in (FrameStatus.OK, FrameStatus.TIMEOUT), f.message
        assert src.reconnects >= 1
        f = src.read(timeout=2.0)
        assert f.ok  # frames flow again after the reconnect
    finally:
        src.close()
        srv.stop()


def test_stream_gone_for_good_is_an_error_after_attempts() -> None:
    srv = MjpegServer(port=0)
    srv.play(grey_frames(3), fps=40)
    src = open_source(srv.url, timeout=0.5, reconnect=2, backoff=FAST_BACKOFF)
    try:
        assert src.read().ok
        srv.stop()
        deadline = time.perf_counter() + 6.0
        while (f := src.read(timeout=0.5)).status is not FrameStatus.ERROR and time.perf_counter() < deadline:
            pass
        assert f.status is FrameStatus.ERROR
        assert "did not come back after 2 reconnect attempts" in f.message
        assert src.read().status is FrameStatus.ERROR  # stays failed
    finally:
        src.close()


def test_stream_end_without_reconnect_is_eos() -> None:
    srv = MjpegServer(port=0)
    srv.play(grey_frames(2), fps=40)
    with open_source(srv.url, timeout=0.5, reconnect=0) as src:
        assert src.read().ok
        srv.stop()
        deadline = time.perf_counter() + 4.0
        while (f := src.read(timeout=0.5)).status is not FrameStatus.EOS and time.perf_counter() < deadline:
            pass
        assert f.status is FrameStatus.EOS


def test_latest_frame_wins_inside_live_source() -> None:
    with MjpegServer(port=0) as srv:
        srv.play(grey_frames(10), fps=60)
        with open_source(srv.url, timeout=1.0) as src:
            assert src.read().ok
            time.sleep(0.4)  # a slow reader: ~24 frames arrive meanwhile, only the newest is kept
            f = src.read()
            assert f.ok and src.drops >= 5
            assert time.perf_counter() - f.timestamp < 0.2  # fresh, not a backlog


def test_mjpeg_frames_replaced_before_read_are_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_in: list[str] = []
    real_decode = sources.decode_jpeg

    def counting_decode(data: bytes, buffers: object = None, **kw) -> np.ndarray | None:
        decoded_in.append(threading.current_thread().name)
        return real_decode(data, buffers, **kw)

    monkeypatch.setattr(sources, "decode_jpeg", counting_decode)
    with MjpegServer(port=0) as srv:
        srv.play(grey_frames(10, (120, 160)), fps=60)
        with open_source(srv.url, timeout=1.0) as src:
            reads = 0
            for _ in range(6):  # a slow reader: ~6 frames arrive per 0.1 s
                f = src.read()
                assert f.ok and f.image.shape == (120, 160, 3), f.message
                f.release()
                reads += 1
                time.sleep(0.1)
            drops = src.drops
    assert len(decoded_in) == reads  # exactly the frames handed out were decoded ...
    assert drops >= 8 and len(decoded_in) < drops + reads  # ... not the ones replaced unread
    assert set(decoded_in) == {threading.current_thread().name}  # in the caller's thread


def test_mjpeg_resize_on_read_and_buffers_reused() -> None:
    with MjpegServer(port=0) as srv:
        srv.play(grey_frames(4, (96, 128)), fps=50)
        with open_source(srv.url, timeout=1.0, size=(24, 32)) as src:
            f = src.read()
            assert f.ok and f.image.shape == (24, 32, 3) and src.size == (24, 32)
            buf = f.image
            f.release()
            g = src.read()
            assert g.ok and g.image is buf  # the resize went into the released buffer


def _level_jpeg(level: int, hw: tuple[int, int] = (32, 48)) -> bytes:
    return encode_jpeg(np.full((*hw, 3), level, np.uint8))


def test_mjpeg_corrupt_part_is_counted_and_skipped() -> None:
    bodies = [_level_jpeg(40), b"this is not a JPEG", _level_jpeg(200)]

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(multipart_head())
        for body in bodies:
            conn.sendall(part(body))
            if stop.wait(0.3):
                return
        hold(conn, stop)

    with RawHttpServer(respond) as srv:
        with open_source(srv.url(), timeout=0.6, reconnect=0) as src:
            f1 = src.read(timeout=2.0)
            assert f1.ok and abs(f1.image.mean() - 40) < 8
            assert len(srv.requests) == 1  # the probe's connection is the stream: one GET only
            f2 = src.read(timeout=2.0)  # the broken part arrives first: skipped, read() keeps waiting
            assert f2.ok and abs(f2.image.mean() - 200) < 8, f2.message
            assert src.corrupt == 1 and src.drops == 0 and f2.index == 2


def test_mjpeg_parts_without_content_length() -> None:
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(multipart_head("--camframe"))  # the dashes in the parameter, as some cameras do
        for i in range(200):
            conn.sendall(part(_level_jpeg(20 * (i % 10)), b"--camframe", b"\n", length=False))
            if stop.wait(0.02):
                return

    with RawHttpServer(respond) as srv, open_source(srv.url(), timeout=1.0) as src:
        assert src.describe()["reader"] == "mjpeg"
        levels = set()
        for _ in range(5):
            f = src.read()
            assert f.ok and f.image.shape == (32, 48, 3), f.message
            levels.add(int(round(f.image.mean() / 20)))
            f.release()
            time.sleep(0.03)
        assert len(levels) >= 3


def test_mjpeg_stream_cut_mid_part_reconnects() -> None:
    calls = itertools.count()

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(multipart_head())
        if next(calls) == 0:
            conn.sendall(part(_level_jpeg(40)))
            stop.wait(0.2)
            conn.sendall(part(_level_jpeg(40))[:120])  # half a part, then the connection drops
            return
        while not stop.wait(0.03):
            conn.sendall(part(_level_jpeg(200)))

    with RawHttpServer(respond) as srv:
        with open_source(srv.url(), timeout=1.0, reconnect=5, backoff=FAST_BACKOFF) as src:
            assert src.read().ok
            deadline = time.perf_counter() + 3.0
            while src.reconnects == 0 and time.perf_counter() < deadline:
                f = src.read(timeout=0.3)
                assert f.status in (FrameStatus.OK, FrameStatus.TIMEOUT), f.message
            assert src.reconnects == 1
            f = src.read(timeout=2.0)
            assert f.ok and abs(f.image.mean() - 200) < 8  # frames of the new connection


def test_mjpeg_oversized_part_is_refused_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    huge = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 4294967296\r\n\r\n"  # 4 GiB "frame"

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(multipart_head() + huge + b"\xff\xd8" * 1000)
        hold(conn, stop)

    with caplog.at_level(logging.INFO, logger="edgeseg.runtime.sources"):
        with RawHttpServer(respond) as srv, open_source(srv.url(), timeout=1.0, reconnect=0) as src:
            f = src.read(timeout=2.0)
            assert f.status is FrameStatus.EOS  # the stream is refused (and not reconnected: reconnect=0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("4294967296 bytes, over the 32 MiB limit; refusing it" in w for w in warnings), warnings


def test_http_video_file_falls_back_to_ffmpeg(tmp_path: Path) -> None:
    levels = write_video(tmp_path / "clip.mp4", 6)
    with FileHttpServer(tmp_path) as srv:
        with open_source(srv.url("clip.mp4"), timeout=1.0, reconnect=0) as src:
            assert src.describe()["reader"] == "ffmpeg"  # video/mp4, not multipart: FFmpeg reads it
            f = src.read(timeout=2.0)
            assert f.ok and f.image.shape == (48, 64, 3), f.message
            assert min(abs(f.image.mean() - v) for v in levels) < 8
            deadline = time.perf_counter() + 3.0
            while (f := src.read(timeout=0.5)).status is not FrameStatus.EOS and time.perf_counter() < deadline:
                pass
            assert f.status is FrameStatus.EOS


def test_http_error_answer_is_named_when_ffmpeg_fails_too(tmp_path: Path) -> None:
    with FileHttpServer(tmp_path) as srv:
        with pytest.raises(SourceError) as e:
            open_source(srv.url("missing.mp4").replace("http://", "http://user:secret@"), timeout=1.0)
    msg = str(e.value)
    assert "cannot open stream" in msg and "HTTP 404" in msg and "secret" not in msg and "\n" not in msg


# -- bad input: one clear line each -----------------------------------------------------------------------
@pytest.mark.parametrize("uri, kind, words", [
    ("ftp://example.com/x.mp4", UsageError, "supported: file://"),
    ("gopher://x", UsageError, "unsupported source scheme"),
    ("http:///nohost", UsageError, "has no host"),
    ("v4l2://video0", UsageError, "v4l2:///dev/video0"),
    ("v4l2:///etc/passwd", UsageError, "v4l2:///dev/video0"),
    ("file://otherhost/x.mp4", UsageError, "only local files"),
    ("synthetic://?colour=red", UsageError, "unknown synthetic:// option 'colour'"),
    ("synthetic://?size=abc", UsageError, "is not a size"),
    ("synthetic://?fps=0", UsageError, "0 < fps"),
    ("clip.mp4\n--rm", UsageError, "control characters"),
    ("", UsageError, "empty source"),
    ("/no/such/video.mp4", SourceError, "does not exist"),
    ("/no/such/*.png", SourceError, "no images match"),
    ("99", SourceError, "no camera 99"),
    ("http://[::1/x", UsageError, "is malformed"),
    ("rtsp://cam:port/x", UsageError, "is malformed"),
    ("http://a..b/x", UsageError, "invalid host name 'a..b'"),
    ("v4l2:///dev/video99", SourceError, "no camera at /dev/video99"),
])
def test_bad_sources_fail_with_one_clear_line(uri: str, kind: type, words: str) -> None:
    with pytest.raises(kind) as e:
        open_source(uri)
    msg = str(e.value)
    assert words in msg and "\n" not in msg


def test_folder_without_images_and_non_video_file(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="has no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "notes.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(SourceError, match="cannot decode video file"):
        open_source(tmp_path / "notes.bin")


@pytest.mark.parametrize("password", ["secret", "p@ss@secret"])
def test_unreachable_stream_and_password_redacted(password: str) -> None:
    port = free_port()  # nothing listens here
    with pytest.raises(SourceError) as e:
        open_source(f"http://user:{password}@127.0.0.1:{port}/stream", timeout=1.0)
    assert "secret" not in str(e.value) and "cannot open stream" in str(e.value)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_timeout_must_be_a_positive_finite_number(timeout: float) -> None:
    with pytest.raises(UsageError, match="positive number of seconds"):
        open_source("synthetic://", timeout=timeout)


@pytest.mark.parametrize("name", ["clip[1].mp4", "wow!.mp4", "what?.mp4"])
def test_existing_file_with_glob_or_pipeline_characters_is_that_file(tmp_path: Path, name: str) -> None:
    levels = write_video(tmp_path / name, 3)
    for uri in (str(tmp_path / name), (tmp_path / name).as_uri()):
        with open_source(uri) as src:
            frames = [src.read() for _ in range(4)]
        assert [f.status for f in frames] == [FrameStatus.OK] * 3 + [FrameStatus.EOS]
        assert len(levels) == 3


def test_a_reader_thread_that_dies_ends_the_stream_with_its_error() -> None:
    class Exploding:
        def read(self, buf=None):
            raise MemoryError("no room for the frame")

        def get(self, prop: int) -> float:
            return 0.0

        def release(self) -> None:
            pass

    src = sources._LiveSource("test://exploding", Exploding, timeout=0.5, reconnect=0)
    try:
        frame = src.read(timeout=2.0)
    finally:
        src.close()
    assert frame.status is FrameStatus.ERROR and "MemoryError: no room for the frame" in frame.message


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer; the missing-GStreamer message does not apply")
@pytest.mark.parametrize("uri", ["videotestsrc ! videoconvert ! appsink", "csi://0"])
def test_gstreamer_missing_is_a_clear_error(uri: str) -> None:
    with pytest.raises(SourceError, match="GStreamer: NO"):
        open_source(uri)


def test_highway_clip(highway_video: Path) -> None:
    with open_source(highway_video) as src:
        assert src.size == (540, 960) and src.fps == pytest.approx(25.0)
        n = 0
        for f in src:
            n += 1
            f.release()
            if n == 20:
                break
    assert n == 20


def test_buffer_pool_keeps_several_sizes_and_forgets_old_ones() -> None:
    pool = sources._BufferPool(keep=3)
    big, small = np.empty((96, 128, 3), np.uint8), np.empty((24, 32, 3), np.uint8)
    pool.put(big)
    pool.put(small)
    assert pool.get((96, 128, 3)) is big  # found under the newer small one, which stays
    assert pool.get((24, 32, 3)) is small
    old = [np.empty((8, 8, 3), np.uint8) for _ in range(3)]
    for b in old:
        pool.put(b)
    pool.put(big)  # full: the longest unused goes
    assert pool.get((96, 128, 3)) is big
    assert pool.get((8, 8, 3)) is old[2] and pool.get((8, 8, 3)) is old[1]
    assert pool.get((8, 8, 3)) is not old[0]  # forgotten: a fresh buffer
