"""rclpy's MultiThreadedExecutor without its busy loop on queued subscriptions.

rclpy 9.x (ROS 2 Kilted) leaves a subscription out of the wait set from the moment the executor
hands its callback to the thread pool until a worker takes the message. Its event handlers (QoS
incompatible, message lost, matched, ...: rclpy adds two by default) stay in the wait set, and
with rmw_fastrtps they report the waiting sample as a wake-up while none of them is ready. The
wait then returns at once, over and over: the spin thread holds the GIL in that loop and the
workers that would take the sample barely run. Measured on 2 cores (iiwa controller, fake robot
and a client in one process, 100 Hz joint states): one core busy and 5-13 Hz delivered, gaps up
to 1.6 s; with this executor, 100 Hz at half a core. `python -m mtopt_bridge.bench` measures it.

The fix: an event handler of a subscription whose message is being handed to a worker waits
with its subscription, out of the wait set, and comes back when the message is taken.
"""

from __future__ import annotations

import weakref

from rclpy import executors
from rclpy.event_handler import EventHandler

__all__ = ["MultiThreadedExecutor"]


class MultiThreadedExecutor(executors.MultiThreadedExecutor):
    """Drop-in for rclpy.executors.MultiThreadedExecutor (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # event handler -> weak reference to the subscription it belongs to (None: a publisher's)
        self._event_owner = weakref.WeakKeyDictionary()

    def _subscription_of(self, handler: EventHandler):
        if handler not in self._event_owner:
            for node in self.get_nodes():
                for subscription in node.subscriptions:
                    for sub_handler in subscription.event_handlers:
                        self._event_owner[sub_handler] = weakref.ref(subscription)
            self._event_owner.setdefault(handler, lambda: None)
        return self._event_owner[handler]()

    def can_execute(self, entity) -> bool:
        if not super().can_execute(entity):
            return False
        if isinstance(entity, EventHandler):
            subscription = self._subscription_of(entity)
            # _executor_event: rclpy's mark "callback handed out, message not taken yet".
            return subscription is None or not subscription._executor_event
        return True
