"""Video sources by URI: cameras, files, image folders, network streams, GStreamer, synthetic scenes.

``open_source(uri)`` understands (after jetson-utils' ``videoSource``):

=====================================  ==========================================================
``0``, ``v4l2:///dev/video0``          a V4L2 camera (live)
``csi://0``                            a Jetson CSI camera through GStreamer (live)
``video.mp4``, ``file:///x/video.mp4``  a video file, every frame in order
``frames/``, ``'frames/*.png'``, ``a.jpg``  images of a folder / glob (sorted) / one image
``rtsp://…``, ``http(s)://…``           a network stream through OpenCV's FFmpeg (live)
``http(s)://…`` serving MJPEG           ``multipart/x-mixed-replace`` read natively, decoded on read()
``videotestsrc ! … ! appsink``          a GStreamer pipeline, when OpenCV was built with GStreamer
``synthetic://?size=360x480&fps=30&frames=300&realtime=1``  procedural driving scenes
=====================================  ==========================================================

``src.read()`` returns a :class:`Frame` whose ``status`` tells a frame (``OK``) from the end of
a file (``EOS``), a live source with nothing new in time (``TIMEOUT``) and a source that is gone
for good (``ERROR``, with a message). Live sources capture in their own thread and keep only the
newest frame (older unread ones are dropped and counted) so a slow reader never sees stale
video; they reconnect with exponential backoff and count the reconnects. Frames that fail to
decode are skipped and counted in ``src.corrupt``.

An ``http(s)://`` URL is probed once: a ``multipart/x-mixed-replace`` (MJPEG) answer is read by
:class:`~edgeseg.runtime.mjpeg.MjpegClient`, whose capture thread only receives JPEG bytes; the
JPEG is decoded in ``read()``, so frames replaced before anyone read them cost no decode at all
(``describe()["reader"]`` is ``"mjpeg"``). Anything else (an .mp4, HLS, ...) goes to FFmpeg.

Frame buffers come from a small pool: call ``frame.release()`` when done with a frame to let
the next one be decoded into the same memory (the pipeline does); frames never released are
simply garbage-collected.
"""

from __future__ import annotations

import enum
import glob
import logging
import math
import os
import re
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np

from .errors import SourceError, UsageError
from .jpeg import MAX_FRAME_PIXELS, decode_jpeg, read_image_file
from .mjpeg import MjpegClient, MjpegProtocolError, NotMjpegError, redact_url
from .sizes import parse_hw

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
SCHEMES = ("file", "v4l2", "csi", "rtsp", "rtsps", "http", "https", "synthetic")
DEFAULT_TIMEOUT = 5.0  # seconds without a frame before a live read() answers TIMEOUT
DEFAULT_RECONNECTS = 5  # attempts per outage; backoff 0.5, 1, 2, 4, 8 s (~15 s in all)
BACKOFF = (0.5, 8.0)  # first delay and cap, in seconds
MAX_BAD_READS = 5  # consecutive undecodable frames in a file before it counts as ended


class FrameStatus(enum.Enum):
    OK = "ok"
    EOS = "eos"  # end of stream: the file or clip is over (not an error)
    TIMEOUT = "timeout"  # a live source produced nothing new within the timeout; try again
    ERROR = "error"  # the source is gone for good (message says why)


class _BufferPool:
    """Recycles frame buffers so the steady state decodes into memory it already owns."""

    def __init__(self, keep: int = 8) -> None:
        self._free: list[np.ndarray] = []
        self._keep = keep
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        with self._lock:
            # Several sizes can be in use at once (a decode buffer and the resized frame): take a
            # buffer of this shape and keep the others.
            for i in range(len(self._free) - 1, -1, -1):
                if self._free[i].shape == shape:
                    return self._free.pop(i)
        return np.empty(shape, np.uint8)

    def put(self, buf: np.ndarray) -> None:
        with self._lock:
            self._free.append(buf)
            if len(self._free) > self._keep:
                del self._free[0]  # the longest unused goes (e.g. a size the stream no longer sends)


@dataclass(slots=True)
class Frame:
    status: FrameStatus
    image: np.ndarray | None = None  # (H, W, 3) uint8 BGR
    timestamp: float = 0.0  # time.perf_counter() when the frame was captured
    index: int = -1  # 0-based position in the source (counts skipped/dropped frames too)
    name: str = ""  # input file name for image sources ("" otherwise)
    capture_ms: float = 0.0  # time spent reading and decoding this frame
    message: str = ""  # why, for EOS / TIMEOUT / ERROR
    _pool: _BufferPool | None = field(default=None, repr=False)
    _jpeg: bytes | None = field(default=None, repr=False)  # not yet decoded (inside a live source only)

    @property
    def ok(self) -> bool:
        return self.status is FrameStatus.OK

    def release(self) -> None:
        """Hand the image buffer back for reuse; the frame must not be used afterwards."""
        if self._pool is not None and self.image is not None:
            self._pool.put(self.image)
        self.image, self._pool = None, None


