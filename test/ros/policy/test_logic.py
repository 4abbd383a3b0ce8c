"""Plain logic of the policy and collector (no ROS graph): staleness, action choice and the
epsilon/scripted mix, weights verification, the episode loop, task sequencing, resets."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from mtopt_core.action import GRIPPER, TERMINATE
from mtopt_core.images import square_resize
from mtopt_policy.collector import (
    CollectorError,
    CollectorLoop,
    CollectorStats,
    EpisodeResult,
    Grade,
    OracleReading,
    ResetScheduler,
    TaskSequencer,
    align_to_registry,
    held_after,
    task_success,
)
from mtopt_policy.config import CollectorConfig, ConfigError, PolicyConfig
from mtopt_policy.inputs import LatestInput, StaleInputError, wait_fresh
from mtopt_policy.policy import (
    MODE_ABSOLUTE,
    MODE_DELTA,
    EpisodeRunner,
    MoveResult,
    Observation,
    PortError,
    WeightsRefused,
    make_planner,
)

# ------------------------------------------------------------------------------ staleness


def test_wait_fresh_returns_values_received_after_the_instant():
    camera, gripper = LatestInput("camera overhead"), LatestInput("gripper state")
    camera.put("old frame")
    gripper.put("state")
    after = time.monotonic()
    threading.Timer(0.05, camera.put, ("new frame",)).start()
    threading.Timer(0.05, gripper.put, ("new state",)).start()
    assert wait_fresh([camera, gripper], after, 1.0) == ["new frame", "new state"]


def test_stale_input_names_the_input_and_its_age():
    camera, gripper = LatestInput("camera overhead"), LatestInput("gripper state")
    camera.put("frame")
    time.sleep(0.3)
    gripper.put("state")
    start = time.monotonic()
    with pytest.raises(StaleInputError) as info:
        wait_fresh([camera, gripper], after=time.monotonic() - 0.01, max_staleness_s=0.2)
    waited = time.monotonic() - start
    assert 0.18 <= waited < 0.5  # it waited up to max_staleness_s for a fresh frame first
    reason = info.value.reason
    assert reason.startswith("camera overhead stale for ")
    age = float(reason.split("for ")[1].split(" s")[0])
    assert 0.4 <= age <= 0.8  # 0.3 s before the wait + the 0.2 s wait
    never = LatestInput("camera left_shoulder")
    with pytest.raises(StaleInputError, match="camera left_shoulder: nothing received yet"):
        wait_fresh([never], -math.inf, 0.05)


def test_square_resize_centre_crops_then_resizes():
    image = np.zeros((48, 80, 3), np.uint8)
    image[:, 16:64] = 200  # the centre square
    out = square_resize(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.all(out == 200)
    same = np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)
    assert np.array_equal(square_resize(same, 64), same)


# ---------------------------------------------------------------------- planning and mix


def _planner(registry, **overrides):
    config = replace(PolicyConfig(seed=7), **overrides).validate()
    return make_planner(config, registry), config


def _kinds(planner, task, n=300):
    return [planner.plan(f"e{i}", task).kind for i in range(n)]


def test_mix_before_weights_is_scripted_or_random(registry):
    planner, _ = _planner(registry, scripted_fraction=0.7)
    kinds = _kinds(planner, "lift-any")
    assert set(kinds) == {"scripted_pick", "random"}
    assert 0.6 < kinds.count("scripted_pick") / len(kinds) < 0.8
    assert set(_kinds(planner, "place-top-left", 50)) <= {"scripted_place", "random"}
    with pytest.raises(ValueError, match="no learned weights"):
        planner.plan("e", "lift-any", requested_kind="cem")
    with pytest.raises(ValueError, match="scripted_place cannot run task 'lift-any'"):
        planner.plan("e", "lift-any", requested_kind="scripted_place")
    with pytest.raises(ValueError, match="unknown task"):
        planner.plan("e", "lift-unicorn")


def test_mix_with_weights_is_scripted_or_cem(registry, checkpoints, tmp_path):
    planner, _ = _planner(registry, scripted_fraction=0.3, epsilon=0.25)
    path = tmp_path / "w.ckpt"
    sha = checkpoints.good(path, registry.names, step=5)
    planner.weights.offer(str(path), 5, sha, registry.names)
    kinds = _kinds(planner, "lift-banana")
    assert set(kinds) == {"scripted_pick", "cem"}
    assert 0.2 < kinds.count("scripted_pick") / len(kinds) < 0.4
    plan = planner.plan("e", "lift-banana", requested_kind="cem")
    assert (plan.weights_version, plan.weights_sha256, plan.epsilon) == (5, sha, 0.25)
    assert planner.plan("e", "lift-any", requested_kind="scripted_pick").epsilon == 1.0


@pytest.fixture
def one_torch_thread():
    """Inference as the policy node runs it (torch_threads: 1); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cem_source_feeds_the_gripper_object_flag_to_the_q_function(
    registry, checkpoints, tmp_path, one_torch_thread
):
    planner, _ = _planner(
        registry, scripted_fraction=0.0, epsilon=0.0, cem_population=16, cem_elites=4
    )
    path = tmp_path / "w.ckpt"
    planner.weights.offer(str(path), 1, checkpoints.good(path, registry.names, 1))
    source = planner.plan("e", "lift-carrot").source
    seen = []
    real_act = source.policy.act

    def recording_act(*args):
        seen.append(args[4])
        return real_act(*args)

    source.policy.act = recording_act
    image = np.zeros((64, 64, 3), np.uint8)
    for detected in (False, True):
        source.act(Observation(image, None, True, 0.2, object_detected=detected))
    assert seen == [[False], [True]]


