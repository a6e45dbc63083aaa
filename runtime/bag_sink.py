"""A ROS 2 bag in MCAP (rosbag2's default storage) of class maps, and optionally frames.

Topics, per camera ``<camera>`` (``cam0``, ``front_left``, ...):

==========================  =========================  ========================================
``/<camera>/segmentation``  ``sensor_msgs/msg/Image``  ``mono8``: pixel value = class id
``/<camera>/image``         ``sensor_msgs/msg/Image``  ``bgr8`` source frame (``images=True``)
``/edgeseg/classes``        ``std_msgs/msg/String``    class table as JSON, once, at the start
==========================  =========================  ========================================

``header.stamp`` is the capture time and ``header.frame_id`` the camera's name; messages are
logged at their capture time, so ``ros2 bag play`` replays them at the pace they were seen.
The class table (names, RGB palette, ignore index) is also the bag's MCAP metadata record
``edgeseg``, for tools that read metadata rather than topics.

The bag is written under a hidden temporary name beside ``path`` (``.out.XXXX.mcap``) and
renamed onto ``path`` by :meth:`RosBagSink.close`, which first writes MCAP's summary and
index: ``path`` only ever holds a complete bag. A run stopped by SIGINT/SIGTERM ends through
the caller's ``finally: close()`` and keeps every frame written. A process killed outright
(SIGKILL, power loss) leaves the temporary file without its summary; MCAP readers in
streaming mode still read its finished chunks, and ``mcap recover`` rebuilds the index.
No frames, no file.

Writing needs the ``ros`` extra (the ``mcap`` package); the messages themselves come from
``ros2_messages`` (numpy only).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np

from .errors import BackendUnavailableError, SourceError, UsageError
from .fileio import atomic_path, check_writable
from .result_sinks import CountingResultSink
from .ros2_messages import (
    IMAGE_MSGDEF,
    IMAGE_TYPE,
    STRING_MSGDEF,
    STRING_TYPE,
    image_fields,
    serialize_image,
    serialize_string,
    stamp_ns,
)

CLASSES_TOPIC = "/edgeseg/classes"
METADATA_NAME = "edgeseg"
# Chunks are compressed and indexed as a whole: a killed process loses at most the open one.
CHUNK_BYTES = 1 << 20
# Class maps alone: zstd (long runs of equal ids shrink a lot). With camera frames, which compress
# poorly: lz4, far less CPU per frame for a somewhat bigger file (benchmarks/result_sinks_bench.py).
COMPRESSION = {False: "ZSTD", True: "LZ4"}
# The ros2 profile requires this channel metadata key; empty = no recorded offer, so
# `ros2 bag play` publishes with its default QoS (reliable, volatile) on every ROS 2 release.
_CHANNEL_METADATA = {"offered_qos_profiles": ""}


def _mcap_writer():
    try:
        from mcap.writer import CompressionType, Writer
    except ImportError:
        raise BackendUnavailableError("writing a ROS 2 bag (.mcap) needs the mcap package: "
                                      "pip install 'edgeseg[ros]'") from None
    return Writer, CompressionType


class RosBagSink(CountingResultSink):
    """Records class maps (and frames) of every camera into one MCAP ROS 2 bag (see module doc)."""

    def __init__(self, path: str | os.PathLike, classes, palette, ignore_index: int,
                 images: bool = False, exist_ok: bool = False) -> None:
        self.path = Path(path)
        self.images = images
        self.exist_ok = exist_ok
        super().__init__(classes, palette, ignore_index, f"ROS 2 bag {self.path}")
        if self.path.suffix.lower() != ".mcap":
            raise UsageError(f"ROS 2 bag output {self.path} needs the suffix .mcap, e.g. out.mcap")
        self._writer_cls, self._compression = _mcap_writer()
        if self.path.is_dir():
            raise UsageError(f"ROS 2 bag output {self.path} is an existing folder; give a file name like out.mcap")
        if self.path.exists() and not exist_ok:
            raise UsageError(f"{self.path} already exists; choose another name, or pass --exist-ok to replace it")
        check_writable(self.path, "ROS 2 bag")
        self._writer = None
        self._file = None
        self._tmp: Path | None = None
        self._landing: contextlib.ExitStack | None = None  # holds atomic_path() open from first frame to close()
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def _open(self, capture_time: float) -> None:
        self._channels = {}  # ids of a writer that failed to start mean nothing to the next one
        try:
            with contextlib.ExitStack() as landing:  # an error in here drops the temporary file
                tmp = landing.enter_context(atomic_path(self.path))
                file = landing.enter_context(open(tmp, "wb"))  # closed before the rename
                compression = getattr(self._compression, COMPRESSION[self.images])
                writer = self._writer_cls(file, chunk_size=CHUNK_BYTES, compression=compression)
                writer.start(profile="ros2", library="edgeseg")
                self._schemas = {
                    IMAGE_TYPE: writer.register_schema(IMAGE_TYPE, "ros2msg", IMAGE_MSGDEF.encode()),
                    STRING_TYPE: writer.register_schema(STRING_TYPE, "ros2msg", STRING_MSGDEF.encode()),
                }
                table = self.table.to_json()
                writer.add_metadata(METADATA_NAME, {k: json.dumps(v) for k, v in table.items()})
                t = stamp_ns(capture_time)
                writer.add_message(self._channel(writer, CLASSES_TOPIC, STRING_TYPE), log_time=t, publish_time=t,
                                   data=serialize_string(json.dumps(table)))
                self._writer, self._file, self._tmp = writer, file, tmp
                self._landing = landing.pop_all()  # kept open until close()
        except OSError as e:
            raise SourceError(f"cannot write ROS 2 bag {self.path}: {e.strerror or e}") from None

    def _channel(self, writer, topic: str, msgtype: str) -> int:
        cid = self._channels.get(topic)
        if cid is None:
            cid = self._channels[topic] = writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=self._schemas[msgtype], metadata=_CHANNEL_METADATA)
        return cid

    def _write(self, camera: str, index: int, capture_time: float,
               frame_bgr: np.ndarray,  # (H, W, 3) uint8
               class_map: np.ndarray) -> None:  # (H, W) uint8
        # Encode everything first: an interruption then rarely lands inside the MCAP writer.
        messages = [(f"/{camera}/segmentation", serialize_image(image_fields(class_map, "mono8", capture_time, camera)))]
        if self.images:
            messages.append((f"/{camera}/image", serialize_image(image_fields(frame_bgr, "bgr8", capture_time, camera))))
        if self._writer is None:
            self._open(capture_time)
        t = stamp_ns(capture_time)
        seq = self.per_camera.get(camera, 0)
        try:
            for topic, data in messages:
                cid = self._channel(self._writer, topic, IMAGE_TYPE)
                self._writer.add_message(cid, log_time=t, publish_time=t, data=data, sequence=seq)
        except OSError as e:
            raise SourceError(f"cannot write ROS 2 bag {self.path}: {e.strerror or e}") from None

    def _finish(self) -> None:
        """Write the summary and index, then rename onto ``path``."""
        if self._writer is None:
            return  # nothing was written: leave no file at all
        landing, self._landing = self._landing, None
        try:
            self._writer.finish()  # summary, index, footer: from here on the file is a complete bag
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            landing.pop_all()  # a bag that could not be finished is not published
            with contextlib.suppress(OSError):
                self._file.close()
                self._tmp.unlink()
            raise SourceError(f"cannot finish ROS 2 bag {self.path}: {e.strerror or e}") from None
        if self.path.exists() and not self.exist_ok:
            landing.pop_all()  # keep the recording under its temporary name rather than replace a file
            self._file.close()
            raise SourceError(f"{self.path} appeared while recording; the bag is kept as {self._tmp}")
        landing.close()  # closes the file and renames it onto path

    def describe(self) -> dict:
        topics = [f"/{c}/segmentation" for c in self.per_camera]
        if self.images:
            topics += [f"/{c}/image" for c in self.per_camera]
        return {"sink": "ros2bag", "path": str(self.path), "format": "mcap", "frames": self.frames,
                "cameras": dict(self.per_camera), "topics": sorted(topics) + [CLASSES_TOPIC] if topics else []}
