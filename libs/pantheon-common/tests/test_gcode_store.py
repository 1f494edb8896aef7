"""LocalGcodeStore: the shared contract, plus atomicity, streaming and path-safety checks."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from pantheon_common.gcode_store import (
    MAX_NAME_BYTES,
    GcodeNotFound,
    GcodeStore,
    GcodeStoreError,
    GcodeTooLarge,
    InvalidGcodeName,
    LocalGcodeStore,
    validate_gcode_name,
)
from pantheon_common.testing.gcode_store_contract import GcodeStoreContract

MiB = 1024 * 1024


class TestLocalGcodeStoreContract(GcodeStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> GcodeStore:
        return LocalGcodeStore(tmp_path / "gcode")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "gcode"


@pytest.fixture
def local(root: Path) -> LocalGcodeStore:
    return LocalGcodeStore(root)


# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../x.gcode", "'..'"),
        ("a/b.gcode", "flat"),
        ("a\\b.gcode", "flat"),
        (".hidden.gcode", "start with '.'"),
        ("x.txt", "extension"),
        ("x.gcode.txt", "extension"),
        ("x\x00.gcode", "control character"),
        ("x\n.gcode", "control character"),
        ("a" * (MAX_NAME_BYTES - 5) + ".gcode", f"{MAX_NAME_BYTES} bytes"),
        ("é" * 100 + ".gcode", f"{MAX_NAME_BYTES} bytes"),  # 100 chars, 200+ bytes
        ("", "empty"),
        (".gcode", "start with '.'"),
        ("  .gcode", "whitespace"),
        ("x.gcode ", "whitespace"),
        ("x..gcode", "'..'"),
    ],
)
def test_bad_names_are_refused_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(InvalidGcodeName) as excinfo:
        validate_gcode_name(name)
    assert reason in excinfo.value.reason
    assert reason in str(excinfo.value)


@pytest.mark.parametrize(
    "name",
    [
        "benchy.gcode",
        "BENCHY.GCODE",
        "plate_1.gcode.3mf",
        "project.3MF",
        "fast.bgcode",
        "a" * (MAX_NAME_BYTES - 6) + ".gcode",  # exactly the limit
        "Halter v1.2 Ø 0.4mm.gcode",
    ],
)
def test_good_names_pass_unchanged(name: str) -> None:
    assert validate_gcode_name(name) == name


def test_errors_share_one_base_class() -> None:
    for error in (GcodeNotFound, InvalidGcodeName, GcodeTooLarge):
        assert issubclass(error, GcodeStoreError)


# -- local layout -----------------------------------------------------------------------------


def test_root_is_created(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "gcode"
    LocalGcodeStore(root)
    assert root.is_dir()


def test_root_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(GcodeStoreError):
        LocalGcodeStore(tmp_path / "file")


def test_put_writes_a_plain_file_under_root(local: LocalGcodeStore, root: Path) -> None:
    local.put("benchy.gcode", [b"G28\n"])
    assert (root / "benchy.gcode").read_bytes() == b"G28\n"
    assert os.listdir(root) == ["benchy.gcode"]
    # Readable by the other farm services, not only by the writer.
    assert (root / "benchy.gcode").stat().st_mode & 0o777 == 0o644


def test_stat_leaves_sha256_unset(local: LocalGcodeStore) -> None:
    local.put("benchy.gcode", [b"G28\n"])
    assert local.stat("benchy.gcode").sha256 is None


def test_list_hides_temp_foreign_and_directory_entries(local: LocalGcodeStore, root: Path) -> None:
    local.put("real.gcode", [b"G28\n"])
    (root / ".real.gcode.abc123.part").write_bytes(b"half an upload")
    (root / "notes.txt").write_bytes(b"operator notes")
    (root / "folder.gcode").mkdir()
    assert [i.name for i in local.list()] == ["real.gcode"]
    assert not local.exists("folder.gcode")
    with pytest.raises(GcodeNotFound):
        local.get("folder.gcode")


# -- atomicity ---------------------------------------------------------------------------------


def _fail_after(chunks: int) -> Iterator[bytes]:
    for _ in range(chunks):
        yield b"G1 X1 Y1\n" * 10_000
    raise ConnectionResetError("client went away")


def test_failing_stream_leaves_no_file_and_no_temp_file(local: LocalGcodeStore, root: Path) -> None:
    # The caller's own stream error comes back as it is, not disguised as a store error.
    with pytest.raises(ConnectionResetError):
        local.put("broken.gcode", _fail_after(5))
    assert os.listdir(root) == []


def test_failing_stream_over_an_existing_file_keeps_it_and_no_temp(
    local: LocalGcodeStore, root: Path
) -> None:
    local.put("broken.gcode", [b"good"])
    with pytest.raises(ConnectionResetError):
        local.put("broken.gcode", _fail_after(100))
    assert os.listdir(root) == ["broken.gcode"]
    assert local.get("broken.gcode") == b"good"


def test_too_large_mid_stream_leaves_nothing(local: LocalGcodeStore, root: Path) -> None:
    chunks = (b"\0" * MiB for _ in range(10))
    with pytest.raises(GcodeTooLarge) as excinfo:
        local.put("huge.gcode", chunks, max_bytes=3 * MiB + 1)
    assert excinfo.value.limit == 3 * MiB + 1
    assert os.listdir(root) == []


def test_refused_overwrite_leaves_no_temp_file(local: LocalGcodeStore, root: Path) -> None:
    local.put("part.gcode", [b"old"])
    with pytest.raises(GcodeStoreError):
        local.put("part.gcode", [b"new"], overwrite=False)
    assert os.listdir(root) == ["part.gcode"]


def test_negative_max_bytes_is_a_caller_error(local: LocalGcodeStore) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        local.put("x.gcode", [b""], max_bytes=-1)


# -- streaming ---------------------------------------------------------------------------------


def test_50_mib_stream_is_written_and_read_in_bounded_memory(
    local: LocalGcodeStore, root: Path
) -> None:
    total_chunks = 50
    expected = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        for i in range(total_chunks):
            chunk = bytes([i]) * MiB
            expected.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        info = local.put("large.gcode", chunks())
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read_digest = hashlib.sha256()
        read_size = 0
        for chunk in local.open("large.gcode"):
            read_digest.update(chunk)
            read_size += len(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info.size == total_chunks * MiB
    assert info.sha256 == expected.hexdigest()
    assert (root / "large.gcode").stat().st_size == total_chunks * MiB
    assert read_size == total_chunks * MiB
    assert read_digest.hexdigest() == expected.hexdigest()
    # A few chunks in flight at most, never the whole 50 MiB.
    assert write_peak < 8 * MiB
    assert read_peak < 8 * MiB


# -- path safety -------------------------------------------------------------------------------


def test_symlink_pointing_outside_root_is_refused(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.gcode"
    secret.write_bytes(b"not yours")
    store = LocalGcodeStore(root)
    (root / "evil.gcode").symlink_to(secret)

    for call in (
        lambda: store.get("evil.gcode"),
        lambda: store.open("evil.gcode"),
        lambda: store.stat("evil.gcode"),
        lambda: store.delete("evil.gcode"),
        lambda: store.put("evil.gcode", [b"overwritten"]),
    ):
        with pytest.raises(InvalidGcodeName, match="outside the store"):
            call()
    assert not store.exists("evil.gcode")
    assert store.list() == []
    assert secret.read_bytes() == b"not yours"
    assert (root / "evil.gcode").is_symlink()


def test_relative_symlink_escaping_root_is_refused(tmp_path: Path, root: Path) -> None:
    (tmp_path / "secret.gcode").write_bytes(b"not yours")
    store = LocalGcodeStore(root)
    (root / "up.gcode").symlink_to(Path("..") / "secret.gcode")
    with pytest.raises(InvalidGcodeName):
        store.get("up.gcode")


def test_symlink_loop_is_refused(root: Path) -> None:
    store = LocalGcodeStore(root)
    (root / "a.gcode").symlink_to(root / "b.gcode")
    (root / "b.gcode").symlink_to(root / "a.gcode")
    with pytest.raises(GcodeStoreError):
        store.get("a.gcode")
    assert store.list() == []


def test_symlink_inside_root_is_followed(local: LocalGcodeStore, root: Path) -> None:
    local.put("real.gcode", [b"G28\n"])
    (root / "alias.gcode").symlink_to("real.gcode")
    assert local.get("alias.gcode") == b"G28\n"
    local.delete("alias.gcode")  # removes the link, not its target
    assert local.get("real.gcode") == b"G28\n"


def test_root_reached_through_a_symlink_works(tmp_path: Path) -> None:
    real = tmp_path / "real-root"
    real.mkdir()
    (tmp_path / "link-root").symlink_to(real)
    store = LocalGcodeStore(tmp_path / "link-root")
    store.put("x.gcode", [b"G28\n"])
    assert (real / "x.gcode").read_bytes() == b"G28\n"
    assert [i.name for i in store.list()] == ["x.gcode"]
