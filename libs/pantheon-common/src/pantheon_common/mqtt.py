"""MQTT helper over paho-mqtt 2.x: TLS options, automatic reconnect, QoS 1, confirmed publishes.

Subscriptions are remembered and renewed on every (re)connect, since the broker may have lost
the session. Handlers run on paho's network thread: keep them short and never let them raise
(a raising handler is logged and the message is dropped, the client lives on).
"""

import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pantheon_common.errors import BrokerUnavailable, PublishFailed
from pantheon_common.log import OutageLog
from pantheon_common.settings import MqttSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MqttMessage:
    """A received message; ``topic`` is without the configured prefix."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


MessageHandler = Callable[[MqttMessage], None]


class MqttClient:
    """One MQTT connection of a service (MQTT 3.1.1)."""

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        *,
        clean_session: bool = True,
        min_reconnect_s: float = 1.0,
        max_reconnect_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._prefix = settings.mqtt_topic_prefix
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        if settings.mqtt_username:
            password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
            self._client.username_pw_set(settings.mqtt_username, password)
        if settings.mqtt_tls:
            self._configure_tls()
        self._client.reconnect_delay_set(int(min_reconnect_s), int(max_reconnect_s))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._suback_waiters: dict[int, threading.Event] = {}
        self._early_subacks: dict[int, bool] = {}
        self._handlers: dict[str, tuple[int, MessageHandler]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._outage = OutageLog(log, f"MQTT {settings.mqtt_host}:{settings.mqtt_port}")
        self.last_refusal: str | None = None
        """The broker's reason for the last refused CONNECT (e.g. 'Not authorized')."""

    def _configure_tls(self) -> None:
        s = self._settings
        if s.mqtt_tls_insecure:
            self._client.tls_set(cert_reqs=ssl.CERT_NONE, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            self._client.tls_insecure_set(True)
        else:
            self._client.tls_set(
                ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )

    # -- topics --------------------------------------------------------------------------
    def topic(self, name: str) -> str:
        """The wire topic for contract topic ``name`` (adds the configured prefix)."""
        return f"{self._prefix}{name}"

    def _strip(self, wire_topic: str) -> str:
        return (
            wire_topic[len(self._prefix) :] if wire_topic.startswith(self._prefix) else wire_topic
        )

    # -- connection ----------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while the broker has accepted our CONNECT."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background and keep reconnecting; returns at once."""
        s = self._settings
        self._client.connect_async(s.mqtt_host, s.mqtt_port, keepalive=s.mqtt_keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float = 10.0) -> None:
        """Block until connected, or raise :class:`BrokerUnavailable` with the reason."""
        if not self._connected.wait(timeout_s):
            why = f": {self.last_refusal}" if self.last_refusal else ""
            raise BrokerUnavailable(
                f"MQTT broker {self._settings.mqtt_host}:{self._settings.mqtt_port} "
                f"not connected after {timeout_s:.0f} s{why}"
            )

    def stop(self) -> None:
        """Disconnect cleanly and stop the network thread."""
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            self.last_refusal = str(reason)
            self._outage.failure(ConnectionRefusedError(str(reason)))
            return
        self.last_refusal = None
        self._outage.success()
        with self._lock:
            subscriptions = [(self.topic(t), qos) for t, (qos, _) in self._handlers.items()]
        if subscriptions:
            client.subscribe(subscriptions)
        self._connected.set()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and reason.is_failure:
            self._outage.failure(ConnectionError(f"disconnected: {reason}"))

    # -- messages ------------------------------------------------------------------------
    def subscribe(
        self, topic: str, handler: MessageHandler, qos: int = 1, *, wait_s: float = 5.0
    ) -> None:
        """Call ``handler`` for every message on contract topic ``topic`` (wildcards allowed).

        When connected, waits up to ``wait_s`` for the broker's SUBACK, so a message
        published after this returns is delivered. Renewed on every reconnect.
        """
        with self._lock:
            self._handlers[topic] = (qos, handler)
        if not self.connected:
            return
        acked = threading.Event()
        result, mid = self._client.subscribe(self.topic(topic), qos)
        if result != paho.MQTT_ERR_SUCCESS or mid is None:
            return  # not connected after all: on_connect subscribes
        with self._lock:
            # the SUBACK may have arrived on the network thread before we got here
            if self._early_subacks.pop(mid, False):
                acked.set()
            else:
                self._suback_waiters[mid] = acked
        if not acked.wait(wait_s):
            log.warning("no SUBACK for %s within %.0f s", topic, wait_s)
        with self._lock:
            self._suback_waiters.pop(mid, None)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        with self._lock:
            waiter = self._suback_waiters.get(mid)
            if waiter is None:
                self._early_subacks[mid] = True
                # keep the record bounded: mids of subscriptions nobody waits for (on_connect)
                while len(self._early_subacks) > 64:
                    self._early_subacks.pop(next(iter(self._early_subacks)))
        if waiter is not None:
            waiter.set()

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        topic = self._strip(msg.topic)
        with self._lock:
            handlers = [
                h
                for pattern, (_, h) in self._handlers.items()
                if paho.topic_matches_sub(pattern, topic)
            ]
        message = MqttMessage(
            topic=topic, payload=bytes(msg.payload), qos=msg.qos, retain=bool(msg.retain)
        )
        for handler in handlers:
            try:
                handler(message)
            except Exception:
                log.exception("MQTT handler failed on %s; message dropped", topic)

    def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        """Publish and, for QoS 1, wait for the broker's PUBACK.

        Raises :class:`BrokerUnavailable` when not connected (nothing is queued behind the
        caller's back: a robot job must never be sent late by a library buffer), and
        :class:`PublishFailed` when the acknowledgement does not come in time.
        """
        if not self.connected:
            raise BrokerUnavailable("MQTT broker not connected; message not sent")
        info = self._client.publish(self.topic(topic), payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(f"MQTT publish failed: {paho.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as err:
            raise PublishFailed(f"MQTT publish to {topic} failed: {err}") from err
        if not info.is_published():
            raise PublishFailed(f"MQTT publish to {topic} not acknowledged in {timeout_s:.0f} s")
