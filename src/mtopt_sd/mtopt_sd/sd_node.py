"""`sd_node`: serves `sd/grade` (GradeEpisode) with the multi-task success detector.

    sd_node --ros-args -p checkpoint:=/path/sd.ckpt [-p poll_period_s:=1.0]

Thin ROS glue over `mtopt_sd.grader.Grader`: the service validates the three final images and
answers per-task probabilities with the model version; a timer polls the checkpoint file and
hot-reloads it when it changes, keeping the old model (and logging why) when the new file is
refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from rclpy.node import Node

from mtopt_bridge.node_main import run_node
from mtopt_bridge.params import ConfigError, declare_config, describe_config, parameter_error
from mtopt_core.sd_model import SDCheckpointError
from mtopt_core.tasks import TaskRegistryError, load_task_registry
from mtopt_interfaces.srv import GradeEpisode
from mtopt_sd.grader import Grader, GradeRequestError


@dataclass
class SDNodeConfig:
    """Parameters of the SD node.

    Fields:
        checkpoint: path of the SD checkpoint file (required); watched for changes.
        tasks_file: task registry the checkpoint must match ('' = config/tasks.yaml or
            $MTOPT_TASKS_FILE).
        check_tasks: refuse checkpoints whose task list differs from the registry's.
        poll_period_s: how often the checkpoint file's mtime/size is checked [s].
        num_threads: torch CPU threads for inference.
    """

    checkpoint: str = ""
    tasks_file: str = ""
    check_tasks: bool = True
    poll_period_s: float = 1.0
    num_threads: int = 1

    def validate(self) -> None:
        if not self.checkpoint:
            raise ConfigError("parameter 'checkpoint' must be set to an SD checkpoint file")
        if not self.poll_period_s > 0.0:
            raise ConfigError(f"parameter 'poll_period_s' must be > 0, got {self.poll_period_s}")
        if self.num_threads < 1:
            raise ConfigError(f"parameter 'num_threads' must be >= 1, got {self.num_threads}")


class SDNode(Node):
    """ROS face of `Grader`."""

    def __init__(self, **kwargs):
        super().__init__("sd", **kwargs)
        self.config = declare_config(self, SDNodeConfig)
        torch.set_num_threads(self.config.num_threads)
        expected = None
        if self.config.check_tasks:
            with parameter_error("tasks_file", TaskRegistryError):
                expected = load_task_registry(self.config.tasks_file or None).names
        with parameter_error("checkpoint", SDCheckpointError):
            self.grader = Grader(self.config.checkpoint, expected)
        self.service = self.create_service(GradeEpisode, "sd/grade", self._on_grade)
        self.timer = self.create_timer(self.config.poll_period_s, self._poll)
        self.get_logger().info(
            f"parameters: {describe_config(self.config)}; model {self.grader.version}, "
            f"{self.grader.image_size}px, tasks {list(self.grader.task_names)}; "
            f"serving {self.service.srv_name}"
        )

    def _on_grade(self, request, response):
        try:
            images = [getattr(request, camera) for camera in self.grader.cameras]
            probabilities = self.grader.grade_images(images)
        except (GradeRequestError, AttributeError) as exc:
            response.ok = False
            response.error = str(exc)
            response.model_version = self.grader.version
            self.get_logger().warning(f"rejected grade request: {exc}")
            return response
        response.ok = True
        response.error = ""
        response.task_names = list(self.grader.task_names)
        response.probabilities = probabilities.tolist()
        response.model_version = self.grader.version
        return response

    def _poll(self) -> None:
        event = self.grader.poll()
        if event is None:
            return
        if event.reloaded:
            self.get_logger().info(f"hot-reloaded checkpoint: now {event.version}")
        else:
            self.get_logger().error(
                f"refused new checkpoint, keeping {event.version}: {event.error}"
            )


def main(args: list[str] | None = None) -> int:
    """Run the node until interrupted; exit code 2 when a parameter is invalid (also a
    checkpoint or task registry that cannot be loaded)."""
    return run_node(SDNode, "sd_node", args=args)


if __name__ == "__main__":
    sys.exit(main())