def test_epsilon_greedy_exploration_rate(registry, checkpoints, tmp_path, one_torch_thread):
    planner, _ = _planner(
        registry, scripted_fraction=0.0, epsilon=0.5, cem_population=16, cem_elites=4
    )
    path = tmp_path / "w.ckpt"
    planner.weights.offer(str(path), 1, checkpoints.good(path, registry.names, 1))
    source = planner.plan("e", "lift-carrot").source
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), np.uint8)
    decisions = [source.act(Observation(image, None, False, 0.2)) for _ in range(100)]
    explored = [d for d in decisions if d.exploratory]
    assert 0.35 < len(explored) / len(decisions) < 0.65
    assert all(math.isnan(d.q_value) for d in explored)
    greedy = [d for d in decisions if not d.exploratory]
    assert all(0.0 <= d.q_value <= 1.0 for d in greedy)
    for d in decisions:
        assert d.action.shape == (6,) and np.all(np.abs(d.action[:4]) <= 1.0)
        assert d.action[GRIPPER] in (0.0, 1.0) and d.action[TERMINATE] in (0.0, 1.0)


def test_start_poses_lie_above_the_task_bin(registry):
    planner, cfg = _planner(registry, scripted_fraction=0.5)
    for task, center, half in (
        ("lift-any", cfg.right_bin_center, cfg.right_bin_half),
        ("place-bottom", cfg.left_bin_center, cfg.left_bin_half),
    ):
        for i in range(100):
            plan = planner.plan(f"e{i}", task)
            x, y, z = plan.start_position
            # scripted starts add the seed's start noise (std 4 cm) to the uniform draw
            slack = 0.2 if plan.kind.startswith("scripted") else cfg.start_margin
            assert abs(x - center[0]) <= half[0] - cfg.start_margin + slack
            assert abs(y - center[1]) <= half[1] - cfg.start_margin + slack
            assert z == pytest.approx(cfg.bin_floor_z + cfg.start_height)
            assert -math.pi / 2 <= plan.start_yaw <= math.pi / 2
            assert plan.open_gripper_first == (task == "lift-any")


