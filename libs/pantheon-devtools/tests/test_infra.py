"""The harness against the real servers: fixtures, isolation, persistence and recovery."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import paho.mqtt.client as mqtt
import pika
import pika.exceptions
import pymongo
import pymysql
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pantheon_devtools import infra as infra_mod
from pantheon_devtools import infra_cli
from pantheon_devtools.infra import Endpoints, InfraError, default_run_dir, ensure_infra
from pantheon_devtools.pytest_plugin import MongoTestDb

# --------------------------------------------------------------------------- helpers


def _poll(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _mysql_connect(url: str) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    parts = urlsplit(url)
    database = parts.path.lstrip("/") or None
    return pymysql.connect(
        host=parts.hostname or "",
        port=parts.port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=10,
    )


class _Subscriber:
    """A paho 2.x client collecting the messages of one subscription."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._subscribed = threading.Event()
        self._received = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._topic = topic
        self.client.connect(host, port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise AssertionError(f"no SUBACK for {topic}")

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        assert not rc.is_failure, rc
        client.subscribe(self._topic, qos=1)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, _rc: list[ReasonCode], _p: object
    ) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._received:
            self.messages.append(message)
            self._received.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        with self._received:
            self._received.wait_for(lambda: len(self.messages) >= count, timeout)
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(host: str, port: int, topic: str, payload: bytes, *, retain: bool = False) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(host, port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def _mqtt_answers(host: str, port: int) -> bool:
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda _c, _u, _f, rc, _p: connected.set() if not rc.is_failure else None
    try:
        client.connect(host, port, keepalive=5)
    except OSError:
        return False
    client.loop_start()
    try:
        return connected.wait(5)
    finally:
        client.disconnect()
        client.loop_stop()


def _amqp_answers(url: str) -> bool:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPError:
        return False
    connection.close()
    return True


def _mongo_answers(url: str) -> bool:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=3000
    )
    try:
        return client.admin.command("ping").get("ok") == 1
    finally:
        client.close()


def _port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def _pid_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}


def _kill9_owned(pid_file: Path) -> int:
    pid = int(pid_file.read_text().strip())
    os.kill(pid, signal.SIGKILL)
    _poll(lambda: _pid_gone(pid), 10, f"pid {pid} to die")
    return pid


# --------------------------------------------------------------------------- the fixtures


def test_infra_env_file_is_private_and_complete(infra: Endpoints) -> None:
    run_dir = default_run_dir()
    env_file = run_dir / infra_mod.ENV_FILE
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(infra_mod.secrets_path(run_dir).stat().st_mode) == 0o600
    lines = env_file.read_text().splitlines()
    assert lines == [f"{key}={value}" for key, value in infra.as_env().items()]
    assert set(infra.as_env()) == {
        "AMQP_URL",
        "RABBITMQ_MANAGEMENT_URL",
        "RABBITMQ_MANAGEMENT_USER",
        "RABBITMQ_MANAGEMENT_PASSWORD",
        "MQTT_HOST",
        "MQTT_PORT",
        "MONGO_URL",
        "MYSQL_URL",
    }
    assert infra.amqp_url.startswith("amqp://pantheon:")
    assert infra.amqp_url.endswith("/%2F")
    assert infra.mysql_url.startswith("mysql+pymysql://pantheon:")
    assert infra.rabbitmq_password not in (run_dir / ".infra.lock").read_text()


def test_tests_using_the_servers_are_marked_integration(
    request: pytest.FixtureRequest, mqtt_prefix: str
) -> None:
    assert request.node.get_closest_marker("integration") is not None
    assert mqtt_prefix.startswith("test/")
    assert mqtt_prefix.endswith("/")


def test_amqp_url_publishes_and_consumes_on_its_own_vhost(amqp_url: str) -> None:
    assert "/pantheon-test-" in amqp_url
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("ready", durable=True)
        channel.basic_publish(
            "",
            "ready",
            b"14",
            pika.BasicProperties(delivery_mode=2, message_id="print-1", content_type="text/plain"),
            mandatory=True,
        )
        method, properties, body = channel.basic_get("ready", auto_ack=False)
        assert method is not None
        assert body == b"14"
        assert properties.message_id == "print-1"
        channel.basic_ack(method.delivery_tag)
    finally:
        connection.close()


