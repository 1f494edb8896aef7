"""The simulator's control HTTP API (brief: bambu-sim control API), served by uvicorn in a thread.

It is the "outside world" of the printers: the robot simulator or a test says what lies on a
bed, scripts faults, and power-cycles a printer. It is not part of any Bambu protocol.
"""

import logging
import socket
import threading
from typing import Annotated, Any, Protocol

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from pantheon_sim.bambu.printer import FaultSettings, Plate

log = logging.getLogger(__name__)


class FarmControl(Protocol):
    """What the API needs from the farm."""

    @property
    def printer_ids(self) -> list[int]: ...

    def printer(self, printer_id: int) -> dict[str, Any]: ...

    def set_plate(self, printer_id: int, plate: Plate | str, bed_id: int | None = None) -> None: ...

    def set_faults(self, printer_id: int, faults: FaultSettings) -> None: ...
    def set_ams(self, printer_id: int, trays: list[str | None] | None) -> None: ...

    def reboot(self, printer_id: int) -> None: ...

    def violations(self) -> dict[str, Any]: ...


class PlateRequest(BaseModel):
    """What lies on the bed now."""

    model_config = ConfigDict(extra="forbid")

    plate: Plate
    bed_id: int | None = None


class AmsRequest(BaseModel):
    """The AMS unit of a printer: filament type per tray (null = empty); null = no AMS."""

    model_config = ConfigDict(extra="forbid")

    trays: list[Annotated[str, Field(min_length=1, max_length=16)] | None] | None = Field(
        max_length=4
    )


def _farm(request: Request) -> FarmControl:
    farm: FarmControl = request.app.state.farm
    return farm


Farm = Annotated[FarmControl, Depends(_farm)]


def _known(farm: FarmControl, printer_id: int) -> None:
    if printer_id not in farm.printer_ids:
        raise HTTPException(status_code=404, detail=f"no simulated printer {printer_id}")


def create_app(farm: FarmControl) -> FastAPI:
    """The control API over ``farm``."""
    app = FastAPI(title="bambu-sim control API", version="1")
    app.state.farm = farm

    @app.get("/healthz")
    def healthz(farm: Farm) -> dict[str, Any]:
        """Alive, with the simulated printer ids."""
        return {"status": "ok", "printers": farm.printer_ids}

    @app.get("/printers")
    def list_printers(farm: Farm) -> list[dict[str, Any]]:
        """Every printer's simulator state."""
        return [farm.printer(i) for i in farm.printer_ids]

    @app.get("/violations")
    def get_violations(farm: Farm) -> dict[str, Any]:
        """Prints started on a missing or used plate by printers that cannot see their bed:
        ``violations`` (count over every printer since bambu-sim started; reset and reboot
        keep it) and ``violation_log`` (the latest 100, oldest first: time, printer_id,
        category ``print_on_part``/``print_without_plate``, reason, subtask_name)."""
        return farm.violations()

    @app.get("/printers/{printer_id}")
    def get_printer(printer_id: int, farm: Farm) -> dict[str, Any]:
        """State, gcode_state, plate, bed_id, storage files, faults, violations (count and
        the latest 100) of one printer."""
        _known(farm, printer_id)
        return farm.printer(printer_id)

    @app.put("/printers/{printer_id}/plate")
    def put_plate(printer_id: int, body: PlateRequest, farm: Farm) -> dict[str, Any]:
        """The robot (or a test) took the plate out (`none`) or loaded one (`clean`)."""
        _known(farm, printer_id)
        if body.plate is Plate.NONE and body.bed_id is not None:
            raise HTTPException(status_code=422, detail="plate 'none' takes no bed_id")
        farm.set_plate(printer_id, body.plate, body.bed_id)
        return farm.printer(printer_id)

    @app.put("/printers/{printer_id}/ams")
    def put_ams(printer_id: int, body: AmsRequest, farm: Farm) -> dict[str, Any]:
        """Fit an AMS unit with these trays (filament type, null for empty), or remove it
        (``trays: null``). Jobs with ``use_ams`` then feed from the mapped tray."""
        _known(farm, printer_id)
        farm.set_ams(printer_id, body.trays)
        return farm.printer(printer_id)

    @app.post("/printers/{printer_id}/faults")
    def post_faults(printer_id: int, body: FaultSettings, farm: Farm) -> dict[str, Any]:
        """Replace the printer's fault settings (fields left out are off)."""
        _known(farm, printer_id)
        farm.set_faults(printer_id, body)
        return farm.printer(printer_id)

    @app.post("/printers/{printer_id}/reboot")
    def post_reboot(printer_id: int, farm: Farm) -> dict[str, Any]:
        """Power cycle: connections drop, the printer boots to IDLE with no job memory."""
        _known(farm, printer_id)
        farm.reboot(printer_id)
        return farm.printer(printer_id)

    return app


class ControlApiServer:
    """uvicorn serving the control API from a background thread."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="bambu-sim-control", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._sock])

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        event = threading.Event()
        deadline_wait = 0.02
        waited = 0.0
        while not self._server.started and waited < timeout_s and self._thread.is_alive():
            event.wait(deadline_wait)
            waited += deadline_wait
        if not self._server.started:
            raise RuntimeError(f"control API did not start on {self.url}")

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._sock.close()