# -------------------------------------------------------------------------------- weights


def test_weights_refused_keep_the_old_ones(registry, checkpoints, tmp_path):
    planner, _ = _planner(registry)
    slot = planner.weights
    good = tmp_path / "good.ckpt"
    sha1 = checkpoints.good(good, registry.names, 1)
    slot.offer(str(good), 1, sha1, registry.names)
    assert slot.current is None  # pending until the next episode starts
    assert planner.plan("e", "lift-any").weights_version == 1
    bad = {
        "nan": (checkpoints.nan(tmp_path / "nan.ckpt", registry.names, 2), "NaN"),
        "trunc": (checkpoints.truncated(tmp_path / "trunc.ckpt", registry.names, 3), "truncated"),
    }
    with pytest.raises(WeightsRefused, match="contains NaN or Inf"):
        slot.offer(str(tmp_path / "nan.ckpt"), 2, bad["nan"][0])
    with pytest.raises(WeightsRefused, match="truncated"):
        slot.offer(str(tmp_path / "trunc.ckpt"), 3, bad["trunc"][0])
    other = tmp_path / "other.ckpt"
    checkpoints.good(other, registry.names, 4, seed=1)
    with pytest.raises(WeightsRefused, match="sha256 mismatch"):
        slot.offer(str(other), 4, "0" * 64)
    shuffled = list(reversed(registry.names))
    mixed = tmp_path / "mixed.ckpt"
    with pytest.raises(WeightsRefused, match="task list mismatch"):
        slot.offer(str(mixed), 5, checkpoints.good(mixed, shuffled, 5), shuffled)
    with pytest.raises(WeightsRefused, match="task list mismatch"):  # the file itself
        slot.offer(str(mixed), 5, checkpoints.good(mixed, shuffled, 5))
    with pytest.raises(WeightsRefused, match="not newer"):
        slot.offer(str(other), 1, checkpoints.good(other, registry.names, 1, seed=2))
    with pytest.raises(WeightsRefused, match="cannot read"):
        slot.offer(str(tmp_path / "missing.ckpt"), 9, "ab" * 32)
    # parameter max_weights_mb: a larger file is refused before it is read
    tight, _ = _planner(registry, max_weights_mb=0.001)
    big = tmp_path / "big.ckpt"
    with pytest.raises(WeightsRefused, match="larger than the limit of 1048 bytes"):
        tight.weights.offer(str(big), 10, checkpoints.good(big, registry.names, 10))
    plan = planner.plan("e", "lift-any")
    assert (plan.weights_version, plan.weights_sha256) == (1, sha1)


# --------------------------------------------------------------------------- episode loop


class FakePort:
    """A scripted stand-in for the ROS side of one episode (what happened is recorded)."""

    def __init__(self, heights, stale_at=None, move_outcome=0):
        self.heights = list(heights)
        self.stale_at = stale_at
        self.move_outcome = move_outcome
        self.observed = 0
        self.closed = False
        self.moves, self.grips, self.steps = [], [], []

    def move(self, mode, translation, yaw, duration):
        self.moves.append((mode, tuple(float(v) for v in translation), float(yaw)))
        # the first two moves are the start (rise + absolute); then the configured outcome
        outcome = self.move_outcome if len(self.moves) > 2 else 0
        return MoveResult(outcome, "test", np.array([0.56, -0.15, 0.25]), 0.0)

    def gripper(self, close):
        self.grips.append(close)
        self.closed = close
        return "REACHED"

    def wait_first_inputs(self, timeout):
        pass

    def observe(self, after):
        if self.stale_at is not None and self.observed >= self.stale_at:
            raise StaleInputError("camera overhead stale for 1.3 s")
        h = self.heights[min(self.observed, len(self.heights) - 1)]
        self.observed += 1
        return Observation(np.zeros((64, 64, 3), np.uint8), None, self.closed, h)

    def publish_step(self, plan, step, decision, obs):
        self.steps.append((step, decision.action.copy()))

    def cancel_requested(self):
        return False


