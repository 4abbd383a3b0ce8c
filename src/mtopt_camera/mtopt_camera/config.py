"""Parameters of the camera node: one dataclass, the defaults of the ROS parameters."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from mtopt_bridge.params import ConfigError
from mtopt_camera.capture import CaptureOptions, parse_source

_CAMERA_NAME = re.compile(r"^[A-Za-z_]\w*$")


@dataclass(frozen=True)
class CameraConfig:
    """Camera node parameters (declared as ROS parameters with these defaults)."""

    # Publishes camera/<camera_name>/image_raw and camera/<camera_name>/camera_info.
    camera_name: str = "overhead"
    # OpenCV source: an int-like string is a device index ("0" = /dev/video0), anything else
    # a video file path (or a URL OpenCV can open).
    source: str = "0"
    # Publishing rate [Hz]; a video file plays one frame per tick (this sets its speed).
    rate_hz: float = 30.0
    # Resize to width x height pixels; both 0 = the source's size.
    width: int = 0
    height: int = 0
    # header.frame_id of images and camera info; "" = "<camera_name>_optical_frame".
    frame_id: str = ""
    # Video files restart at the end (replaying recorded footage); false: stop publishing.
    loop: bool = True
    # While the source is down (device unplugged, file missing): reopen attempts every ... [s].
    reconnect_period_s: float = 1.0
    # While the source is down: at most one warning per ... [s].
    warn_period_s: float = 5.0
    # Intrinsics of the published image for camera_info (row-major 3x3 K); all zero means
    # uncalibrated (the CameraInfo convention).
    camera_matrix: tuple[float, ...] = (0.0,) * 9
    distortion_model: str = "plumb_bob"
    distortion_coeffs: tuple[float, ...] = (0.0,) * 5

    def validate(self) -> CameraConfig:
        """Return self, or raise ConfigError naming the first bad parameter."""
        if not _CAMERA_NAME.match(self.camera_name):
            raise ConfigError(f"camera_name {self.camera_name!r} must be a plain name")
        try:
            parse_source(self.source)
        except ValueError as exc:
            raise ConfigError(f"source: {exc}") from exc
        if not self.rate_hz > 0:
            raise ConfigError(f"rate_hz must be > 0, got {self.rate_hz}")
        if self.width < 0 or self.height < 0 or (self.width > 0) != (self.height > 0):
            raise ConfigError(
                f"width and height must both be > 0 (resize) or both 0 (source size),"
                f" got width={self.width} height={self.height}"
            )
        if not self.reconnect_period_s > 0:
            raise ConfigError(f"reconnect_period_s must be > 0, got {self.reconnect_period_s}")
        if not self.warn_period_s >= 0:
            raise ConfigError(f"warn_period_s must be >= 0, got {self.warn_period_s}")
        if len(self.camera_matrix) != 9:
            raise ConfigError(f"camera_matrix needs 9 values, got {len(self.camera_matrix)}")
        if any(c in string.whitespace for c in self.frame_id):
            raise ConfigError(f"frame_id {self.frame_id!r} must not contain whitespace")
        return self

    @property
    def effective_frame_id(self) -> str:
        return self.frame_id or f"{self.camera_name}_optical_frame"

    def capture_options(self) -> CaptureOptions:
        return CaptureOptions(
            loop=self.loop,
            reconnect_period_s=self.reconnect_period_s,
            warn_period_s=self.warn_period_s,
            width=self.width,
            height=self.height,
        )
