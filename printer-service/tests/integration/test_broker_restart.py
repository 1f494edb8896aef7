"""RabbitMQ stopped while a print finishes: the ``ready`` message is delivered once afterwards.

Stops the system broker with ``rabbitmqctl stop_app`` and starts it again in a ``finally``,
waiting until AMQP and the management API answer (other tests' vhosts survive: stop_app keeps
the node's data).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pika
import pika.exceptions
import pymongo
import pytest

from pantheon_contracts.printer import PrinterModel
from pantheon_devtools.infra import Endpoints

from .conftest import RuntimeFactory, SimFactory, queue_job, seed_printer, wait_for

pytestmark = pytest.mark.broker_restart


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def _amqp_answers(url: str) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError:
        return False
    return True


@pytest.fixture
def broker_control(infra: Endpoints, amqp_url: str) -> Iterator[dict[str, bool]]:
    """Lets the test stop the broker; whatever happens, it runs and answers afterwards."""
    state = {"stopped": False}
    try:
        yield state
    finally:
        if state["stopped"]:
            _rabbitmqctl("start_app")
            _rabbitmqctl("await_startup")
            deadline = time.monotonic() + 60
            while not _amqp_answers(amqp_url) and time.monotonic() < deadline:
                time.sleep(0.5)


def _drain(url: str) -> list[tuple[Any, bytes]]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        out = []
        while True:
            method, props, body = channel.basic_get("ready", auto_ack=True)
            if method is None:
                return out
            out.append((props, body))
    finally:
        connection.close()


def test_ready_survives_a_broker_outage_during_finish(
    sim_farm: SimFactory,
    service_factory: RuntimeFactory,
    db: pymongo.database.Database[dict[str, Any]],
    amqp_url: str,
    broker_control: dict[str, bool],
) -> None:
    farm = sim_farm([14])
    seed_printer(db, 14, PrinterModel.P1S, 801)
    runtime = service_factory(farm, 14, start=False)
    runtime.sender._poll_s = 0.5  # look often; backoff is what is under test
    runtime.sender._backoff_max_s = 1.0
    runtime.start()
    wait_for(lambda: runtime.service.driver.snapshot().online, 10, "printer connected")

    broker_control["stopped"] = True
    _rabbitmqctl("stop_app")
    queue_job(db, "job-1", printer_id=14)
    entry = wait_for(lambda: db.outbox.find_one({"attempts": {"$gte": 1}}), 40, "a failed publish")
    assert entry["sent_at"] is None
    assert runtime.sender.broker_down

    _rabbitmqctl("start_app")
    _rabbitmqctl("await_startup")
    broker_control["stopped"] = False
    wait_for(lambda: _amqp_answers(amqp_url), 60, "AMQP answering again")
    wait_for(
        lambda: (db.outbox.find_one({"_id": entry["_id"]}) or {}).get("sent_at"),
        30,
        "the outbox entry sent after the restart",
    )
    messages = _drain(amqp_url)
    assert [(p.message_id, body) for p, body in messages] == [(entry["_id"], b"14")]
    assert messages[0][0].delivery_mode == 2
    assert db.outbox.count_documents({}) == 1
