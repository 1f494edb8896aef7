"""Pantheon message and storage contracts (architecture.md section 3).

One module per channel: ``ready`` (RabbitMQ ``ready``/``homing`` bodies), ``robot``
(``robot_arm/job`` and ``robot_arm/status``), ``printer`` (normalised printer states),
``beds`` (plate types and states), ``names`` (queues, topics, collections, ports).
"""

from pantheon_contracts.beds import BedState, BedType
from pantheon_contracts.errors import ContractError
from pantheon_contracts.names import (
    DEAD_LETTER_EXCHANGE,
    HOMING_QUEUE,
    READY_QUEUE,
    ROBOT_JOB_TOPIC,
    ROBOT_STATUS_TOPIC,
    Collections,
    dead_letter_queue,
)
from pantheon_contracts.printer import PrinterModel, PrinterState, from_bambu
from pantheon_contracts.ready import (
    HomingRequest,
    ReadyNotification,
    format_ready_body,
    parse_ready_body,
)
from pantheon_contracts.robot import RobotJob, RobotJobKind, RobotState, RobotStatus

__all__ = [
    "DEAD_LETTER_EXCHANGE",
    "HOMING_QUEUE",
    "READY_QUEUE",
    "ROBOT_JOB_TOPIC",
    "ROBOT_STATUS_TOPIC",
    "BedState",
    "BedType",
    "Collections",
    "ContractError",
    "HomingRequest",
    "PrinterModel",
    "PrinterState",
    "ReadyNotification",
    "RobotJob",
    "RobotJobKind",
    "RobotState",
    "RobotStatus",
    "dead_letter_queue",
    "format_ready_body",
    "from_bambu",
    "parse_ready_body",
]