class Source:
    """Base class. Subclasses implement :meth:`_read` (and :meth:`_close`)."""

    is_live: bool = False

    @property
    def finite(self) -> bool:
        """Whether EOS means the input is over for good (a file, a finite clip), not a lost stream."""
        return not self.is_live

    def __init__(self, uri: str, size: tuple[int, int] | None = None) -> None:
        self.uri = uri
        self.out_size = size  # (H, W) every frame is resized to, or None
        self.fps: float | None = None  # nominal frame rate; None where there is none (images)
        self.size: tuple[int, int] | None = size  # (H, W) of the frames, once known
        self.frame_count: int | None = None  # frames in one pass, when known (files)
        self.reconnects = 0
        self.corrupt = 0  # frames that failed to decode and were skipped
        self.unreadable: list[str] = []  # the skipped input files, by name (the first MAX_NAMED_UNREADABLE)
        self.drops = 0  # live frames replaced by a newer one before anyone read them
        self.reader: str | None = None  # what reads the frames ("ffmpeg", "mjpeg", ...), for describe()
        self._index = 0
        self._pool = _BufferPool()
        self._closed = False

    def read(self, timeout: float | None = None) -> Frame:
        """The next frame (files) or the newest unread frame (live sources)."""
        if self._closed:
            return Frame(FrameStatus.ERROR, message=f"source {self.uri} is closed")
        return self._read(timeout)

    def _read(self, timeout: float | None) -> Frame:
        raise NotImplementedError

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self):
        """OK frames until EOS; raises :class:`SourceError` on ERROR (live TIMEOUTs are waited out)."""
        while True:
            frame = self.read()
            if frame.status is FrameStatus.OK:
                yield frame
            elif frame.status is FrameStatus.EOS:
                return
            elif frame.status is FrameStatus.ERROR:
                raise SourceError(frame.message)

    def describe(self) -> dict:
        return {"uri": self.uri, "kind": type(self).__name__.lstrip("_"), "live": self.is_live,
                "fps": self.fps, "size": list(self.size) if self.size else None,
                "frames": self.frame_count, "reader": self.reader}

    def _fit(self, decoded: np.ndarray) -> np.ndarray:
        """Resize a decoded image into a pooled buffer when ``size`` was asked; note the size otherwise."""
        if self.out_size is not None and decoded.shape[:2] != self.out_size:
            h, w = self.out_size
            out = self._pool.get((h, w, 3))
            cv2.resize(decoded, (w, h), dst=out, interpolation=cv2.INTER_AREA)  # (h, w, 3) uint8
            owner = decoded if decoded.base is None else decoded.base  # a decode into a pooled buffer is a view of it
            if isinstance(owner, np.ndarray) and owner.shape == decoded.shape:
                self._pool.put(owner)  # the decode buffer is free again
            return out
        if self.size is None:
            self.size = decoded.shape[:2]
        return decoded

    def _finish(self, decoded: np.ndarray, t0: float, name: str = "") -> Frame:
        """Wrap a decoded image (resizing it into a pooled buffer when ``size`` was asked)."""
        decoded = self._fit(decoded)
        t1 = time.perf_counter()
        frame = Frame(FrameStatus.OK, decoded, t1, self._index, name, (t1 - t0) * 1e3, _pool=self._pool)
        self._index += 1
        return frame


SMALL_CPU = 2  # cores at or below which FFmpeg decodes on one thread (decode_params)


def available_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one, as in containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def decode_params() -> list[int]:
    """OpenCV open parameters for FFmpeg decoding: a single decoder thread on a small CPU.

    FFmpeg's default frame-threaded decoding (a thread per core) cost 4.5 ms of CPU per 960x540 H.264
    frame of the highway clip here against 3.8 ms on one thread (wall 5.0-5.4 against 3.9-4.5 ms),
    and frame threading holds back a frame per extra thread, which a live stream sees as latency. On
    two cores the model wants the other core anyway.
    """
    return [cv2.CAP_PROP_N_THREADS, 1] if available_cpus() <= SMALL_CPU else []


