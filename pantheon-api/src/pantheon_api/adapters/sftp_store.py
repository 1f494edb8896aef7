"""G-code store on the farm's SFTP server (paramiko), with the host key checked.

The server's host key must be in ``known_hosts`` (RejectPolicy: an unknown or changed key
refuses the connection; nothing is ever added automatically). One SSH connection is kept and
rebuilt when it drops; operations borrow an SFTP channel from a small pool on it (a new one
when all are busy), so a long download does not block other requests and short ones do not pay
for a new channel each time. Writes go to a hidden temp file in the store directory and are
renamed over the target (``posix-rename@openssh.com``), so readers never see a partial file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import posixpath
import secrets
import stat as stat_module
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import paramiko

from pantheon_common.gcode_store import (
    CHUNK_SIZE,
    GcodeExists,
    GcodeFileInfo,
    GcodeNotFound,
    GcodeStoreError,
    GcodeTooLarge,
    iter_chunks,
    validate_gcode_name,
)

__all__ = ["SftpConfig", "SftpGcodeStore"]

log = logging.getLogger(__name__)

_TEMP_SUFFIX = ".part"
_POOL_SIZE = 4


@dataclass(frozen=True, slots=True)
class SftpConfig:
    """How to reach the store."""

    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    root: str = "gcode"
    timeout_s: float = 15.0


def _is_missing(err: OSError) -> bool:
    return isinstance(err, FileNotFoundError) or err.errno == errno.ENOENT


class SftpGcodeStore:
    """`GcodeStore` over SFTP (see module docstring)."""

    def __init__(self, config: SftpConfig) -> None:
        if not config.known_hosts.is_file():
            raise GcodeStoreError(f"SFTP known_hosts file {config.known_hosts} does not exist")
        if not config.key_file.is_file():
            raise GcodeStoreError(f"SFTP key file {config.key_file} does not exist")
        self._config = config
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._root: str | None = None
        self._idle: list[paramiko.SFTPClient] = []

    def __repr__(self) -> str:
        c = self._config
        return f"SftpGcodeStore({c.user}@{c.host}:{c.port}/{c.root})"

    # -- connection ----------------------------------------------------------------------

    def _connect(self) -> paramiko.SSHClient:
        c = self._config
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(c.known_hosts))
        except OSError as err:
            raise GcodeStoreError(f"cannot read {c.known_hosts}: {err}") from err
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                c.host,
                port=c.port,
                username=c.user,
                key_filename=str(c.key_file),
                look_for_keys=False,
                allow_agent=False,
                timeout=c.timeout_s,
                banner_timeout=c.timeout_s,
                auth_timeout=c.timeout_s,
            )
        except (paramiko.SSHException, OSError) as err:
            client.close()
            raise GcodeStoreError(f"cannot connect to SFTP {c.host}:{c.port}: {err}") from err
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(30)
        return client

    def _channel(self) -> paramiko.SFTPClient:
        """An idle SFTP channel, or a new one on the (re)built connection."""
        with self._lock:
            while self._idle:
                sftp = self._idle.pop()
                channel = sftp.get_channel()
                if channel is not None and not channel.closed:
                    return sftp
            client = self._client
            transport = client.get_transport() if client is not None else None
            if client is None or transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                    log.warning("SFTP connection lost; reconnecting")
                client = self._client = self._connect()
            try:
                sftp = client.open_sftp()
            except (paramiko.SSHException, OSError) as err:
                client.close()
                self._client = None
                raise GcodeStoreError(f"cannot open an SFTP channel: {err}") from err
            if self._root is None:
                self._root = self._ensure_root(sftp)
            return sftp

    def _ensure_root(self, sftp: paramiko.SFTPClient) -> str:
        root = self._config.root or "."
        path = ""
        for part in root.split("/"):
            if not part:
                path = "/"
                continue
            path = posixpath.join(path, part) if path else part
            try:
                sftp.stat(path)
            except OSError as err:
                if not _is_missing(err):
                    raise GcodeStoreError(f"cannot use SFTP directory {root}: {err}") from err
                try:
                    sftp.mkdir(path)
                except OSError as mkdir_err:
                    raise GcodeStoreError(
                        f"cannot create SFTP directory {path}: {mkdir_err}"
                    ) from mkdir_err
        return sftp.normalize(root)

    def _release(self, sftp: paramiko.SFTPClient, *, healthy: bool) -> None:
        with self._lock:
            if healthy and len(self._idle) < _POOL_SIZE:
                self._idle.append(sftp)
                return
        with contextlib.suppress(Exception):
            sftp.close()

    @contextlib.contextmanager
    def _sftp(self, what: str) -> Iterator[paramiko.SFTPClient]:
        sftp = self._channel()
        healthy = False
        try:
            yield sftp
            healthy = True
        except (paramiko.SSHException, EOFError) as err:
            raise GcodeStoreError(f"{what}: {err}") from err
        except GcodeStoreError:
            raise
        except Exception:
            # An OSError from the server (ENOENT...) leaves the channel usable; our own
            # errors (GcodeNotFound, GcodeTooLarge...) too: only transport errors drop it.
            healthy = True
            raise
        finally:
            self._release(sftp, healthy=healthy)

    def _path(self, name: str) -> str:
        assert self._root is not None
        return posixpath.join(self._root, validate_gcode_name(name))

    def close(self) -> None:
        """Close the SSH connection (a later call reconnects)."""
        with self._lock:
            for sftp in self._idle:
                with contextlib.suppress(Exception):
                    sftp.close()
            self._idle.clear()
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- protocol ------------------------------------------------------------------------

    def _stat(self, sftp: paramiko.SFTPClient, name: str) -> GcodeFileInfo:
        try:
            attrs = sftp.stat(self._path(name))
        except OSError as err:
            if _is_missing(err):
                raise GcodeNotFound(name) from err
            raise GcodeStoreError(f"cannot stat {name!r}: {err}") from err
        if attrs.st_mode is None or not stat_module.S_ISREG(attrs.st_mode):
            raise GcodeNotFound(name)
        return GcodeFileInfo(
            name=name,
            size=attrs.st_size or 0,
            modified_at=datetime.fromtimestamp(attrs.st_mtime or 0, UTC),
        )

    def put(
        self,
        name: str,
        data: BinaryIO | Iterable[bytes],
        *,
        max_bytes: int | None = None,
        overwrite: bool = True,
    ) -> GcodeFileInfo:
        """Stream ``data`` into ``name`` atomically (see `GcodeStore.put`)."""
        validate_gcode_name(name)
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        with self._sftp(f"cannot store {name!r}") as sftp:
            target = self._path(name)
            if not overwrite and self._exists(sftp, name):
                raise GcodeExists(name)
            assert self._root is not None
            tmp = posixpath.join(self._root, f".{name}.{secrets.token_hex(6)}{_TEMP_SUFFIX}")
            committed = False
            try:
                size, sha256 = self._write(sftp, tmp, name, data, max_bytes)
                try:
                    if overwrite:
                        sftp.posix_rename(tmp, target)
                    else:
                        # Plain SFTP rename refuses an existing target: no race with a writer.
                        if self._exists(sftp, name):
                            raise GcodeExists(name)
                        sftp.rename(tmp, target)
                except OSError as err:
                    if not overwrite and self._exists(sftp, name):
                        raise GcodeExists(name) from err
                    raise GcodeStoreError(f"cannot store {name!r}: {err}") from err
                committed = True
                info = self._stat(sftp, name)
            finally:
                if not committed:
                    with contextlib.suppress(OSError, paramiko.SSHException):
                        sftp.remove(tmp)
        return GcodeFileInfo(name=name, size=size, modified_at=info.modified_at, sha256=sha256)

    @staticmethod
    def _write(
        sftp: paramiko.SFTPClient,
        tmp: str,
        name: str,
        data: BinaryIO | Iterable[bytes],
        max_bytes: int | None,
    ) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        try:
            remote = sftp.open(tmp, "wb")
        except OSError as err:
            raise GcodeStoreError(f"cannot create a temp file for {name!r}: {err}") from err
        with remote:
            remote.set_pipelined(True)
            for chunk in iter_chunks(data):  # errors of the caller's stream propagate unchanged
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise GcodeTooLarge(name, max_bytes)
                digest.update(chunk)
                try:
                    remote.write(chunk)
                except OSError as err:
                    raise GcodeStoreError(f"cannot write {name!r}: {err}") from err
            try:
                remote.chmod(0o644)
            except OSError as err:
                raise GcodeStoreError(f"cannot write {name!r}: {err}") from err
        return size, digest.hexdigest()

    def open(self, name: str) -> Generator[bytes, None, None]:
        """Stream ``name``; GcodeNotFound is raised by this call itself."""
        self.stat(name)
        return self._read(name)

    def _read(self, name: str) -> Generator[bytes, None, None]:
        sftp = self._channel()
        healthy = False
        try:
            try:
                remote = sftp.open(self._path(name), "rb")
            except OSError as err:
                if _is_missing(err):
                    raise GcodeNotFound(name) from err
                raise GcodeStoreError(f"cannot read {name!r}: {err}") from err
            with remote:
                remote.prefetch()
                while True:
                    try:
                        chunk = remote.read(CHUNK_SIZE)
                    except (OSError, paramiko.SSHException) as err:
                        raise GcodeStoreError(f"cannot read {name!r}: {err}") from err
                    if not chunk:
                        healthy = True
                        return
                    yield chunk
        finally:
            # A reader stopped early may leave prefetched data in flight: drop that channel.
            self._release(sftp, healthy=healthy)

    def get(self, name: str) -> bytes:
        """The whole content of ``name``."""
        return b"".join(self.open(name))

    def stat(self, name: str) -> GcodeFileInfo:
        """Size and mtime of ``name`` (sha256 None)."""
        validate_gcode_name(name)
        with self._sftp(f"cannot stat {name!r}") as sftp:
            return self._stat(sftp, name)

    def list(self) -> list[GcodeFileInfo]:
        """Every valid G-code file of the store directory, sorted by name."""
        with self._sftp("cannot list the store") as sftp:
            assert self._root is not None
            try:
                entries = sftp.listdir_attr(self._root)
            except OSError as err:
                raise GcodeStoreError(f"cannot list {self._root}: {err}") from err
        infos = []
        for attrs in entries:
            try:
                validate_gcode_name(attrs.filename)
            except GcodeStoreError:
                continue  # temp files and foreign files are not part of the store
            if attrs.st_mode is None or not stat_module.S_ISREG(attrs.st_mode):
                continue
            infos.append(
                GcodeFileInfo(
                    name=attrs.filename,
                    size=attrs.st_size or 0,
                    modified_at=datetime.fromtimestamp(attrs.st_mtime or 0, UTC),
                )
            )
        return sorted(infos, key=lambda info: info.name)

    def delete(self, name: str) -> None:
        """Remove ``name`` or raise GcodeNotFound."""
        validate_gcode_name(name)
        with self._sftp(f"cannot delete {name!r}") as sftp:
            self._stat(sftp, name)
            try:
                sftp.remove(self._path(name))
            except OSError as err:
                if _is_missing(err):
                    raise GcodeNotFound(name) from err
                raise GcodeStoreError(f"cannot delete {name!r}: {err}") from err

    def _exists(self, sftp: paramiko.SFTPClient, name: str) -> bool:
        try:
            self._stat(sftp, name)
        except GcodeNotFound:
            return False
        return True

    def exists(self, name: str) -> bool:
        """Whether ``name`` is stored."""
        validate_gcode_name(name)
        with self._sftp(f"cannot stat {name!r}") as sftp:
            return self._exists(sftp, name)