def test_scripted_pick_episode_runs_to_terminate(registry):
    planner, cfg = _planner(registry, scripted_fraction=1.0, scripted_noise=False)
    plan = planner.plan("e", "lift-any")
    # heights seen: the start obs, then one per step (descending, then lifting)
    port = FakePort([0.05, 0.20, 0.15, 0.10, 0.05, 0.03, 0.03, 0.08, 0.13, 0.18])
    outcome = EpisodeRunner(port, cfg).run(plan)
    assert not outcome.aborted and outcome.terminated
    assert outcome.steps == len(port.steps)
    # start: rise from 5 cm to the safe height, then the absolute move to the start pose
    assert port.moves[0] == (MODE_DELTA, (0.0, 0.0, pytest.approx(cfg.safe_height - 0.05)), 0.0)
    assert port.moves[1][0] == MODE_ABSOLUTE
    assert np.allclose(port.moves[1][1], plan.start_position)
    assert port.grips == [True]  # closed once, when the gripper bit changed
    assert port.steps[-1][1][TERMINATE] == 1.0
    assert set(outcome.timing) >= {"start_move", "observe_wait", "inference", "move"}


def test_stale_camera_aborts_with_the_reason(registry):
    planner, cfg = _planner(registry, scripted_fraction=1.0)
    port = FakePort([0.1, 0.2, 0.15, 0.1], stale_at=3)
    outcome = EpisodeRunner(port, cfg).run(planner.plan("e", "lift-any"))
    assert outcome.aborted and outcome.reason == "camera overhead stale for 1.3 s"
    assert outcome.steps == 2


def test_arm_fault_aborts_with_the_outcome(registry):
    planner, cfg = _planner(registry, scripted_fraction=1.0)
    port = FakePort([0.1] + [0.2] * 10, move_outcome=4)
    outcome = EpisodeRunner(port, cfg).run(planner.plan("e", "lift-any"))
    assert outcome.aborted and outcome.reason == "move_ee: FAULT: test"
    # The step whose move failed was published: the count matches the bag's PolicySteps.
    assert outcome.steps == len(port.steps) == 1

    class Broken(FakePort):
        def move(self, *args):
            raise PortError("iiwa/move_ee: action server not available after 5.0 s")

    outcome = EpisodeRunner(Broken([0.1]), cfg).run(planner.plan("e", "lift-any"))
    assert outcome.aborted and "not available" in outcome.reason and outcome.steps == 0


def test_policy_config_names_bad_parameters():
    with pytest.raises(ConfigError, match="epsilon"):
        PolicyConfig(epsilon=1.5).validate()
    with pytest.raises(ConfigError, match="cem_elites"):
        PolicyConfig(cem_elites=80).validate()
    with pytest.raises(ConfigError, match="task_weights"):
        CollectorConfig(task_weights=("lift-any:3",)).validate()


# ------------------------------------------------------------------------------ collector


def test_sequencing_places_after_a_held_lift(registry):
    seq = TaskSequencer(
        registry, "object_acquisition", "object_manipulation", {}, np.random.default_rng(0)
    )
    lifts, places = (
        set(registry.tasks_of_skill("object_acquisition")),
        set(registry.tasks_of_skill("object_manipulation")),
    )
    assert {seq.next_task() for _ in range(200)} == lifts
    seq.observe("lift-can", held=True)
    assert {seq.next_task() for _ in range(100)} == places
    seq.observe("place-any", held=True)  # a place never leads to another place
    assert seq.next_task() in lifts
    seq.observe("lift-can", held=False)
    assert seq.next_task() in lifts


