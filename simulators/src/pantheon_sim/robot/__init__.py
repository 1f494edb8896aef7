"""robot-arm-sim: the simulated plate-swapping robot arm (MQTT robot bus, motion ledger)."""

from pantheon_sim.robot.settings import Faults, RobotSimSettings
from pantheon_sim.robot.sim import RobotArmSim
from pantheon_sim.robot.world import (
    Motion,
    PrinterSeen,
    PrinterUnseen,
    Refusal,
    Violation,
    World,
)

__all__ = [
    "Faults",
    "Motion",
    "PrinterSeen",
    "PrinterUnseen",
    "Refusal",
    "RobotArmSim",
    "RobotSimSettings",
    "Violation",
    "World",
]
