"""The SFTP G-code store passes the shared GcodeStore contract against a real OpenSSH sftp."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pantheon_api.adapters.sftp_store import SftpConfig, SftpGcodeStore
from pantheon_common.gcode_store import GcodeStore, GcodeStoreError
from pantheon_common.testing.gcode_store_contract import GcodeStoreContract
from pantheon_devtools.sshd import SshServer, start_sshd


@pytest.fixture(scope="module")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with start_sshd(tmp_path_factory.mktemp("sftp")) as server:
        yield server


def _config(server: SshServer, root: str) -> SftpConfig:
    return SftpConfig(
        host=server.host,
        port=server.port,
        user=server.user,
        key_file=server.client_key,
        known_hosts=server.known_hosts,
        root=root,
    )


class TestSftpGcodeStore(GcodeStoreContract):
    @pytest.fixture
    def store(self, sftp_server: SshServer) -> Iterator[GcodeStore]:
        root = str(sftp_server.work_dir / f"store-{secrets.token_hex(4)}")
        store = SftpGcodeStore(_config(sftp_server, root))
        yield store
        store.close()


def test_files_land_in_the_remote_directory(sftp_server: SshServer) -> None:
    store = SftpGcodeStore(_config(sftp_server, "relative/gcode"))
    try:
        store.put("cube.gcode", [b"G28\n"])
        assert (sftp_server.work_dir / "relative" / "gcode" / "cube.gcode").read_bytes() == b"G28\n"
        assert not [
            p
            for p in (sftp_server.work_dir / "relative" / "gcode").iterdir()
            if p.name.startswith(".")
        ]
    finally:
        store.close()


def test_unknown_host_key_is_refused(sftp_server: SshServer, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(
        f"[{sftp_server.host}]:{sftp_server.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
    )
    config = SftpConfig(
        host=sftp_server.host,
        port=sftp_server.port,
        user=sftp_server.user,
        key_file=sftp_server.client_key,
        known_hosts=other,
    )
    store = SftpGcodeStore(config)
    with pytest.raises(GcodeStoreError, match="cannot connect"):
        store.list()


def test_empty_known_hosts_is_refused(sftp_server: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    store = SftpGcodeStore(
        SftpConfig(
            host=sftp_server.host,
            port=sftp_server.port,
            user=sftp_server.user,
            key_file=sftp_server.client_key,
            known_hosts=empty,
        )
    )
    with pytest.raises(GcodeStoreError):
        store.exists("x.gcode")
