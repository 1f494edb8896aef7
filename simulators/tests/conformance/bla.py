"""``bambulabs_api`` (PyPI ``bambulabs-api``, BambuTools) pointed at a simulated printer.

The library is used as published. What differs from a real printer is only where the
simulator listens, so only that is adapted:

* ``Printer(ip, access_code, serial)`` builds its ``PrinterMQTTClient`` and
  ``PrinterFTPClient`` with the printers' fixed ports (8883, 990); the simulator runs on free
  ports (``--bind ports``). Both clients take a ``port`` argument in their public
  constructors, so the ``Printer``'s two clients are replaced by ones built with the same
  host, access code and serial and the simulator's ports. Nothing else is changed.
* TLS: left as the library does it (``CERT_NONE``, no host name check, any TLS version;
  the simulator, like the printers, answers with TLS 1.2).
* Topics: the library's ``device/<serial>/...`` without a prefix; each simulated printer has
  a broker of its own, so the farms of this suite run with an empty topic prefix.
* Closing: ``Printer.mqtt_stop()`` only stops paho's loop and leaves the TCP connection
  open (the broker would hold the slot until the keepalive runs out, and P1/A1 allow 4
  clients); :meth:`BlaSession.close` also calls the library's paho client's ``disconnect()``.
* Observation: the library's public ``on_message_handler`` hook records every message with
  its arrival time; the tests read the library's own getters and these raw messages.
"""

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from bambulabs_api import Printer, PrinterFTPClient, PrinterMQTTClient

Json = dict[str, Any]


class BlaSession:
    """One ``bambulabs_api.Printer`` talking to one simulated printer."""

    def __init__(
        self, host: str, mqtt_port: int, ftps_port: int, serial: str, access_code: str
    ) -> None:
        self.printer = Printer(host, access_code, serial)
        self.printer.mqtt_client = PrinterMQTTClient(host, access_code, serial, port=mqtt_port)
        self.printer.ftp_client = PrinterFTPClient(host, access_code, port=ftps_port)
        self.received: list[tuple[float, Json]] = []
        self._cond = threading.Condition()
        self.printer.mqtt_client.on_message_handler = self._record

    def _record(self, client: Any, paho_client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        try:
            payload = json.loads(msg.payload)
        except ValueError:
            return
        with self._cond:
            self.received.append((time.monotonic(), payload))
            self._cond.notify_all()

    def connect(self, timeout: float = 10.0) -> "BlaSession":
        """``mqtt_start()`` (not ``connect()``, which also starts the camera stream), then
        wait for the full report the library's own on-connect ``pushall`` brings."""
        self.printer.mqtt_start()  # type: ignore[no-untyped-call]
        self.wait_for(lambda p: p.get("print", {}).get("msg") == 0, timeout)
        return self

    def close(self) -> None:
        client: paho.Client = self.printer.mqtt_client._client
        client.disconnect()
        self.printer.mqtt_stop()  # type: ignore[no-untyped-call]

    def mark(self) -> int:
        with self._cond:
            return len(self.received)

    def wait_for(
        self, predicate: Callable[[Json], bool], timeout: float = 10.0, start: int = 0
    ) -> tuple[float, Json]:
        found: list[tuple[float, Json]] = []

        def check() -> bool:
            for item in self.received[start:]:
                if predicate(item[1]):
                    found.append(item)
                    return True
            return False

        with self._cond:
            if not self._cond.wait_for(check, timeout):
                raise AssertionError(f"no matching message in {timeout} s")
        return found[0]

    def reports(self, start: int = 0) -> list[tuple[float, Json]]:
        """The ``push_status`` messages from index ``start`` on."""
        with self._cond:
            items = list(self.received[start:])
        return [(t, p) for t, p in items if p.get("print", {}).get("command") == "push_status"]
