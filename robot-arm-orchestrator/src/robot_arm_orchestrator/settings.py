"""Settings of the orchestrator (environment variables = field names in upper case)."""

import hashlib
from datetime import time
from typing import Self

from pydantic import Field, model_validator

from pantheon_common.settings import (
    AmqpSettings,
    FarmSettings,
    MongoSettings,
    MqttSettings,
    ServiceTokenSettings,
)
from pantheon_contracts.names import ORCHESTRATOR_PORT
from pantheon_contracts.robot import RobotJobKind


class Settings(AmqpSettings, MqttSettings, MongoSettings, ServiceTokenSettings, FarmSettings):
    """Everything robot-arm-orchestrator reads; built once in ``main()``."""

    @model_validator(mode="after")
    def _default_client_id(self) -> Self:
        if not self.mqtt_client_id:
            suffix = ""
            if self.mqtt_topic_prefix:
                digest = hashlib.sha1(self.mqtt_topic_prefix.encode(), usedforsecurity=False)
                suffix = "-" + digest.hexdigest()[:10]
            self.mqtt_client_id = f"robot-arm-orchestrator{suffix}"
        return self

    http_host: str = Field(default="0.0.0.0", description="address of the HTTP API")  # noqa: S104
    http_port: int = Field(default=ORCHESTRATOR_PORT, ge=0, le=65535, description="HTTP API port")
    mqtt_client_id: str = Field(
        default="",
        description="MQTT client id (one orchestrator per bus); empty: robot-arm-orchestrator, "
        "plus a hash of MQTT_TOPIC_PREFIX when one is set, so farms under different prefixes on "
        "one broker (tests, benchmarks) do not knock each other off",
    )
    robot_echoes_job_id: bool = Field(
        default=False,
        description="the robot echoes job_id in its statuses (the simulator does; the real "
        "robot does not): correlate by job_id instead of busy -> available transitions",
    )
    robot_confirm_s: float = Field(
        default=2.5,
        ge=0,
        description="echo mode: an 'available' naming the job in flight completes it only "
        "after this many seconds without a status of the arm naming the job as still running "
        "(the arm repeats its status while it moves; keep this above twice its repeat period). "
        "0: the first 'available' naming the job completes it",
    )
    robot_reconcile_s: float = Field(
        default=15.0,
        gt=0,
        description="echo mode, after a restart with a task sent: how long to wait for the "
        "first status of the arm naming its job before holding it for a person",
    )
    printer_report_max_age_s: float = Field(
        default=90.0,
        gt=0,
        description="door interlock: a printer whose last report (printers.last_seen, mirrored "
        "by printer-service at least every 30 s) is older than this is not opened",
    )
    take_timeout_s: float = Field(default=300.0, gt=0, description="a take not done by then: held")
    replace_timeout_s: float = Field(default=300.0, gt=0, description="same for a replace")
    homing_timeout_s: float = Field(default=180.0, gt=0, description="same for a homing")
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="wait for the broker's PUBACK; none by then: held"
    )
    homing_time_utc: time = Field(default=time(21, 0), description="daily homing time, UTC (HH:MM)")
    daily_homing: bool = Field(default=True, description="record the daily homing task")
    plate_poll_s: float = Field(
        default=5.0, gt=0, description="how often waiting replaces look for a clean plate"
    )
    dispatch_poll_s: float = Field(
        default=1.0, gt=0, description="idle dispatcher re-reads the task log this often"
    )
    shutdown_grace_s: float = Field(
        default=50.0, ge=0, description="on SIGTERM, wait this long for a task in flight"
    )
    orchestrator_crashpoint: str = Field(
        default="",
        description="TEST ONLY: SIGKILL this process at a named step (after_record, "
        "after_sent:take, after_done:take, after_sent:replace, ...)",
    )

    def timeout_for(self, kind: RobotJobKind) -> float:
        """How long a task of ``kind`` may take before it is held."""
        return {
            RobotJobKind.TAKE: self.take_timeout_s,
            RobotJobKind.REPLACE: self.replace_timeout_s,
            RobotJobKind.HOMING: self.homing_timeout_s,
        }[kind]
