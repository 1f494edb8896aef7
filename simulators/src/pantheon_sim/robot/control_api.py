"""robot-arm-sim's control HTTP API (FastAPI served by uvicorn in a thread, loopback only)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from pantheon_common.errors import ConfigurationError
from pantheon_sim.robot.ledger import is_violation, read_ledger
from pantheon_sim.robot.settings import Faults
from pantheon_sim.robot.world import InvalidPlacement

if TYPE_CHECKING:
    from pantheon_sim.robot.sim import RobotArmSim


class Placement(BaseModel):
    """Plate per printer (null: empty); every plate not named goes to its home slot."""

    printers: dict[int, int | None] = Field(description='e.g. {"14": 801, "15": null}')


def create_app(sim: RobotArmSim) -> FastAPI:
    """The routes, bound to one simulator."""
    app = FastAPI(title="robot-arm-sim control", version="1")

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """Alive; also says whether the MQTT session is up."""
        return {"status": "ok", "mqtt_connected": sim.mqtt_connected, "ready": sim.ready}

    @app.get("/world")
    def get_world() -> dict[str, Any]:
        """Plates, printers, open doors, busy, current job, arm state, violations (the count
        of refused physically damaging jobs) and violation_log (the latest of them)."""
        return sim.world

    @app.put("/world")
    def put_world(body: Placement) -> dict[str, Any]:
        """Set plate locations (409 while the arm is busy, 422 on impossible placements)."""
        try:
            return sim.set_world(body.printers)
        except InvalidPlacement as err:
            code = 409 if "busy" in str(err) or "moving" in str(err) else 422
            raise HTTPException(status_code=code, detail=str(err)) from err

    @app.get("/ledger")
    def get_ledger(
        event: str | None = None, job_id: str | None = None, violation: bool | None = None
    ) -> list[dict[str, Any]]:
        """Ledger lines, optionally filtered by event (motion, refused, ...), job_id, and
        violation (true: only refusals of physically damaging jobs; false: every other line)."""
        entries = sim.ledger_entries() or read_ledger(sim.settings.robot_sim_ledger)
        return [
            e
            for e in entries
            if (event is None or e.get("event") == event)
            and (job_id is None or e.get("job_id") == job_id)
            and (violation is None or is_violation(e) == violation)
        ]

    @app.get("/faults")
    def get_faults() -> Faults:
        """The scripted faults in force."""
        return sim.faults

    @app.post("/faults")
    def post_faults(changes: dict[str, Any]) -> Faults:
        """Change some scripted faults; fields not given keep their value."""
        try:
            return sim.update_faults(**changes)
        except ValueError as err:  # pydantic's ValidationError is a ValueError
            raise HTTPException(status_code=422, detail=str(err)) from err

    @app.post("/operator/available")
    def operator_available() -> dict[str, Any]:
        """Publish {"status": "available"} by hand, as an operator does; clears a latched error."""
        return sim.operator_available()

    return app


class ControlServer:
    """uvicorn in a daemon thread; ``port=0`` picks a free port (see :attr:`url`)."""

    def __init__(self, sim: RobotArmSim, host: str, port: int) -> None:
        config = uvicorn.Config(
            create_app(sim), host=host, port=port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="robot-control", daemon=True)
        self._host = host
        self.port = port

    def start(self, timeout_s: float = 10.0) -> None:
        """Serve, and return once the socket listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigurationError(
                    f"control API did not start on {self._host}:{self.port} (port in use?)"
                )
            time.sleep(0.01)
        sockets = [s for server in self._server.servers for s in server.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """http://host:port of the API."""
        return f"http://{self._host}:{self.port}"

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for it."""
        self._server.should_exit = True
        self._thread.join(timeout=5)
