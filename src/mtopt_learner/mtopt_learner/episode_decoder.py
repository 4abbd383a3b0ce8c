"""Episode bag -> `mtopt_core.episode.Episode` (plain Python, no rclpy).

A bag written by the logger (`mtopt_logger`) for one episode of one cell (namespace `<ns>`,
e.g. `/cell0`) holds:

* `<ns>/policy/observation` (sensor_msgs/Image): the exact image the policy acted on at each
  step, already centre-cropped and resized to the policy's `image_size` by the policy node;
  recorded completely (one per step, not subsampled), published just before the step's
* `<ns>/policy/step` (mtopt_interfaces/PolicyStep): step index, the normalized 6-D action, and
  the gripper closed flag and height the policy saw with that image;
* `<ns>/camera/<name>/image_raw` (sensor_msgs/Image) for the three cameras, subsampled to the
  logger's rate, with the newest frame of each camera always written at finish;
* `<ns>/gripper/state` (GripperState), `<ns>/iiwa/joint_states` (not used here);
* one `<ns>/episode_info` (EpisodeInfo), the last message: task, steps, aborted, SD
  probabilities, oracle labels, policy kind, weights version.

Observation t (t < T) is `policy/observation` number t with the gripper state of `policy/step`
t: exactly the Q-function's input when action t was chosen. The final observation T has no
PolicyStep; it is built from the *last* frame of the policy camera topic (`overhead`) recorded
after the last step, cropped to the policy's region of interest and resized to the observation
size exactly as the policy node does (`policy_image` with `policy_roi`), with the closed flag
and height of the last `gripper/state`
message. The collector records that frame after the episode ended, the arm moved to the
grading pose and the scene settled: it is the final state the success detector graded (the
three cameras' last frames are what `sd/grade` saw), which is what `Episode` defines as
observation T. The Q-function never evaluates it: the last transition is terminal, its target
is the reward alone.

Labels (per-task final outcomes) come from `labels_source`:

* `"sd"`: `EpisodeInfo.sd_probabilities` (indexed like `EpisodeInfo.task_names`, mapped onto
  the registry by name) thresholded with `mtopt_core.impersonation.labels_from_probabilities`;
  an ungraded episode (empty array) is skipped.
* `"oracle"`: `EpisodeInfo.oracle_success` (simulation only); episodes without are skipped.
* a callable `grade(final_images_by_camera) -> probabilities`: re-grades the episode with a
  current success detector. It gets `{camera: uint8 (H, W, 3) RGB}` (last frame of each camera
  topic, at camera resolution) and returns P(success) per task, either a sequence in registry
  order or a mapping task -> probability (NaN or missing = not graded). Its exceptions are
  wrapped in `GradingError` (a problem of the grader, not of the bag).

Who closed the bag: only bags whose `EpisodeInfo.closed_by` (the requester that started and,
with its token, finished the recording; see `mtopt_logger.recorder`) matches one of
`accepted_closers` (fnmatch patterns, case-sensitive; default `DEFAULT_ACCEPTED_CLOSERS`: the
collectors' node names and bulk simulated collection) are used. Any other bag (another closer,
an empty `closed_by`, or a bag recorded before EpisodeInfo had the field) decodes to a skip
whose reason starts with "not closed by an accepted closer"; nothing else of it is looked at.

Aborted episodes and episodes with zero steps are not errors: they decode to a
`DecodedEpisode` whose `skip_reason` says why and whose `episode` is None (likewise an
ungraded episode or a task the registry does not know). Every problem with the bag itself
(unreadable, truncated, missing or inconsistent records) raises
`mtopt_core.episode_bag.EpisodeBagError(path, reason)`.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader

from mtopt_core.episode import Episode
from mtopt_core.episode_bag import BagMessage, EpisodeBagError, read_bag_messages
from mtopt_core.episodes import SIM_COLLECT_CLOSER
from mtopt_core.images import FULL_FRAME, check_roi, policy_image, square_resize
from mtopt_core.impersonation import labels_from_probabilities
from mtopt_core.sd_model import CAMERAS
from mtopt_core.tasks import TaskRegistry

EPISODE_INFO_TYPE = "mtopt_interfaces/msg/EpisodeInfo"
POLICY_STEP_TYPE = "mtopt_interfaces/msg/PolicyStep"
GRIPPER_STATE_TYPE = "mtopt_interfaces/msg/GripperState"
IMAGE_TYPE = "sensor_msgs/msg/Image"
LABEL_SOURCES = ("sd", "oracle")
#: Closers whose bags are used by default: the collector nodes (`/cell0/collector`, ...) and
#: bulk simulated collection.
DEFAULT_ACCEPTED_CLOSERS = ("*collector*", SIM_COLLECT_CLOSER)
#: How the skip reason of a bag of no accepted closer starts (reports group by it).
NOT_ACCEPTED = "not closed by an accepted closer"

#: grade(final images by camera) -> P(success) per task (registry order, or task -> p).
GradeFn = Callable[[Mapping[str, np.ndarray]], Any]

# Channel indices that turn an 8-bit colour encoding into RGB.
_TO_RGB = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)),
           "bgra8": (4, (2, 1, 0)), "mono8": (1, (0, 0, 0))}  # fmt: skip


class GradingError(RuntimeError):
    """The `grade` callable of `labels_source` failed (the bag itself may be fine)."""


@dataclass
class DecodedEpisode:
    """One decoded bag.

    Fields:
        path: the bag directory.
        episode_id: EpisodeInfo.episode_id (the bag's name when empty).
        namespace: the cell namespace of the topics ("/cell0"; "" for un-namespaced topics).
        task: the commanded task.
        steps: policy steps the EpisodeInfo reports.
        episode: the learner's episode (T+1 observations), None when skipped.
        skip_reason: why the episode is not usable for training ("" when it is).
        info: a summary of the EpisodeInfo record (cell_id, policy_kind, weights_version,
            aborted, abort_reason, terminated, sd_model_version, has_oracle, closed_by).
    """

    path: Path
    episode_id: str
    namespace: str
    task: str
    steps: int
    episode: Episode | None = None
    skip_reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.episode is not None


def image_to_rgb(msg: Any, what: str) -> np.ndarray:
    """A (rosbags) sensor_msgs/Image -> uint8 (H, W, 3) RGB copy. Raises ValueError."""
    encoding = str(msg.encoding)
    if encoding not in _TO_RGB:
        raise ValueError(f"{what}: unsupported image encoding {encoding!r}")
    channels, order = _TO_RGB[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ValueError(f"{what}: empty image ({width}x{height})")
    if step < width * channels:
        raise ValueError(f"{what}: step {step} is shorter than a row of {width} pixels")
    data = np.asarray(msg.data, dtype=np.uint8).reshape(-1)
    if data.size < step * height:
        raise ValueError(f"{what}: {data.size} bytes of data, expected {step * height}")
    rows = data[: step * height].reshape(height, step)[:, : width * channels]
    pixels = rows.reshape(height, width, channels)
    return np.ascontiguousarray(pixels[:, :, list(order)])


def accepted_closers_problem(patterns: Sequence[str]) -> str:
    """What is wrong with an `accepted_closers` setting ("" when nothing)."""
    if isinstance(patterns, str) or not patterns:
        return f"must be a non-empty list of fnmatch patterns, got {patterns!r}"
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.strip():
            return f"has an empty pattern: {list(patterns)!r}"
    return ""


def closer_problem(closed_by: str, accepted_closers: Sequence[str]) -> str:
    """The skip reason of a bag closed by `closed_by` ("" when a pattern accepts it)."""
    if closed_by and any(fnmatch.fnmatchcase(closed_by, p) for p in accepted_closers):
        return ""
    who = f"closed_by {closed_by!r}" if closed_by else "closed_by is empty"
    return f"{NOT_ACCEPTED}: {who} (accepted: {', '.join(accepted_closers)})"


def _info_has_no_closed_by(path: Path) -> bool:
    """True when the bag's own EpisodeInfo definition has no `closed_by` field (a bag recorded
    before it existed: current definitions cannot decode its record)."""
    try:
        with Reader(path) as reader:
            definitions = [
                str(c.msgdef.data) for c in reader.connections if c.msgtype == EPISODE_INFO_TYPE
            ]
    except Exception:  # unreadable: the caller reports the original error
        return False
    main = [d.split("\n=====", 1)[0] for d in definitions]  # without the dependencies
    return bool(main) and not any("closed_by" in d for d in main)


def _split_namespace(topic: str, suffix: str) -> str | None:
    """'/cell0/episode_info', 'episode_info' -> '/cell0'; None when the topic is not it."""
    if topic == "/" + suffix or topic == suffix:
        return ""
    if topic.endswith("/" + suffix):
        return topic[: -len(suffix) - 1]
    return None


@dataclass
class _Collected:
    """What one pass over a bag keeps: bounded memory (only the last frame of each camera)."""

    infos: list[BagMessage] = field(default_factory=list)
    steps: dict[str, list[BagMessage]] = field(default_factory=dict)
    observations: dict[str, list[BagMessage]] = field(default_factory=dict)
    last_by_topic: dict[str, BagMessage] = field(default_factory=dict)


def _collect(path: Path) -> _Collected:
    out = _Collected()
    for m in read_bag_messages(path):
        if m.msgtype == EPISODE_INFO_TYPE:
            out.infos.append(m)
        elif m.msgtype == POLICY_STEP_TYPE:
            out.steps.setdefault(m.topic, []).append(m)
        elif (
            m.msgtype == IMAGE_TYPE and _split_namespace(m.topic, "policy/observation") is not None
        ):
            out.observations.setdefault(m.topic, []).append(m)
        elif m.msgtype in (IMAGE_TYPE, GRIPPER_STATE_TYPE):
            out.last_by_topic[m.topic] = m  # messages come in time order: this is the newest
    return out


def _info_summary(info: Any) -> dict[str, Any]:
    return {
        "cell_id": int(info.cell_id),
        "policy_kind": str(info.policy_kind),
        "weights_version": int(info.weights_version),
        "terminated": bool(info.terminated),
        "aborted": bool(info.aborted),
        "abort_reason": str(info.abort_reason),
        "sd_model_version": str(info.sd_model_version),
        "has_oracle": bool(info.has_oracle),
        "closed_by": str(getattr(info, "closed_by", "")),
    }


def _labels_by_name(
    registry: TaskRegistry, names: Sequence[str], values: Sequence[Any], what: str
) -> list[float]:
    """Per-task values indexed like `names` -> registry-ordered floats (NaN = unknown)."""
    values = list(values)
    names = list(names)
    if not names:
        if len(values) != len(registry):
            raise ValueError(
                f"EpisodeInfo.{what} has {len(values)} entries but task_names is empty and the "
                f"registry has {len(registry)} tasks"
            )
        names = list(registry.names)
    if len(names) != len(values):
        raise ValueError(
            f"EpisodeInfo.{what} has {len(values)} entries for {len(names)} task_names"
        )
    by_name = {str(n): float(v) for n, v in zip(names, values, strict=True)}
    return [by_name.get(name, math.nan) for name in registry.names]


def _grade(
    grade: GradeFn, registry: TaskRegistry, images: Mapping[str, np.ndarray]
) -> list[float]:
    try:
        result = grade(images)
    except Exception as exc:
        raise GradingError(f"grade callable failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(result, Mapping):
        return [float(result.get(name, math.nan)) for name in registry.names]
    probs = np.asarray(result, dtype=np.float64).reshape(-1)
    if probs.size != len(registry):
        raise GradingError(
            f"grade callable returned {probs.size} probabilities for {len(registry)} tasks"
        )
    return probs.tolist()


def episode_from_bag(
    bag_dir: Path | str,
    registry: TaskRegistry,
    labels_source: str | GradeFn = "sd",
    *,
    policy_camera: str = "overhead",
    cameras: Sequence[str] = CAMERAS,
    sd_threshold: float = 0.5,
    image_size: int | None = None,
    policy_roi: Sequence[float] = FULL_FRAME,
    accepted_closers: Sequence[str] = DEFAULT_ACCEPTED_CLOSERS,
) -> DecodedEpisode:
    """Decode one episode bag (see the module docstring).

    Args:
        bag_dir: a complete episode bag directory (never `<id>.part`).
        registry: the task registry the labels are mapped onto.
        labels_source: "sd", "oracle" or a `grade(final_images_by_camera)` callable.
        policy_camera: the camera the policy acts on (its last frame is observation T).
        cameras: the cameras whose last frames a `grade` callable gets.
        sd_threshold: P(success) at or above which a task counts as a success.
        image_size: side of the observations [px]; None keeps the size of the recorded
            `policy/observation` images (the policy's `image_size`).
        policy_roi: the policy's region of interest of the camera frame (x0, y0, x1, y1,
            fractions), applied to the final frame as the policy node applies it.
        accepted_closers: fnmatch patterns of the `EpisodeInfo.closed_by` values whose bags
            are used; other bags are skipped.

    Raises EpisodeBagError for a bag that cannot be decoded, GradingError when the grade
    callable fails.
    """
    path = Path(bag_dir)
    if not (isinstance(labels_source, str) and labels_source in LABEL_SOURCES) and not callable(
        labels_source
    ):
        raise ValueError(
            f"labels_source must be one of {LABEL_SOURCES} or a grade callable, got "
            f"{labels_source!r}"
        )
    check_roi(policy_roi, "policy_roi")  # a bad setting is no problem of the bag
    problem = accepted_closers_problem(accepted_closers)
    if problem:  # a bad setting is no problem of the bag
        raise ValueError(f"accepted_closers {problem}")
    try:
        collected = _collect(path)  # EpisodeBagError for unreadable / truncated bags
    except EpisodeBagError:
        if not _info_has_no_closed_by(path):
            raise
        reason = f"{NOT_ACCEPTED}: its EpisodeInfo has no closed_by (recorded before it existed)"
        return DecodedEpisode(path, path.name, "", "", 0, skip_reason=reason)
    try:
        return _decode(
            path, registry, collected, labels_source, policy_camera, cameras, sd_threshold,
            image_size, policy_roi, accepted_closers,
        )  # fmt: skip
    except (EpisodeBagError, GradingError):
        raise
    except Exception as exc:  # any inconsistency of the recorded data
        reason = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        raise EpisodeBagError(path, reason) from exc


def _decode(
    path: Path,
    registry: TaskRegistry,
    collected: _Collected,
    labels_source: str | GradeFn,
    policy_camera: str,
    cameras: Sequence[str],
    sd_threshold: float,
    image_size: int | None,
    policy_roi: Sequence[float] = FULL_FRAME,
    accepted_closers: Sequence[str] = DEFAULT_ACCEPTED_CLOSERS,
) -> DecodedEpisode:
    if not collected.infos:
        raise EpisodeBagError(path, "no EpisodeInfo record (episode_info topic)")
    if len(collected.infos) > 1:
        topics = sorted({m.topic for m in collected.infos})
        raise EpisodeBagError(
            path, f"{len(collected.infos)} EpisodeInfo records ({topics}); expected one"
        )
    info_msg = collected.infos[0]
    ns = _split_namespace(info_msg.topic, "episode_info")
    if ns is None:
        raise EpisodeBagError(path, f"EpisodeInfo on unexpected topic {info_msg.topic}")
    info = info_msg.message
    episode_id = str(info.episode_id) or path.name
    decoded = DecodedEpisode(
        path=path,
        episode_id=episode_id,
        namespace=ns,
        task=str(info.task),
        steps=int(info.steps),
        info=_info_summary(info),
    )
    closer = closer_problem(decoded.info["closed_by"], accepted_closers)
    if closer:
        decoded.skip_reason = closer
        return decoded
    if info.aborted:
        decoded.skip_reason = f"aborted: {info.abort_reason or 'no reason given'}"
        return decoded
    if info.steps == 0:
        decoded.skip_reason = "episode has 0 steps"
        return decoded
    if decoded.task not in registry:
        decoded.skip_reason = f"task {decoded.task!r} is not in the task registry"
        return decoded

    # --- steps and the observations they acted on -------------------------------------------
    step_msgs = collected.steps.get(f"{ns}/policy/step", [])
    obs_msgs = collected.observations.get(f"{ns}/policy/observation", [])
    steps = sorted(step_msgs, key=lambda m: int(m.message.step))
    indices = [int(m.message.step) for m in steps]
    if indices != list(range(len(steps))):
        raise EpisodeBagError(
            path, f"policy/step indices are not 0..{len(steps) - 1} without gaps: {indices}"
        )
    if len(steps) != info.steps:
        raise EpisodeBagError(
            path, f"EpisodeInfo reports {info.steps} steps, the bag has {len(steps)} policy/step"
        )
    if len(obs_msgs) != len(steps):
        raise EpisodeBagError(
            path,
            f"{len(obs_msgs)} policy/observation images for {len(steps)} policy/step messages",
        )
    for m in steps:
        s = m.message
        if s.episode_id and s.episode_id != info.episode_id:
            raise EpisodeBagError(
                path, f"policy/step {s.step} belongs to episode {s.episode_id!r}, not "
                f"{info.episode_id!r}"
            )  # fmt: skip
    # Observation k was published right before step k; both are recorded in receive order.
    obs_msgs = sorted(obs_msgs, key=lambda m: m.timestamp_ns)
    images = [image_to_rgb(m.message, f"policy/observation {k}") for k, m in enumerate(obs_msgs)]
    shape = images[0].shape
    if any(im.shape != shape for im in images):
        raise EpisodeBagError(
            path, f"policy/observation sizes differ: {sorted({im.shape for im in images})}"
        )
    if shape[0] != shape[1]:
        raise EpisodeBagError(path, f"policy/observation images are not square: {shape}")
    size = image_size or shape[0]
    if size != shape[0]:
        images = [square_resize(im, size) for im in images]

    # --- the final observation ----------------------------------------------------------------
    last_step_ns = max(m.timestamp_ns for m in steps)
    camera_topic = f"{ns}/camera/{policy_camera}/image_raw"
    final_frame = collected.last_by_topic.get(camera_topic)
    if final_frame is None or final_frame.timestamp_ns <= last_step_ns:
        raise EpisodeBagError(path, f"no {camera_topic} frame recorded after the last step")
    final_rgb = image_to_rgb(final_frame.message, camera_topic)
    images.append(policy_image(final_rgb, size, policy_roi))
    gripper_topic = f"{ns}/gripper/state"
    final_gripper = collected.last_by_topic.get(gripper_topic)
    if final_gripper is None:
        raise EpisodeBagError(path, f"no {gripper_topic} message (final gripper state)")
    closed = [bool(m.message.gripper_closed) for m in steps] + [bool(final_gripper.message.closed)]
    height = [float(m.message.gripper_height) for m in steps]
    height.append(float(final_gripper.message.height))
    # Bags recorded before PolicyStep had the flag decode as "no object detected".
    detected = [bool(getattr(m.message, "object_detected", False)) for m in steps]
    detected.append(bool(final_gripper.message.object_detected))
    actions = np.asarray([np.asarray(m.message.action, np.float32) for m in steps])

    # --- labels ----------------------------------------------------------------------------------
    if labels_source == "sd":
        if len(info.sd_probabilities) == 0:
            decoded.skip_reason = "not graded by the success detector (labels 'sd')"
            return decoded
        probs = _labels_by_name(registry, info.task_names, info.sd_probabilities,
                                "sd_probabilities")  # fmt: skip
    elif labels_source == "oracle":
        if not info.has_oracle:
            decoded.skip_reason = "no oracle labels (labels 'oracle' needs simulated episodes)"
            return decoded
        oracle = [1.0 if v else 0.0 for v in info.oracle_success]
        probs = _labels_by_name(registry, info.task_names, oracle, "oracle_success")
    else:
        finals: dict[str, np.ndarray] = {}
        for camera in cameras:
            topic = f"{ns}/camera/{camera}/image_raw"
            frame = collected.last_by_topic.get(topic)
            if frame is None:
                raise EpisodeBagError(path, f"no {topic} frame to grade")
            finals[camera] = image_to_rgb(frame.message, topic)
        probs = _grade(labels_source, registry, finals)
    labels = labels_from_probabilities(registry, probs, sd_threshold)

    decoded.episode = Episode(
        images=np.stack(images),
        gripper_closed=np.asarray(closed),
        height=np.asarray(height, np.float32),
        actions=actions,
        task=decoded.task,
        labels=labels,
        episode_id=episode_id,
        object_detected=np.asarray(detected),
    )
    return decoded
