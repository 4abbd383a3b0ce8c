"""QoS profiles that a publisher and its subscribers must agree on, defined once.

* `WEIGHTS_QOS`: `policy/weights` (learner -> policies). Reliable and transient-local with
  depth 1, so a policy node that starts after the learner published still receives the newest
  `WeightsUpdate`.
* `STATUS_QOS`: `collector/status` (collector -> mtopt-wait-collectors). Latched like the
  weights, so a late watcher sees a collector that is already done.
* `IMAGE_PUBLISH_QOS` / `SENSOR_QOS`: camera images and state streams. Publishers are reliable
  with a short queue, so both reliable subscribers (the logger) and best-effort ones (the
  policy, `SENSOR_QOS`) connect; subscribers that only need the newest sample use `SENSOR_QOS`.
* `STATE_QOS`: controller state feedback (best effort, depth 10).
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

WEIGHTS_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
STATUS_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
IMAGE_PUBLISH_QOS = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
SENSOR_QOS = qos_profile_sensor_data
STATE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