def test_two_vhosts_do_not_see_each_others_queues(amqp_url: str, infra: Endpoints) -> None:
    other = "pantheon-test-other-" + os.urandom(4).hex()
    api = httpx.Client(
        base_url=infra.rabbitmq_management_url,
        auth=(infra.rabbitmq_user, infra.rabbitmq_password),
        timeout=30,
    )
    api.put(f"/api/vhosts/{other}", json={}).raise_for_status()
    api.put(
        f"/api/permissions/{other}/pantheon", json={"configure": ".*", "write": ".*", "read": ".*"}
    ).raise_for_status()
    try:
        first = pika.BlockingConnection(pika.URLParameters(amqp_url))
        second = pika.BlockingConnection(pika.URLParameters(infra.amqp_url_for_vhost(other)))
        try:
            first.channel().queue_declare("homing", durable=True)
            first.channel().basic_publish("", "homing", b"x")
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
                second.channel().queue_declare("homing", passive=True)
            assert closed.value.reply_code == 404
            declared = second.channel().queue_declare("homing", durable=True)
            assert declared.method.message_count == 0
        finally:
            first.close()
            second.close()
        vhost = unquote(amqp_url.rsplit("/", 1)[1])
        queues = api.get(f"/api/queues/{quote(vhost, safe='')}").json()
        assert [q["name"] for q in queues] == ["homing"]
    finally:
        api.delete(f"/api/vhosts/{other}")
        api.close()


def test_mongo_db_inserts_and_finds(mongo_db: MongoTestDb) -> None:
    url, name = mongo_db
    assert name.startswith("pantheon_test_")
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=5000
    )
    try:
        printers = client[name]["printers"]
        printers.insert_one({"_id": "14", "state": "IDLE", "row": 1})
        assert printers.find_one({"_id": "14"}) == {"_id": "14", "state": "IDLE", "row": 1}
        assert name in client.list_database_names()
    finally:
        client.close()


def test_mysql_url_creates_tables_and_rows(mysql_url: str) -> None:
    assert mysql_url.startswith("mysql+pymysql://pantheon:")
    assert mysql_url.endswith("?charset=utf8mb4")
    database = urlsplit(mysql_url).path.lstrip("/")
    assert database.startswith("pantheon_test_")
    with _mysql_connect(mysql_url.split("?", 1)[0]) as connection, connection.cursor() as cur:
        cur.execute(
            "CREATE TABLE intervals (id INT PRIMARY KEY AUTO_INCREMENT, "
            "printer VARCHAR(8) NOT NULL, note VARCHAR(32)) CHARACTER SET utf8mb4"
        )
        cur.execute(
            "INSERT INTO intervals (printer, note) VALUES (%s, %s)", ("14", "ok \U0001f600")
        )
        cur.execute("SELECT printer, note FROM intervals")
        assert cur.fetchall() == (("14", "ok \U0001f600"),)
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (database,)


def test_mqtt_pub_sub_under_the_prefix(
    mqtt_endpoint: tuple[str, int], mqtt_prefix: str, infra: Endpoints
) -> None:
    host, port = mqtt_endpoint
    assert (host, port) == (infra.mqtt_host, infra.mqtt_port)
    subscriber = _Subscriber(host, port, mqtt_prefix + "#")
    try:
        _publish(host, port, mqtt_prefix + "robot_arm/status", b'{"status": "available"}')
        messages = subscriber.wait_for(1)
        assert [(m.topic, m.payload) for m in messages] == [
            (mqtt_prefix + "robot_arm/status", b'{"status": "available"}')
        ]
    finally:
        subscriber.close()


# --------------------------------------------------------------------------- Mosquitto persistence


def test_render_mosquitto_conf_rewrites_only_local_lines(tmp_path: Path) -> None:
    template = (infra_mod.find_repo_root() / "infra/mosquitto/mosquitto.conf").read_text()
    rendered = infra_mod.render_mosquitto_conf(template, tmp_path, 12345).splitlines()
    assert "listener 12345 127.0.0.1" in rendered
    assert f"persistence_location {tmp_path}/mosquitto/data/" in rendered
    assert f"log_dest file {tmp_path}/mosquitto/mosquitto.log" in rendered
    assert f"pid_file {tmp_path}/mosquitto/mosquitto.pid" in rendered
    assert f"user {pwd.getpwuid(os.geteuid()).pw_name}" in rendered  # no drop to `mosquitto`
    assert not any(line.startswith(("listener 1883", "log_dest stdout")) for line in rendered)
    assert "/mosquitto/data/" not in "\n".join(
        line for line in rendered if not line.startswith("persistence_location")
    ).replace(str(tmp_path), "")
    with pytest.raises(InfraError, match="listener 1883"):
        infra_mod.render_mosquitto_conf("persistence true\n", tmp_path, 1)


