"""SSH to the managed hosts with paramiko: pinned host keys, key login, one connection per host.

Host keys come only from the configured known_hosts file; an unknown or changed key is refused
(``RejectPolicy``, never auto-added). The connection to a host is reused by every request and
re-opened when it has dropped. Commands are allow-listed templates rendered by the domain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping

import paramiko

from control_panel_api.domain.config import HostConfig
from control_panel_api.domain.ports import CommandResult, HostHealth

__all__ = [
    "CommandTimedOut",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "HostUnreachable",
    "KnownHostsUnreadable",
    "SshAuthFailed",
    "SshError",
    "SshHosts",
]

log = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 4 * 1024 * 1024
_RECV_CHUNK = 65536
_STREAM_POLL_S = 1.0
_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)


class SshError(Exception):
    """A host could not be reached or a command could not be run."""

    code = "ssh_error"


class HostUnreachable(SshError):
    """TCP or SSH handshake to the host failed."""

    code = "host_unreachable"


class HostKeyUnknown(SshError):
    """The host's key is not in known_hosts: refused, never added automatically."""

    code = "host_key_unknown"


class KnownHostsUnreadable(HostKeyUnknown):
    """The known_hosts file is missing or unreadable: no host key can be checked."""


class HostKeyMismatch(SshError):
    """The host presented a different key than known_hosts holds (possible impersonation)."""

    code = "host_key_mismatch"


class SshAuthFailed(SshError):
    """The host refused our key (or the key file cannot be read)."""

    code = "ssh_auth_failed"


class CommandTimedOut(SshError):
    """The command did not finish within the host's command timeout."""

    code = "command_timed_out"


class _Host:
    """One host: its settings and its (lazily opened, shared) SSH connection."""

    def __init__(self, name: str, config: HostConfig) -> None:
        self.name = name
        self.config = config
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()
        self._offline = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.config.user}@{self.config.address}:{self.config.port})"

    def transport(self) -> paramiko.Transport:
        """The live transport, connecting first if there is none."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return transport
            if client is not None:
                client.close()
                self._client = None
            try:
                client = self._connect()
            except SshError as err:
                if not self._offline:
                    log.warning("ssh: %s", err)
                    self._offline = True
                raise
            if self._offline:
                log.info("ssh: %s reachable again", self.label)
                self._offline = False
            self._client = client
            transport = client.get_transport()
            if transport is None:  # pragma: no cover - connect() guarantees one
                raise HostUnreachable(f"{self.label}: no transport after connect")
            if self.config.keepalive_s:
                transport.set_keepalive(self.config.keepalive_s)
            return transport

    def drop(self) -> None:
        """Forget the connection (it is re-opened on next use)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _connect(self) -> paramiko.SSHClient:
        config = self.config
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(config.known_hosts))
        except OSError as err:
            raise KnownHostsUnreadable(
                f"{self.label}: known_hosts file {config.known_hosts} cannot be read ({err}); "
                "refusing to connect to a host whose key is not pinned"
            ) from err
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                config.address,
                port=config.port,
                username=config.user,
                key_filename=str(config.key_file),
                timeout=config.connect_timeout_s,
                banner_timeout=config.connect_timeout_s,
                auth_timeout=config.connect_timeout_s,
                channel_timeout=config.connect_timeout_s,
                look_for_keys=False,
                allow_agent=False,
            )
        except paramiko.BadHostKeyException as err:
            client.close()
            raise HostKeyMismatch(
                f"{self.label}: host key CHANGED: got {err.key.get_name()} "
                f"{err.key.fingerprint}, known_hosts {config.known_hosts} expects "
                f"{err.expected_key.fingerprint}; refusing to connect (check the host, then "
                "update known_hosts by hand)"
            ) from err
        except paramiko.AuthenticationException as err:
            client.close()
            raise SshAuthFailed(f"{self.label}: key authentication failed: {err}") from err
        except paramiko.SSHException as err:
            client.close()
            if "not found in known_hosts" in str(err):
                raise HostKeyUnknown(
                    f"{self.label}: host key unknown: the host is not in known_hosts "
                    f"{config.known_hosts}; refusing to connect (add its key after checking "
                    "the fingerprint, e.g. ssh-keyscan on a trusted network)"
                ) from err
            raise HostUnreachable(f"{self.label}: SSH handshake failed: {err}") from err
        except (OSError, EOFError) as err:
            client.close()
            if isinstance(err, FileNotFoundError | PermissionError):
                raise SshAuthFailed(
                    f"{self.label}: private key {config.key_file} cannot be read: {err}"
                ) from err
            raise HostUnreachable(f"{self.label}: unreachable: {err}") from err
        return client

    def open_channel(self) -> paramiko.Channel:
        """A new session channel; reconnects once if the cached connection had dropped.

        Retrying is safe here: no command has been sent yet.
        """
        for attempt in (1, 2):
            transport = self.transport()
            try:
                return transport.open_session(timeout=self.config.connect_timeout_s)
            except _LINK_ERRORS as err:
                self.drop()
                if attempt == 2:
                    raise HostUnreachable(f"{self.label}: cannot open a session: {err}") from err
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self.drop()


