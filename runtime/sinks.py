"""Where rendered frames go: a window, a video file, an image folder, an MJPEG stream.

``open_sink(spec)`` picks by the spec's form:

==========================================  ================================================
``"window"`` (or ``"window:Title"``)        ``cv2.imshow`` (needs an OpenCV build with a GUI)
``"out.mp4"`` (``.avi .mkv .mov``)          a video file, finalised on :meth:`Sink.close`
``"out/"`` or an existing folder            numbered images, or the input file names
``"out.png"`` (an image suffix)             a single image
``"http://127.0.0.1:8080"``                 an MJPEG server (loopback unless a host is given)
==========================================  ================================================

Files are written under a hidden temporary name and renamed into place when complete, so an
interrupted run leaves either a finished, playable file or none, never a truncated one under
the final name. Call ``close()`` in a ``finally`` (the pipeline and the CLI do).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from .errors import SourceError, UsageError
from .fileio import LOW_SPACE, atomic_path, disk_full, free_bytes, is_disk_full
from .mjpeg import MjpegServer, parse_address
from .sources import IMAGE_SUFFIXES, Frame
from .visualize import describe_array

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v")
# Codecs to try per container, best first; OpenCV's FFmpeg wheels always have mp4v and MJPG.
FOURCCS = {".mp4": ("mp4v", "avc1"), ".m4v": ("mp4v",), ".mov": ("mp4v", "avc1"),
           ".mkv": ("mp4v", "XVID", "MJPG"), ".avi": ("MJPG", "XVID", "mp4v")}
# mp4v/XVID refuse frames 1 pixel wide or tall, and OpenCV 5's MJPG writer corrupts the heap and kills
# the process on 4x4 and 4x5 frames (measured); no camera makes frames this small, so refuse below 8.
MIN_VIDEO_SIDE = 8
SPACE_CHECK_EVERY = 8  # frames between free-space checks while a video is written
DEFAULT_FPS = 25.0  # for video made from images, which have no rate of their own
DEFAULT_PACED_FPS = 30.0  # paced recordings of live sources that state no rate (MJPEG over HTTP): a camera's usual
MAX_PACED_GAP_S = 10.0  # a paced recording fills at most this long a stall; past it, the video jumps


def as_bgr(image: np.ndarray, where: str) -> np.ndarray:
    """A uint8 BGR (H, W, 3) image for encoders that need one: gray and BGRA are converted,
    anything else is refused (OpenCV's video writer would skip it silently)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.size:
        if image.ndim == 3 and image.shape[2] == 3:
            return image
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if image.ndim == 3 and image.shape[2] == 4:
            return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    raise UsageError(f"{where} takes uint8 BGR (H, W, 3), gray (H, W) or BGRA (H, W, 4) images, "
                     f"got {describe_array(image)}")


class Sink:
    name: str = "sink"
    #: set by a sink whose user asked to stop (a window's q / Esc key); the pipeline checks it.
    stop_requested: bool = False

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        """Take one rendered BGR image (H, W, 3) uint8; ``frame`` is its source frame (names, index)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output (flush, finalise, rename); safe to call twice."""

    def describe(self) -> dict:
        return {"sink": self.name}

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def gui_problem() -> str | None:
    """Why no window can be opened here (one line), or None when it can."""
    info = cv2.getBuildInformation()
    gui_line = next((ln for ln in info.splitlines() if ln.strip().startswith("GUI:")), "GUI: NONE")
    if gui_line.split(":", 1)[1].strip().upper() in ("NONE", "NO", ""):
        return ("cannot open a window: this OpenCV build has no GUI (opencv-python-headless); use "
                "--save out.mp4 or --serve 127.0.0.1:8080 instead, or install opencv-python")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("cannot open a window: no display (DISPLAY is not set, e.g. over ssh); use "
                "--serve 127.0.0.1:8080 and open it in a browser, or --save out.mp4")
    return None


class WindowSink(Sink):
    def __init__(self, title: str = "edgeseg") -> None:
        problem = gui_problem()  # checked up front: imshow would fail only at the first frame
        if problem:
            raise SourceError(problem)
        self.title = title
        self.name = f"window:{title}"
        self.frames = 0
        self._open = False

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        if not self._open:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])  # 1:1 at first; the user may resize
            self._open = True
        cv2.imshow(self.title, image)
        self.frames += 1
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):  # q or Esc
            self.stop_requested = True
        # Closing the window with the mouse is a stop request too.
        elif cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stop_requested = True

    def close(self) -> None:
        if self._open:
            self._open = False
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)

    def describe(self) -> dict:
        return {"sink": "window", "title": self.title, "frames": self.frames}


