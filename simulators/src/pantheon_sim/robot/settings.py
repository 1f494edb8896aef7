"""Settings of robot-arm-sim (environment, overridden by command-line flags in ``main()``)."""

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pantheon_common.settings import FarmSettings, MqttSettings


class RobotSimSettings(MqttSettings, FarmSettings):
    """Everything robot-arm-sim needs; env names are the field names in upper case."""

    robot_sim_client_id: str | None = Field(
        default=None,
        description="fixed MQTT client id of the persistent session; default derived from the "
        "topic prefix (robot-arm-sim, or robot-arm-sim-<hash of prefix>)",
    )
    robot_sim_echo_job_id: bool = Field(
        default=True, description="echo job_id (and an error reason) in statuses; off = real robot"
    )
    robot_sim_dedupe_job_id: bool = Field(
        default=True,
        description="a job whose job_id already moved the arm is not executed again; its "
        "outcome status is re-published (reliability.md A3.5)",
    )
    robot_sim_initial_state: Path | None = Field(
        default=None, description='JSON {"printers": {"14": 801, ...}}; default: one plate each'
    )
    robot_sim_world_file: Path | None = Field(
        default=None,
        description="where the physical world is kept across restarts (loaded if it exists)",
    )
    robot_sim_ledger: Path = Field(
        default=Path("robot-arm-ledger.jsonl"), description="motion ledger (JSON lines)"
    )
    robot_sim_wipe_ledger: bool = Field(default=False, description="empty the ledger on start")
    robot_sim_take_s: float = Field(default=20.0, ge=0, description="duration of a take, s")
    robot_sim_replace_s: float = Field(default=20.0, ge=0, description="duration of a replace, s")
    robot_sim_homing_s: float = Field(default=10.0, ge=0, description="duration of homing, s")
    robot_sim_speed: float = Field(default=1.0, gt=0, description="durations are divided by it")
    robot_sim_printer_sim_url: str | None = Field(
        default=None,
        description="bambu-sim control API (e.g. http://127.0.0.1:9990): printer states are "
        "read from it before a take or replace (a print in progress is refused) and it is told "
        "about plates after; unset = no state check, nobody told",
    )
    robot_sim_status_repeat_s: float = Field(
        default=0.0,
        ge=0,
        description="while connected, re-publish the current status every S seconds (busy + "
        "job_id, available + the last job_id, or error); 0 = off",
    )
    robot_sim_control_host: str = Field(default="127.0.0.1", description="control API address")
    robot_sim_control_port: int | None = Field(
        default=9991, ge=0, le=65535, description="control API port; 0 = any free port"
    )

    def client_id(self) -> str:
        """The fixed client id: stable across restarts, distinct per topic prefix."""
        if self.robot_sim_client_id:
            return self.robot_sim_client_id
        if not self.mqtt_topic_prefix:
            return "robot-arm-sim"
        digest = hashlib.sha256(self.mqtt_topic_prefix.encode()).hexdigest()[:12]
        return f"robot-arm-sim-{digest}"


class Faults(BaseModel):
    """Scripted faults; job numbers count job messages received since start (1-based)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error_on_job: int | None = Field(default=None, ge=1, description="job N ends in error")
    error_mode: Literal["refuse", "fail"] = Field(
        default="fail",
        description="refuse: error at once, no motion; fail: the motion starts (ledgered, "
        "busy), stops half-way, the plate goes back and the arm latches in error until an "
        "operator publishes available",
    )
    disconnect_on_job: int | None = Field(
        default=None, ge=1, description="drop the MQTT connection right after accepting job N"
    )
    reconnect_after_s: float = Field(
        default=1.0, ge=0, description="wall seconds before reconnecting after that drop"
    )
    never_available: bool = Field(
        default=False,
        description="motions finish physically but the arm stays busy and never publishes "
        "available until an operator does",
    )
    status_delay_s: float = Field(
        default=0.0, ge=0, description="wall seconds between the end of a motion and `available`"
    )
