"""ROS 2 message building without ROS: CDR layout, field checks, the live node's message filling."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from edgeseg.runtime.errors import BackendUnavailableError, UsageError
from edgeseg.runtime.ros2_messages import image_fields, serialize_image, serialize_string
from edgeseg.runtime.ros2_node import Ros2Publisher, fill_image


def test_image_cdr_layout_byte_by_byte() -> None:
    fields = image_fields(np.array([[7, 9]], np.uint8), "mono8", 1.000000002, "c")
    expected = bytes.fromhex(
        "00010000"  # CDR, little endian
        "01000000" "02000000"  # stamp: sec=1, nanosec=2
        "02000000" "6300" "0000"  # frame_id "c" (length with NUL), padding to 4
        "01000000" "02000000"  # height=1, width=2
        "06000000" "6d6f6e6f3800"  # encoding "mono8"
        "00" "00"  # is_bigendian=0, padding to 4
        "02000000"  # step=2
        "02000000" "0709"  # data: length 2, the ids
    )
    assert serialize_image(fields) == expected
    assert serialize_string("ab") == bytes.fromhex("00010000" "03000000" "616200")


def test_image_fields_check_their_input() -> None:
    f = image_fields(np.zeros((2, 3, 3), np.uint8), "bgr8", 5.25, "front_left")
    assert (f["height"], f["width"], f["step"], len(f["data"])) == (2, 3, 9, 18)
    assert f["header"] == {"stamp": {"sec": 5, "nanosec": 250_000_000}, "frame_id": "front_left"}
    with pytest.raises(UsageError, match=r"mono8 image must be a non-empty uint8 \(H, W\)"):
        image_fields(np.zeros((2, 3, 3), np.uint8), "mono8", 0.0, "cam0")
    with pytest.raises(UsageError, match="not supported"):
        image_fields(np.zeros((2, 3), np.uint8), "rgb16", 0.0, "cam0")
    with pytest.raises(UsageError, match="cannot name a ROS topic"):
        image_fields(np.zeros((2, 3), np.uint8), "mono8", 0.0, "cam 0")


def test_fill_image_copies_every_field_into_a_message_object() -> None:
    ids = (np.arange(12).reshape(3, 4) % 5).astype(np.uint8)  # (3, 4) uint8
    msg = SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=0, nanosec=0), frame_id=""))
    fill_image(msg, image_fields(ids[:, ::2], "mono8", 12.5, "cam1"))  # a strided view is packed first
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 500_000_000, "cam1")
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (3, 2, 2, "mono8", 0)
    assert msg.data.typecode == "B" and msg.data.tobytes() == ids[:, ::2].tobytes()


def test_the_node_without_ros_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rclpy", None)  # as on a machine without ROS 2
    with pytest.raises(BackendUnavailableError, match="needs rclpy.*setup.bash") as e:
        Ros2Publisher(["a"], [[0, 0, 0]], 255)
    assert "\n" not in str(e.value)