def test_owned_mosquitto_persists_on_every_change(infra: Endpoints) -> None:
    paths = infra_mod.mosquitto_paths(default_run_dir())
    conf = paths["conf"].read_text().splitlines()
    for line in (
        "persistence true",
        "autosave_on_changes true",
        "autosave_interval 1",
        f"listener {infra.mqtt_port} 127.0.0.1",
        f"persistence_location {paths['data']}/",
    ):
        assert line in conf


def test_retained_message_survives_kill_9(infra: Endpoints, mqtt_prefix: str) -> None:
    paths = infra_mod.mosquitto_paths(default_run_dir())
    host, port = infra.mqtt_host, infra.mqtt_port
    topic = mqtt_prefix + "robot_arm/status"
    db_file = paths["data"] / "mosquitto.db"
    payload = b'{"status": "busy", "nonce": "' + os.urandom(6).hex().encode() + b'"}'

    _publish(host, port, topic, payload, retain=True)
    # Saved on the change itself, not at shutdown nor after the default 1800 s.
    _poll(
        lambda: db_file.exists() and payload in db_file.read_bytes(),
        5,
        "mosquitto to save the retained message to its database",
    )
    old_pid = _kill9_owned(paths["pid"])

    ensure_infra()
    assert int(paths["pid"].read_text()) != old_pid
    subscriber = _Subscriber(host, port, topic)
    try:
        messages = subscriber.wait_for(1)
        assert [(m.payload, m.retain) for m in messages] == [(payload, True)]
    finally:
        subscriber.close()
        _publish(host, port, topic, b"", retain=True)  # clear the retained message


# --------------------------------------------------------------------------- CLI