def test_task_weights(registry):
    weights = {"lift-any": 6.0, "lift-carrot": 0.0}
    seq = TaskSequencer(
        registry, "object_acquisition", "object_manipulation", weights, np.random.default_rng(1)
    )
    draws = [seq.next_task() for _ in range(1200)]
    assert "lift-carrot" not in draws
    assert 0.45 < draws.count("lift-any") / len(draws) < 0.55  # 6 / (6 + 6 x 1)
    with pytest.raises(ValueError, match="unknown tasks"):
        TaskSequencer(registry, "object_acquisition", "object_manipulation", {"lift-x": 1}, None)


def test_held_after_prefers_sd_then_oracle_then_gripper(registry):
    names = registry.names
    cfg = CollectorConfig()
    i = names.index("lift-any")
    sd_yes = Grade([0.9 if k == i else 0.1 for k in range(len(names))], "sd-v1")
    oracle_no = OracleReading([False] * len(names), 5)
    assert held_after(cfg, names, sd_yes, oracle_no, False) == (True, "sd")
    assert held_after(cfg, names, None, oracle_no, True) == (False, "oracle")
    assert held_after(cfg, names, None, None, True) == (True, "gripper")
    off = replace(cfg, use_oracle_for_sequencing=False, use_gripper_for_sequencing=False)
    assert held_after(off, names, None, oracle_no, True) == (False, "none")
    assert task_success("lift-any", names, sd_yes, oracle_no, 0.5) is True
    assert task_success("lift-any", names, None, oracle_no, 0.5) is False
    assert task_success("lift-any", names, None, None, 0.5) is None


def test_reset_schedule_and_deferral():
    resets = ResetScheduler(reset_every=3, reset_when_empty=True)
    assert resets.after_episode(5, holding=False) == ""
    assert resets.after_episode(5, holding=False) == ""
    assert resets.after_episode(5, holding=True) == ""  # due, but an object is held
    assert resets.pending.startswith("scheduled")
    assert resets.after_episode(5, holding=False).startswith("scheduled")
    resets.done()
    assert resets.after_episode(0, holding=False) == "right bin empty"
    never = ResetScheduler(reset_every=0, reset_when_empty=False)
    assert all(never.after_episode(0, False) == "" for _ in range(20))


def test_stats_and_alignment(registry):
    stats = CollectorStats(registry.names)
    stats.add("lift-any", aborted=False, success=True, logged=True)
    stats.add("lift-any", aborted=True, success=False, logged=True)
    snap = stats.snapshot(3, paused=False, status="running")
    i = registry.names.index("lift-any")
    assert (snap.episodes_total, snap.episodes_aborted, snap.cell_id) == (2, 1, 3)
    assert snap.episodes[i] == 2 and snap.successes[i] == 1 and snap.success_rate[i] == 0.5
    assert math.isnan(snap.success_rate[registry.names.index("place-any")])
    names = list(reversed(registry.names))
    values = list(range(len(names)))
    aligned = align_to_registry(names, values, registry.names)
    assert aligned[0] == len(names) - 1
    with pytest.raises(ValueError, match="task lists differ"):
        align_to_registry(names[:-1], values[:-1], registry.names)