class VideoSink(Sink):
    """``cv2.VideoWriter`` into a hidden temp file, renamed onto ``path`` by :meth:`close`.

    The writer opens on the first frame (its size fixes the video's size; later frames of
    another size are resized). ``close()`` releases the writer, which writes the container
    index, and only then renames: the final name always holds a playable file.

    ``pace=True`` (live sources, whose results come at the model's rate rather than the file's
    ``fps``) places each frame by its capture time: a frame is repeated over the video frames
    it stayed on screen for, and one that lands on a video frame already written is left out,
    so the recording plays in real time.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = None, pace: bool = False) -> None:
        self.path = Path(path)
        self.pace = pace
        self.repeats = 0  # paced: extra copies written to keep real time
        self.skipped = 0  # paced: frames that fell on a video frame already written
        self._t0: float | None = None  # paced: capture time of video frame 0
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_SUFFIXES:
            raise UsageError(f"video output {self.path} needs one of the suffixes {', '.join(VIDEO_SUFFIXES)}")
        if self.path.is_dir():
            raise UsageError(f"video output {self.path} is an existing folder; give a file name like out.mp4")
        self.fps = float(fps) if fps and fps > 0 else (DEFAULT_PACED_FPS if pace else DEFAULT_FPS)
        self.name = f"video:{self.path}"
        self.frames = 0
        self.fourcc = ""
        self._writer: cv2.VideoWriter | None = None
        self._landing: contextlib.ExitStack | None = None  # holds atomic_path() open from first frame to close()
        self._tmp: Path | None = None  # the hidden file being written
        self._size: tuple[int, int] | None = None  # (W, H)
        self._resized: np.ndarray | None = None
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SourceError(f"cannot create the folder for {self.path}: {e.strerror or e}") from None

    def _open(self, w: int, h: int) -> None:
        suffix = self.path.suffix.lower()
        if min(w, h) < MIN_VIDEO_SIDE:  # before OpenCV sees them: some sizes crash its encoder
            raise SourceError(f"cannot write {self.path}: cannot encode {w}x{h} frames as {suffix} (video needs at "
                              f"least {MIN_VIDEO_SIDE}x{MIN_VIDEO_SIDE}); save images instead (--save out/)")
        # atomic_path gives the hidden temp file and, when closed, the usual mode and the rename.
        landing = contextlib.ExitStack()
        tmp = landing.enter_context(atomic_path(self.path, suffix))
        self._tmp = tmp
        self._check_space(landing)
        for code in FOURCCS[suffix]:
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*code), self.fps, (w, h))
            if writer.isOpened():
                self._writer, self.fourcc, self._size, self._landing = writer, code, (w, h), landing
                return
            writer.release()
        problem = SourceError(f"cannot write {self.path}: this OpenCV build has no encoder for {suffix} "
                              f"(tried {', '.join(FOURCCS[suffix])}); try --save out.avi")
        with landing:  # raising inside drops the temp file and renames nothing
            raise problem

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        if self._closed:
            raise SourceError(f"video {self.path} is already closed")
        image = as_bgr(image, f"video {self.path}")
        h, w = image.shape[:2]
        if self._writer is None:
            self._open(w, h)
        if (w, h) != self._size:
            ww, hh = self._size  # type: ignore[misc]
            if self._resized is None:
                self._resized = np.empty((hh, ww, 3), np.uint8)  # (H0, W0, 3), reused
            image = cv2.resize(image, (ww, hh), dst=self._resized, interpolation=cv2.INTER_AREA)
        copies = self._copies(frame.timestamp) if self.pace and frame is not None and frame.timestamp else 1
        for _ in range(copies):
            self._writer.write(image)  # type: ignore[union-attr]
        self.frames += copies
        if self.frames % SPACE_CHECK_EVERY < copies:
            self._check_space()

    def _check_space(self, landing: contextlib.ExitStack | None = None) -> None:
        """VideoWriter ignores write errors: stop with "disk full" while the file is still whole
        rather than encode into a full disk (the earlier file under ``path`` is kept)."""
        if free_bytes(self.path.parent) < LOW_SPACE:
            self._discard(landing)
            raise disk_full(self.path)

    def _discard(self, landing: contextlib.ExitStack | None = None) -> None:
        """Drop the temporary file: nothing is renamed onto ``path``."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        with contextlib.suppress(OSError):
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
        for stack in (landing, self._landing):
            if stack is not None:
                stack.close()  # the temp file is gone: atomic_path publishes nothing
        self._landing = None

    def _copies(self, timestamp: float) -> int:
        """How many video frames a frame captured at ``timestamp`` fills (0: its slot is taken)."""
        if self._t0 is None:
            self._t0 = timestamp
        slot = round((timestamp - self._t0) * self.fps)  # the video frame its capture time falls on
        gap = slot - self.frames
        if gap > MAX_PACED_GAP_S * self.fps:  # a long stall (reconnect): jump rather than fill it
            self._t0 += (gap - 1) / self.fps
            gap = 1
        if gap < 0:
            self.skipped += 1
            return 0
        self.repeats += gap
        return gap + 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is None:
            return  # nothing was written: leave no file at all
        self._writer.release()  # writes the index (moov atom): the file is playable from here on
        self._writer = None
        written = self._frames_in_file()
        if written is not None and written < self.frames:  # a short write OpenCV did not report
            low = free_bytes(self.path.parent) < LOW_SPACE
            self._discard()
            if low:
                raise disk_full(self.path)
            raise SourceError(f"video {self.path} came out incomplete ({written} of {self.frames} frames); "
                              "nothing was replaced")
        if self._landing is not None:
            self._landing.close()  # renames the temp file onto path

    def _frames_in_file(self) -> int | None:
        """Frames the finished temporary file holds by its own index (0 if it does not open; None
        when the container does not say)."""
        cap = cv2.VideoCapture(str(self._tmp))
        try:
            if not cap.isOpened():
                return 0
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            return n if n > 0 else None
        finally:
            cap.release()

    def describe(self) -> dict:
        d = {"sink": "video", "path": str(self.path), "frames": self.frames, "fourcc": self.fourcc, "fps": self.fps}
        if self.pace:
            d.update(paced=True, repeats=self.repeats, skipped=self.skipped)
        return d


