"""camera_node as its own process on a video file, received over DDS in this test process."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import CameraInfo, Image

from mtopt_bridge.image import image_to_numpy

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[3]
CAMERA_NODE = Path(sys.executable).parent / "camera_node"  # the installed console script
NAMESPACE = "/cell2"
VIDEO_FRAMES = 20
VIDEO_SIZE = (80, 60)  # width, height


def write_video(path: Path) -> None:
    """MJPG avi, written under a temporary name and renamed (readers never see half a file).

    Frame i is BGR (255, 12 * i, 0): blue, with the green channel counting frames."""
    tmp = path.with_name(path.stem + ".writing.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 30, VIDEO_SIZE)
    assert writer.isOpened()
    for i in range(VIDEO_FRAMES):
        writer.write(np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), (255, 12 * i, 0), np.uint8))
    writer.release()
    os.rename(tmp, path)


@pytest.fixture
def ros_node():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("camera_test_listener", namespace=NAMESPACE, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


@pytest.fixture
def start_camera(tmp_path):
    started = []

    def start(*params: str):
        log_path = tmp_path / f"camera{len(started)}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed below
        cmd = [str(CAMERA_NODE), "--ros-args", "-r", f"__ns:={NAMESPACE}"]
        cmd += ["--params-file", str(ROOT / "config" / "camera.yaml")]
        for param in params:
            cmd += ["-p", param]
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log))
        return process, log_path

    try:
        yield start
    finally:
        for process, log in started:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()


class Listener:
    def __init__(self, node, executor, camera_name):
        self.node, self.executor = node, executor
        self.images: list[Image] = []
        self.infos: list[CameraInfo] = []
        base = f"camera/{camera_name}"
        node.create_subscription(Image, f"{base}/image_raw", self.images.append, 10)
        node.create_subscription(CameraInfo, f"{base}/camera_info", self.infos.append, 10)
        self.image_topic = f"{NAMESPACE}/{base}/image_raw"

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()


def _stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def test_plays_a_video_file_at_the_configured_rate(ros_node, start_camera, tmp_path):
    video = tmp_path / "footage.avi"
    write_video(video)
    rate_hz = 20.0
    process, log = start_camera(
        f"source:={video}",
        "camera_name:=left_shoulder",
        f"rate_hz:={rate_hz}",
        "width:=40",
        "height:=30",
        "frame_id:=test_cam",
    )
    listener = Listener(*ros_node, "left_shoulder")
    assert listener.spin_until(lambda: listener.images, 20.0), log.read_text()
    listener.images.clear()
    listener.infos.clear()
    window_start = time.monotonic()
    listener.spin_for(2.0)
    window = time.monotonic() - window_start
    images = listener.images
    assert process.poll() is None, log.read_text()

    # Rate: from the publisher's stamps and from what arrived in the window.
    stamp_rate = (len(images) - 1) / (_stamp_s(images[-1]) - _stamp_s(images[0]))
    assert abs(stamp_rate - rate_hz) < 0.1 * rate_hz, stamp_rate
    assert abs(len(images) / window - rate_hz) < 0.15 * rate_hz, (len(images), window)
    # Size, encoding, frame, colour order (BGR blue -> RGB blue).
    first = images[0]
    assert (first.width, first.height, first.encoding, first.step) == (40, 30, "rgb8", 120)
    assert first.header.frame_id == "test_cam"
    pixels = image_to_numpy(first)
    assert pixels[..., 2].mean() > 235 and pixels[..., 0].mean() < 20
    # Looping: 2 s at 20 Hz is 40 frames from a 20-frame file, so the frame count restarts.
    counter = [round(float(image_to_numpy(m)[..., 1].mean()) / 12) for m in images]
    assert len(images) > VIDEO_FRAMES
    assert any(b < a for a, b in zip(counter, counter[1:], strict=False)), counter
    # Camera info accompanies every image, with the same stamp, size and frame.
    assert abs(len(listener.infos) - len(images)) <= 2
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images}
    info = listener.infos[-1]
    assert (info.header.stamp.sec, info.header.stamp.nanosec) in stamps
    assert (info.width, info.height, info.header.frame_id) == (40, 30, "test_cam")


def test_publishes_nothing_while_the_source_is_missing_then_reconnects(
    ros_node, start_camera, tmp_path
):
    video = tmp_path / "later.avi"  # does not exist yet
    process, log = start_camera(
        f"source:={video}", "rate_hz:=20.0", "reconnect_period_s:=0.2", "warn_period_s:=0.5"
    )
    listener = Listener(*ros_node, "overhead")
    node = ros_node[0]
    assert listener.spin_until(lambda: node.count_publishers(listener.image_topic) >= 1, 20.0), (
        log.read_text()
    )
    listener.spin_for(1.0)
    assert listener.images == [] and listener.infos == []
    assert process.poll() is None, log.read_text()

    write_video(video)
    appeared = time.monotonic()
    assert listener.spin_until(lambda: len(listener.images) >= 5, 10.0), log.read_text()
    delay = time.monotonic() - appeared
    assert delay < 3.0, delay  # next reopen attempt is at most 0.2 s away
    assert (listener.images[0].width, listener.images[0].height) == VIDEO_SIZE

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=10) == 0
    text = log.read_text()
    assert "cannot open" in text and "retrying every 0.2 s" in text, text
    assert "open again after" in text, text
