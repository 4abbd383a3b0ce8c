"""`python -m mtopt_demo` / `mtopt-demo` (what `make demo` runs): the whole MT-Opt loop on one
simulated cell, every stage through the ROS nodes a robot cell uses.

1. Collect: mtopt_bringup's `sim_cell.launch.yaml` (MuJoCo cell, arm controller, reset bin,
   policy, logger, collector; every node its own process, real DDS) logs `--episodes` episode
   bags with the policy's usual mix before any weights: scripted pick/place or random actions.
   Episodes are graded by the simulator's oracle (and by the SD too with `--sd-checkpoint`).
2. Learn: `mtopt_learner.offline.train` (what `mtopt-learn` runs, in this process) trains a
   small multi-task Q-network on those bags with oracle labels, skill-level task impersonation,
   re-balanced sampling and the conservative penalty on random actions; checkpoints go to
   `<run>/learner/checkpoints/`.
3. Act: the sim cell again, with a `policy.yaml` copy whose `scripted_fraction` is 0, while
   this process announces the final checkpoint as a `WeightsUpdate` (path, version, sha256) on
   `/policy/weights` (reliable + transient_local, like the learner node); the policy verifies
   and loads it, and runs CEM over the learned Q-function (with its epsilon exploration). Each
   episode's EpisodeInfo says who acted (`policy_kind`, `weights_version`).
4. Report: per-task oracle success of the scripted and random episodes of stage 1 and of the
   learned-CEM episodes of stage 3 (printed and in `summary.md`), and `demo.png` (lift success
   over the episodes of the whole run, per-task rates by policy).

`--act-with CKPT` (what `make demo` passes, with the released tool-frame lift network from
models/ and the released success detector) runs stages 1 and 2 as usual and acts greedily in
stage 3 with that checkpoint instead of stage 2's: collection, a short learning stage, and a
network trained at scale acting through the same ROS graph. The policy settings CKPT records
(camera, ROI, action frame: a policy node refuses weights trained for other ones) apply to
every stage and to stage 2's training; a `--policy-camera` or `--action-frame` that disagrees
with them is refused. A checkpoint without a record (older ones) takes the options as given.

`--collect-only` (what `make demo-collect` runs) is stage 1 alone; its `summary.md` is a
per-task table of what was collected and how the SD and the oracle graded it. `--weights CKPT`
skips stages 1 and 2 and acts with a checkpoint trained elsewhere (`--baseline-episodes N`: a
stage 1 of N scripted episodes first, for comparison).

Everything is written under `<--out>/<time>/` (bags, learner run, node logs, report). Exit
status: 0 when every stage ran, 1 when a stage failed (the message names it), 2 for bad
arguments, 130 on Ctrl-C. The numbers are whatever the run gives: a few dozen episodes and a few
hundred training steps of a small network on two cores, not the paper's scale.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from mtopt_core.tasks import load_task_registry
from mtopt_demo.bringup import BringupError, lift_only_weights, ros_environment, stage_config
from mtopt_demo.config import DemoConfig, DemoError, build_parser
from mtopt_demo.episodes import LIFT_TASK
from mtopt_demo.report import StageResult, format_collection, format_summary, write_report
from mtopt_demo.stages import (
    Progress,
    WeightsAnnouncer,
    collect,
    learn,
    loss_text,
    weights_log_lines,
)

#: Where stage 3's policy takes weights from (launch arg `weights_topic`) and we announce them.
WEIGHTS_TOPIC = "/policy/weights"


def _sd_launch_args(config: DemoConfig, say: Progress) -> list[str]:
    """The sim cell's SD arguments: the checkpoint, and the camera size it was trained on (or
    --camera-size)."""
    args = [f"sd_checkpoint:={config.sd_checkpoint}"]
    if config.camera_size:
        args.append(f"camera_size:={config.camera_size}")
    if not config.sd_checkpoint:
        say("no --sd-checkpoint: episodes are graded by the simulator's oracle only")
        return args
    from mtopt_core.sd_model import SDCheckpointError, load_checkpoint

    # The cameras publish at the size the SD was trained on (the policy resizes to its own).
    try:
        size = load_checkpoint(config.sd_checkpoint).config.image_size
    except SDCheckpointError as exc:
        raise DemoError(f"--sd-checkpoint: {exc}") from None
    return [*args, f"camera_size:={size}"]


def _settings_text(params: dict[str, Any]) -> str:
    """E.g. "policy_camera 'wrist', action_frame 'tool'"."""
    return ", ".join(f"{name} {value!r}" for name, value in params.items())


def _new_run_dir(config: DemoConfig, say: Progress) -> Path:
    run_dir = config.out.resolve() / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=False)
    say(f"run directory {run_dir}")
    return run_dir


def run_collect_only(config: DemoConfig, say: Progress) -> int:
    """Stage 1 alone; summary.md lists what was collected and how it was graded."""
    cell_args = [*_sd_launch_args(config, say), f"seed:={config.seed}"]
    run_dir = _new_run_dir(config, say)
    ros_environment(say)
    if config.lift_only or config.policy_params:
        weights = lift_only_weights(load_task_registry()) if config.lift_only else []
        collect_config = stage_config(run_dir, "collect", None, weights, config.policy_params)
        cell_args.append(f"config_dir:={collect_config}")
    say(f"collect {config.episodes} episodes (scripted/random mix, no weights)")
    infos, seconds = collect(
        1, run_dir, config.episodes, cell_args, config.stage_timeout_s(config.episodes), say
    )
    text = format_collection(infos, seconds, run_dir / "stage1_episodes")
    (run_dir / "summary.md").write_text(text)
    print(text, flush=True)
    say(f"done in {say.elapsed() / 60:.1f} min: {run_dir / 'summary.md'}")
    return 0


def run_demo(config: DemoConfig, say: Progress) -> int:
    """Collect -> learn -> act -> report (see the module docstring); raises DemoError."""
    from mtopt_core.checkpoint import CheckpointError

    registry = load_task_registry()
    cell_args = _sd_launch_args(config, say)  # a bad SD checkpoint fails before any output
    # And so does a bad --act-with checkpoint. from_args has adopted its policy settings
    # already; a config built in code gets them here (idempotent).
    config = config.with_act_with_settings()
    if config.act_with is not None and config.policy_params:
        say(f"--act-with {config.act_with}: policy {_settings_text(config.policy_params)}")
    run_dir = _new_run_dir(config, say)
    ros_environment(say)

    stages: list[StageResult] = []
    notes: list[str] = []
    # Stage 3 runs seed + 1; a --baseline-episodes stage 1 shares it (the same first objects).
    stage3_seed = config.seed + 1
    stage1_seed = stage3_seed if config.baseline_episodes else config.seed
    task_weights = lift_only_weights(registry) if config.lift_only else []
    if config.lift_only:
        say(f"--lift-only: collector task_weights {task_weights}")
    policy_params = config.policy_params
    stage1: list[Any] = []
    if config.weights is not None:
        checkpoint = config.weights.resolve()
        if config.baseline_episodes:
            n = config.baseline_episodes
            say(f"--weights {config.weights}: stage 2 skipped; stage 1/4: {n} scripted episodes")
            baseline_config = stage_config(run_dir, "baseline", 1.0, task_weights, policy_params)
            stage1, seconds = collect(
                1, run_dir, n,
                [*cell_args, f"seed:={stage1_seed}", f"config_dir:={baseline_config}"],
                config.stage_timeout_s(n), say,
            )  # fmt: skip
            stages.append(StageResult("1 collect", seconds, f"{len(stage1)} episodes: scripted"))
        else:
            say(f"--weights {config.weights}: stages 1 and 2 skipped")
    else:
        say(f"stage 1/4: collect {config.episodes} episodes (scripted/random mix, no weights)")
        stage1_args = [*cell_args, f"seed:={stage1_seed}"]
        if task_weights or policy_params:
            collect_config = stage_config(run_dir, "collect", None, task_weights, policy_params)
            stage1_args.append(f"config_dir:={collect_config}")
        stage1, seconds = collect(
            1, run_dir, config.episodes, stage1_args, config.stage_timeout_s(config.episodes), say
        )
        stages.append(
            StageResult("1 collect", seconds, f"{len(stage1)} episodes: scripted/random")
        )

        say(f"stage 2/4: learn ({config.steps} steps, net {config.net}, oracle labels)")
        started = time.monotonic()
        summary = learn(
            run_dir, run_dir / "stage1_episodes", config.steps, config.net, config.batch_size,
            config.threads, config.seed, say, policy_params,
        )  # fmt: skip
        stages.append(
            StageResult(
                "2 learn",
                time.monotonic() - started,
                f"{summary['steps']} steps, net {config.net}, batch {config.batch_size}, "
                f"{summary['replay_episodes']} episodes, final loss {loss_text(summary)}",
            )
        )
        checkpoint = Path(summary["checkpoint"])
        if config.act_with is not None:
            checkpoint = config.act_with.resolve()
            notes.append(
                f"Stage 3 acted with {config.act_with} (--act-with), not with stage 2's network"
                f" ({summary['checkpoint']})."
            )
    if policy_params:
        trained = " (stage 2 trained for them)" if config.weights is None else ""
        notes.append(f"Policy settings in every stage: {_settings_text(policy_params)}{trained}.")

    who = f"the Q-network {config.act_with}" if config.act_with else "the learned Q-function"
    say(f"stage 3/4: {config.eval_episodes} episodes with {who} (CEM)")
    # No scripted episodes: CEM once the weights are loaded, random before. A network given
    # with --act-with acts greedily, as mtopt-eval measures it.
    eval_params = {**policy_params, "epsilon": 0.0} if config.act_with else policy_params
    eval_config = stage_config(run_dir, "eval", 0.0, task_weights, eval_params)
    try:
        announcer = WeightsAnnouncer(WEIGHTS_TOPIC, checkpoint)
    except CheckpointError as exc:
        raise DemoError(f"stage 3: weights refused: {exc}") from None
    with announcer as weights:
        say(
            f"stage 3: announcing weights version {weights.version} (sha256 "
            f"{weights.sha256[:12]}..., {weights.preset}) on {WEIGHTS_TOPIC}"
        )
        eval_args = [
            *cell_args,
            f"seed:={stage3_seed}",
            f"config_dir:={eval_config}",
            f"weights_topic:={WEIGHTS_TOPIC}",
        ]
        stage3, seconds = collect(
            3, run_dir, config.eval_episodes, eval_args,
            config.stage_timeout_s(config.eval_episodes), say,
        )  # fmt: skip
    learned = [
        i for i in stage3 if i.policy_kind == "cem" and i.weights_version == weights.version
    ]
    policy_lines = weights_log_lines(run_dir / "logs" / "stage3_launch.log", weights.version)
    for line in policy_lines:
        say(f"stage 3: policy: {line[-200:]}")
    stages.append(
        StageResult(
            "3 act",
            seconds,
            f"{len(stage3)} episodes, {len(learned)} with CEM on weights v{weights.version}",
        )
    )
    others = len(stage3) - len(learned)
    if others:
        notes.append(
            f"{others} stage-3 episode(s) ran before the weights were installed (random policy)."
        )
    if config.weights is None:
        notes.append(
            "Labels: the simulator's oracle (training and this report); training used "
            "skill-level task impersonation, re-balanced sampling and the conservative penalty."
        )
    same = "the same first objects" if stage1_seed == stage3_seed else "other objects, tasks"
    if config.lift_only:
        notes.append(f"--lift-only: lift episodes command {LIFT_TASK} only.")
    notes += [
        f"Learned CEM episodes explore with the policy's epsilon "
        f"({f'{learned[0].epsilon:.2f}' if learned else 'n/a'}) per step; stage 3 uses seed "
        f"{stage3_seed}" + (f", stage 1 seed {stage1_seed} ({same})." if stage1 else "."),
        f"Weights: {checkpoint} (version {weights.version}, sha256 {weights.sha256}).",
        f"Bags: {run_dir / 'stage1_episodes'}, {run_dir / 'stage3_episodes'}; node logs in "
        f"{run_dir / 'logs'}.",
    ]
    if not learned:
        raise DemoError(
            f"stage 3: no episode ran with the learned weights (version {weights.version}); "
            f"policy log lines: {policy_lines or 'none'}. See {run_dir / 'logs'}"
        )

    say("stage 4/4: report")
    started = time.monotonic()
    report, text = write_report(run_dir, stage1, stage3, registry, stages, say.elapsed(), notes)
    stages.append(StageResult("4 report", time.monotonic() - started, "summary.md, demo.png"))
    text = format_summary(report, stages, say.elapsed(), notes)
    (run_dir / "summary.md").write_text(text)
    print(text, flush=True)
    say(f"done in {say.elapsed() / 60:.1f} min: {run_dir / 'summary.md'}, {run_dir / 'demo.png'}")
    return 0


def run_config(config: DemoConfig, say: Progress) -> int:
    """The demo `config` asks for: stage 1 alone, or the whole loop."""
    return run_collect_only(config, say) if config.collect_only else run_demo(config, say)


def run(args: argparse.Namespace, say: Progress) -> int:
    """`run_config` with the parsed options; bad combinations raise DemoError before anything
    is written."""
    return run_config(DemoConfig.from_args(args), say)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(__doc__)
    args = parser.parse_args(argv)
    try:
        config = DemoConfig.from_args(args)
    except DemoError as exc:
        parser.error(str(exc))  # usage and the message on stderr, exit status 2
    say = Progress()
    try:
        return run_config(config, say)
    except (DemoError, BringupError) as exc:
        say(f"FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
