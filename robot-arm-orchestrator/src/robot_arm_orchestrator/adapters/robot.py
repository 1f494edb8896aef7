"""The robot bus: publishes jobs on ``robot_arm/job`` (QoS 1, PUBACK awaited) and numbers every
``robot_arm/status`` it receives, so the dispatcher can tell statuses older than a send."""

import logging
import queue
import threading
from dataclasses import dataclass

from pantheon_common.errors import BrokerUnavailable, PublishFailed
from pantheon_common.mqtt import MqttClient, MqttMessage
from pantheon_contracts.errors import ContractError
from pantheon_contracts.names import ROBOT_JOB_TOPIC, ROBOT_QOS, ROBOT_STATUS_TOPIC
from pantheon_contracts.robot import RobotJob, RobotState, RobotStatus

log = logging.getLogger(__name__)


class RobotLinkDown(Exception):
    """The MQTT broker is not connected: nothing was sent."""


class RobotPublishDoubt(Exception):
    """The publish went out but its PUBACK did not come: the job may have been delivered."""


@dataclass(frozen=True)
class StatusEvent:
    """A status with its arrival number (1, 2, ...)."""

    seq: int
    status: RobotStatus


class RobotLink:
    """Wraps one :class:`MqttClient`; statuses are queued for the dispatcher thread."""

    def __init__(self, client: MqttClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._seq = 0
        self._last: RobotStatus | None = None
        self.events: queue.Queue[StatusEvent] = queue.Queue()

    def start(self) -> None:
        """Connect in the background and subscribe to the status topic."""
        self._client.subscribe(ROBOT_STATUS_TOPIC, self._on_status, qos=ROBOT_QOS)
        self._client.start()

    def ensure_subscribed(self, wait_s: float = 5.0) -> None:
        """Subscribe again and wait for the SUBACK, so no status of the next job is missed
        (the first subscription is made from paho's connect callback without waiting)."""
        self._client.subscribe(ROBOT_STATUS_TOPIC, self._on_status, qos=ROBOT_QOS, wait_s=wait_s)

    def stop(self) -> None:
        """Disconnect."""
        self._client.stop()

    @property
    def connected(self) -> bool:
        """True while the broker is connected."""
        return self._client.connected

    @property
    def last_seq(self) -> int:
        """Number of the newest status received so far."""
        with self._lock:
            return self._seq

    @property
    def last_status(self) -> RobotStatus | None:
        """The newest status received (None before the first)."""
        with self._lock:
            return self._last

    @property
    def last_state(self) -> RobotState | None:
        """The newest status as a state (None before the first)."""
        last = self.last_status
        return None if last is None else last.state

    def _on_status(self, message: MqttMessage) -> None:
        try:
            status = RobotStatus.parse(message.payload)
        except ContractError as err:
            log.warning("ignoring a malformed robot status %r: %s", message.payload[:200], err)
            return
        with self._lock:
            self._seq += 1
            self._last = status
            event = StatusEvent(self._seq, status)
        self.events.put(event)

    def publish(self, job: RobotJob, timeout_s: float) -> None:
        """Publish ``job`` at QoS 1 and wait for the broker's PUBACK.

        :class:`RobotLinkDown`: not connected, nothing sent. :class:`RobotPublishDoubt`: it may
        have gone out (no PUBACK in time).
        """
        try:
            self._client.publish(ROBOT_JOB_TOPIC, job.to_json(), qos=ROBOT_QOS, timeout_s=timeout_s)
        except BrokerUnavailable as err:
            raise RobotLinkDown(str(err)) from err
        except PublishFailed as err:
            raise RobotPublishDoubt(str(err)) from err
