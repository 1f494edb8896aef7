"""Pytest fixtures that give each test an isolated corner of the real servers.

Load it from a conftest with ``pytest_plugins = ["pantheon_devtools.pytest_plugin"]``.

- ``infra`` (session): `ensure_infra` once per session; skipped when ``PANTHEON_SKIP_INFRA=1``.
- ``amqp_url``: a fresh RabbitMQ virtual host ``pantheon-test-<hex>``, deleted afterwards.
- ``mongo_db``: ``MongoTestDb(url, name)`` for a database ``pantheon_test_<hex>``, dropped after.
- ``mysql_url``: a fresh MariaDB database ``pantheon_test_<hex>``, dropped afterwards.
- ``mqtt_prefix``: a unique topic prefix ``test/<hex>/``; ``mqtt_endpoint`` (session): (host, port).
- ``sshd``: a private OpenSSH server on loopback with its own keys and a command log (not
  marked ``integration``: it shares no server).

Every test that uses one of them is marked ``integration``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import NamedTuple
from urllib.parse import quote

import httpx
import pymongo
import pytest

from pantheon_devtools.infra import Endpoints, InfraError, ensure_infra, scratch_mysql_database
from pantheon_devtools.sshd import SshServer, start_sshd

INFRA_FIXTURES = frozenset(
    {"infra", "amqp_url", "mongo_db", "mysql_url", "mqtt_prefix", "mqtt_endpoint"}
)


class MongoTestDb(NamedTuple):
    """A throw-away MongoDB database: connect to ``url`` and use database ``name``."""

    url: str
    name: str


def _skip_requested() -> bool:
    return os.environ.get("PANTHEON_SKIP_INFRA", "").strip().lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that (directly or indirectly) uses the servers as ``integration``."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & INFRA_FIXTURES:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def infra() -> Endpoints:
    """The real servers, made available once per session (see `ensure_infra`)."""
    if _skip_requested():
        pytest.skip("PANTHEON_SKIP_INFRA=1: integration tests skipped")
    try:
        return ensure_infra()
    except InfraError as exc:
        pytest.fail(f"infrastructure not available: {exc}", pytrace=False)


def _management(infra: Endpoints) -> httpx.Client:
    return httpx.Client(
        base_url=infra.rabbitmq_management_url,
        auth=(infra.rabbitmq_user, infra.rabbitmq_password),
        timeout=30.0,
    )


@pytest.fixture
def amqp_url(infra: Endpoints) -> Iterator[str]:
    """An AMQP URL on a fresh virtual host that only this test sees."""
    vhost = f"pantheon-test-{secrets.token_hex(6)}"
    path = quote(vhost, safe="")
    with _management(infra) as api:
        api.put(f"/api/vhosts/{path}", json={}).raise_for_status()
        api.put(
            f"/api/permissions/{path}/{quote(infra.rabbitmq_user, safe='')}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        try:
            yield infra.amqp_url_for_vhost(vhost)
        finally:
            response = api.delete(f"/api/vhosts/{path}")
            if response.status_code not in (204, 404):
                response.raise_for_status()


@pytest.fixture
def mongo_db(infra: Endpoints) -> Iterator[MongoTestDb]:
    """A fresh database name on the MongoDB-protocol server, dropped afterwards."""
    db = MongoTestDb(url=infra.mongo_url, name=f"pantheon_test_{secrets.token_hex(6)}")
    try:
        yield db
    finally:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            db.url, serverSelectionTimeoutMS=10_000
        )
        try:
            client.drop_database(db.name)
        finally:
            client.close()


@pytest.fixture
def mysql_url(infra: Endpoints) -> Iterator[str]:
    """``mysql+pymysql://...`` URL of a fresh utf8mb4 database, dropped afterwards."""
    with scratch_mysql_database(infra, "pantheon_test") as url:
        yield url


@pytest.fixture
def mqtt_prefix(infra: Endpoints) -> str:
    """A topic prefix (``test/<hex>/``) no other test publishes under."""
    return f"test/{secrets.token_hex(6)}/"


@pytest.fixture(scope="session")
def mqtt_endpoint(infra: Endpoints) -> tuple[str, int]:
    """(host, port) of the harness's own Mosquitto."""
    return infra.mqtt_host, infra.mqtt_port


# ---------------------------------------------------------------- test sshd (sshd.py)


@pytest.fixture
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    """A private OpenSSH server on 127.0.0.1 for this test (see `pantheon_devtools.sshd`).

    Gives host, port, user, client_key, known_hosts, host_public_key, command_log (read with
    ``logged_commands()``) and work_dir (SFTP starts there). Every command is logged, then run.
    For a server shared by a module, use ``start_sshd`` in a fixture of your own.
    """
    with start_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server
