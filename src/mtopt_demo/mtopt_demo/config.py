"""What a demo run does (`DemoConfig`) and its command line (`python -m mtopt_demo`,
`mtopt-demo`)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtopt_core.action import ACTION_FRAMES
from mtopt_demo.episodes import LIFT_TASK

PROG = "mtopt-demo"
# Defaults sized for about 11 minutes on 2 cores (docs/results/demo.md).
DEFAULT_EPISODES = 40
DEFAULT_EVAL_EPISODES = 24
DEFAULT_STEPS = 600
NETS = ("tiny", "compact", "small")
#: The demo's option for each policy setting a checkpoint records (`mtopt_core.checkpoint.
#: POLICY_SETTINGS`); policy_roi has none: only an --act-with checkpoint's record sets it.
SETTING_OPTIONS = {"policy_camera": "--policy-camera", "action_frame": "--action-frame"}


class DemoError(RuntimeError):
    """A bad combination of options, or a stage that failed; the message says which and why."""


@dataclass(frozen=True)
class DemoConfig:
    """One demo run. `collect_only`: stage 1 only; `weights`: stage 3 only (plus a scripted
    baseline stage 1 of `baseline_episodes` episodes when > 0)."""

    #: Stage 1: episodes to collect (scripted/random mix, no weights).
    episodes: int = DEFAULT_EPISODES
    #: Stage 3: episodes with the learned policy.
    eval_episodes: int = DEFAULT_EVAL_EPISODES
    #: Stage 2: training steps.
    steps: int = DEFAULT_STEPS
    #: Stage 2: Q-network preset.
    net: str = "compact"
    batch_size: int = 32
    #: torch threads for training.
    threads: int = 1
    #: Output directory; each run writes `<out>/<time>/`.
    out: Path = Path("runs/demo")
    #: Success-detector checkpoint that also grades the episodes ("" = oracle only).
    sd_checkpoint: str = ""
    #: Skip stage 2 (and stage 1 unless baseline_episodes): stage 3 acts with this checkpoint.
    weights: Path | None = None
    #: With `weights`: stage 1 collects this many episodes with the scripted policy alone.
    baseline_episodes: int = 0
    #: Lift episodes command LIFT_TASK only.
    lift_only: bool = False
    #: Stage 1 seed; stage 3 uses seed + 1.
    seed: int = 0
    #: Seconds a collect stage may take (0 = 60 per episode + 120).
    stage_timeout: float = 0.0
    #: Stage 1 only: collect and report what was collected and how it was graded.
    collect_only: bool = False
    #: Stages 1 and 2 run as usual, then stage 3 acts with this checkpoint (a released network)
    #: instead of stage 2's; the policy settings it records apply to every stage
    #: (`with_act_with_settings`).
    act_with: Path | None = None
    #: The policy's camera in every stage ("" = config/policy.yaml's); the sim's "wrist" camera
    #: is then published and logged too.
    policy_camera: str = ""
    #: Side of the sim cameras' frames [px] (0 = the sim cell's default).
    camera_size: int = 0
    #: Frame of the policy's x/y moves in every stage, and of stage 2's training ("" =
    #: config/policy.yaml's, which is the learner's default too).
    action_frame: str = ""
    #: The policy's region of interest [x0, y0, x1, y1] in every stage and stage 2 (() =
    #: config/policy.yaml's); no option sets it: it comes from an --act-with checkpoint's record.
    policy_roi: tuple[float, ...] = ()

    def validate(self) -> DemoConfig:
        """Return self, or raise DemoError naming the bad option."""
        for name in ("episodes", "eval_episodes", "steps", "batch_size", "threads"):
            if getattr(self, name) < 1:
                raise DemoError(f"--{name.replace('_', '-')} must be >= 1")
        if self.baseline_episodes < 0:
            raise DemoError("--baseline-episodes must be >= 0")
        if self.net not in NETS:
            raise DemoError(f"--net must be one of {', '.join(NETS)}, got {self.net!r}")
        if self.stage_timeout < 0:
            raise DemoError("--stage-timeout must be >= 0")
        if self.baseline_episodes and self.weights is None:
            raise DemoError(
                "--baseline-episodes needs --weights (without it stage 1 is the baseline)"
            )
        if self.collect_only and self.weights is not None:
            raise DemoError("--collect-only runs stage 1 alone; --weights is for stage 3")
        if self.act_with is not None and (self.weights is not None or self.collect_only):
            raise DemoError(
                "--act-with runs stages 1 and 2 and acts with its checkpoint in stage 3; "
                "--weights skips them and --collect-only stops after stage 1: choose one"
            )
        if self.camera_size and not 8 <= self.camera_size <= 640:
            raise DemoError(f"--camera-size must be in 8..640, got {self.camera_size}")
        if self.camera_size and self.sd_checkpoint:
            raise DemoError(
                "--camera-size and --sd-checkpoint both set the cameras' frame size (an SD "
                "needs the size it was trained on): give one"
            )
        if "/" in self.policy_camera:
            raise DemoError(f"--policy-camera must be a camera name, got {self.policy_camera!r}")
        if self.action_frame and self.action_frame not in ACTION_FRAMES:
            raise DemoError(
                f"--action-frame must be one of {', '.join(ACTION_FRAMES)}, "
                f"got {self.action_frame!r}"
            )
        if self.policy_roi:
            from mtopt_core.images import check_roi

            try:
                check_roi(self.policy_roi, "policy_roi")
            except ValueError as exc:
                raise DemoError(str(exc)) from None
        return self

    @property
    def policy_params(self) -> dict[str, Any]:
        """Policy parameters every stage's config copy overrides (`stage_config`), and the
        policy settings stage 2 trains for: the ones given (or adopted from --act-with)."""
        params: dict[str, Any] = {}
        if self.policy_camera:
            params["policy_camera"] = self.policy_camera
        if self.policy_roi:
            params["policy_roi"] = [float(v) for v in self.policy_roi]  # ROS: a float array
        if self.action_frame:
            params["action_frame"] = self.action_frame
        return params

    def with_act_with_settings(self) -> DemoConfig:
        """With --act-with: this config with the policy settings its checkpoint records
        (camera, ROI, action frame), so that every stage's policy and stage 2's training match
        the network stage 3 acts with (a policy node refuses weights trained for other
        settings). A checkpoint without a record (older ones) leaves the config as given.
        Raises DemoError for an unreadable checkpoint or an option that disagrees with the
        record. Idempotent."""
        if self.act_with is None:
            return self
        from mtopt_core.checkpoint import (
            POLICY_SETTINGS,
            POLICY_SETTINGS_KEY,
            CheckpointError,
            policy_settings_mismatch,
            read_checkpoint,
        )

        try:
            recorded = read_checkpoint(self.act_with).metadata.get(POLICY_SETTINGS_KEY)
        except (CheckpointError, OSError) as exc:
            raise DemoError(f"--act-with {self.act_with}: {exc}") from None
        if not recorded:
            return self
        if not isinstance(recorded, Mapping):
            raise DemoError(f"--act-with {self.act_with}: malformed policy settings {recorded!r}")
        conflicts = [
            f"{SETTING_OPTIONS.get(name, name)} {given!r} disagrees with --act-with "
            f"{self.act_with}, which records {name} {trained!r}"
            for name, trained, given in policy_settings_mismatch(
                {POLICY_SETTINGS_KEY: recorded}, self.policy_params
            )
        ]
        if conflicts:
            it = "it" if len(conflicts) == 1 else "them"
            raise DemoError(f"{'; '.join(conflicts)}: leave {it} out to use the checkpoint's")
        adopted = {name: recorded[name] for name in POLICY_SETTINGS if name in recorded}
        try:
            if not all(adopted.values()):  # "" / [] would mean "policy.yaml's", not the record
                raise DemoError("empty values")
            if "policy_roi" in adopted:
                adopted["policy_roi"] = tuple(float(v) for v in adopted["policy_roi"])
            return dataclasses.replace(self, **adopted).validate()
        except (DemoError, TypeError, ValueError) as exc:  # a record the demo cannot pass on
            raise DemoError(
                f"--act-with {self.act_with}: recorded policy settings {dict(recorded)}: {exc}"
            ) from None

    def stage_timeout_s(self, episodes: int) -> float:
        """How long a collect stage of `episodes` episodes may take."""
        return self.stage_timeout or 60.0 * episodes + 120.0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DemoConfig:
        config = cls(
            episodes=args.episodes,
            eval_episodes=args.eval_episodes,
            steps=args.steps,
            net=args.net,
            batch_size=args.batch_size,
            threads=args.threads,
            out=args.out,
            sd_checkpoint=args.sd_checkpoint,
            weights=args.weights,
            baseline_episodes=args.baseline_episodes,
            lift_only=args.lift_only,
            seed=args.seed,
            stage_timeout=args.stage_timeout,
            collect_only=args.collect_only,
            act_with=args.act_with,
            policy_camera=args.policy_camera,
            camera_size=args.camera_size,
            action_frame=args.action_frame,
        ).validate()
        # Here, not in run_demo: an option that disagrees with the checkpoint is a bad argument.
        return config.with_act_with_settings()


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an int >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive, _non_negative = _int_at_least(1), _int_at_least(0)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--collect-only",
        action="store_true",
        help="stage 1 alone: collect --episodes episodes and report what was collected and how"
        " the SD and the oracle graded it (what `make demo-collect` runs)",
    )
    p.add_argument(
        "--episodes",
        type=_positive,
        default=DEFAULT_EPISODES,
        help=f"stage 1: episodes to collect (default {DEFAULT_EPISODES})",
    )
    p.add_argument(
        "--eval-episodes",
        type=_positive,
        default=DEFAULT_EVAL_EPISODES,
        help=f"stage 3: episodes with the learned policy (default {DEFAULT_EVAL_EPISODES})",
    )
    p.add_argument(
        "--steps",
        type=_positive,
        default=DEFAULT_STEPS,
        help=f"stage 2: training steps (default {DEFAULT_STEPS})",
    )
    p.add_argument("--net", choices=NETS, default="compact", help="Q-network preset")
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument(
        "--threads",
        type=_positive,
        default=1,
        help="torch threads for training (default 1: on a busy 2-core machine 2 threads ran"
        " 5x slower, spinning on each other)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    p.add_argument(
        "--sd-checkpoint",
        default="",
        help="success detector that also grades the episodes (training uses oracle labels)",
    )
    p.add_argument(
        "--weights",
        type=Path,
        default=None,
        metavar="CKPT",
        help="skip stage 2 (and stage 1 unless --baseline-episodes): stage 3 acts with this"
        " Q-network checkpoint (e.g. the gym probe's qnet.ckpt)",
    )
    p.add_argument(
        "--baseline-episodes",
        type=_non_negative,
        default=0,
        metavar="N",
        help="with --weights: stage 1 collects N episodes with the noisy scripted policy alone"
        " (the baseline column; same seed as stage 3); default 0 = no stage 1",
    )
    p.add_argument(
        "--lift-only",
        action="store_true",
        help=f"lift episodes command {LIFT_TASK} only (other lift tasks weigh 0; place tasks"
        " still follow a successful lift): how the gym probe trains and evaluates",
    )
    p.add_argument(
        "--act-with",
        type=Path,
        default=None,
        metavar="CKPT",
        help="stages 1 and 2 run as usual, then stage 3 acts with this Q-network checkpoint"
        " (e.g. a released one from models/) instead of stage 2's; every stage, and stage 2's"
        " training, use the policy settings it records (camera, ROI, action frame)",
    )
    p.add_argument(
        "--policy-camera",
        default="",
        metavar="NAME",
        help="the policy's camera in every stage (default: config/policy.yaml's); the sim's"
        " 'wrist' camera is then published and logged too",
    )
    p.add_argument(
        "--action-frame",
        choices=ACTION_FRAMES,
        default="",
        help="frame of the policy's x/y moves in every stage and of stage 2's training"
        " (default: config/policy.yaml's); tool: the moves turn with the gripper's yaw",
    )
    p.add_argument(
        "--camera-size",
        type=_non_negative,
        default=0,
        metavar="PX",
        help="side of the sim cameras' frames (default: the sim cell's); a released network"
        " wants the size it was trained on",
    )
    p.add_argument("--seed", type=int, default=0, help="stage 1 seed; stage 3 uses seed + 1")
    p.add_argument(
        "--stage-timeout",
        type=float,
        default=0.0,
        help="seconds a collect stage may take (default: 60 per episode + 120)",
    )
    return p