# -- files ------------------------------------------------------------------------------------------
class _VideoFileSource(Source):
    def __init__(self, path: Path, loop: bool = False, size: tuple[int, int] | None = None) -> None:
        super().__init__(str(path), size)
        self.path, self.loop = path, loop
        self.reader = "ffmpeg"
        self._cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, decode_params())
        if not self._cap.isOpened():
            raise SourceError(f"cannot decode video file {path}: not a video, or a codec this OpenCV/FFmpeg "
                              "build does not read; convert it (e.g. ffmpeg -i in -c:v libx264 out.mp4)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 25.0
        n = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = n if n > 0 else None
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._shape = (h, w, 3)
        if size is None and h > 0 and w > 0:
            self.size = (h, w)
        self._pos = 0  # frames consumed (decoded or skipped) in the current pass
        self.truncated: tuple[int, int] | None = None  # (frames read, frames declared) of a short clip

    def _read(self, timeout: float | None) -> Frame:
        bad = 0
        while True:
            t0 = time.perf_counter()
            buf = self._pool.get(self._shape)
            ok, img = self._cap.read(buf)  # decodes in place when buf has the frame's shape
            if ok and img is not None and img.ndim == 3:
                if bad:
                    self.corrupt += bad
                self._pos += 1
                if img is not buf:
                    self._shape = img.shape  # first frame told us the real size
                return self._finish(img, t0)
            self._pool.put(buf)
            # A failed read before the known end is an undecodable frame: skip it, count it.
            if self.frame_count is not None and self._pos + bad < self.frame_count - 1 and bad < MAX_BAD_READS:
                bad += 1
                continue
            self._warn_if_short(bad)
            if self.loop and self._pos > 0:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                self._pos, bad = 0, 0
                continue
            return Frame(FrameStatus.EOS, index=self._index, message=f"end of {self.path.name}")

    def _warn_if_short(self, bad: int) -> None:
        """A clip that ends well before the frame count its container declares is truncated or
        damaged: say so once (the run still uses what could be read)."""
        declared, got = self.frame_count, self._pos + bad
        if declared is None or self.truncated is not None or got >= declared * SHORT_CLIP_FRACTION or \
                declared - got < 2:
            return
        self.truncated = (self._pos, declared)
        log.warning("%s ended after %d of the %d frames its header declares: the file is truncated or damaged",
                    self.path.name, self._pos, declared)

    def _close(self) -> None:
        self._cap.release()


SHORT_CLIP_FRACTION = 0.98  # fewer frames than this share of the declared count: warn (counts can be estimates)
MAX_NAMED_UNREADABLE = 100  # a folder of broken files is reported by its first hundred names


class _ImageListSource(Source):
    def __init__(self, uri: str, files: list[Path], loop: bool = False,
                 size: tuple[int, int] | None = None) -> None:
        super().__init__(uri, size)
        self.files, self.loop = files, loop
        self.reader = "imread"
        self.frame_count = len(files)
        self._pos = 0
        self._pass_read = False  # an image of the current pass decoded (looping on is worth it)

    def _read(self, timeout: float | None) -> Frame:
        while True:
            if self._pos >= len(self.files):
                # Judge each pass on its own: self.corrupt keeps growing across passes.
                if not self.loop or not self._pass_read:
                    return Frame(FrameStatus.EOS, index=self._index, message=f"end of {self.uri}")
                self._pos, self._pass_read = 0, False
            path = self.files[self._pos]
            self._pos += 1
            t0 = time.perf_counter()
            img = read_image_file(path, self._pool)  # (H, W, 3) uint8 BGR (JPEGs in a pooled buffer), or None
            if img is None:
                self.corrupt += 1  # unreadable image: skip it, keep going
                self._index += 1
                if len(self.unreadable) < MAX_NAMED_UNREADABLE and str(path) not in self.unreadable:
                    self.unreadable.append(str(path))  # once, even when looping
                continue
            self._pass_read = True
            return self._finish(img, t0, path.name)


# -- live sources -------------------------------------------------------------------------------------
class _MjpegCapture:
    """:class:`MjpegClient` behind the capture interface: ``read_encoded()`` gives JPEG bytes, undecoded."""

    encoded = True  # _LiveSource publishes the bytes and decodes in read()

    def __init__(self, client: MjpegClient) -> None:
        self._client = client

    def get(self, prop: int) -> float:
        return 0.0  # MJPEG over HTTP announces no frame rate

    def read_encoded(self) -> bytes:
        return self._client.read_jpeg()  # SourceError when the stream broke

    def release(self) -> None:
        self._client.close()


class _LiveSource(Source):
    """A capture thread reads continuously; ``read()`` hands out the newest frame.

    ``opener()`` returns an object with OpenCV's ``read(buf) -> (ok, img)`` and ``release()``
    (a ``cv2.VideoCapture`` or the synthetic clip player), or one with ``encoded = True`` and
    ``read_encoded() -> bytes`` (JPEG; raises :class:`SourceError` when the stream broke), whose
    frames are decoded only in ``read()``. It raises :class:`SourceError` when the device or
    stream cannot be opened.
    """

    is_live = True

    @property
    def finite(self) -> bool:
        return self._eos_when_ended  # a realtime clip ends; a stream that stops is lost

    def __init__(self, uri: str, opener, timeout: float = DEFAULT_TIMEOUT, reconnect: int = DEFAULT_RECONNECTS,
                 size: tuple[int, int] | None = None, backoff: tuple[float, float] = BACKOFF,
                 eos_when_ended: bool = False, reader: str | None = None) -> None:
        super().__init__(uri, size)
        self.reader = reader
        self.timeout, self.max_reconnects, self.backoff = timeout, reconnect, backoff
        self._opener = opener
        self._eos_when_ended = eos_when_ended  # finite clips end with EOS rather than reconnecting
        self._cap = opener()  # first open is synchronous: a bad URL fails here, with its message
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else None
        self._cond = threading.Condition()
        self._interval: float | None = None  # measured seconds between arrivals (frame_interval)
        self._arrivals = 0
        self._last_arrival: float | None = None
        self._latest: Frame | None = None
        self._end: Frame | None = None  # EOS / ERROR once the thread has stopped for good
        self._shape: tuple[int, ...] | None = None  # shape of the last decoded frame (capture thread)
        self._read_error: SourceError | None = None  # why the last read failed, when the reader said so
        self._stop = threading.Event()
        # listener(kind, line): "lost" / "retry" / "back" as an outage unfolds (called in the capture thread)
        self.listener: Callable[[str, str], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"capture:{uri[:40]}", daemon=True)
        self._thread.start()

    @property
    def frame_interval(self) -> float | None:
        """Seconds between frames as they arrive (moving average), None until a few have come."""
        return self._interval if self._arrivals >= 4 else None

    def newest_timestamp(self) -> float | None:
        """Arrival time of the frame ``read()`` would return now; None when none is waiting."""
        with self._cond:
            return self._latest.timestamp if self._latest is not None else None

    def wait_newer(self, than: float, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a frame that arrived after ``than``; True if one did."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._latest is not None and self._latest.timestamp > than) or self._end is not None
                or self._closed, timeout) and self._latest is not None and self._latest.timestamp > than

    def _publish(self, frame: Frame) -> None:
        if self._last_arrival is not None:
            gap = frame.timestamp - self._last_arrival
            # An outage (reconnect) is not a frame interval; a 1/8 moving average follows rate changes.
            if 0 < gap < 1.0:
                self._interval = gap if self._interval is None else self._interval + (gap - self._interval) / 8
                self._arrivals += 1
        self._last_arrival = frame.timestamp
        with self._cond:
            if self._latest is not None:
                self.drops += 1  # nobody read it in time: the newer frame wins
                self._latest.release()
            self._latest = frame
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            self._capture_loop()
        except BaseException as e:  # noqa: BLE001 - a dead reader must end the stream, not time out forever
            self._stop_with(Frame(FrameStatus.ERROR, index=self._index,
                                  message=f"reading {self.uri} failed: {type(e).__name__}: {e}"))
        finally:
            self._cap.release()  # the thread owns the capture: never released under a blocked read

    def _grab(self) -> Frame | None:
        """The next frame from the capture, or None when the read failed."""
        if getattr(self._cap, "encoded", False):
            try:
                data = self._cap.read_encoded()
            except SourceError as e:
                self._read_error = e
                return None
            # Received, not decoded: read() decodes it, and only if nobody replaced it first.
            frame = Frame(FrameStatus.OK, None, time.perf_counter(), self._index, _jpeg=data)
            self._index += 1
            return frame
        t0 = time.perf_counter()
        buf = self._pool.get(self._shape) if self._shape else None
        try:
            ok, img = self._cap.read(buf) if buf is not None else self._cap.read()
        except cv2.error:
            ok, img = False, None
        if ok and img is not None and img.ndim == 3 and img.shape[2] == 3:
            self._shape = img.shape
            return self._finish(img, t0)
        if buf is not None:
            self._pool.put(buf)
        return None

    def _capture_loop(self) -> None:
        failed = 0
        pace = getattr(self._cap, "pace", None)  # a paced clip waits here, outside the capture time
        while not self._stop.is_set():
            if pace is not None:
                pace()
            frame = self._grab()
            if frame is not None:
                if failed:
                    with self._cond:
                        self.corrupt += failed  # the stream kept going: those were bad frames
                    failed = 0
                self._publish(frame)
                continue
            failed += 1
            if failed < 2:
                continue  # one bad frame is not an outage; a second failure in a row is
            self._cap.release()
            if self._eos_when_ended:
                self._stop_with(Frame(FrameStatus.EOS, index=self._index, message=f"end of {self.uri}"))
                return
            if self._read_error is not None:  # the reader knows why: say it once per outage
                # A stream breaking the format (e.g. an oversized part) is worth a warning; an outage
                # is what reconnects are for, and the reconnect count already shows it.
                level = logging.WARNING if isinstance(self._read_error, MjpegProtocolError) else logging.INFO
                log.log(level, "%s%s", self._read_error, "; reconnecting" if self.max_reconnects else "")
                self._read_error = None
            if self.max_reconnects:
                self._tell("lost", f"stream {self.uri} lost, reconnecting (attempt 1/{self.max_reconnects})")
            if not self._reconnect():
                return
            failed, self._shape = 0, None

    def _reconnect(self) -> bool:
        delay, last = self.backoff[0], "the stream ended"
        for _attempt in range(self.max_reconnects):
            if self._stop.wait(delay):
                return False
            try:
                self._cap = self._opener()
            except SourceError as e:
                last = str(e)
                delay = min(delay * 2, self.backoff[1])
                if _attempt + 1 < self.max_reconnects:
                    self._tell("retry", f"stream {self.uri} lost, reconnecting "
                                        f"(attempt {_attempt + 2}/{self.max_reconnects})")
                continue
            self.reconnects += 1
            self._tell("back", f"stream {self.uri} is back (reconnect {_attempt + 1}/{self.max_reconnects})")
            return True
        if self.max_reconnects == 0:
            self._stop_with(Frame(FrameStatus.EOS, index=self._index, message=f"stream {self.uri} ended"))
        else:
            self._stop_with(Frame(FrameStatus.ERROR, index=self._index,
                                  message=f"stream {self.uri} stopped and did not come back after "
                                          f"{self.max_reconnects} reconnect attempts ({last})"))
        return False

    def _tell(self, kind: str, line: str) -> None:
        if self.listener is not None:
            self.listener(kind, line)

    def _stop_with(self, frame: Frame) -> None:
        with self._cond:
            self._end = frame
            self._cond.notify_all()

    def _decode(self, frame: Frame) -> Frame | None:
        """Decode a received JPEG frame in the caller's thread; None (counted corrupt) when it is broken."""
        t0 = time.perf_counter()
        img = decode_jpeg(frame._jpeg, self._pool, max_pixels=MAX_FRAME_PIXELS)  # (H, W, 3) uint8 BGR, pooled
        if img is None:
            with self._cond:
                self.corrupt += 1
            return None
        img = self._fit(img)
        capture_ms = (time.perf_counter() - t0) * 1e3  # decode (+ resize): the receive was in the thread
        return Frame(FrameStatus.OK, img, frame.timestamp, frame.index, "", capture_ms, _pool=self._pool)

    def _read(self, timeout: float | None) -> Frame:
        timeout = self.timeout if timeout is None else timeout
        deadline = time.perf_counter() + timeout
        while True:
            with self._cond:
                if self._latest is None and self._end is None:
                    self._cond.wait_for(lambda: self._latest is not None or self._end is not None or self._closed,
                                        max(0.0, deadline - time.perf_counter()))
                frame = self._latest
                if frame is None:
                    if self._end is not None:
                        return self._end
                    break
                self._latest = None
            if frame._jpeg is None:
                return frame
            decoded = self._decode(frame)
            if decoded is not None:
                return decoded
            # An undecodable part: skip it and wait for the next one within what is left of the timeout.
        if self._closed:
            return Frame(FrameStatus.ERROR, message=f"source {self.uri} is closed")
        return Frame(FrameStatus.TIMEOUT, index=self._index,
                     message=f"no frame from {self.uri} within {timeout:g} s")

    def _close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        # A read blocked on a silent stream returns at its own timeout; don't make the caller wait for
        # it: the thread releases the capture itself when it gets there.
        self._thread.join(timeout=1.0)
        if self._latest is not None:
            self._latest.release()
            self._latest = None


def _opened(cap: cv2.VideoCapture, problem: str) -> cv2.VideoCapture:
    """Return ``cap`` if it opened; otherwise release it and raise ``problem`` as a SourceError."""
    if not cap.isOpened():
        cap.release()
        raise SourceError(problem)
    return cap


def _ffmpeg_opener(url: str, timeout: float, size: tuple[int, int] | None):
    ms = int(timeout * 1000)
    params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms, *decode_params()]
    shown = redact_url(url)

    def open_() -> cv2.VideoCapture:
        return _opened(cv2.VideoCapture(url, cv2.CAP_FFMPEG, params),
                       f"cannot open stream {shown}: no answer or not a video stream; check the URL "
                       "and that the camera/server is running")

    return open_


