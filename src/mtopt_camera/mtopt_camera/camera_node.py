"""camera_node: OpenCV device or video file -> sensor_msgs/Image (rgb8) + CameraInfo.

Publishes `camera/<camera_name>/image_raw` and `camera/<camera_name>/camera_info` (relative:
namespaced per cell) at `rate_hz`, both stamped with the node clock at capture and carrying
`frame_id`. Publishers use the ROS default QoS (reliable, depth 10), as REP 2003 asks of sensor
drivers; subscribers choose best-effort or reliable. While the source is down nothing is
published, so downstream staleness checks see the outage. The capture and reconnect logic is
`mtopt_camera.capture.FrameCapture`.
"""

from __future__ import annotations

import sys

import cv2
import cv2.utils.logging
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from mtopt_bridge.image import numpy_to_image
from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import declare_config, describe_config
from mtopt_bridge.qos import IMAGE_PUBLISH_QOS
from mtopt_camera.capture import FrameCapture, parse_source
from mtopt_camera.config import CameraConfig

QOS_DEPTH = 10


class CameraNode(Node):
    """ROS face of `FrameCapture`: a timer at rate_hz reads a frame and publishes it."""

    def __init__(self, **kwargs):
        super().__init__("camera", **kwargs)
        self.config = declare_config(self, CameraConfig)
        self.get_logger().info(f"parameters: {describe_config(self.config)}")
        logger = self.get_logger()
        self.capture = FrameCapture(
            parse_source(self.config.source),
            self.config.capture_options(),
            warn=logger.warning,
            info=logger.info,
        )
        base = f"camera/{self.config.camera_name}"
        # Same profile as the simulated cameras: reliable and best-effort subscribers connect.
        self.image_pub = self.create_publisher(Image, f"{base}/image_raw", IMAGE_PUBLISH_QOS)
        self.info_pub = self.create_publisher(CameraInfo, f"{base}/camera_info", QOS_DEPTH)
        self._info_template = self._camera_info()
        self.timer = self.create_timer(1.0 / self.config.rate_hz, self._tick)

    def _camera_info(self) -> CameraInfo:
        info = CameraInfo()
        info.header.frame_id = self.config.effective_frame_id
        info.distortion_model = self.config.distortion_model
        info.d = list(self.config.distortion_coeffs)
        k = list(self.config.camera_matrix)
        info.k = k
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [k[0], k[1], k[2], 0.0, k[3], k[4], k[5], 0.0, k[6], k[7], k[8], 0.0]
        return info

    def _tick(self) -> None:
        frame = self.capture.read()
        if frame is None:
            return
        stamp = self.get_clock().now().to_msg()
        image = numpy_to_image(frame, "rgb8")
        image.header.stamp = stamp
        image.header.frame_id = self.config.effective_frame_id
        info = self._info_template
        info.header.stamp = stamp
        info.height, info.width = image.height, image.width
        self.image_pub.publish(image)
        self.info_pub.publish(info)

    def close(self) -> None:
        """Release the capture device or file."""
        self.capture.close()


def main(args=None) -> int:
    """Run the node until interrupted (exit code 2 on invalid parameters)."""
    # OpenCV prints its own warning for every failed open attempt; the node logs throttled ones.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return run_node(CameraNode, "camera_node", threads=1, args=args)


if __name__ == "__main__":
    sys.exit(main())