class FakeCollectorPort:
    """A cell that always works (unless told otherwise); records the order of the calls."""

    def __init__(self, registry, present_fails=False):
        self.names = registry.names
        self.present_fails = present_fails
        self.calls: list[str] = []
        self.clock = 0.0
        self.present_at = None
        self.images_after = None
        self.summaries = []
        self.logs: list[tuple[str, str]] = []
        self.timings = []

    def monotonic(self) -> float:
        self.clock += 1.0
        return self.clock

    def ok(self):
        return True

    def missing_inputs(self):
        return []

    def start_logging(self, episode_id, task):
        self.calls.append("start_logging")

    def run_episode(self, episode_id, task):
        self.calls.append("run_episode")
        return EpisodeResult(steps=3, terminated=True, policy_kind="scripted_pick")

    def present(self):
        self.calls.append("present")
        self.present_at = self.clock
        if self.present_fails:
            raise CollectorError("iiwa/present failed: FAULT: no joint states for 0.5 s")

    def final_images(self, after):
        self.calls.append("final_images")
        self.images_after = after
        return {"overhead": 1, "left_shoulder": 2, "right_shoulder": 3}, ""

    def grade(self, images):
        self.calls.append("grade")
        return Grade([0.9] + [0.1] * (len(self.names) - 1), "sd-v1")

    def sd_available(self):
        return True

    def oracle(self, after):
        self.calls.append("oracle")
        return OracleReading([False] * len(self.names), 3)

    def gripper_holding(self):
        return None

    def finish_logging(self, summary):
        self.calls.append("finish_logging")
        self.summaries.append(summary)
        return f"/bags/{summary.episode_id}"

    def go_home(self):
        self.calls.append("go_home")

    def reset_bin(self):
        self.calls.append("reset_bin")

    def respawn(self):
        return False

    def publish_status(self, snapshot):
        pass

    def publish_timing(self, timing):
        self.timings.append(timing)

    def log(self, level, message):
        self.logs.append((level, message))

    def sleep(self, seconds):
        return True


def _collector(registry, port, **overrides):
    cfg = replace(CollectorConfig(seed=0), **overrides)
    return CollectorLoop(cfg, registry, port, np.random.default_rng(0), monotonic=port.monotonic)


def test_present_pose_comes_before_the_final_images_and_a_failure_still_logs(registry):
    port = FakeCollectorPort(registry)
    summary = _collector(registry, port).run_one()
    assert port.calls == [
        "start_logging", "run_episode", "present", "final_images", "grade", "oracle",
        "finish_logging",
    ]  # fmt: skip
    assert port.images_after > port.present_at  # only images taken after the move count
    assert summary.grade is not None and "present" in port.timings[-1]
    assert not [m for level, m in port.logs if level == "warn"]

    failing = FakeCollectorPort(registry, present_fails=True)
    loop = _collector(registry, failing)
    for _ in range(2):
        summary = loop.run_one()
        assert summary.grade is not None and summary.grade.model_version == "sd-v1"
    assert failing.calls.count("present") == 2 and len(failing.summaries) == 2
    assert failing.calls.index("present") < failing.calls.index("final_images")
    warnings = [m for level, m in failing.logs if level == "warn"]
    assert len(warnings) == 1 and "present pose not reached" in warnings[0]  # 1st, 10th, ...
    assert "iiwa/present failed" in warnings[0]

    off = FakeCollectorPort(registry)
    _collector(registry, off, present_before_grading=False).run_one()
    assert "present" not in off.calls and "present" not in off.timings[-1]
    assert off.calls[1:3] == ["run_episode", "final_images"]


class RespawningPort(FakeCollectorPort):
    def respawn(self):
        self.calls.append("respawn")
        return True


@pytest.mark.parametrize(("respawn_below", "respawns"), [(1, False), (3, False), (4, True)])
def test_a_reset_respawns_when_the_right_bin_holds_fewer_than_respawn_below(
    registry, respawn_below, respawns
):
    port = RespawningPort(registry)  # its oracle reports 3 objects in the right bin
    loop = _collector(registry, port, reset_every=1, respawn_below=respawn_below)
    loop.run_one()
    assert loop.resets.pending  # reset_every=1: due after every episode
    assert loop._reset()  # what run() does before the next episode
    assert "reset_bin" in port.calls
    assert ("respawn" in port.calls) == respawns
    if respawns:
        assert port.calls.index("respawn") > port.calls.index("reset_bin")
        assert any("holds 3 < 4 objects" in m for _, m in port.logs)


def test_negative_respawn_below_is_refused():
    with pytest.raises(ConfigError, match="respawn_below"):
        CollectorConfig(respawn_below=-1).validate()
