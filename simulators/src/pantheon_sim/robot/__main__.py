"""``robot-arm-sim``: the simulated robot arm on ``robot_arm/job`` / ``robot_arm/status``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pantheon_common.errors import PantheonError
from pantheon_common.log import configure_logging
from pantheon_common.settings import load_settings
from pantheon_sim.robot.settings import Faults, RobotSimSettings
from pantheon_sim.robot.sim import RobotArmSim

log = logging.getLogger("pantheon_sim.robot")

# flag -> settings field (flags override the environment)
_SETTING_FLAGS = {
    "layout": "farm_layout",
    "mqtt_host": "mqtt_host",
    "mqtt_port": "mqtt_port",
    "topic_prefix": "mqtt_topic_prefix",
    "client_id": "robot_sim_client_id",
    "echo_job_id": "robot_sim_echo_job_id",
    "dedupe_job_id": "robot_sim_dedupe_job_id",
    "initial_state": "robot_sim_initial_state",
    "world_file": "robot_sim_world_file",
    "ledger": "robot_sim_ledger",
    "wipe_ledger": "robot_sim_wipe_ledger",
    "take_s": "robot_sim_take_s",
    "replace_s": "robot_sim_replace_s",
    "homing_s": "robot_sim_homing_s",
    "speed": "robot_sim_speed",
    "printer_sim_url": "robot_sim_printer_sim_url",
    "status_repeat_s": "robot_sim_status_repeat_s",
    "control_host": "robot_sim_control_host",
    "control_port": "robot_sim_control_port",
    "log_level": "log_level",
    "log_format": "log_format",
}
_FAULT_FLAGS = (
    "error_on_job",
    "error_mode",
    "disconnect_on_job",
    "reconnect_after_s",
    "never_available",
    "status_delay_s",
)


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags; every one defaults to the environment / settings default."""
    p = argparse.ArgumentParser(prog="robot-arm-sim", description=__doc__)
    bool_flag = argparse.BooleanOptionalAction
    p.add_argument("--layout", type=Path, help="farm layout YAML (FARM_LAYOUT, farm.yaml)")
    p.add_argument("--mqtt-host", help="broker host (MQTT_HOST)")
    p.add_argument("--mqtt-port", type=int, help="broker port (MQTT_PORT)")
    p.add_argument("--topic-prefix", help="topic prefix (MQTT_TOPIC_PREFIX), for tests")
    p.add_argument("--client-id", help="fixed MQTT client id of the persistent session")
    p.add_argument("--echo-job-id", action=bool_flag, default=None, help="echo job_id (on)")
    p.add_argument("--dedupe-job-id", action=bool_flag, default=None, help="dedupe (on)")
    p.add_argument("--initial-state", type=Path, help='JSON {"printers": {"14": 801}}')
    p.add_argument("--world-file", type=Path, help="keep the plate placement across restarts")
    p.add_argument("--ledger", type=Path, help="motion ledger path (JSON lines)")
    p.add_argument("--wipe-ledger", action="store_true", default=None, help="empty it on start")
    p.add_argument("--take-s", type=float, help="take duration, s (20)")
    p.add_argument("--replace-s", type=float, help="replace duration, s (20)")
    p.add_argument("--homing-s", type=float, help="homing duration, s (10)")
    p.add_argument("--speed", type=float, help="speed factor: durations are divided by it")
    p.add_argument(
        "--printer-sim-url",
        help="bambu-sim control API, e.g. http://127.0.0.1:9990: printer states are read "
        "before each take/replace (a print in progress is refused), plates told after",
    )
    p.add_argument(
        "--status-repeat-s",
        type=float,
        help="re-publish the current status every S seconds while connected (0 = off)",
    )
    p.add_argument("--control-host", help="control API address (127.0.0.1)")
    p.add_argument("--control-port", type=int, help="control API port (9991; 0 = any)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["json", "text"])
    faults = p.add_argument_group("scripted faults (also POST /faults)")
    faults.add_argument("--error-on-job", type=int, help="job N (1-based) ends in error")
    faults.add_argument("--error-mode", choices=["refuse", "fail"], help="how job N errs (fail)")
    faults.add_argument("--disconnect-on-job", type=int, help="drop MQTT while busy with job N")
    faults.add_argument("--reconnect-after-s", type=float, help="reconnect after (1 s)")
    faults.add_argument("--never-available", action="store_true", default=None)
    faults.add_argument("--status-delay-s", type=float, help="delay of `available`, s")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until SIGTERM or SIGINT."""
    args = build_parser().parse_args(argv)
    given = vars(args)
    overrides: dict[str, Any] = {
        field: given[flag] for flag, field in _SETTING_FLAGS.items() if given[flag] is not None
    }
    fault_values = {name: given[name] for name in _FAULT_FLAGS if given[name] is not None}
    try:
        settings = load_settings(RobotSimSettings, **overrides)
        faults = Faults.model_validate(fault_values)
    except (PantheonError, ValueError) as err:
        print(f"robot-arm-sim: {err}", file=sys.stderr)
        return 2
    configure_logging("robot-arm-sim", settings.log_level, settings.log_format)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sim = RobotArmSim(settings, faults=faults)
        sim.start(wait_s=None)
    except PantheonError as err:
        log.error("robot-arm-sim cannot start: %s", err)
        return 1
    log.info(
        "robot-arm-sim running: control %s, ledger %s",
        sim.control_url,
        settings.robot_sim_ledger,
    )
    stop.wait()
    log.info("robot-arm-sim stopping")
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
