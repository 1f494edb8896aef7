"""A private OpenSSH server on loopback for tests: own host key, one client key, logged commands.

`start_sshd(base_dir)` starts ``/usr/sbin/sshd`` (installed with apt when missing) on a free
127.0.0.1 port. The client key is authorized with a ``command="..."`` forced command: the script
appends every ``SSH_ORIGINAL_COMMAND`` to ``command_log`` (NUL-separated, byte-exact, read it with
`SshServer.logged_commands`) and then runs it with ``/bin/sh -c`` — or, when ``allowed_commands``
is given, runs only those exact strings and answers 126 to anything else. SFTP requests are
served by ``sftp-server`` starting in ``work_dir`` (no chroot, absolute paths work too).
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "REFUSED_EXIT_STATUS",
    "SSHD_BINARY",
    "SshServer",
    "SshdError",
    "ensure_sshd_installed",
    "process_alive",
    "start_sshd",
]

SSHD_BINARY = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
# Exit status of the forced command for a command outside the allow-list (like "not executable").
REFUSED_EXIT_STATUS = 126


class SshdError(RuntimeError):
    """The test sshd could not be installed, configured or started."""


@dataclass(frozen=True)
class SshServer:
    """A running test sshd and everything a client needs to reach it."""

    host: str
    port: int
    user: str
    client_key: Path
    """Private ed25519 key (OpenSSH format, no passphrase) authorized for ``user``."""
    known_hosts: Path
    """known_hosts file holding exactly this server's host key (``[host]:port`` entry)."""
    host_public_key: str
    """The host key as ``ssh-ed25519 AAAA...``."""
    command_log: Path
    """Every command a client asked to run, NUL-separated, in order."""
    work_dir: Path
    """A directory the tests own on the "remote" host; SFTP starts here."""
    base_dir: Path
    pid: int

    def logged_commands(self) -> list[str]:
        """Commands clients asked to run so far (SFTP sessions appear as the subsystem name)."""
        try:
            raw = self.command_log.read_bytes()
        except FileNotFoundError:
            return []
        return [part.decode("utf-8", "surrogateescape") for part in raw.split(b"\0")[:-1]]

    def clear_command_log(self) -> None:
        """Forget the commands logged so far."""
        self.command_log.write_bytes(b"")

    def known_hosts_line(self) -> str:
        """The known_hosts entry of this server."""
        return f"[{self.host}]:{self.port} {self.host_public_key}\n"


