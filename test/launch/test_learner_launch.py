"""The learner node as real processes: (a) `launch/sim_learning.launch.yaml` (a simulated cell
writing bags, the learner ingesting them and announcing weights that the cell's policy loads
and acts with); (b) `learner_node` SIGKILLed after its first checkpoint and restarted: it resumes
from the checkpoint and the LogReplay ledger, counting no bag twice; (c) a truncated bag is
quarantined and the run goes on (`launch/offline_learning.launch.yaml`, which ends by itself);
(d) a bag directory without a usable episode ends that launch with an error."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mtopt_core.checkpoint import read_checkpoint
from mtopt_core.episode_bag import list_episode_bags, read_bag_messages
from mtopt_core.tasks import load_task_registry
from mtopt_learner.errors import no_usable_episodes_message

pytestmark = pytest.mark.ros

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_LEARNING = REPO_ROOT / "launch" / "sim_learning.launch.yaml"
OFFLINE_LEARNING = REPO_ROOT / "launch" / "offline_learning.launch.yaml"
LEARNER_NODE = Path(sys.executable).parent / "learner_node"
#: Learner settings that keep a step in milliseconds on a loaded 2-core machine.
TINY = {"net": "tiny", "batch_size": 4, "cem_population": 6, "cem_elites": 2,
        "cem_iterations": 1, "torch_threads": 1, "status_every_s": 2.0}  # fmt: skip


def _bag_writer():
    """`write_episode_bag` of test/unit/learner/conftest.py (bags as the logger writes them)."""
    path = REPO_ROOT / "test" / "unit" / "learner" / "conftest.py"
    spec = importlib.util.spec_from_file_location("learner_bag_writer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


BAGS = _bag_writer()


def write_bags(directory: Path, names: list[str]) -> None:
    registry = load_task_registry()
    for name in names:
        seed = int(name.removeprefix("ep"))
        BAGS.write_episode_bag(directory, name, registry, seed=seed,
                               success={"lift-any": seed % 2 == 0})  # fmt: skip


def ledger(out_dir: Path) -> list[dict]:
    """The ledger's complete lines (a torn last line from the SIGKILL is not a record)."""
    records = []
    for line in (out_dir / "logreplay" / "ledger.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def latest_step(out_dir: Path) -> int | None:
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    return read_checkpoint(pointer.parent / pointer.read_text().strip()).step


def episode_info(bag: Path):
    (msg,) = [m.message for m in read_bag_messages(bag) if m.topic.endswith("/episode_info")]
    return msg


def edit_yaml(path: Path, node: str, **values) -> None:
    data = yaml.safe_load(path.read_text())
    data[f"/**/{node}"]["ros__parameters"].update(values)
    path.write_text(yaml.safe_dump(data))


def test_launch_files_resolve(start_launch):
    """Every cell's policy listens to the learner's global topic; labels follow the SD."""
    launch = start_launch(["--print", str(SIM_LEARNING), "cells:=2", "episodes:=3"])
    assert launch.wait(timeout_s=30) == 0, launch.output
    out = launch.output
    for k in range(2):
        (policy,) = re.findall(rf"\S*policy_node .*__ns:=/cell{k} .*", out)
        assert policy.endswith("-r policy/weights:=/policy/weights"), policy
    assert "# node learner " in out and "inline params: labels: oracle" in out
    with_sd = start_launch(["--print", str(SIM_LEARNING), "sd_checkpoint:=/data/sd.ckpt"])
    assert with_sd.wait(timeout_s=30) == 0, with_sd.output
    assert "inline params: labels: sd" in with_sd.output
    offline = start_launch(["--print", str(OFFLINE_LEARNING), "bag_dir:=/b", "out_dir:=/o"])
    assert offline.wait(timeout_s=30) == 0, offline.output
    assert re.search(r"# node learner .*required", offline.output)
    assert "wait_for_data: false" in offline.output  # a finished directory: no endless wait


def test_sim_cell_switches_to_the_learned_weights(start_launch, tmp_path):
    """(a) bags -> learner -> policy/weights -> the policy acts with CEM on those weights."""
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    # No scripted episodes: random until weights arrive, CEM after (the non-scripted share).
    edit_yaml(config / "policy.yaml", "policy", scripted_fraction=0.0, max_steps=4)
    edit_yaml(config / "learner.yaml", "learner", **TINY, checkpoint_every=2, min_episodes=1,
              poll_every_s=0.5, max_bags_per_poll=0)  # fmt: skip
    episode_dir, out_dir = tmp_path / "episodes", tmp_path / "run"
    launch = start_launch(
        [
            str(SIM_LEARNING),
            "cells:=1",
            "episodes:=12",  # an upper bound: the test stops the launch once it saw enough
            f"episode_dir:={episode_dir}",
            f"out_dir:={out_dir}",
            f"config_dir:={config}",
            "labels:=oracle",
            "seed:=5",
        ]
    )
    infos: dict[str, object] = {}
    learned = None
    deadline = time.monotonic() + 150
    while learned is None and time.monotonic() < deadline and launch.popen.poll() is None:
        for bag in list_episode_bags(episode_dir):
            if bag.name not in infos:
                infos[bag.name] = info = episode_info(bag)
                if info.policy_kind == "cem":
                    learned = info
        time.sleep(0.5)
    launch.popen.send_signal(signal.SIGINT)
    code = launch.wait(timeout_s=30)
    out = launch.output
    assert learned is not None, f"no CEM episode in {len(infos)} bags\n{out[-6000:]}"
    assert code == 0, out[-6000:]
    # The first episode a policy ran (a loaded machine may abort one before, with no policy).
    first = next(infos[name] for name in sorted(infos) if infos[name].policy_kind)
    assert (first.policy_kind, first.weights_version) == ("random", -1)  # before any weights
    # The weights it acted with are a checkpoint the learner announced, verified by the policy.
    assert learned.weights_version >= 2 and learned.weights_version % 2 == 0
    assert f"weights version {learned.weights_version} published" in out
    assert f"weights version {learned.weights_version} verified" in out
    assert re.search(rf"sha256 {learned.weights_sha256[:12]}", out)
    assert learned.epsilon == pytest.approx(0.1)  # CEM with epsilon exploration
    # The learner ingested what the cell wrote and stopped cleanly with a checkpoint.
    ingested = [r["name"] for r in ledger(out_dir) if r["outcome"] == "ingested"]
    assert ingested and len(set(ingested)) == len(ingested)
    assert set(ingested) <= {bag.name for bag in list_episode_bags(episode_dir)}
    assert latest_step(out_dir) >= learned.weights_version


def run_learner(out_dir: Path, bag_dir: Path, log_path: Path, **params) -> subprocess.Popen:
    values = dict(TINY, bag_dir=str(bag_dir), out_dir=str(out_dir), min_episodes=1, **params)
    args = [str(LEARNER_NODE), "--ros-args"]
    for name, value in values.items():
        args += ["-p", f"{name}:={value}"]
    return subprocess.Popen(
        args,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_learner_resumes_after_sigkill_counting_no_bag_twice(tmp_path):
    """(b) kill -9 after the first checkpoint; the restart continues steps and ledger."""
    bags, out_dir = tmp_path / "bags", tmp_path / "run"
    first_batch = [f"ep{i:03d}" for i in range(12)]
    write_bags(bags, first_batch)
    # one bag per tick and a checkpoint every 2 steps: killed while the run is going on (most
    # often while the first batch is still being ingested; the asserts hold either way)
    log1 = tmp_path / "run1.log"
    proc = run_learner(out_dir, bags, log1, max_bags_per_poll=1, checkpoint_every=2)
    try:
        deadline = time.monotonic() + 60
        while latest_step(out_dir) is None and time.monotonic() < deadline:
            assert proc.poll() is None, log1.read_text()
            time.sleep(0.05)
        assert latest_step(out_dir) is not None, log1.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_step(out_dir)
    assert killed_at >= 2 and killed_at % 2 == 0
    counted_before = {r["name"] for r in ledger(out_dir)}
    assert counted_before  # the first run ingested something

    second_batch = [f"ep{i:03d}" for i in range(12, 15)]
    write_bags(bags, second_batch)
    target = killed_at + 6
    log2 = tmp_path / "run2.log"
    proc = run_learner(out_dir, bags, log2, max_bags_per_poll=0, checkpoint_every=2,
                       max_steps=target)  # fmt: skip
    try:
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log2.read_text()
    assert code == 0, out
    assert f"at step {killed_at}" in out  # resumed from the checkpoint of the killed run
    # versions announced after the restart: the resumed one, then every 2 steps to the end
    published = [int(v) for v in re.findall(r"weights version (\d+) published", out)]
    assert published == [killed_at, killed_at + 2, killed_at + 4, target], out
    assert latest_step(out_dir) == target
    records = ledger(out_dir)
    names = [r["name"] for r in records]
    assert sorted(names) == first_batch + second_batch  # every bag exactly once
    assert all(r["outcome"] == "ingested" for r in records)
    restored = re.search(r"(\d+) restored from the ledger", out)
    assert restored and int(restored.group(1)) == len(counted_before), out


def test_truncated_bag_is_quarantined_and_the_offline_run_completes(start_launch, tmp_path):
    """(c) via launch/offline_learning.launch.yaml: the learner exits 0 at `steps`, which ends
    the launch; the truncated bag is in quarantine, the others are ingested."""
    bags, out_dir = tmp_path / "bags", tmp_path / "run"
    names = [f"ep{i:03d}" for i in range(4)]
    write_bags(bags, names)
    BAGS.truncate_bag(bags / "ep001")
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    edit_yaml(config / "learner.yaml", "learner", **TINY)
    launch = start_launch(
        [
            str(OFFLINE_LEARNING),
            f"bag_dir:={bags}",
            f"out_dir:={out_dir}",
            "steps:=6",
            "checkpoint_every:=3",
            "net:=tiny",
            f"config_dir:={config}",
        ]
    )
    code = launch.wait(timeout_s=90)
    out = launch.output
    assert code == 0, out[-4000:]
    assert "quarantined ep001" in out and "done: step 6/6" in out
    records = {r["name"]: r["outcome"] for r in ledger(out_dir)}
    assert records == {"ep000": "ingested", "ep001": "quarantined", "ep002": "ingested",
                       "ep003": "ingested"}  # fmt: skip
    assert (out_dir / "logreplay" / "quarantine" / "ep001").is_dir()
    assert not (bags / "ep001").exists()
    assert latest_step(out_dir) == 6


def test_offline_run_over_unusable_bags_fails_with_mtopt_learns_message(start_launch, tmp_path):
    """Ungraded bags with labels:=sd are all skipped: the learner exits with an error (and the
    launch with it) saying so, as `mtopt-learn` does, instead of waiting for data forever."""
    bags, out_dir = tmp_path / "bags", tmp_path / "run"
    registry = load_task_registry()
    for k in range(3):
        BAGS.write_episode_bag(bags, f"ep{k:03d}", registry, seed=k, graded=False)
    config = tmp_path / "config"
    shutil.copytree(REPO_ROOT / "config", config)
    edit_yaml(config / "learner.yaml", "learner", **TINY)
    launch = start_launch(
        [
            str(OFFLINE_LEARNING),
            f"bag_dir:={bags}",
            f"out_dir:={out_dir}",
            "labels:=sd",
            "steps:=6",
            f"config_dir:={config}",
        ]
    )
    code = launch.wait(timeout_s=90)
    out = launch.output
    assert code != 0, out[-4000:]
    expected = no_usable_episodes_message(bags.resolve(), 3, 0, "sd")
    assert expected in out, out[-4000:]
    assert "--labels is 'sd'" in expected and "waiting for data" not in out
    assert re.search(r"learner.* exited with code 2", out), out[-4000:]
