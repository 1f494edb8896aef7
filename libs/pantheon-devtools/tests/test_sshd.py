"""The test sshd: key login against a pinned host key, logged commands, allow-list, SFTP."""

from __future__ import annotations

import io
from pathlib import Path

import paramiko
import pytest

from pantheon_devtools.sshd import REFUSED_EXIT_STATUS, SshServer, process_alive, start_sshd


def _client(server: SshServer) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        server.host,
        server.port,
        username=server.user,
        key_filename=str(server.client_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=10,
    )
    return client


def _run(client: paramiko.SSHClient, command: str) -> tuple[bytes, int]:
    _stdin, stdout, _stderr = client.exec_command(command, timeout=10)
    return stdout.read(), stdout.channel.recv_exit_status()


def test_commands_are_logged_exactly_then_run(sshd: SshServer) -> None:
    client = _client(sshd)
    try:
        assert _run(client, "printf '%s' \"a\nb\"") == (b"a\nb", 0)
        assert _run(client, "exit 3") == (b"", 3)
    finally:
        client.close()
    assert sshd.logged_commands() == ["printf '%s' \"a\nb\"", "exit 3"]
    sshd.clear_command_log()
    assert sshd.logged_commands() == []


def test_sftp_starts_in_the_work_dir(sshd: SshServer) -> None:
    client = _client(sshd)
    try:
        sftp = client.open_sftp()
        sftp.putfo(io.BytesIO(b"G1 X0"), "part.gcode")
        assert sftp.listdir(".") == ["part.gcode"]
        assert sftp.getfo(str(sshd.work_dir / "part.gcode"), io.BytesIO()) == 5
    finally:
        client.close()
    assert (sshd.work_dir / "part.gcode").read_bytes() == b"G1 X0"


def test_an_unknown_host_key_is_rejected(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    client = paramiko.SSHClient()
    client.load_host_keys(str(empty))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        client.connect(
            sshd.host,
            sshd.port,
            username=sshd.user,
            key_filename=str(sshd.client_key),
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()


def test_allow_list_mode_refuses_other_commands(tmp_path: Path) -> None:
    with start_sshd(tmp_path / "sshd", allowed_commands=["echo ok"]) as server:
        client = _client(server)
        try:
            assert _run(client, "echo ok") == (b"ok\n", 0)
            assert _run(client, "echo ok; touch /tmp/x") == (b"", REFUSED_EXIT_STATUS)
        finally:
            client.close()
        assert server.logged_commands() == ["echo ok", "echo ok; touch /tmp/x"]
        pid = server.pid
    assert not process_alive(pid)
