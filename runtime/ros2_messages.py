"""ROS 2 messages for class maps and frames, built with numpy alone (no ROS install needed).

The bag writer (``bag_sink.py``) stores the CDR bytes made here; the live node
(``ros2_node.py``) copies the same field values into rclpy message objects. Both get:

* ``sensor_msgs/msg/Image`` ``mono8``: the class map, one byte per pixel = class id;
* ``sensor_msgs/msg/Image`` ``bgr8``: the source frame;
* ``std_msgs/msg/String``: the class table as JSON (names, RGB palette, ignore index).

``header.stamp`` is the frame's capture time (seconds since the Unix epoch, split into
``sec``/``nanosec``) and ``header.frame_id`` the camera's name.
"""

from __future__ import annotations

import math
import re
import struct

import numpy as np

from .errors import UsageError
from .visualize import describe_array

IMAGE_TYPE = "sensor_msgs/msg/Image"
STRING_TYPE = "std_msgs/msg/String"

# Message definitions as rosbag2 stores them in a bag's schema records ("ros2msg": the type's
# fields, then each nested type after a separator line). Readers such as Foxglove and
# rosbags decode the messages from this text.
_SEPARATOR = "=" * 80
IMAGE_MSGDEF = "\n".join([
    "std_msgs/Header header",
    "uint32 height",
    "uint32 width",
    "string encoding",
    "uint8 is_bigendian",
    "uint32 step",
    "uint8[] data",
    _SEPARATOR,
    "MSG: std_msgs/Header",
    "builtin_interfaces/Time stamp",
    "string frame_id",
    _SEPARATOR,
    "MSG: builtin_interfaces/Time",
    "int32 sec",
    "uint32 nanosec",
]) + "\n"
STRING_MSGDEF = "string data\n"

# Camera names become topic names and frame ids: ROS name rules, and no leading underscore.
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
MAX_CAMERA_NAME = 64

# CDR encapsulation header: plain CDR, little endian (what ROS 2 middlewares publish on x86/ARM).
_CDR_LE = b"\x00\x01\x00\x00"
_INT32_MAX = 2**31 - 1
_CHANNELS = {"mono8": 1, "bgr8": 3}


def check_camera_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_CAMERA_NAME or not CAMERA_NAME.fullmatch(name):
        raise UsageError(f"camera name {name!r} cannot name a ROS topic or file: use a letter, then letters, "
                         f"digits or '_' (at most {MAX_CAMERA_NAME} characters), e.g. 'cam0' or 'front_left'")
    return name


def split_stamp(capture_time: float) -> tuple[int, int]:
    """Seconds since the Unix epoch -> (sec, nanosec) of ``builtin_interfaces/Time``."""
    if not isinstance(capture_time, (int, float)) or not math.isfinite(capture_time) or capture_time < 0:
        raise UsageError(f"capture time must be seconds since the Unix epoch (a finite number >= 0), "
                         f"got {capture_time!r}")
    # Whole seconds first: the fraction then keeps all the precision the float has.
    sec = math.floor(capture_time)
    nanosec = round((capture_time - sec) * 1e9)
    if nanosec == 1_000_000_000:
        sec, nanosec = sec + 1, 0
    if sec > _INT32_MAX:
        raise UsageError(f"capture time {capture_time!r} is past what a ROS 2 stamp holds (year 2038)")
    return sec, nanosec


def stamp_ns(capture_time: float) -> int:
    """The capture time in integer nanoseconds (MCAP log and publish times)."""
    sec, nanosec = split_stamp(capture_time)
    return sec * 1_000_000_000 + nanosec


def image_fields(image: np.ndarray, encoding: str, capture_time: float, frame_id: str) -> dict:
    """The field values of a ``sensor_msgs/msg/Image``: ``mono8`` takes (H, W) uint8,
    ``bgr8`` (H, W, 3) uint8. ``data`` is a read-only view of the pixels (no copy when the
    array is C-contiguous)."""
    channels = _CHANNELS.get(encoding)
    if channels is None:
        raise UsageError(f"image encoding {encoding!r} is not supported here; use one of {', '.join(_CHANNELS)}")
    want = (2,) if channels == 1 else (3,)
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in want
            or (channels == 3 and image.shape[2] != 3) or image.size == 0):
        shape = "(H, W)" if channels == 1 else "(H, W, 3)"
        raise UsageError(f"a {encoding} image must be a non-empty uint8 {shape} array, got {describe_array(image)}")
    h, w = image.shape[:2]
    sec, nanosec = split_stamp(capture_time)
    pixels = np.ascontiguousarray(image)  # (H, W) or (H, W, 3) uint8, rows packed
    return {
        "header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": check_camera_name(frame_id)},
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * channels,  # bytes per row
        "data": memoryview(pixels).cast("B"),
    }


def _string(text: str, offset: int) -> bytes:
    """A CDR string at ``offset`` (from the start of the payload): padding to 4, length with
    the terminating NUL, the UTF-8 bytes, NUL."""
    raw = text.encode("utf-8")
    return b"\x00" * (-offset % 4) + struct.pack("<I", len(raw) + 1) + raw + b"\x00"


def serialize_image(fields: dict) -> bytes:
    """CDR bytes of a ``sensor_msgs/msg/Image`` from :func:`image_fields`."""
    stamp = fields["header"]["stamp"]
    out = bytearray(struct.pack("<iI", stamp["sec"], stamp["nanosec"]))
    out += _string(fields["header"]["frame_id"], len(out))
    out += b"\x00" * (-len(out) % 4) + struct.pack("<II", fields["height"], fields["width"])
    out += _string(fields["encoding"], len(out))
    out += struct.pack("<B", fields["is_bigendian"])
    out += b"\x00" * (-len(out) % 4) + struct.pack("<II", fields["step"], len(fields["data"]))
    return b"".join((_CDR_LE, bytes(out), fields["data"]))


def serialize_string(text: str) -> bytes:
    """CDR bytes of a ``std_msgs/msg/String``."""
    return _CDR_LE + _string(text, 0)
