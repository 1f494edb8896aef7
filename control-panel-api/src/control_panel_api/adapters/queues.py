"""Purging the work queues through RabbitMQ (pantheon_common.amqp)."""

from __future__ import annotations

from pantheon_common.amqp import purge_queue, queue_depth

__all__ = ["AmqpQueues"]


class AmqpQueues:
    """Purges ``ready``/``homing`` on the broker at ``amqp_url`` (``QueuePurger``)."""

    def __init__(self, amqp_url: str) -> None:
        self._url = amqp_url

    def purge(self, queue: str) -> int:
        """Drop every ready message of ``queue``; raises BrokerUnavailable when unreachable."""
        return purge_queue(self._url, queue)

    def depth(self, queue: str) -> int:
        """Messages ready in ``queue`` (readiness check)."""
        return queue_depth(self._url, queue)
