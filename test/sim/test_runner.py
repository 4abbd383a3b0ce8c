"""SimCellRunner pacing and output schedule (no ROS)."""

from __future__ import annotations

import numpy as np
import pytest

from mtopt_sim.cell import SimCell
from mtopt_sim.sim_runner import RunnerConfig, SimCellRunner


class Recorder:
    def __init__(self):
        self.clock, self.joint, self.oracle = [], [], []
        self.camera: dict[str, list[float]] = {}
        self.shapes = set()

    def on_clock(self, stamp):
        self.clock.append(stamp)

    def on_joint_state(self, stamp):
        self.joint.append(stamp)

    def on_camera(self, stamp, name, image):
        self.camera.setdefault(name, []).append(stamp)
        self.shapes.add(image.shape)

    def on_oracle(self, stamp):
        self.oracle.append(stamp)


@pytest.fixture(scope="module")
def cell():
    c = SimCell(seed=0)
    c.respawn(np.random.default_rng(0))
    yield c
    c.close()


def _runner(cell, **kwargs):
    sink = Recorder()
    config = RunnerConfig(camera_width=32, camera_height=24, **kwargs)
    return SimCellRunner(cell, config, sink), sink


def test_realtime_follows_the_wall_clock_and_emits_on_schedule(cell):
    runner, sink = _runner(
        cell,
        camera_rate_hz=10.0,
        joint_state_rate_hz=100.0,
        clock_rate_hz=200.0,
        oracle_rate_hz=2.0,
    )
    t0 = cell.time
    wall0 = runner._wall0
    for k in range(1, 21):  # 1 s of wall time in 50 ms ticks
        runner.tick(wall0 + 0.05 * k)
    assert cell.time - t0 == pytest.approx(1.0, abs=0.003)
    assert len(sink.joint) in (100, 101)
    assert len(sink.clock) in (200, 201)
    assert len(sink.oracle) in (2, 3)
    for name in ("overhead", "left_shoulder", "right_shoulder"):
        assert len(sink.camera[name]) in (10, 11)
        assert np.allclose(np.diff(sink.camera[name]), 0.1, atol=0.003)
    assert sink.shapes == {(24, 32, 3)}


def test_realtime_does_not_burst_when_it_falls_behind(cell):
    runner, sink = _runner(cell, max_lag=0.25)
    t0 = cell.time
    runner.tick(runner._wall0 + 10.0)  # 10 s late (e.g. the machine stalled)
    assert cell.time - t0 == pytest.approx(0.25, abs=0.003)
    assert len(sink.joint) <= 27


def test_fast_mode_steps_flat_out_while_moving_and_real_time_when_idle(cell):
    runner, sink = _runner(cell, mode="fast", camera_rate_hz=2.0, fast_chunk_wall=0.05)
    runner.command_joint_trajectory([2.0], [cell.home_qpos + 0.2])
    t0 = cell.time
    wall0 = runner._wall0
    ticks = 0
    while runner.busy and ticks < 200:
        runner.tick()
        ticks += 1
    moved = cell.time - t0
    assert moved >= 2.0  # the whole motion (plus settling) ran
    np.testing.assert_allclose(cell.arm_qpos(), cell.home_qpos + 0.2, atol=0.01)
    # Idle: paced by the wall clock again (explicit wall times).
    runner._anchor(wall0)
    t1 = cell.time
    runner.tick(wall0 + 0.1)
    assert cell.time - t1 == pytest.approx(0.1, abs=0.003)


def test_bad_runner_config_is_rejected(cell):
    with pytest.raises(ValueError, match="mode"):
        SimCellRunner(cell, RunnerConfig(mode="turbo"), Recorder())
    with pytest.raises(ValueError, match="camera_rate_hz"):
        SimCellRunner(cell, RunnerConfig(camera_rate_hz=0.0), Recorder())
    with pytest.raises(ValueError, match="cameras"):
        SimCellRunner(cell, RunnerConfig(cameras=("elbow",)), Recorder())