def _http_opener(url: str, timeout: float, size: tuple[int, int] | None):
    """Probe an http(s) URL once -> ``(opener, reader, answer)``.

    A ``multipart/x-mixed-replace`` answer is read by the native MJPEG client (``reader`` "mjpeg";
    the probe's connection becomes the first capture); anything else goes to FFmpeg unchanged
    (``reader`` "ffmpeg", ``answer`` says what the probe got, for the error message should FFmpeg
    fail too). A server that cannot be reached raises :class:`SourceError` here.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() in urllib.request.getproxies_environment() and \
            not urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return _ffmpeg_opener(url, timeout, size), "ffmpeg", ""  # FFmpeg honours *_proxy; the client does not
    try:
        first: MjpegClient | None = MjpegClient(url, timeout)
    except NotMjpegError as e:
        return _ffmpeg_opener(url, timeout, size), "ffmpeg", e.answer

    def open_() -> _MjpegCapture:
        nonlocal first
        client, first = first, None
        return _MjpegCapture(client if client is not None else MjpegClient(url, timeout))

    return open_, "mjpeg", ""


def _camera_opener(target: int | str, size: tuple[int, int] | None, fps: float | None = None):
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY

    def open_() -> cv2.VideoCapture:
        cap = _opened(cv2.VideoCapture(target, api),
                      f"cannot open camera {target}: it exists but refused to start (busy or not a "
                      "capture device?); close other programs using it or try another index")
        if size is not None:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[0])
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[1])
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep the driver queue short: fresh frames, low lag
        return cap

    return open_


def _gstreamer_opener(pipeline: str):
    if not has_gstreamer():
        raise SourceError("GStreamer pipelines need OpenCV built with GStreamer, and this one has none "
                          "(cv2.getBuildInformation() shows 'GStreamer: NO'); use a file, a camera index "
                          "or an rtsp:// / http:// URL, or install an OpenCV build with GStreamer")

    def open_() -> cv2.VideoCapture:
        return _opened(cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER),
                       f"GStreamer could not start the pipeline {pipeline!r}; test it with "
                       "gst-launch-1.0 and make sure it ends in 'appsink'")

    return open_


def has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    m = re.search(r"GStreamer:\s*(\S+)", info)
    return bool(m and m.group(1).upper() not in ("NO", "NONE"))


# -- synthetic --------------------------------------------------------------------------------------
class _SyntheticClip:
    """A ``cv2.VideoCapture``-like player of the procedural driving clip (optionally paced)."""

    def __init__(self, size: tuple[int, int], fps: float, frames: int | None, seed: int, realtime: bool,
                 loop: bool) -> None:
        from . import synthetic  # torch-free procedural scenes; imported only when asked for

        self.size, self.fps, self.frames, self.realtime, self.loop = size, fps, frames, realtime, loop
        self._gen = synthetic.SceneGenerator(size, seed=seed, fps=fps)
        self._n = 0
        self._t_next = time.perf_counter()

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def pace(self) -> None:
        """Like a camera: wait until the next frame is due (a frame every 1/fps s, never faster)."""
        if not self.realtime:
            return
        delay = self._t_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        self._t_next = max(self._t_next + 1.0 / self.fps, time.perf_counter() - 1.0 / self.fps)

    def read(self, buf: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        if self.frames is not None and self._n >= self.frames:
            if not self.loop:
                return False, None
            self._n = 0
        image, _label = self._gen.clip_frame(self._n)  # (H, W, 3) uint8 BGR, (H, W) uint8
        self._n += 1
        if buf is not None and buf.shape == image.shape:
            np.copyto(buf, image)
            return True, buf
        return True, image

    def release(self) -> None:
        pass


class _SyntheticSource(Source):
    def __init__(self, uri: str, clip: _SyntheticClip, size: tuple[int, int] | None) -> None:
        super().__init__(uri, size)
        self._clip = clip
        self.reader = "synthetic"
        self.fps = clip.fps
        self.frame_count = clip.frames
        if size is None:
            self.size = clip.size

    def _read(self, timeout: float | None) -> Frame:
        t0 = time.perf_counter()
        buf = self._pool.get((*self._clip.size, 3))
        ok, img = self._clip.read(buf)
        if not ok:
            self._pool.put(buf)
            return Frame(FrameStatus.EOS, index=self._index, message=f"end of {self.uri}")
        return self._finish(img, t0)


MAX_SYNTHETIC_PIXELS = 4096 * 4096  # scenes are drawn per frame in numpy: 4K fits, 16K would take minutes


def _parse_synthetic(uri: str, parts, loop: bool, size: tuple[int, int] | None, timeout: float) -> Source:
    q = {k.lower(): v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    known = {"size", "fps", "frames", "seed", "realtime"}
    unknown = sorted(set(q) - known)
    if unknown:
        raise UsageError(f"unknown synthetic:// option {unknown[0]!r}; use {', '.join(sorted(known))} "
                         "(e.g. synthetic://?size=360x480&fps=30&frames=300&realtime=1)")
    clip_size = parse_hw(q.get("size", "360x480"), "synthetic:// size")
    if clip_size[0] * clip_size[1] > MAX_SYNTHETIC_PIXELS:
        raise UsageError(f"synthetic:// size {clip_size[0]}x{clip_size[1]} is over the limit of "
                         f"{MAX_SYNTHETIC_PIXELS:,} pixels (e.g. 4096x4096)")
    try:
        fps = float(q.get("fps", 30))
        frames = int(q["frames"]) if q.get("frames") else 300
        seed = int(q.get("seed", 0))
    except ValueError as e:
        raise UsageError(f"bad synthetic:// option in {uri!r}: {e}") from None
    if not 0 < fps <= 1000 or frames < 0:
        raise UsageError(f"synthetic:// needs 0 < fps <= 1000 and frames >= 0 (0 = endless), got {uri!r}")
    realtime = q.get("realtime", "0").lower() in ("1", "true", "yes", "")
    if realtime:
        def opener() -> _SyntheticClip:
            return _SyntheticClip(clip_size, fps, frames or None, seed, True, loop)
        return _LiveSource(uri, opener, timeout=timeout, reconnect=0, size=size, eos_when_ended=True,
                           reader="synthetic")
    return _SyntheticSource(uri, _SyntheticClip(clip_size, fps, frames or None, seed, False, loop), size)


# -- URI dispatch -------------------------------------------------------------------------------------
def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _open_path(text: str, loop: bool, size: tuple[int, int] | None) -> Source:
    # A name that exists is that file, even with glob characters in it ('clip[1].mp4').
    if any(c in text for c in "*?[") and not Path(os.path.expanduser(text)).exists():
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True)
                       if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
        if not files:
            raise SourceError(f"no images match {text!r} (looked for {', '.join(IMAGE_SUFFIXES)}); check the pattern")
        return _ImageListSource(text, files, loop, size)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise SourceError(f"folder {path} has no images ({', '.join(IMAGE_SUFFIXES)}); point --source at "
                              "a video, an image folder or a glob like 'frames/*.png'")
        return _ImageListSource(str(path), files, loop, size)
    if not path.exists():
        raise SourceError(f"source {path} does not exist; give a video file, an image folder, a glob, a camera "
                          f"index or a URL ({', '.join(s + '://' for s in SCHEMES)})")
    if not path.is_file():
        raise SourceError(f"source {path} is not a regular file or folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _ImageListSource(str(path), [path], loop, size)
    return _VideoFileSource(path, loop, size)


def _open_camera(index: int, size: tuple[int, int] | None, timeout: float, reconnect: int,
                 backoff: tuple[float, float]) -> Source:
    dev = Path(f"/dev/video{index}")
    if sys.platform.startswith("linux") and not dev.exists():
        raise SourceError(f"no camera {index}: {dev} does not exist; plug one in, check 'ls /dev/video*', "
                          "or give a video file / stream URL as the source")
    return _LiveSource(str(index), _camera_opener(index, size), timeout, reconnect, size, backoff, reader="camera")


def open_source(uri: str | int | os.PathLike, *, timeout: float = DEFAULT_TIMEOUT,
                reconnect: int | bool = True, loop: bool = False,
                size: tuple[int, int] | str | None = None,
                backoff: tuple[float, float] = BACKOFF) -> Source:
    """Open a video source by URI (see the module docstring for the forms).

    ``timeout``: seconds a live ``read()`` waits before answering TIMEOUT (also the network
    open/read timeout). ``reconnect``: attempts per outage for live sources (``True`` = 5,
    ``False`` = 0). ``loop``: restart files, folders and clips at the end. ``size``: resize every
    frame to (H, W). ``backoff``: first delay and cap (seconds) between reconnect attempts,
    doubling per failed attempt.
    """
    if not (math.isfinite(timeout) and timeout > 0):
        raise UsageError(f"source timeout must be a positive number of seconds, got {timeout}")
    if not 0 < backoff[0] <= backoff[1]:
        raise UsageError(f"reconnect backoff {backoff} must be (first delay, cap) with 0 < first <= cap")
    reconnects = DEFAULT_RECONNECTS if reconnect is True else int(reconnect or 0)
    if reconnects < 0:
        raise UsageError(f"reconnect attempts must be >= 0, got {reconnect}")
    out_size = parse_hw(size, "source size") if size is not None else None
    if isinstance(uri, int):
        return _open_camera(uri, out_size, timeout, reconnects, backoff)
    text = os.fspath(uri).strip()
    if not text:
        raise UsageError("empty source; give a video file, image folder, camera index or stream URL")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise UsageError(f"source {text!r} contains control characters")
    if text.isdigit():
        return _open_camera(int(text), out_size, timeout, reconnects, backoff)
    if "!" in text and "://" not in text.split("!", 1)[0] and not Path(os.path.expanduser(text)).exists():
        return _LiveSource(text, _gstreamer_opener(text), timeout, reconnects, out_size, backoff,
                           reader="gstreamer")
    if "://" not in text:
        return _open_path(text, loop, out_size)

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsed lazily: a bad port raises here
    except ValueError as e:
        raise UsageError(f"source URL {redact_url(text)!r} is malformed ({e}); write e.g. "
                         "rtsp://192.168.1.10:554/stream") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise UsageError(f"unsupported source scheme {scheme + '://'!r} in {redact_url(text)!r}; supported: "
                         f"{', '.join(s + '://' for s in SCHEMES)}, a camera index, a file, folder or glob")
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file:// URI {text!r} names host {parts.netloc!r}; only local files are read")
        return _open_path(unquote(parts.path), loop, out_size)
    if scheme == "v4l2":
        dev_path = unquote(parts.netloc + parts.path)
        m = re.fullmatch(r"/dev/video(\d+)", dev_path)
        if not m:
            raise UsageError(f"v4l2 source {text!r} must name a device like v4l2:///dev/video0")
        if not Path(dev_path).exists():
            raise SourceError(f"no camera at {dev_path}; check 'ls /dev/video*' or use another source")
        return _LiveSource(text, _camera_opener(dev_path, out_size), timeout, reconnects, out_size, backoff,
                           reader="camera")
    if scheme == "csi":
        sensor = (parts.netloc or parts.path.strip("/")) or "0"
        if not sensor.isdigit():
            raise UsageError(f"csi source {text!r} must name a sensor id like csi://0")
        h, w = out_size or (720, 1280)
        pipeline = (f"nvarguscamerasrc sensor-id={int(sensor)} ! video/x-raw(memory:NVMM), width={w}, "
                    f"height={h}, framerate=30/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! "
                    "video/x-raw, format=BGR ! appsink drop=1 max-buffers=1")
        return _LiveSource(text, _gstreamer_opener(pipeline), timeout, reconnects, out_size, backoff,
                           reader="gstreamer")
    if scheme == "synthetic":
        return _parse_synthetic(text, parts, loop, out_size, timeout)
    # rtsp / rtsps / http / https: network streams through FFmpeg, MJPEG over http(s) natively.
    if not parts.hostname:
        raise UsageError(f"stream URL {redact_url(text)!r} has no host; write e.g. rtsp://192.168.1.10:554/stream")
    try:
        parts.hostname.encode("idna")  # what name resolution will do: 'a..b' fails there
    except UnicodeError:
        raise UsageError(f"stream URL {redact_url(text)!r} has an invalid host name {parts.hostname!r}") from None
    if scheme in ("http", "https"):
        opener, reader, answer = _http_opener(text, timeout, out_size)
    else:
        opener, reader, answer = _ffmpeg_opener(text, timeout, out_size), "ffmpeg", ""
    try:
        return _LiveSource(redact_url(text), opener, timeout, reconnects, out_size, backoff, reader=reader)
    except SourceError as e:
        if not answer:
            raise
        raise SourceError(f"{e} (the server answered {answer})") from None
