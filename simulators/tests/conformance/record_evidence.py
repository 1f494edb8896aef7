"""Record the raw evidence of one whole print on a simulated P1S and X1C.

Regenerate the checked-in files (from the repository root)::

    uv run python -m simulators.tests.conformance.record_evidence

It starts an in-process bambu-sim with one P1S (printer 14) and one X1C (printer 31), and on
each, with the stranger's clients (``stranger.py``): MQTT connect + ``pushall``, FTPS upload
of a ``.gcode.3mf`` (no ``TYPE I``, ``SIZE`` before and after), ``project_file``, then
PREPARE -> RUNNING -> FINISH and a moment more. It writes to ``evidence/``:

* ``<model>-mqtt.jsonl``: every message of the report topic as it arrived, and the requests
  the client published, one JSON object a line: ``t`` (seconds since the session began),
  ``topic``, ``bytes`` (payload size), ``indent4`` (the payload is exactly
  ``json.dumps(payload, indent=4)``: pretty-printed like the firmware) and ``payload``;
* ``<model>-ftps.jsonl``: the FTPS control channel, ``t``, ``dir`` (``>`` sent, ``<``
  received, ``data`` what happened on the data channel) and ``line``; the password redacted;
* ``manifest.json``: the simulator's timing, the printers, the uploaded file.

A job of 10 printer-minutes at speed 150 runs 4 wall seconds after 2 s of PREPARE, with a
report a second, so each file holds a few dozen lines. This is the SIMULATOR's output, not a
real printer's: ``test_evidence.py`` checks it against bambu-lan-protocol.md and compares a
fresh recording with it, so that a drift of the simulator shows.
"""

import contextlib
import ftplib
import hashlib
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Final

from pantheon_contracts.printer import PrinterModel
from pantheon_sim.bambu.farm import BambuSimFarm
from pantheon_sim.bambu.printer import SimTiming

from .simfarm import make_farm, mqtt_client
from .stranger import Json, Transcript, build_3mf, gcode_text, open_ftps, project_file

EVIDENCE_DIR: Final = Path(__file__).parent / "evidence"
PRINTERS: Final = {14: PrinterModel.P1S, 31: PrinterModel.X1C}
TIMING: Final = SimTiming(
    speed=150.0,
    prepare_s=2.0,
    report_interval_s=1.0,
    idle_report_interval_s=5.0,
    cancel_error_s=2.5,
)
JOB_MINUTES: Final = 10
"""The G-code header's ``total estimated time`` of the recorded job."""
FILE_NAME: Final = "evidence_cube.gcode.3mf"


def _package() -> bytes:
    return build_3mf(gcode_text(minutes=JOB_MINUTES, layers=20, crlf=True))


class IncompleteRecording(Exception):
    """The job did not run to FINISH: the recording is no evidence to check in."""


def record_session(
    farm: BambuSimFarm, printer_id: int, *, strict: bool = True
) -> tuple[list[Json], list[Json]]:
    """One whole print on ``printer_id``: the MQTT lines and the FTPS transcript.

    ``strict``: raise :class:`IncompleteRecording` when a step fails (a refused SIZE, a
    refused job, no FINISH); otherwise keep going and return what was seen, so that the
    tests can say which fact a simulator breaks."""
    ep = farm.endpoint(printer_id)
    transcript = Transcript()
    t0 = transcript.t0
    client = mqtt_client(farm, printer_id)
    client.connect()
    try:
        client.pushall()
        data = _package()
        ftp = open_ftps(
            ep.host, ep.ftps_port, ep.access_code, str(ep.ca_file), transcript=transcript
        )
        try:
            with contextlib.suppress(ftplib.error_perm):  # 550: not there yet
                ftp.size(FILE_NAME)
            ftp.upload(FILE_NAME, data)
            try:
                ftp.size(FILE_NAME)
            except ftplib.error_perm as err:
                if strict:
                    raise IncompleteRecording(f"SIZE after the upload: {err}") from err
        finally:
            ftp.quit()
        mark = client.mark()
        seq = client.send("print", "project_file", **project_file(FILE_NAME))
        echo = client.reply(seq, "project_file", timeout=10, start=mark)
        if str(echo.get("result", "")).lower() == "success":
            try:
                client.wait_state("FINISH", timeout=30, start=mark)
            except AssertionError as err:
                if strict:
                    raise IncompleteRecording(f"no FINISH: {err}") from err
        elif strict:
            raise IncompleteRecording(f"project_file refused: {echo.get('reason')!r}")
        time.sleep(1.5)  # the reports after FINISH (sticky, cooling down)
    finally:
        client.close()
    lines: list[tuple[float, Json]] = []
    for item in client.received:
        lines.append(
            (
                item.t,
                {
                    "topic": item.topic,
                    "bytes": len(item.raw),
                    "indent4": item.raw == json.dumps(item.payload, indent=4).encode(),
                    "payload": item.payload,
                },
            )
        )
    for t, topic, payload in client.sent:
        lines.append((t, {"topic": topic, "sent": True, "payload": payload}))
    lines.sort(key=lambda pair: pair[0])
    mqtt = [{"t": round(t - t0, 3), **line} for t, line in lines]
    return mqtt, transcript.lines


def record(out_dir: Path, *, strict: bool = True) -> dict[str, Any]:
    """Record both printers (at the same time) into ``out_dir``; returns the manifest
    (``strict``: see :func:`record_session`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="evidence-") as tmp:
        farm = make_farm(Path(tmp), TIMING, dict(PRINTERS))
        with farm:
            results: dict[int, tuple[list[Json], list[Json]]] = {}
            errors: list[BaseException] = []

            def run(pid: int) -> None:
                try:
                    results[pid] = record_session(farm, pid, strict=strict)
                except BaseException as err:
                    errors.append(err)

            threads = [threading.Thread(target=run, args=(pid,)) for pid in PRINTERS]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
            serials = {pid: farm.endpoint(pid).serial for pid in PRINTERS}
    data = _package()
    for pid, model in PRINTERS.items():
        mqtt, ftps = results[pid]
        _write_jsonl(out_dir / f"{model.value.lower()}-mqtt.jsonl", mqtt)
        _write_jsonl(out_dir / f"{model.value.lower()}-ftps.jsonl", ftps)
    manifest = {
        "source": "bambu-sim (pantheon_sim.bambu), in-process; NOT a real printer",
        "recorded_with": "simulators/tests/conformance/record_evidence.py",
        "printers": {
            model.value: {"printer_id": pid, "serial": serials[pid]}
            for pid, model in PRINTERS.items()
        },
        "timing": {
            "speed": TIMING.speed,
            "prepare_s": TIMING.prepare_s,
            "report_interval_s": TIMING.report_interval_s,
            "idle_report_interval_s": TIMING.idle_report_interval_s,
        },
        "file": {
            "name": FILE_NAME,
            "bytes": len(data),
            "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            "crlf": data.count(b"\r\n"),
            "estimated_minutes": JOB_MINUTES,
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_jsonl(path: Path, lines: list[Json]) -> None:
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))


def main() -> int:
    logging.basicConfig(level=logging.WARNING)  # pyftpdlib logs every session at INFO
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else EVIDENCE_DIR
    record(out)
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"evidence written to {out} ({total // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
