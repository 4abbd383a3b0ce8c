"""The demo's stages: collect (the sim cell through ROS), learn (offline training), act (the
sim cell again, on announced weights).

* `collect`: runs mtopt_bringup's `sim_cell.launch.yaml` with `mtopt-launch` as a child process
  (MuJoCo cell, arm controller, reset bin, policy, logger, collector: every node its own
  process, real DDS) until it has logged the episodes, printing progress from the bags.
* `learn`: `mtopt_learner.offline.train` in this process on a stage's bags (oracle labels).
* `WeightsAnnouncer`: publishes a checkpoint as one `WeightsUpdate` with the learner's
  `WEIGHTS_QOS` (transient_local), so the policy of the next `collect` loads it and acts with
  CEM over it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mtopt_demo.bringup import SIM_CELL_LAUNCH, bringup_file
from mtopt_demo.config import DemoError
from mtopt_demo.episodes import InfoReader, oracle_success, policy_group

PROGRESS_EVERY_S = 20.0
#: Stage 2: learning rate and conservative-penalty weight (what the gym probe found to work).
LEARNING_RATE = 1e-3
CONSERVATIVE_WEIGHT = 1.0
#: Stage 2: CEM of the Bellman targets (smaller than QT-Opt's 64/6/2: a few minutes on 2 cores).
CEM_POPULATION, CEM_ELITES, CEM_ITERATIONS = 16, 3, 1


class Progress:
    """Progress lines with the time since the demo started."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, prefix: str = "demo", stream=None
    ):
        self.clock = clock
        self.started = clock()
        self.prefix = prefix
        self.stream = stream  # None: stdout (the demo's report); a CLI with a JSON line: stderr

    def elapsed(self) -> float:
        return self.clock() - self.started

    def __call__(self, message: str) -> None:
        minutes, seconds = divmod(int(self.elapsed()), 60)
        print(
            f"[{self.prefix} {minutes:02d}:{seconds:02d}] {message}",
            file=self.stream or sys.stdout, flush=True,
        )  # fmt: skip


# ------------------------------------------------------------------------------ collect
def _counts(infos: Sequence[Any], stage: int) -> str:
    """'random 3 (0 ok), scripted 5 (1 ok)': episodes and oracle successes per policy."""
    groups: dict[str, list[bool | None]] = {}
    for info in infos:
        groups.setdefault(policy_group(info, stage).split(" ", 2)[2], []).append(
            oracle_success(info)
        )
    return ", ".join(
        f"{g} {len(v)} ({sum(1 for s in v if s)} ok)" for g, v in sorted(groups.items())
    )