_NUMBERED = re.compile(r"^\d{6,}\.\w+$")  # the names ImageFolderSink numbers frames with
GREY_ONLY_SUFFIXES = (".pgm", ".pbm")  # formats OpenCV writes only in grey


class ImageFolderSink(Sink):
    """Numbered images (``000000.jpg``…) or, for image inputs, the input's file names."""

    def __init__(self, folder: str | os.PathLike, ext: str = ".jpg", keep_names: bool = True,
                 quality: int = 95, exist_ok: bool = False) -> None:
        self.folder = Path(folder)
        self.exist_ok = exist_ok  # numbered frames may replace an earlier run's
        self._numbered_checked = False
        if self.folder.exists() and not self.folder.is_dir():
            raise UsageError(f"image output {self.folder} exists and is not a folder")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SourceError(f"cannot create output folder {self.folder}: {e.strerror or e}") from None
        ext = ext if ext.startswith(".") else "." + ext
        if ext.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"image format {ext} is not one of {', '.join(IMAGE_SUFFIXES)}")
        self.ext, self.keep_names = ext, keep_names
        self.name = f"images:{self.folder}"
        self.frames = 0
        self.quality = quality

    @staticmethod
    def output_name(name: str) -> str:
        """The file name a kept input name is written under: rendered frames are colour, so a
        grey-only format (.pgm) becomes .png."""
        path = Path(name)
        return path.stem + ".png" if path.suffix.lower() in GREY_ONLY_SUFFIXES else name

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        if self.keep_names and frame is not None and frame.name:
            name = self.output_name(frame.name)
        else:
            name = f"{frame.index if frame is not None and frame.index >= 0 else self.frames:06d}{self.ext}"
            if not self._numbered_checked:
                self._refuse_earlier_frames()
        write_image(self.folder / name, image, self.quality)
        self.frames += 1

    def _refuse_earlier_frames(self) -> None:
        """Numbered frames (000000.jpg, ...) would silently replace an earlier run's: refuse unless
        ``exist_ok`` (checked once, before the first numbered frame is written)."""
        self._numbered_checked = True
        if self.exist_ok:
            return
        earlier = sorted(p.name for p in self.folder.iterdir() if _NUMBERED.match(p.name))
        if earlier:
            raise UsageError(f"image output folder {self.folder} already holds numbered frames ({earlier[0]}, ...) "
                             "from an earlier run; save into a new or empty folder")

    def describe(self) -> dict:
        return {"sink": "images", "path": str(self.folder), "frames": self.frames}


