"""RabbitMQ stopped and started while prints finish (reliability.md F1): nothing lost, nothing
done twice.

Two printers print; while both are printing the system RabbitMQ is stopped
(``rabbitmqctl stop_app``; started again in a ``finally`` and awaited, whatever happens). Both
prints finish during the outage: printer-service keeps their ``ready`` notifications in its
outbox and publishes them once the broker is back; the orchestrator reconnects and swaps each
plate once. Two more jobs queued before the outage print afterwards.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pika
import pika.exceptions
import pytest

from pantheon_devtools.infra import Endpoints

from .conftest import Farm, FarmFactory, FarmPorts, package_and_jobs, wait_until

pytestmark = pytest.mark.broker_restart

PRINTERS = [33, 34]
PORTS = FarmPorts.block(26400, printer_port_base=24000)
ENV = {"TAKE_TIMEOUT_S": "20", "REPLACE_TIMEOUT_S": "20", "DISPATCH_RETRY_S": "2"}


def _rabbitmqctl(*args: str) -> None:
    # ERL_EPMD_ADDRESS: otherwise rabbitmqctl may start an epmd listening on every address
    env = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120, env=env)


def _amqp_answers(url: str) -> bool:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except pika.exceptions.AMQPError:
        return False
    return True


@pytest.fixture
def broker(infra: Endpoints) -> Iterator[dict[str, bool]]:
    """Lets the test stop RabbitMQ; afterwards it runs and answers, whatever happened."""
    state = {"stopped": False}
    try:
        yield state
    finally:
        if state["stopped"]:
            _rabbitmqctl("start_app")
            _rabbitmqctl("await_startup")
            wait_until(lambda: _amqp_answers(infra.amqp_url), 60, "RabbitMQ to answer again")


def _printing(farm: Farm, job_ids: list[str]) -> int:
    jobs = farm.jobs()
    return sum(1 for j in job_ids if jobs[j]["status"] == "printing")


def test_rabbitmq_restart_loses_and_repeats_nothing(
    start_farm: FarmFactory, broker: dict[str, bool]
) -> None:
    farm = start_farm(PRINTERS, PORTS, env=ENV)
    jobs = package_and_jobs(farm, 4, ["textured_pei"], minutes=60, model="X1C")
    farm.wait(lambda: _printing(farm, jobs) == 2, 30, "both printers printing")

    broker["stopped"] = True
    _rabbitmqctl("stop_app")
    try:
        # the two prints end while the broker is away (jobs are recorded in MongoDB)
        farm.wait(
            lambda: sum(1 for j in jobs if farm.jobs()[j]["status"] == "finished") == 2,
            30,
            "the two running prints to finish during the outage",
        )
        assert not _amqp_answers(farm.amqp_url)
    finally:
        _rabbitmqctl("start_app")
        _rabbitmqctl("await_startup")
        broker["stopped"] = False
    wait_until(lambda: _amqp_answers(farm.amqp_url), 60, "RabbitMQ answering again")

    decisions = farm.drive_to_completion(jobs, 90)
    farm.assert_each_job_served_once(jobs)
    # the broker outage is no doubt about a motion: nobody had to decide anything
    assert decisions == []