def collect(
    stage: int,
    run_dir: Path,
    episodes: int,
    launch_args: Sequence[str],
    timeout_s: float,
    say: Progress,
    until: Callable[[list[Any]], bool] | None = None,
    progress_of: Callable[[list[Any]], str] | None = None,
) -> tuple[list[Any], float]:
    """Run the sim cell until `episodes` bags are in `run_dir/stage<N>_episodes` (or, with
    `until`, until it says the EpisodeInfos so far are enough: the cell is then stopped);
    returns their EpisodeInfos and the seconds it took. Node output goes to `run_dir/logs/`.
    `progress_of(infos)` says how far along the progress lines are (default: "n/episodes
    episodes"; with `until` and several cells, `episodes` is each cell's cap, not the goal)."""
    episode_dir = run_dir / f"stage{stage}_episodes"
    log_path = run_dir / "logs" / f"stage{stage}_launch.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "mtopt_launch.cli",
        "--log-dir",
        str(run_dir / "logs" / f"stage{stage}"),
        str(bringup_file(SIM_CELL_LAUNCH)),
        f"episodes:={episodes}",
        f"episode_dir:={episode_dir}",
        *launch_args,
    ]
    say(f"stage {stage}: mtopt-launch {' '.join(command[5:])} (node output: {log_path})")
    reader = InfoReader(episode_dir)
    started = time.monotonic()
    last_line, last_count = started, -1
    with log_path.open("w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(1.0)
                now = time.monotonic()
                if now - started > timeout_s:
                    stop_launch(proc)
                    raise DemoError(
                        f"stage {stage}: no {episodes} episodes after {timeout_s:.0f} s "
                        f"({len(reader.poll())} logged); stopped the cell. See {log_path}"
                    )
                infos = reader.poll()
                if until is not None and until(infos):
                    stop_launch(proc)
                    break
                changed = len(infos) != last_count and now - last_line >= 5.0
                if changed or now - last_line >= PROGRESS_EVERY_S:
                    counts = _counts(infos, stage)
                    done = (
                        progress_of(infos) if progress_of else f"{len(infos)}/{episodes} episodes"
                    )
                    say(f"stage {stage}: {done} [{counts}]")
                    last_line, last_count = now, len(infos)
        except BaseException:
            stop_launch(proc)
            raise
    seconds = time.monotonic() - started
    infos = reader.poll()
    for problem in reader.problems.values():
        say(f"stage {stage}: unreadable bag: {problem}")
    if proc.returncode != 0 and not (until is not None and until(infos)):
        tail = "".join(log_path.read_text(errors="replace").splitlines(True)[-25:])
        raise DemoError(
            f"stage {stage}: the sim cell launch exited with status {proc.returncode} after "
            f"{seconds:.0f} s ({len(infos)} episodes logged). Last lines of {log_path}:\n{tail}"
        )
    if len(infos) < episodes and not (until is not None and until(infos)):
        raise DemoError(
            f"stage {stage}: {len(infos)} readable episodes of {episodes} in {episode_dir}"
        )
    say(f"stage {stage}: {len(infos)} episodes in {seconds:.0f} s [{_counts(infos, stage)}]")
    return infos, seconds


def stop_launch(proc: subprocess.Popen) -> None:
    """SIGINT the launch (it shuts its nodes down), then SIGTERM/SIGKILL if it hangs."""
    for sig, wait_s in ((signal.SIGINT, 30.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


# ------------------------------------------------------------------------------ learn
def learn(
    run_dir: Path,
    episode_dir: Path,
    steps: int,
    net: str,
    batch_size: int,
    threads: int,
    seed: int,
    say: Progress,
    policy_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train offline on a stage's bags into `run_dir/learner` (oracle labels, skill-level
    impersonation, re-balanced sampling, the conservative penalty); returns `mtopt-learn`'s
    summary (steps, episodes, final loss, checkpoint path and sha256). `policy_settings`: the
    policy's policy_camera / policy_roi / action_frame the bags were collected with (those not
    given: the learner's defaults, which are config/policy.yaml's); the checkpoints record
    them, and the network is trained for them."""
    from mtopt_core.checkpoint import CheckpointError
    from mtopt_core.tasks import TaskRegistryError
    from mtopt_learner.checkpoints import CHECKPOINT_DIR, checkpoint_steps
    from mtopt_learner.config import OfflineConfig
    from mtopt_learner.errors import LearnError
    from mtopt_learner.offline import train

    out = run_dir / "learner"
    settings = dict(policy_settings or {})
    if "policy_roi" in settings:
        settings["policy_roi"] = tuple(settings["policy_roi"])  # OfflineConfig's type
    config = OfflineConfig(
        bags=episode_dir,
        out=out,
        steps=steps,
        labels="oracle",
        net=net,
        batch_size=batch_size,
        cem_population=CEM_POPULATION,
        cem_elites=CEM_ELITES,
        cem_iterations=CEM_ITERATIONS,
        learning_rate=LEARNING_RATE,
        conservative_weight=CONSERVATIVE_WEIGHT,
        checkpoint_every=max(1, steps // 4),
        threads=threads,
        seed=seed,
        progress=False,
        **settings,
    )
    say(f"stage 2: mtopt_learner.offline.train({config})")
    logging.getLogger("mtopt_learner.log_replay").setLevel(logging.ERROR)
    done = threading.Event()
    started = time.monotonic()

    def heartbeat() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            written = checkpoint_steps(out / CHECKPOINT_DIR)
            at = f"checkpoint at step {written[-1][0]}" if written else "no checkpoint yet"
            say(f"stage 2: training {steps} steps, {at}")

    thread = threading.Thread(target=heartbeat, daemon=True)
    thread.start()
    try:
        summary = train(config)
    except (LearnError, CheckpointError, TaskRegistryError, ValueError) as exc:
        raise DemoError(f"stage 2: training failed: {exc}") from None
    finally:
        done.set()
        thread.join(timeout=2.0)
    if not summary.get("checkpoint"):
        raise DemoError("stage 2: training wrote no checkpoint")
    say(
        f"stage 2: {summary['steps']} steps in {time.monotonic() - started:.0f} s on "
        f"{summary['replay_episodes']} episodes / {summary['replay_transitions']} transitions "
        f"({summary['episodes_skipped']} skipped), final loss {loss_text(summary)}; "
        f"{summary['checkpoint']}"
    )
    return summary


def loss_text(summary: Mapping[str, Any]) -> str:
    loss = summary.get("final_loss")
    return "n/a" if loss is None else f"{loss:.4f}"


# ------------------------------------------------------------------------------ act
class WeightsAnnouncer:
    """Publishes one WeightsUpdate for a checkpoint on a topic with `mtopt_bridge.qos.
    WEIGHTS_QOS` (reliable, transient_local, depth 1: what learner_node publishes and the
    policy subscribes with), so a policy that starts later still gets it. A private rclpy
    context, spun in a thread, for as long as the `with` block runs.

    The version is the checkpoint's training step (a policy refuses a version above it); the
    run id is a fresh random one (`run_id`): an announcement is a run of its own, so a policy
    loads it whatever version it holds from an earlier run."""

    def __init__(self, topic: str, checkpoint: Path):
        from mtopt_core.checkpoint import read_checkpoint
        from mtopt_learner.nets import preset_name

        ckpt = read_checkpoint(checkpoint)  # verifies the file before announcing it
        self.topic = topic
        self.path = str(Path(checkpoint).resolve())
        self.version = ckpt.step
        self.run_id = uuid.uuid4().hex
        self.sha256 = ckpt.file_sha256
        self.preset = preset_name(ckpt.qnet_config)
        self.task_names = list(ckpt.task_names)

    def __enter__(self) -> WeightsAnnouncer:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from mtopt_bridge.qos import WEIGHTS_QOS
        from mtopt_interfaces.msg import WeightsUpdate

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("demo_weights", context=self.context)
        publisher = self.node.create_publisher(WeightsUpdate, self.topic, WEIGHTS_QOS)
        msg = WeightsUpdate(
            path=self.path,
            run_id=self.run_id,
            version=self.version,
            sha256=self.sha256,
            model_preset=self.preset,
            task_names=self.task_names,
        )
        msg.header.stamp = self.node.get_clock().now().to_msg()
        publisher.publish(msg)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=2.0)


def weights_log_lines(log_path: Path, version: int) -> list[str]:
    """The policy's lines about our weights version (verified / refused) in a launch log."""
    needle = f"weights version {version} "
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if needle in line]
