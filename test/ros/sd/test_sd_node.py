"""sd_node as its own process, driven over DDS: grading, rejections, checkpoint hot reload.

The node is started like a deployment would start it
(`sd_node --ros-args -p checkpoint:=...`); the test process is a plain rclpy client.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from mtopt_bridge.image import numpy_to_image
from mtopt_core.atomic_io import atomic_write_bytes
from mtopt_core.sd_model import (
    SDModelConfig,
    SuccessDetector,
    checkpoint_bytes,
    load_checkpoint,
    save_checkpoint,
)
from mtopt_core.tasks import load_task_registry
from mtopt_interfaces.srv import GradeEpisode

pytestmark = pytest.mark.ros

SD_NODE = Path(sys.executable).parent / "sd_node"  # the installed console script
NAMESPACE = "/cell3"
SIZE = 32


def make_model(seed: int) -> SuccessDetector:
    torch.manual_seed(seed)
    cfg = SDModelConfig(
        task_names=load_task_registry().names, image_size=SIZE, channels=(8, 8),
        feature_dim=8, hidden_dim=8,
    )  # fmt: skip
    return SuccessDetector(cfg)


class NodeProcess:
    """sd_node in a subprocess; its output goes to a file so the test can read the log."""

    def __init__(self, log_path: Path, *params: str):
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        args = ["--ros-args", "-r", f"__ns:={NAMESPACE}"]
        for param in params:
            args += ["-p", param]
        self.process = subprocess.Popen(
            [str(SD_NODE), *args], stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process.poll() is None, f"sd_node exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {text!r} in the log:\n{self.log()}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def client():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("sd_test_client", namespace=NAMESPACE, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    cli = node.create_client(GradeEpisode, "sd/grade")
    try:
        yield cli, executor
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def call(cli, executor, images, timeout=10.0):
    request = GradeEpisode.Request(
        overhead=images[0], left_shoulder=images[1], right_shoulder=images[2]
    )
    future = cli.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    assert future.done(), "no answer from sd/grade"
    return future.result()


def views(seed=0, size=SIZE):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(3)]


def test_grade_reject_and_hot_reload(tmp_path, client):
    cli, executor = client
    path = tmp_path / "sd.ckpt"
    model_a = make_model(0)
    save_checkpoint(path, model_a, {"version": "a"})
    version_a = load_checkpoint(path).version
    node = NodeProcess(tmp_path / "node.log", f"checkpoint:={path}", "poll_period_s:=0.2")
    try:
        assert cli.wait_for_service(timeout_sec=30.0), node.log()
        arrays = views()
        images = [numpy_to_image(a, "rgb8") for a in arrays]

        # A good request: the node's probabilities are the model's.
        response = call(cli, executor, images)
        assert response.ok, response.error
        assert response.error == ""
        assert tuple(response.task_names) == load_task_registry().names
        assert response.model_version == version_a
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)[None].float() / 255
        expected = model_a.predict_proba(batch)[0].numpy()
        np.testing.assert_allclose(response.probabilities, expected, rtol=1e-5, atol=1e-6)

        # Malformed requests: wrong size, wrong encoding, a missing view.
        bad = [numpy_to_image(views(size=SIZE * 2)[0], "rgb8"), Image(), images[2]]
        bad[2] = numpy_to_image(arrays[2][:, :, 0], "mono8")
        response = call(cli, executor, bad)
        assert not response.ok
        assert f"view 'overhead' is {2 * SIZE}x{2 * SIZE}" in response.error
        assert "view 'left_shoulder' is missing (empty image)" in response.error
        assert "view 'right_shoulder' has encoding 'mono8'" in response.error
        assert list(response.probabilities) == []

        # Swap in a new checkpoint: the node picks it up.
        model_b = make_model(1)
        save_checkpoint(path, model_b, {"version": "b"})
        version_b = load_checkpoint(path).version
        node.wait_for_log("hot-reloaded checkpoint: now b@")
        response = call(cli, executor, images)
        assert response.ok and response.model_version == version_b
        expected_b = model_b.predict_proba(batch)[0].numpy()
        np.testing.assert_allclose(response.probabilities, expected_b, rtol=1e-5, atol=1e-6)

        # A truncated checkpoint is refused and logged; the node keeps grading with b.
        atomic_write_bytes(path, checkpoint_bytes(make_model(2), {"version": "c"})[:-100])
        node.wait_for_log(f"refused new checkpoint, keeping {version_b}")
        assert "truncated or corrupted" in node.log()
        response = call(cli, executor, images)
        assert response.ok and response.model_version == version_b
    finally:
        code = node.stop()
    assert code == 0, node.log()


def test_refuses_to_start_without_valid_checkpoint(tmp_path):
    # Exit code 2 and one line, as every node reports invalid parameters (run_node).
    node = NodeProcess(tmp_path / "node.log", f"checkpoint:={tmp_path / 'nope.ckpt'}")
    assert node.process.wait(timeout=60) == 2
    node.stop()
    assert "nope.ckpt: file does not exist" in node.log()
    assert "Traceback" not in node.log()
    node = NodeProcess(tmp_path / "node2.log")
    assert node.process.wait(timeout=60) == 2
    node.stop()
    assert "parameter 'checkpoint' must be set" in node.log()