class ImageFileSink(Sink):
    """One image file (for a single-image input)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = f"image:{self.path}"
        self.frames = 0

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        if self.frames:
            raise UsageError(f"output {self.path} is a single image but the source has more than one frame; "
                             "save to a folder (out/) or a video (out.mp4) instead")
        write_image(self.path, image)
        self.frames += 1

    def describe(self) -> dict:
        return {"sink": "image", "path": str(self.path), "frames": self.frames}


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Encode by suffix (JPEG at ``quality``) and write atomically (temp name + rename)."""
    params = [int(cv2.IMWRITE_JPEG_QUALITY), quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(path.suffix, image, params)  # (n,) uint8
    except cv2.error:  # e.g. a 2-channel image, which no encoder takes
        raise UsageError(f"cannot write {path.name}: images must be BGR (H, W, 3), gray or BGRA, "
                         f"got {describe_array(image)}") from None
    if not ok:
        raise SourceError(f"cannot encode {path.name} as {path.suffix}; use .png or .jpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as f:
            f.write(buf.data)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path) from None
        raise SourceError(f"cannot write {path}: {e.strerror or e}") from None


class MjpegSink(Sink):
    """Serve the rendered frames as MJPEG (see :mod:`edgeseg.runtime.mjpeg`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, quality: int = 80, page: dict | None = None) -> None:
        self.server = MjpegServer(host, port, quality, page=page)  # page: the web view at / (see MjpegServer)
        self.name = f"mjpeg:{self.server.url}"
        self.frames = 0

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def page_url(self) -> str:
        return self.server.page_url

    def set_stats(self, figures: dict) -> None:
        self.server.set_stats(figures)

    def write(self, image: np.ndarray, frame: Frame | None = None) -> None:
        self.server.publish(as_bgr(image, f"MJPEG stream {self.server.url}"))
        self.frames += 1

    def close(self) -> None:
        self.server.stop()

    def describe(self) -> dict:
        return {"sink": "mjpeg", "url": self.server.url, "frames": self.frames}


def open_sink(spec: str | os.PathLike, *, fps: float | None = None, keep_names: bool = True,
              pace: bool = False) -> Sink:
    """Open a sink by its spec (see the module docstring). ``fps`` is the video file's frame rate;
    ``pace`` places video frames by capture time (see :class:`VideoSink`)."""
    text = os.fspath(spec).strip()
    if not text:
        raise UsageError("empty output; give window, a video file (.mp4), a folder (out/) or http://127.0.0.1:8080")
    if any(ord(c) < 32 for c in text):
        raise UsageError(f"output {text!r} contains control characters")
    low = text.lower()
    if low == "window" or low.startswith("window:"):
        return WindowSink(text.split(":", 1)[1] if ":" in text else "edgeseg")
    if low.startswith(("http://", "mjpeg://")):
        host, port = parse_address(text)
        return MjpegSink(host, port)
    if "://" in text:
        raise UsageError(f"unsupported output {text!r}; use window, a video file (.mp4 .avi .mkv .mov), "
                         "an image folder (out/), an image file (.png .jpg) or http://127.0.0.1:8080")
    path = Path(os.path.expanduser(text))
    suffix = path.suffix.lower()
    if text.endswith(("/", os.sep)) or path.is_dir():
        return ImageFolderSink(path, keep_names=keep_names)
    if suffix in VIDEO_SUFFIXES:
        return VideoSink(path, fps, pace=pace)
    if suffix in IMAGE_SUFFIXES:
        return ImageFileSink(path)
    if suffix:
        raise UsageError(f"output {text!r} has an unknown suffix {suffix}; use a video ({', '.join(VIDEO_SUFFIXES)}), "
                         f"an image ({', '.join(IMAGE_SUFFIXES)}) or a folder ending in /")
    return ImageFolderSink(path, keep_names=keep_names)
