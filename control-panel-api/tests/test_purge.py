"""Purging the ready and homing queues on a real RabbitMQ (fresh vhost per test)."""

from __future__ import annotations

from pathlib import Path

import pika

from pantheon_common.amqp import declare_queue, queue_depth
from pantheon_common.auth import Role

from .conftest import Rig, build_api


def _fill(url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        declare_queue(channel, queue)
        channel.confirm_delivery()
        for n in range(count):
            channel.basic_publish("", queue, str(11 + n % 20).encode())
    finally:
        connection.close()


def test_purging_a_queue_of_50_reports_50_and_leaves_it_empty(
    amqp_url: str, rig: Rig, tmp_path: Path
) -> None:
    _fill(amqp_url, "ready", 50)
    _fill(amqp_url, "homing", 2)
    assert queue_depth(amqp_url, "ready") == 50
    api = build_api(rig.config, tmp_path / "audit.jsonl", amqp_url)
    try:
        response = api.client.post(
            "/queues/purge", json={"queues": ["ready"]}, headers=api.headers(Role.OPERATOR, "olga")
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"purged": {"ready": 50}}
        assert queue_depth(amqp_url, "ready") == 0
        assert queue_depth(amqp_url, "homing") == 2  # untouched

        both = api.client.post(
            "/queues/purge",
            json={"queues": ["ready", "homing"]},
            headers=api.service_headers,
        )
        assert both.json() == {"purged": {"ready": 0, "homing": 2}}
        records = [(r["user"], r["action"], r["target"], r["purged"]) for r in api.audit.read()]
        assert records == [
            ("olga", "purge", "ready", 50),
            ("service", "purge", "ready", 0),
            ("service", "purge", "homing", 2),
        ]
    finally:
        api.hosts.close()


def test_an_unreachable_broker_answers_503(rig: Rig, tmp_path: Path) -> None:
    api = build_api(rig.config, tmp_path / "audit.jsonl", "amqp://u:p@127.0.0.1:1/%2F")
    response = api.client.post(
        "/queues/purge", json={"queues": ["homing"]}, headers=api.headers(Role.OPERATOR)
    )
    assert response.status_code == 503
    assert response.json()["code"] == "broker_unavailable"
    assert api.audit.read()[0]["outcome"] == "error"
