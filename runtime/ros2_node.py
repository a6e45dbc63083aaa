"""Publish class maps (and frames) live on ROS 2 topics: a result sink that publishes instead of recording.

    from edgeseg.runtime.ros2_node import Ros2Publisher
    pub = Ros2Publisher(seg.meta.classes, seg.meta.palette, seg.meta.ignore_index)
    pub.write_result("cam0", index, capture_time, frame_bgr, class_map)   # per frame
    pub.close()

Same topics, stamps and frame ids as the bag (``bag_sink.py``): ``cam0/segmentation`` (mono8),
``cam0/image`` (bgr8, ``images=True``), and ``edgeseg/classes`` (std_msgs/String, JSON), the
last published once with transient-local durability so late subscribers still get it. Names
are relative, so the node's namespace (``--ros-args -r __ns:=/robot1``) prefixes them.

This module HAS NOT RUN: rclpy and the ROS 2 message packages come from a ROS 2 installation,
not from PyPI, and none could be installed where edgeseg is developed and tested. It is kept
thin and written to rclpy's documented API; the message field values come from
``ros2_messages.image_fields``, which the bag writer's tests check, and :func:`fill_image`
is tested with a stand-in message object.
"""

from __future__ import annotations

import array
import json

import numpy as np

from .errors import BackendUnavailableError
from .result_sinks import CountingResultSink
from .ros2_messages import image_fields

CLASSES_TOPIC = "edgeseg/classes"


def fill_image(msg, fields: dict):
    """Copy :func:`~.ros2_messages.image_fields` into a ``sensor_msgs.msg.Image`` (or alike)."""
    msg.header.stamp.sec = fields["header"]["stamp"]["sec"]
    msg.header.stamp.nanosec = fields["header"]["stamp"]["nanosec"]
    msg.header.frame_id = fields["header"]["frame_id"]
    msg.height, msg.width, msg.step = fields["height"], fields["width"], fields["step"]
    msg.encoding, msg.is_bigendian = fields["encoding"], fields["is_bigendian"]
    data = array.array("B")  # what the generated setter stores without a per-byte check
    data.frombytes(fields["data"])
    msg.data = data
    return msg


class Ros2Publisher(CountingResultSink):
    """A :class:`~.result_sinks.ResultSink` publishing on ROS 2 topics through rclpy (has not run)."""

    def __init__(self, classes, palette, ignore_index: int, images: bool = False,
                 node_name: str = "edgeseg", depth: int = 5) -> None:
        try:
            import rclpy
            from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
            from sensor_msgs.msg import Image
            from std_msgs.msg import String
        except ImportError:
            raise BackendUnavailableError("publishing to ROS 2 needs rclpy, sensor_msgs and std_msgs from a ROS 2 "
                                          "installation (source /opt/ros/<distro>/setup.bash first); pip cannot "
                                          "install them") from None
        super().__init__(classes, palette, ignore_index, "the ROS 2 publisher")
        self.images, self.depth = images, depth
        self._rclpy, self._image_type = rclpy, Image
        self._owns_context = not rclpy.ok()
        if self._owns_context:
            rclpy.init()
        self.node = rclpy.create_node(node_name)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self._classes = self.node.create_publisher(String, CLASSES_TOPIC, latched)
        self._classes.publish(String(data=json.dumps(self.table.to_json())))
        self._publishers: dict[str, object] = {}

    def _publish(self, topic: str, fields: dict) -> None:
        pub = self._publishers.get(topic)
        if pub is None:
            pub = self._publishers[topic] = self.node.create_publisher(self._image_type, topic, self.depth)
        pub.publish(fill_image(self._image_type(), fields))

    def _write(self, camera: str, index: int, capture_time: float,
               frame_bgr: np.ndarray,  # (H, W, 3) uint8
               class_map: np.ndarray) -> None:  # (H, W) uint8
        self._publish(f"{camera}/segmentation", image_fields(class_map, "mono8", capture_time, camera))
        if self.images:
            self._publish(f"{camera}/image", image_fields(frame_bgr, "bgr8", capture_time, camera))

    def _finish(self) -> None:
        self.node.destroy_node()
        if self._owns_context:
            self._rclpy.shutdown()

    def describe(self) -> dict:
        return {"sink": "ros2", "node": self.node.get_name(), "frames": self.frames,
                "cameras": dict(self.per_camera)}