def ensure_sshd_installed() -> None:
    """Install Debian's openssh-server when ``/usr/sbin/sshd`` is missing (needs root)."""
    if SSHD_BINARY.exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "openssh-server"],
    ):
        result = subprocess.run(
            args, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode == 0 and SSHD_BINARY.exists():
            return
    raise SshdError(
        f"{SSHD_BINARY} is missing and apt-get could not install openssh-server: "
        f"{result.stderr.strip()[-500:]}"
    )


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    kind, blob, *_ = path.with_suffix(".pub").read_text().split()
    return f"{kind} {blob}"


_FORCED_COMMAND = r"""#!/bin/bash
# Forced command of the test sshd: log what the client asked for, then run it (or refuse it).
log=__LOG__
allow=__ALLOW__
work=__WORK__
cmd="${SSH_ORIGINAL_COMMAND-}"
printf '%s\0' "$cmd" >> "$log"
case "$cmd" in
    internal-sftp | sftp | __SFTP__) exec __SFTP__ -d "$work" ;;
esac
if [[ -n "$allow" ]]; then
    while IFS= read -r -d '' allowed; do
        if [[ "$cmd" == "$allowed" ]]; then exec /bin/sh -c "$cmd"; fi
    done < "$allow"
    echo "test sshd: command not in the allow-list" >&2
    exit __REFUSED__
fi
exec /bin/sh -c "$cmd"
"""


def _quote_sh(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _write_config(
    base: Path, host: str, port: int, user: str, host_key: Path, authorized_keys: Path
) -> Path:
    config = base / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {host}",
                f"HostKey {host_key}",
                f"PidFile {base / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized_keys}",
                f"AllowUsers {user}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                # root may log in with a key only, and only through the forced command
                "PermitRootLogin forced-commands-only",
                "UsePAM no",
                # with "yes": bad ownership or modes for the temporary directories
                "StrictModes no",
                "UseDNS no",
                "PrintMotd no",
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PermitTunnel no",
                "MaxStartups 100:30:200",
                "MaxSessions 50",
                "LogLevel VERBOSE",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    return config


@contextmanager
def start_sshd(
    base_dir: Path,
    *,
    host: str = "127.0.0.1",
    allowed_commands: Iterable[str] | None = None,
) -> Iterator[SshServer]:
    """Run a private sshd under ``base_dir`` until the block exits (then stop it)."""
    ensure_sshd_installed()
    base = base_dir.resolve()  # sshd re-executes itself from / on SIGHUP: absolute paths only
    base.mkdir(parents=True, exist_ok=True)
    work_dir = base / "work"
    work_dir.mkdir(exist_ok=True)
    user = getpass.getuser()
    host_key = base / "host_ed25519"
    client_key = base / "client_ed25519"
    host_public = _keygen(host_key, "pantheon-test-host")
    client_public = _keygen(client_key, "pantheon-test-client")
    command_log = base / "commands.log"
    command_log.write_bytes(b"")
    allow_file = ""
    if allowed_commands is not None:
        allow_path = base / "allowed_commands"
        allow_path.write_bytes(b"".join(c.encode() + b"\0" for c in allowed_commands))
        allow_file = str(allow_path)
    script = base / "forced-command"
    script.write_text(
        _FORCED_COMMAND.replace("__LOG__", _quote_sh(str(command_log)))
        .replace("__ALLOW__", _quote_sh(allow_file))
        .replace("__WORK__", _quote_sh(str(work_dir)))
        .replace("__SFTP__", str(SFTP_SERVER))
        .replace("__REFUSED__", str(REFUSED_EXIT_STATUS))
    )
    script.chmod(0o755)
    authorized_keys = base / "authorized_keys"
    authorized_keys.write_text(
        f'command="{script}",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty '
        f"{client_public}\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation directory

    process_pid = _launch(base, host, user, host_key, authorized_keys)
    port = int((base / "port").read_text())
    known_hosts = base / "known_hosts"
    server = SshServer(
        host=host,
        port=port,
        user=user,
        client_key=client_key,
        known_hosts=known_hosts,
        host_public_key=host_public,
        command_log=command_log,
        work_dir=work_dir,
        base_dir=base,
        pid=process_pid,
    )
    known_hosts.write_text(server.known_hosts_line())
    try:
        yield server
    finally:
        _stop(process_pid)


def _launch(base: Path, host: str, user: str, host_key: Path, authorized_keys: Path) -> int:
    """Start sshd on a free port (retrying if another process grabs it first); return its pid."""
    log = base / "sshd.log"
    pid_file = base / "sshd.pid"
    last_error = ""
    for _attempt in range(5):
        port = _free_port(host)
        config = _write_config(base, host, port, user, host_key, authorized_keys)
        pid_file.unlink(missing_ok=True)
        log.write_text("")
        result = subprocess.run(
            [str(SSHD_BINARY), "-f", str(config), "-E", str(log)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            last_error = (result.stderr + log.read_text()).strip()
            if "Address already in use" in last_error:
                continue
            raise SshdError(f"sshd refused to start: {last_error}")
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if pid_file.exists() and _accepts(host, port):
                (base / "port").write_text(str(port))
                return int(pid_file.read_text().strip())
            time.sleep(0.02)
        last_error = log.read_text().strip()
        if pid_file.exists():
            _stop(int(pid_file.read_text().strip()))
        if "Address already in use" not in last_error:
            break
    raise SshdError(f"sshd did not start listening: {last_error}")


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _stop(pid: int) -> None:
    """SIGTERM the listening daemon and wait until it is gone (SIGKILL after a timeout)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        # a zombie child still "exists"; the daemon is not our child, so this is the real state
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
