"""The episode protocol (`mtopt_policy.protocol`) through the ROS graph of a simulated cell:
every node its own process, real DDS. Seen in the episode bags:

* every lift episode starts with an open gripper: when the episode before ended with it closed
  (the last gripper state of its bag, at the present pose), the first policy step sees it open;
* every episode is graded at the present pose: after the last policy step the arm reaches the
  arm controller's `present_q` before the EpisodeInfo (with the oracle's labels) is written.

All episodes run the scripted pick (`policy_kind`), and sequencing ignores what is held, so
every episode is a lift starting where a closing pick left the gripper.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtopt_core.episode_bag import list_episode_bags, read_bag_messages

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
NS = "/cell0"
EPISODES = 3  # the 2nd and 3rd follow a closing pick: the first-step check runs twice


def _edit(path: Path, node: str, **values) -> None:
    data = yaml.safe_load(path.read_text())
    data[f"/**/{node}"]["ros__parameters"].update(values)
    path.write_text(yaml.safe_dump(data))


def _by_topic(bag: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in read_bag_messages(bag):
        out.setdefault(m.topic.removeprefix(NS + "/"), []).append(m)
    return out


def test_lift_episodes_start_open_and_are_graded_at_the_present_pose(start_launch, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    _edit(config / "collector.yaml", "collector", policy_kind="scripted_pick",
          use_gripper_for_sequencing=False)  # fmt: skip
    _edit(config / "sim_cell.yaml", "collector", use_oracle_for_sequencing=False)
    present_q = yaml.safe_load((config / "iiwa.yaml").read_text())["/**/iiwa_controller"][
        "ros__parameters"
    ]["present_q"]
    episode_dir = tmp_path / "episodes"
    launch = start_launch(
        [
            "mtopt_bringup",
            "sim_cell.launch.yaml",
            f"episodes:={EPISODES}",
            f"episode_dir:={episode_dir}",
            f"config_dir:={config}",
            "seed:=5",
        ],
        cwd=tmp_path,
    )
    code = launch.wait(timeout_s=300)
    out = launch.output
    assert code == 0, out[-6000:]
    bags = list_episode_bags(episode_dir)
    assert len(bags) == EPISODES, out[-4000:]

    opened_first = 0
    previous_closed = False  # the commanded gripper state the episode before ended with
    for bag in bags:
        topics = _by_topic(bag)
        (info,) = [m.message for m in topics["episode_info"]]
        assert not info.aborted, f"{bag.name}: {info.abort_reason}"
        assert info.task.startswith("lift") and info.policy_kind == "scripted_pick"
        steps = topics["policy/step"]
        last_step_ns = steps[-1].timestamp_ns
        assert not steps[0].message.gripper_closed, bag.name  # a lift starts open
        opened_first += previous_closed
        # Graded at the present pose: the arm reached it after the last step, before the
        # EpisodeInfo (the collector reads the oracle there).
        info_ns = topics["episode_info"][0].timestamp_ns
        after = [
            np.array(m.message.position)
            for m in topics["iiwa/joint_states"]
            if last_step_ns < m.timestamp_ns < info_ns
        ]
        assert after and np.allclose(after[-1], present_q, atol=0.02), (bag.name, after[-1:])
        assert info.has_oracle and len(info.oracle_success) == len(info.task_names)
        previous_closed = bool(topics["gripper/state"][-1].message.closed)
    assert opened_first >= 1, "no episode followed a closing pick: nothing was checked"
