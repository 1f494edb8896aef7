"""Channel and storage names fixed by architecture.md section 3 (real devices use them)."""

from typing import Final

# RabbitMQ (architecture.md 3.1)
READY_QUEUE: Final = "ready"
"""Durable queue: body is the finished printer's id as ASCII decimal."""
HOMING_QUEUE: Final = "homing"
"""Durable queue: any body asks for one homing task."""
DEAD_LETTER_EXCHANGE: Final = "pantheon.dlx"
"""Direct exchange receiving rejected messages; routing key is the source queue name."""
DEAD_LETTER_SUFFIX: Final = ".dlq"
"""Dead-letter queue of queue ``q`` is ``q + DEAD_LETTER_SUFFIX`` (``ready.dlq``)."""
DEAD_LETTER_REASON_HEADER: Final = "x-pantheon-reason"
"""AMQP header carrying why a message was dead-lettered."""


def dead_letter_queue(queue: str) -> str:
    """Name of the dead-letter queue that belongs to ``queue``."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


# MQTT robot bus (architecture.md 3.2)
ROBOT_JOB_TOPIC: Final = "robot_arm/job"
"""QoS 1, not retained: one robot motion job as JSON."""
ROBOT_STATUS_TOPIC: Final = "robot_arm/status"
"""The robot's state as JSON, published on every change."""
ROBOT_QOS: Final = 1

# MongoDB (architecture.md 3.3)
MONGO_DATABASE: Final = "pantheon"


class Collections:
    """MongoDB collection names of database ``pantheon``."""

    PRINTERS: Final = "printers"
    BEDS: Final = "beds"
    GCODE_FILES: Final = "gcode_files"
    JOBS: Final = "jobs"
    ROBOT_TASKS: Final = "robot_tasks"
    USERS: Final = "users"
    API_KEYS: Final = "api_keys"
    RACKS: Final = "racks"
    """Storage racks of the farm layout (seeded with the printers and beds)."""
    PRINTS: Final = "prints"
    """Print history, one document per physical print (store.PrintDoc)."""
    OUTBOX: Final = "outbox"
    """printer-service's durable outbox of ready notifications."""


ALL_COLLECTIONS: Final = (
    Collections.PRINTERS,
    Collections.BEDS,
    Collections.GCODE_FILES,
    Collections.JOBS,
    Collections.ROBOT_TASKS,
    Collections.USERS,
    Collections.API_KEYS,
    Collections.RACKS,
    Collections.PRINTS,
    Collections.OUTBOX,
)

# MySQL (architecture.md 3.4)
MYSQL_DATABASE: Final = "utilization"

# HTTP ports (architecture.md 2)
PRINTER_SERVICE_PORT: Final = 8080
PANTHEON_API_PORT: Final = 9971
PRINTER_UTILIZATION_PORT: Final = 9972
ORCHESTRATOR_PORT: Final = 9973
CONTROL_PANEL_API_PORT: Final = 30000
SLICER_API_PORT: Final = 9980


def printer_service_published_port(printer_id: int) -> int:
    """Host port a printer-service container is published on (printer 14 -> 50014)."""
    return 50000 + printer_id
