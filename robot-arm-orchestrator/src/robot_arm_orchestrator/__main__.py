"""robot-arm-orchestrator: settings -> adapters -> dispatcher, intake and HTTP API, then run."""

import logging
import sys
import threading

import uvicorn
from prometheus_client import CollectorRegistry

from pantheon_common.amqp import AmqpConsumer
from pantheon_common.errors import ConfigurationError, StoreUnavailable
from pantheon_common.farm import load_layout
from pantheon_common.log import OutageLog, backoff_delays, configure_logging
from pantheon_common.mongo import mongo_client
from pantheon_common.mqtt import MqttClient
from pantheon_common.settings import load_settings
from pantheon_contracts.names import HOMING_QUEUE, READY_QUEUE
from robot_arm_orchestrator.adapters.robot import RobotLink
from robot_arm_orchestrator.adapters.store import TaskStore
from robot_arm_orchestrator.api.app import SERVICE, create_app
from robot_arm_orchestrator.crash import CrashPoints
from robot_arm_orchestrator.dispatcher import Dispatcher, Metrics
from robot_arm_orchestrator.intake import Intake
from robot_arm_orchestrator.settings import Settings

log = logging.getLogger(SERVICE)


def _wait_for_store(store: TaskStore, stop: threading.Event) -> None:
    """Start-up waits for MongoDB instead of crashing (indexes are created once it answers)."""
    outage = OutageLog(log, "MongoDB")
    delays = backoff_delays()
    while not stop.is_set():
        try:
            store.ensure_indexes()
        except StoreUnavailable as err:
            outage.failure(err)
            stop.wait(next(delays))
            continue
        outage.success()
        return


def main(argv: list[str] | None = None) -> int:
    """Run the orchestrator until SIGTERM/SIGINT."""
    del argv  # configured through the environment only
    try:
        settings = load_settings(Settings)
        layout = load_layout(settings.farm_layout)
    except ConfigurationError as err:
        print(f"robot-arm-orchestrator: {err}", file=sys.stderr)
        return 2
    configure_logging(SERVICE, settings.log_level, settings.log_format)

    registry = CollectorRegistry()
    crash = CrashPoints(settings.orchestrator_crashpoint)
    client = mongo_client(settings.mongo_url, app_name=SERVICE)
    store = TaskStore(client[settings.mongo_db])
    # A persistent session: the statuses the arm publishes while the orchestrator is down are
    # kept by the broker and read after a restart (reconciling a task left sent).
    robot = RobotLink(MqttClient(settings, settings.mqtt_client_id, clean_session=False))
    dispatcher = Dispatcher(store, robot, layout, settings, crash, Metrics(registry))
    intake = Intake(
        store,
        layout,
        crash,
        dispatcher.nudge,
        report_max_age_s=settings.printer_report_max_age_s,
    )
    consumers = [
        AmqpConsumer(
            settings.amqp_url,
            READY_QUEUE,
            intake.handle_ready,
            prefetch=1,
            connection_name=f"{SERVICE}-ready",
        ),
        AmqpConsumer(
            settings.amqp_url,
            HOMING_QUEUE,
            intake.handle_homing,
            prefetch=1,
            connection_name=f"{SERVICE}-homing",
        ),
    ]
    app = create_app(
        store=store,
        dispatcher=dispatcher,
        robot=robot,
        amqp_url=settings.amqp_url,
        service_token=settings.service_token.get_secret_value(),
        registry=registry,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            access_log=False,
        )
    )
    stopping = threading.Event()
    threads: list[threading.Thread] = []

    def start_workers() -> None:
        _wait_for_store(store, stopping)
        if stopping.is_set():
            return
        robot.start()
        threads.append(dispatcher.start_thread())
        dispatcher.recovered.wait()
        for consumer in consumers:
            consumer.start_thread()
        log.info("robot-arm-orchestrator running (echo job_id: %s)", settings.robot_echoes_job_id)

    starter = threading.Thread(target=start_workers, name="start-workers", daemon=True)
    starter.start()
    try:
        server.run()  # handles SIGTERM/SIGINT
    finally:
        stopping.set()
        for consumer in consumers:
            consumer.stop()
        dispatcher.stop()
        for thread in threads:  # the task in flight is recorded before we exit
            thread.join(settings.shutdown_grace_s + 5)
        robot.stop()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