def test_cli_status_env_and_down_up(infra: Endpoints, capsys: pytest.CaptureFixture[str]) -> None:
    assert infra_cli.main(["status"]) == 0
    assert "mosquitto" in capsys.readouterr().out

    assert infra_cli.main(["-q", "env", "--plain"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{key}={value}" for key, value in infra.as_env().items()
    ]

    assert infra_cli.main(["down"]) == 0
    assert "mosquitto (pid" in capsys.readouterr().out
    assert infra_cli.main(["status"]) == 3
    capsys.readouterr()

    assert infra_cli.main(["-q", "up"]) == 0
    out = capsys.readouterr().out
    assert "http://127.0.0.1:15672" in out or infra.rabbitmq_management_url in out
    assert "secrets.env" in out
    assert _mqtt_answers(infra.mqtt_host, infra.mqtt_port)
    assert _mongo_answers(infra.mongo_url)


def test_servers_left_by_another_checkout_are_replaced(
    infra: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI clones afresh on a machine where a developer's harness may still run: the clone's
    harness replaces that checkout's Mosquitto and nx-27017 instead of failing on the port."""
    main_run_dir = default_run_dir()
    monkeypatch.setenv("PANTHEON_INFRA_SECRETS_FILE", str(infra_mod.secrets_path(main_run_dir)))
    monkeypatch.delenv("MONGO_URL", raising=False)
    # beside the main run dir: mosquitto drops to its own user, which cannot enter pytest's
    # private tmp_path
    other = main_run_dir / "test-other-checkout" / ".run"
    try:
        endpoints = ensure_infra(other, install=False)
        assert (endpoints.mqtt_port, endpoints.mongo_url) == (infra.mqtt_port, infra.mongo_url)
        mosquitto_pid = (other / "mosquitto" / "mosquitto.pid").read_text().strip()
        assert (
            f"{other}/mosquitto/mosquitto.conf"
            in Path(f"/proc/{mosquitto_pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        )
        assert _mqtt_answers(infra.mqtt_host, infra.mqtt_port)
    finally:
        infra_mod.stop_owned(other)
        ensure_infra(main_run_dir, install=False)  # the main checkout takes its ports back
        shutil.rmtree(other.parent, ignore_errors=True)
    assert _mqtt_answers(infra.mqtt_host, infra.mqtt_port)
    assert _mongo_answers(infra.mongo_url)


def test_cli_reports_an_unavailable_server_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_a: object, **_k: object) -> Endpoints:
        raise InfraError("mariadb: did not answer on 127.0.0.1:3306; see /var/log/mysql/error.log")

    monkeypatch.setattr(infra_cli, "ensure_infra", broken)
    assert infra_cli.main(["-q", "up"]) == 1
    err = capsys.readouterr().err
    assert "mariadb: did not answer" in err
    assert "/var/log/mysql/error.log" in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- recovery (last: slow)


def _skip_if_not_disruptive() -> None:
    if os.environ.get("PANTHEON_SKIP_DISRUPTIVE", "") == "1":
        pytest.skip("PANTHEON_SKIP_DISRUPTIVE=1: not stopping the shared system servers")
    if os.geteuid() != 0:
        pytest.skip("needs root to stop the system's RabbitMQ processes")


_ERL_ENV = {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}


def _rabbitmqctl_reaches_node() -> bool:
    ping = subprocess.run(
        ["rabbitmqctl", "ping", "-t", "5"], capture_output=True, timeout=30, env=_ERL_ENV
    )
    return ping.returncode == 0


def _rabbitmq_node_pids() -> list[int]:
    listeners = subprocess.run(["ss", "-Hltnp", "sport = :5672"], capture_output=True, text=True)
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", listeners.stdout)})


def test_node_that_lost_its_epmd_is_reachable_again_after_ensure_infra(infra: Endpoints) -> None:
    """epmd dies under a running node (as when a session's processes are killed): the node
    still serves AMQP, but rabbitmqctl (user setup, stop_app) cannot reach it until it
    registers with a new epmd. ensure_infra waits for that, so the CLI works when it returns."""
    _skip_if_not_disruptive()
    node = _rabbitmq_node_pids()
    subprocess.run(["pkill", "-x", "epmd"], check=True, timeout=30)
    _poll(lambda: _port_closed(4369), 10, "epmd to stop")
    assert _amqp_answers(infra.amqp_url)

    assert ensure_infra() == infra
    assert _rabbitmqctl_reaches_node()
    assert _rabbitmq_node_pids() == node  # re-registered, not restarted


def test_node_the_cli_cannot_reach_is_restarted(
    infra: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the node never registers again, ensure_infra restarts it rather than failing."""
    _skip_if_not_disruptive()
    node = _rabbitmq_node_pids()
    real = infra_mod._cli_reaches_node
    calls: list[str] = []

    def unreachable_once() -> bool:
        calls.append("ping")
        return len(calls) > 1 and real()

    monkeypatch.setattr(infra_mod, "_cli_reaches_node", unreachable_once)

    assert ensure_infra() == infra
    restarted = _rabbitmq_node_pids()
    assert restarted
    assert restarted != node
    assert _amqp_answers(infra.amqp_url)
    assert _rabbitmqctl_reaches_node()


@pytest.fixture
def stopped_servers(infra: Endpoints) -> None:
    """Stop all four servers the way a crash or an operator would."""
    _skip_if_not_disruptive()
    run_dir = default_run_dir()
    _kill9_owned(infra_mod.mosquitto_paths(run_dir)["pid"])
    _kill9_owned(infra_mod.mongo_paths(run_dir)["pid"])

    erl_env = _ERL_ENV
    infra_mod.stop_mariadb()
    subprocess.run(
        ["rabbitmqctl", "stop"],
        check=True,
        capture_output=True,
        timeout=60,
        env=erl_env,
    )
    _poll(lambda: _port_closed(5672) and _port_closed(15672), 30, "rabbitmq to stop")

    # As on a fresh machine: no epmd either (the harness must start it on loopback itself).
    # epmd refuses -kill while the stopping node is still registered: ask until it goes.
    def epmd_gone() -> bool:
        subprocess.run(["epmd", "-kill"], check=False, capture_output=True, timeout=30, env=erl_env)
        return _port_closed(4369)

    _poll(epmd_gone, 20, "epmd to stop")
    assert _port_closed(infra.mqtt_port)
    assert not _mongo_answers_quickly(infra.mongo_url)


def _mongo_answers_quickly(url: str) -> bool:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=300
    )
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()
    return True


def test_ensure_infra_starts_servers_that_were_stopped(stopped_servers: None) -> None:
    started = time.monotonic()
    endpoints = ensure_infra()
    elapsed = time.monotonic() - started
    assert _amqp_answers(endpoints.amqp_url)
    status = httpx.get(
        f"{endpoints.rabbitmq_management_url}/api/whoami",
        auth=(endpoints.rabbitmq_user, endpoints.rabbitmq_password),
        timeout=10,
    )
    assert status.status_code == 200
    with _mysql_connect(endpoints.mysql_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert _mqtt_answers(endpoints.mqtt_host, endpoints.mqtt_port)
    assert _mongo_answers(endpoints.mongo_url)
    epmd = subprocess.run(["ss", "-Hltn", "sport = :4369"], capture_output=True, text=True)
    listeners = {line.split()[3] for line in epmd.stdout.splitlines()}
    assert listeners, "epmd is not listening"
    assert listeners <= {"127.0.0.1:4369", "[::1]:4369"}, listeners  # loopback only
    assert elapsed < 45, f"restarting everything took {elapsed:.1f} s"

    again = time.monotonic()
    assert ensure_infra() == endpoints
    assert time.monotonic() - again < 2.0
