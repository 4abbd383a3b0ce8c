"""FrameCapture (the camera node's logic, no ROS): looping, end of file, reconnect, resize."""

import cv2
import numpy as np
import pytest

from mtopt_camera.capture import CaptureOptions, CaptureState, FrameCapture, parse_source

FRAMES = 6


def write_video(path, frames=FRAMES, size=(32, 24)):
    """MJPG avi whose frame i is BGR (255, 40 * i, 0): blue, with green counting frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), (255, 40 * i, 0), np.uint8))
    writer.release()


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _frame_index(rgb):
    return round(float(rgb[..., 1].mean()) / 40)


def test_parse_source():
    assert parse_source("0") == 0 and parse_source(" 2 ") == 2
    assert parse_source("/data/run.mp4") == "/data/run.mp4"
    with pytest.raises(ValueError, match="must not be empty"):
        parse_source(" ")


def test_video_loops_and_converts_to_rgb(tmp_path):
    write_video(tmp_path / "v.avi")
    capture = FrameCapture(str(tmp_path / "v.avi"), CaptureOptions(width=16, height=12))
    frames = [capture.read() for _ in range(2 * FRAMES + 1)]
    assert capture.state is CaptureState.UP and capture.frames_read == 2 * FRAMES + 1
    assert frames[0].shape == (12, 16, 3) and frames[0].dtype == np.uint8
    # BGR (255, g, 0) arrives as RGB (0, g, 255).
    assert frames[0][..., 0].mean() < 20 and frames[0][..., 2].mean() > 235
    indices = [_frame_index(f) for f in frames]
    assert indices == [*range(FRAMES), *range(FRAMES), 0]


def test_video_without_loop_ends(tmp_path):
    write_video(tmp_path / "v.avi")
    messages = []
    capture = FrameCapture(
        str(tmp_path / "v.avi"), CaptureOptions(loop=False), info=messages.append
    )
    assert all(capture.read() is not None for _ in range(FRAMES))
    assert capture.read() is None and capture.state is CaptureState.ENDED
    assert capture.read() is None and "end of video" in messages[-1]


def test_missing_source_is_retried_on_schedule_and_warnings_are_throttled(tmp_path):
    path = tmp_path / "later.avi"
    clock, warnings = FakeClock(), []
    capture = FrameCapture(
        str(path),
        CaptureOptions(reconnect_period_s=0.5, warn_period_s=2.0),
        warn=warnings.append,
        clock=clock,
    )
    for _ in range(32):  # 4 s of reads every 0.125 s (exact in binary): 2 warnings
        assert capture.read() is None and capture.state is CaptureState.DOWN
        clock.now += 0.125
    assert len(warnings) == 2 and "down for 2.0 s" in warnings[1]
    write_video(path)
    # The next attempt is due at most one reconnect period later.
    results = []
    for _ in range(5):
        results.append(capture.read())
        clock.now += 0.125
    assert any(r is not None for r in results) and capture.state is CaptureState.UP
    assert capture.reconnects == 1


def test_unreadable_file_goes_down_and_retries(tmp_path):
    path = tmp_path / "empty.avi"
    write_video(path, frames=0)
    clock, warnings = FakeClock(), []
    capture = FrameCapture(
        str(path), CaptureOptions(reconnect_period_s=1.0), warn=warnings.append, clock=clock
    )
    assert capture.read() is None and capture.state is CaptureState.DOWN
    # It opens (a valid container) but delivers no frame: a read failure, not an open failure.
    assert len(warnings) == 1 and "reading from" in warnings[0] and "failed" in warnings[0]
    write_video(path)  # the file becomes readable: recovered after one reconnect period
    clock.now += 0.5
    assert capture.read() is None  # too early for the next attempt
    clock.now += 0.6
    frame = capture.read()
    assert frame is not None and _frame_index(frame) == 0 and capture.state is CaptureState.UP


def test_resize_needs_both_sides():
    with pytest.raises(ValueError, match="width and height"):
        FrameCapture("x.avi", CaptureOptions(width=10))
