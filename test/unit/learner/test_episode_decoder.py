"""episode_from_bag: logged bag -> Episode with T+1 observations, labels, skips and errors."""

import math

import numpy as np
import pytest

from mtopt_core.episode_bag import EpisodeBagError
from mtopt_core.images import square_resize
from mtopt_core.impersonation import labels_from_probabilities
from mtopt_learner.episode_decoder import GradingError, episode_from_bag


def test_round_trip_equals_what_was_written(tmp_path, write_bag, registry):
    # task_names in reverse registry order: labels must be mapped by name, not by position
    written = write_bag(
        tmp_path, "ep1", task="lift-carrot", steps=4, reverse_task_names=True,
        success={"lift-carrot": True, "lift-any": True, "lift-box": False},
    )  # fmt: skip
    decoded = episode_from_bag(written.path, registry, "sd")
    assert decoded.usable and decoded.skip_reason == ""
    assert decoded.namespace == "/cell0" and decoded.episode_id == "ep1"
    assert decoded.task == "lift-carrot" and decoded.steps == 4
    ep = decoded.episode
    assert ep.num_steps == 4 and ep.images.shape == (5, 16, 16, 3)  # T+1 observations
    for t in range(4):
        np.testing.assert_array_equal(ep.images[t], written.observations[t])
    # observation T: the last overhead frame after the last step, cropped + resized to 16 px
    expected_final = square_resize(written.final_frames["overhead"], 16)
    np.testing.assert_array_equal(ep.images[4], expected_final)
    np.testing.assert_array_equal(ep.actions, np.stack(written.actions))
    np.testing.assert_array_equal(ep.gripper_closed, written.gripper_closed)
    np.testing.assert_array_equal(ep.object_detected, written.object_detected)
    assert ep.object_detected.any() and not ep.object_detected.all()  # the pattern survived
    np.testing.assert_allclose(ep.height, written.height, rtol=0, atol=1e-7)
    assert ep.gripper_closed[-1] and ep.height[-1] == pytest.approx(0.31)
    # every task is graded (0.9 / 0.1 / 0.2 probabilities): success only where written so
    assert ep.labels == {name: name in ("lift-carrot", "lift-any") for name in registry.names}


def test_final_observation_is_cropped_like_the_policy_does(tmp_path, write_bag, registry):
    written = write_bag(tmp_path, "ep1", steps=1)
    ep = episode_from_bag(written.path, registry).episode
    np.testing.assert_array_equal(
        ep.images[-1], square_resize(written.final_frames["overhead"], 16)
    )
    # a larger learner image size resizes every observation the same way
    big = episode_from_bag(written.path, registry, image_size=24).episode
    assert big.images.shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(big.images[0], square_resize(written.observations[0], 24))


def test_oracle_labels_and_missing_oracle(tmp_path, write_bag, registry):
    written = write_bag(tmp_path, "ep1", task="lift-box", success={"lift-box": True})
    ep = episode_from_bag(written.path, registry, "oracle").episode
    assert ep.labels["lift-box"] is True and ep.labels["lift-can"] is False
    no_oracle = write_bag(tmp_path, "ep2", has_oracle=False)
    decoded = episode_from_bag(no_oracle.path, registry, "oracle")
    assert decoded.episode is None and "oracle" in decoded.skip_reason


def test_grade_callable_gets_the_last_frame_of_each_camera(tmp_path, write_bag, registry):
    written = write_bag(tmp_path, "ep1", task="lift-any", graded=False)
    seen = {}

    def grade(images):
        seen.update(images)
        return {"lift-any": 0.7, "lift-can": 0.4}  # others not graded

    ep = episode_from_bag(written.path, registry, grade).episode
    assert sorted(seen) == sorted(written.final_frames)
    for cam, frame in written.final_frames.items():
        np.testing.assert_array_equal(seen[cam], frame)
    assert ep.labels == {"lift-any": True, "lift-can": False}

    # a sequence in registry order works too, NaN = not graded
    probs = [math.nan] * len(registry)
    probs[registry.index("lift-any")] = 0.1
    ep = episode_from_bag(written.path, registry, lambda images: probs).episode
    assert ep.labels == labels_from_probabilities(registry, probs) == {"lift-any": False}

    def broken(images):
        raise RuntimeError("CUDA fell over")

    with pytest.raises(GradingError, match="CUDA fell over"):
        episode_from_bag(written.path, registry, broken)


def test_skips_aborted_empty_and_ungraded_episodes(tmp_path, write_bag, registry):
    aborted = episode_from_bag(write_bag(tmp_path, "a", aborted=True).path, registry)
    assert aborted.episode is None and aborted.skip_reason.startswith("aborted: camera")
    empty = episode_from_bag(write_bag(tmp_path, "b", steps=0).path, registry)
    assert empty.episode is None and "0 steps" in empty.skip_reason
    ungraded = episode_from_bag(write_bag(tmp_path, "c", graded=False).path, registry, "sd")
    assert ungraded.episode is None and "not graded" in ungraded.skip_reason


def test_bag_problems_raise_episode_bag_error(tmp_path, write_bag, registry, truncate):
    bad_count = write_bag(tmp_path, "count", steps=3, info_steps=4)
    with pytest.raises(EpisodeBagError, match="reports 4 steps") as err:
        episode_from_bag(bad_count.path, registry)
    assert err.value.path == bad_count.path
    gap = write_bag(tmp_path, "gap", steps=3, skip_step_messages=1)
    with pytest.raises(EpisodeBagError, match="without gaps"):
        episode_from_bag(gap.path, registry)
    cut = write_bag(tmp_path, "cut", steps=3)
    truncate(cut.path)
    with pytest.raises(EpisodeBagError, match="unreadable bag"):
        episode_from_bag(cut.path, registry)
    with pytest.raises(EpisodeBagError):
        episode_from_bag(tmp_path / "missing", registry)
