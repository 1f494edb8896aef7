"""Listen on one address, tell clients another name: how bambu-sim serves other containers."""

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pantheon_sim.bambu.__main__ import build_parser, config_from_args
from pantheon_sim.bambu.farm import BambuSimFarm, FarmConfig, SimConfigError, pasv_masquerade
from pantheon_sim.bambu.ftps_client import ImplicitFtpsClient
from pantheon_sim.bambu.printer import SimTiming

ACCESS_CODE = "24681357"
TIMING = SimTiming(speed=900.0, prepare_s=0.4, report_interval_s=0.1, idle_report_interval_s=0.5)


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BambuSimFarm]:
    """Overrides conftest's farm here: listens on 127.0.0.1, advertises `localhost`."""
    config = FarmConfig.for_ids(
        [14],
        data_dir=tmp_path_factory.mktemp("bambu-sim-named"),
        access_code=ACCESS_CODE,
        mqtt_base=None,
        ftps_base=None,
        pasv_base=None,
        listen_host="127.0.0.1",
        advertise_host="localhost",
        timing=TIMING,
        topic_prefix="named/",
        control_port=None,
    )
    with BambuSimFarm(config) as farm:
        yield farm


@pytest.mark.integration
def test_clients_reach_mqtt_and_ftps_through_the_advertised_name(
    farm: BambuSimFarm,
    connect: Callable[..., Any],
    ftps: Callable[[int], ImplicitFtpsClient],
) -> None:
    endpoints = json.loads((farm.data_dir / "endpoints.json").read_text())
    assert endpoints["14"]["host"] == "localhost"
    assert farm.endpoint(14).host == "localhost"
    assert farm.printer(14)["listen_host"] == "127.0.0.1"

    # conftest's clients connect to endpoint(14).host: MQTT over TLS, CN = serial checked.
    client = connect(14)
    assert client.connack == ["Success"]
    assert client.pushall()["gcode_state"] == "IDLE"

    f = ftps(14)
    assert f.host == "localhost"
    assert f.upload(b"G28\n" * 100, "named.gcode") == 400
    # The 227 reply names the control connection's local address, which the client reached.
    reply = f.sendcmd("PASV")
    found = re.search(r"\((\d+),(\d+),(\d+),(\d+),\d+,\d+\)", reply)
    assert found is not None, reply
    assert ".".join(found.groups()) == f.sock.getpeername()[0]
    assert (farm.storage_dir(14) / "named.gcode").read_bytes() == b"G28\n" * 100


def test_passive_replies_are_masqueraded_only_for_an_advertised_ipv4_address() -> None:
    assert pasv_masquerade("0.0.0.0", None) is None  # noqa: S104
    assert pasv_masquerade("0.0.0.0", "bambu-sim") is None  # noqa: S104
    assert pasv_masquerade("127.0.0.1", "127.0.0.1") is None
    assert pasv_masquerade("0.0.0.0", "192.168.1.20") == "192.168.1.20"  # noqa: S104
    assert pasv_masquerade("0.0.0.0", "fd00::1") is None  # noqa: S104


def test_cli_passes_listen_and_advertise_hosts_for_bind_ports(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            *("--printers", "14", "--bind", "ports", "--access-code", ACCESS_CODE),
            *("--listen-host", "0.0.0.0", "--advertise-host", "bambu-sim"),  # noqa: S104
            *("--data-dir", str(tmp_path)),
        ]
    )
    spec = config_from_args(args).printers[0]
    assert (spec.host, spec.client_host) == ("0.0.0.0", "bambu-sim")  # noqa: S104
    default = config_from_args(
        build_parser().parse_args(["--printers", "14", "--access-code", ACCESS_CODE])
    ).printers[0]
    assert (default.host, default.client_host) == ("127.0.0.1", "127.0.0.1")


def test_cli_refuses_listen_host_with_bind_layout(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            *("--printers", "14", "--bind", "layout", "--access-code", ACCESS_CODE),
            *("--advertise-host", "bambu-sim", "--data-dir", str(tmp_path)),
        ]
    )
    with pytest.raises(SimConfigError, match="--bind ports"):
        config_from_args(args)