class SshHosts:
    """The configured hosts, each with one reused connection (implements ``RemoteHosts``)."""

    def __init__(self, hosts: Mapping[str, HostConfig]) -> None:
        self._hosts = {name: _Host(name, config) for name, config in hosts.items()}

    def _host(self, name: str) -> _Host:
        try:
            return self._hosts[name]
        except KeyError:
            raise SshError(f"no host named {name!r}") from None

    def run(self, host: str, command: str) -> CommandResult:
        """Run one allow-listed command and collect its output within the host's timeout."""
        target = self._host(host)
        timeout_s = target.config.command_timeout_s
        started = time.monotonic()
        deadline = started + timeout_s
        channel = target.open_channel()
        try:
            # The command is a rendered allow-listed template with shlex-quoted parameters.
            channel.exec_command(command)  # nosec B601
            stdout, truncated = _read_until_eof(channel, deadline, target.label, timeout_s)
            stderr = _drain_stderr(channel)
            remaining = max(0.0, deadline - time.monotonic())
            if not channel.status_event.wait(remaining):
                raise CommandTimedOut(f"{target.label}: no exit status within {timeout_s:g} s")
            exit_status = channel.recv_exit_status()
        except _LINK_ERRORS as err:
            target.drop()
            raise HostUnreachable(f"{target.label}: connection lost: {err}") from err
        finally:
            channel.close()
        return CommandResult(
            exit_status=exit_status,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr.decode("utf-8", "replace"),
            duration_s=time.monotonic() - started,
            truncated=truncated,
        )

    def stream(self, host: str, command: str, max_duration_s: float) -> Iterator[str]:
        """Yield output lines as they come, for at most ``max_duration_s`` seconds."""
        target = self._host(host)
        channel = target.open_channel()
        deadline = time.monotonic() + max_duration_s
        return _stream_lines(channel, command, deadline, target)

    def probe(self, host: str) -> HostHealth:
        """Connect or reuse, then time one SSH round trip (a global request, no command)."""
        target = self._host(host)
        config = target.config
        started = time.monotonic()
        try:
            transport = target.transport()
            started = time.monotonic()
            # OpenSSH answers an unknown global request with a failure: a pure round trip.
            transport.global_request("keepalive@openssh.com", wait=True)
            latency_ms = (time.monotonic() - started) * 1000
        except KnownHostsUnreadable as err:  # not even tried
            return HostHealth(host, config.address, config.port, False, False, None, str(err))
        except (HostKeyUnknown, HostKeyMismatch) as err:
            return HostHealth(host, config.address, config.port, True, False, None, str(err))
        except SshAuthFailed as err:
            return HostHealth(host, config.address, config.port, True, True, None, str(err))
        except SshError as err:
            return HostHealth(host, config.address, config.port, False, None, None, str(err))
        except _LINK_ERRORS as err:
            target.drop()
            return HostHealth(host, config.address, config.port, False, None, None, str(err))
        return HostHealth(host, config.address, config.port, True, True, round(latency_ms, 2))

    def close(self) -> None:
        """Close every connection."""
        for host in self._hosts.values():
            host.close()


def _read_until_eof(
    channel: paramiko.Channel, deadline: float, label: str, timeout_s: float
) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CommandTimedOut(f"{label}: command did not finish within {timeout_s:g} s")
        channel.settimeout(remaining)
        try:
            data = channel.recv(_RECV_CHUNK)
        except TimeoutError as err:
            raise CommandTimedOut(
                f"{label}: command did not finish within {timeout_s:g} s"
            ) from err
        if not data:
            return b"".join(chunks), False
        chunks.append(data)
        size += len(data)
        if size > MAX_OUTPUT_BYTES:
            return b"".join(chunks)[-MAX_OUTPUT_BYTES:], True


def _drain_stderr(channel: paramiko.Channel) -> bytes:
    chunks: list[bytes] = []
    while channel.recv_stderr_ready():
        chunks.append(channel.recv_stderr(_RECV_CHUNK))
    return b"".join(chunks)[-MAX_OUTPUT_BYTES:]


def _stream_lines(
    channel: paramiko.Channel, command: str, deadline: float, target: _Host
) -> Iterator[str]:
    try:
        channel.exec_command(command)  # nosec B601 - a rendered allow-listed template
        pending = b""
        while (remaining := deadline - time.monotonic()) > 0:
            channel.settimeout(min(_STREAM_POLL_S, remaining))
            try:
                data = channel.recv(_RECV_CHUNK)
            except TimeoutError:
                continue
            if not data:
                break
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")
    except _LINK_ERRORS as err:
        target.drop()
        log.warning("ssh: follow on %s interrupted: %s", target.label, err)
    finally:
        channel.close()
