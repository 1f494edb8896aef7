"""``bambu-sim`` as a process: starts, writes endpoints.json, serves its API, stops on SIGTERM."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pantheon_sim.bambu.mqtt_endpoint import free_port

pytestmark = pytest.mark.integration


def _mosquittos_under(path: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"mosquitto" in cmdline and str(path).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_cli_starts_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    control = free_port()
    base = free_port() - 14
    env = dict(os.environ, PRINTER_14_ACCESS_CODE="13572468")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pantheon_sim.bambu",
            "--printers",
            "14",
            "--bind",
            "ports",
            "--mqtt-base",
            str(base),
            "--ftps-base",
            str(free_port() - 14),
            "--pasv-base",
            "0",
            "--data-dir",
            str(tmp_path),
            "--control-port",
            str(control),
            "--speed",
            "60",
            "--topic-prefix",
            "cli/",
            "--ams",
            "14:PLA,,PETG",
            "--tls13-hangs",
            "14",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline() if proc.stdout else ""
            if not line:
                break
            lines.append(line)
            if "bambu-sim ready" in line:
                break
        assert any("bambu-sim ready" in x for x in lines), "".join(lines)
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        assert endpoints["14"]["mqtt_port"] == base + 14
        assert endpoints["14"]["serial"] == "01P00A000000014"
        assert (tmp_path / "ca.pem").is_file()
        status = httpx.get(f"http://127.0.0.1:{control}/printers/14", timeout=5).json()
        assert status["gcode_state"] == "IDLE"
        assert status["plate"] == "clean"
        assert status["ams"] == ["PLA", None, "PETG"]
        assert status["tls13_hellos_held"] == 0  # behind the P2S gate
        assert _mosquittos_under(tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
    assert rc == 0
    assert _mosquittos_under(tmp_path) == []


def test_cli_without_access_code_exits_with_a_reason(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRINTER_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pantheon_sim.bambu",
            "--printers",
            "77",
            "--data-dir",
            str(tmp_path),
            "--control-port",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "PRINTER_77_ACCESS_CODE" in done.stderr
