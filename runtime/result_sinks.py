"""Outputs that take class ids rather than pictures: an id-PNG folder or a ROS 2 bag.

``open_result_sink(spec, ...)`` picks by the spec's form:

=====================  ==========================================================
``"out.mcap"``         a ROS 2 bag in MCAP (:class:`~.bag_sink.RosBagSink`, extra ``ros``)
``"ids/"`` (anything)  lossless class-id PNGs (:class:`~.id_sink.ClassIdFolderSink`)
=====================  ==========================================================

Both implement :class:`ResultSink`. The pipeline calls ``write_result`` from one thread, in
order per camera, and ``close()`` in a ``finally``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from .errors import SourceError, UsageError
from .ros2_messages import check_camera_name
from .visualize import describe_array

MAX_CLASSES = 256  # ids are stored as uint8
MAX_SIDE = 16384  # longest image side taken (a 16K frame); more is a caller's bug, not a camera


@runtime_checkable
class ResultSink(Protocol):
    def write_result(self, camera: str, index: int, capture_time: float,
                     frame_bgr: np.ndarray,  # (H, W, 3) uint8, the source frame
                     class_map: np.ndarray) -> None:  # (H, W) uint8 class ids at frame size
        ...

    def close(self) -> None:
        """Idempotent; leaves a complete, readable output."""
        ...

    def describe(self) -> dict:
        """For ``--json`` and the summary line."""
        ...


@dataclass(frozen=True)
class ClassTable:
    """What a class id means: its name, its display colour (RGB), and the id for "no class"."""

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]  # one RGB colour per class
    ignore_index: int  # void / unlabelled in ground truth; a model's argmax never outputs it

    @classmethod
    def build(cls, classes, palette, ignore_index) -> ClassTable:
        names = tuple(str(c) for c in classes)
        if not 0 < len(names) <= MAX_CLASSES:
            raise UsageError(f"class ids are stored as 8-bit values: need 1 to {MAX_CLASSES} classes, got {len(names)}")
        try:
            colours = tuple(tuple(int(v) for v in c) for c in palette)
        except (TypeError, ValueError):
            raise UsageError("palette must be a list of [R, G, B] colours (integers 0-255)") from None
        if len(colours) != len(names) or any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in colours):
            raise UsageError(f"palette must hold one [R, G, B] colour (0-255) per class: {len(names)} classes, "
                             f"got {len(colours)} entries")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)) \
                or not 0 <= ignore_index <= 255:
            raise UsageError(f"ignore index must be an integer 0-255 (it is stored in 8-bit ids), got {ignore_index!r}")
        return cls(names, colours, int(ignore_index))

    def to_json(self) -> dict:
        return {
            "classes": list(self.classes),
            "palette": [list(c) for c in self.palette],
            "palette_order": "RGB",
            "ignore_index": self.ignore_index,
            "pixel": "uint8 class id: an index into classes; ignore_index marks pixels with no class",
        }

    def check_map(self, class_map: np.ndarray, where: str) -> None:
        """Refuse ids that name no class (a map from another model, or not a class map at all)."""
        n = len(self.classes)
        if n < MAX_CLASSES and int(class_map.max()) >= n:
            bad = class_map[class_map >= n]
            bad = bad[bad != self.ignore_index]
            if bad.size:
                raise UsageError(f"{where}: class map holds id {int(bad.max())}, but the model has {n} classes "
                                 f"(ids 0-{n - 1}, {self.ignore_index} = no class)")


def check_result(camera: str, index: int, capture_time: float, frame_bgr: np.ndarray,
                 class_map: np.ndarray) -> tuple[int, int]:
    """Validate one ``write_result`` call; returns the frame's (H, W)."""
    check_camera_name(camera)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise UsageError(f"frame index must be an integer >= 0, got {index!r}")
    if not isinstance(capture_time, (int, float)) or not math.isfinite(capture_time) or capture_time < 0:
        raise UsageError(f"capture time must be seconds since the Unix epoch, got {capture_time!r}")
    if (not isinstance(frame_bgr, np.ndarray) or frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3
            or frame_bgr.shape[2] != 3 or frame_bgr.size == 0 or max(frame_bgr.shape[:2]) > MAX_SIDE):
        raise UsageError(f"camera {camera}: frame must be a uint8 BGR (H, W, 3) array at most {MAX_SIDE} pixels "
                         f"a side, got {describe_array(frame_bgr)}")
    h, w = frame_bgr.shape[:2]
    if not isinstance(class_map, np.ndarray) or class_map.dtype != np.uint8 or class_map.shape != (h, w):
        raise UsageError(f"camera {camera}: class map must be uint8 ({h}, {w}) like its frame, "
                         f"got {describe_array(class_map)}")
    return h, w


class CountingResultSink:
    """What every :class:`ResultSink` does around its own output: check each result against the class
    table, count frames per camera, close once. A subclass writes in ``_write`` and finishes in ``_finish``."""

    def __init__(self, classes, palette, ignore_index: int, what: str) -> None:
        self.table = ClassTable.build(classes, palette, ignore_index)
        self.what = what  # names the output in errors: "ROS 2 bag out.mcap"
        self.frames = 0
        self.per_camera: dict[str, int] = {}
        self._closed = False

    def write_result(self, camera: str, index: int, capture_time: float,
                     frame_bgr: np.ndarray,  # (H, W, 3) uint8
                     class_map: np.ndarray) -> None:  # (H, W) uint8
        if self._closed:
            raise SourceError(f"{self.what} is already closed")
        check_result(camera, index, capture_time, frame_bgr, class_map)
        self.table.check_map(class_map, f"camera {camera}, frame {index}")
        self._write(camera, index, capture_time, frame_bgr, class_map)
        self.frames += 1
        self.per_camera[camera] = self.per_camera.get(camera, 0) + 1

    def _write(self, camera: str, index: int, capture_time: float, frame_bgr: np.ndarray,
               class_map: np.ndarray) -> None:
        """Write one checked result; ``per_camera[camera]`` still counts the frames before it."""
        raise NotImplementedError

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finish()

    def _finish(self) -> None:  # noqa: B027 - optional hook: a sink with nothing to finish keeps this no-op
        """Flush and release the output; runs once, on the first ``close()``."""

    def __enter__(self) -> CountingResultSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_result_sink(spec: str | os.PathLike, *, classes, palette, ignore_index: int, images: bool = False,
                     exist_ok: bool = False) -> ResultSink:
    """``*.mcap`` -> a ROS 2 bag; anything else -> a class-id PNG folder.

    ``images=True`` also records the source frames in a bag; a folder holds ids only and
    ignores it (so one flag can serve both outputs of a run).
    """
    path = os.fspath(spec)
    if path.lower().endswith(".mcap"):
        from .bag_sink import RosBagSink

        return RosBagSink(path, classes, palette, ignore_index, images=images, exist_ok=exist_ok)
    from .id_sink import ClassIdFolderSink

    return ClassIdFolderSink(path, classes, palette, ignore_index, exist_ok=exist_ok)
