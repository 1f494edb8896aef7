"""Conformance tests every GcodeStore implementation must pass (subclass and give a `store`).

Usage, in a test module of the implementation::

    class TestSftpGcodeStore(GcodeStoreContract):
        @pytest.fixture
        def store(self, sftp_server) -> GcodeStore:
            return SftpGcodeStore(...)  # an empty store, fresh for each test

The fixture must return an empty store; the tests only go through the protocol.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from pantheon_common.gcode_store import (
    GcodeExists,
    GcodeFileInfo,
    GcodeNotFound,
    GcodeStore,
    GcodeTooLarge,
    InvalidGcodeName,
)

__all__ = ["GcodeStoreContract"]

MiB = 1024 * 1024

# Content large enough to span several 1 MiB chunks, with a non-repeating prefix.
_BIG = bytes(range(256)) * (10 * 1024) + b"; end of file\n"  # 2.5 MiB + 14 bytes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _failing_stream(good: bytes) -> Iterator[bytes]:
    yield good
    raise RuntimeError("upload connection lost")


_METHODS: dict[str, Callable[[GcodeStore, str], object]] = {
    "put": lambda store, name: store.put(name, [b"G28\n"]),
    "open": lambda store, name: store.open(name),
    "get": lambda store, name: store.get(name),
    "stat": lambda store, name: store.stat(name),
    "delete": lambda store, name: store.delete(name),
    "exists": lambda store, name: store.exists(name),
}


class GcodeStoreContract:
    """Behaviour shared by every G-code store; subclasses provide the `store` fixture."""

    @pytest.fixture
    def store(self) -> GcodeStore:
        raise NotImplementedError("subclasses provide an empty store")

    # -- shape -------------------------------------------------------------------------

    def test_implements_the_protocol(self, store: GcodeStore) -> None:
        assert isinstance(store, GcodeStore)

    def test_new_store_is_empty(self, store: GcodeStore) -> None:
        assert store.list() == []
        assert not store.exists("benchy.gcode")

    # -- put -----------------------------------------------------------------------------

    def test_put_returns_size_sha256_and_aware_utc_time(self, store: GcodeStore) -> None:
        data = b"G28\nG1 X10 Y10\n"
        info = store.put("benchy.gcode", [data])
        assert isinstance(info, GcodeFileInfo)
        assert info.name == "benchy.gcode"
        assert info.size == len(data)
        assert info.sha256 == _sha(data)
        assert info.modified_at.utcoffset() == timedelta(0)

    def test_put_from_binary_file(self, store: GcodeStore) -> None:
        info = store.put("plate_1.gcode.3mf", io.BytesIO(_BIG))
        assert info.size == len(_BIG)
        assert info.sha256 == _sha(_BIG)
        assert store.get("plate_1.gcode.3mf") == _BIG

    def test_put_from_chunk_generator(self, store: GcodeStore) -> None:
        chunks = [_BIG[i : i + 333_333] for i in range(0, len(_BIG), 333_333)]
        info = store.put("chunks.gcode", iter(chunks))
        assert info.size == len(_BIG)
        assert info.sha256 == _sha(_BIG)
        assert store.get("chunks.gcode") == _BIG

    def test_put_empty_file(self, store: GcodeStore) -> None:
        info = store.put("empty.gcode", [])
        assert info.size == 0
        assert info.sha256 == _sha(b"")
        assert store.get("empty.gcode") == b""

    def test_put_overwrites_by_default(self, store: GcodeStore) -> None:
        store.put("part.gcode", [b"old"])
        info = store.put("part.gcode", [b"new content"])
        assert info.size == len(b"new content")
        assert store.get("part.gcode") == b"new content"
        assert [i.name for i in store.list()] == ["part.gcode"]

    def test_put_without_overwrite_refuses_and_keeps_the_old_file(self, store: GcodeStore) -> None:
        store.put("part.gcode", [b"old"])
        with pytest.raises(GcodeExists) as excinfo:
            store.put("part.gcode", [b"new"], overwrite=False)
        assert excinfo.value.name == "part.gcode"
        assert store.get("part.gcode") == b"old"

    def test_put_without_overwrite_creates_a_new_file(self, store: GcodeStore) -> None:
        store.put("fresh.gcode", [b"G28\n"], overwrite=False)
        assert store.get("fresh.gcode") == b"G28\n"

    def test_put_at_exactly_max_bytes_is_accepted(self, store: GcodeStore) -> None:
        info = store.put("limit.gcode", [b"12345", b"67890"], max_bytes=10)
        assert info.size == 10

    def test_put_over_max_bytes_stores_nothing(self, store: GcodeStore) -> None:
        with pytest.raises(GcodeTooLarge) as excinfo:
            store.put("big.gcode", io.BytesIO(_BIG), max_bytes=MiB)
        assert excinfo.value.limit == MiB
        assert not store.exists("big.gcode")
        assert store.list() == []

    def test_put_over_max_bytes_keeps_the_previous_version(self, store: GcodeStore) -> None:
        store.put("big.gcode", [b"small"])
        with pytest.raises(GcodeTooLarge):
            store.put("big.gcode", io.BytesIO(_BIG), max_bytes=MiB)
        assert store.get("big.gcode") == b"small"

    def test_failing_stream_propagates_and_stores_nothing(self, store: GcodeStore) -> None:
        with pytest.raises(RuntimeError, match="upload connection lost"):
            store.put("broken.gcode", _failing_stream(b"G28\n" * 1000))
        assert not store.exists("broken.gcode")
        assert store.list() == []

    def test_failing_stream_keeps_the_previous_version(self, store: GcodeStore) -> None:
        store.put("broken.gcode", [b"good"])
        with pytest.raises(RuntimeError):
            store.put("broken.gcode", _failing_stream(b"partial"))
        assert store.get("broken.gcode") == b"good"

    # -- reading -------------------------------------------------------------------------

    def test_open_streams_the_whole_content(self, store: GcodeStore) -> None:
        store.put("stream.gcode", io.BytesIO(_BIG))
        chunks = list(store.open("stream.gcode"))
        assert all(isinstance(chunk, bytes) and chunk for chunk in chunks)
        assert b"".join(chunks) == _BIG

    def test_open_can_be_closed_early(self, store: GcodeStore) -> None:
        store.put("stream.gcode", io.BytesIO(_BIG))
        with contextlib.closing(store.open("stream.gcode")) as chunks:
            first = next(chunks)
        assert _BIG.startswith(first)
        store.delete("stream.gcode")  # nothing still holds the file
        assert not store.exists("stream.gcode")

    def test_open_missing_raises_at_call_time(self, store: GcodeStore) -> None:
        with pytest.raises(GcodeNotFound):
            store.open("missing.gcode")

    @pytest.mark.parametrize("method", ["get", "stat", "delete"])
    def test_missing_file_raises_not_found(self, store: GcodeStore, method: str) -> None:
        with pytest.raises(GcodeNotFound) as excinfo:
            _METHODS[method](store, "missing.gcode")
        assert excinfo.value.name == "missing.gcode"

    def test_stat_matches_put(self, store: GcodeStore) -> None:
        put_info = store.put("stat.gcode", io.BytesIO(_BIG))
        info = store.stat("stat.gcode")
        assert info.name == "stat.gcode"
        assert info.size == put_info.size
        assert info.sha256 in (None, put_info.sha256)
        assert info.modified_at.utcoffset() == timedelta(0)
        # Same clock, so the two times can only differ by the filesystem's resolution.
        assert abs(info.modified_at - put_info.modified_at) < timedelta(seconds=2)

    def test_list_is_sorted_by_name(self, store: GcodeStore) -> None:
        for name in ["c.gcode", "a.3mf", "b.gcode.3mf", "d.bgcode"]:
            store.put(name, [name.encode()])
        infos = store.list()
        assert [i.name for i in infos] == ["a.3mf", "b.gcode.3mf", "c.gcode", "d.bgcode"]
        assert [i.size for i in infos] == [len(i.name) for i in infos]
        for info in infos:
            assert info.sha256 in (None, _sha(info.name.encode()))

    def test_delete_removes_the_file(self, store: GcodeStore) -> None:
        store.put("gone.gcode", [b"G28\n"])
        store.put("kept.gcode", [b"G28\n"])
        store.delete("gone.gcode")
        assert not store.exists("gone.gcode")
        assert [i.name for i in store.list()] == ["kept.gcode"]
        with pytest.raises(GcodeNotFound):
            store.get("gone.gcode")

    # -- names ---------------------------------------------------------------------------

    @pytest.mark.parametrize(
        "name",
        ["Part.GCODE", "x.Gcode.3MF", "y.BGCODE", "z.3mf", "Benchy v2 (0.2mm) für Düse.gcode"],
    )
    def test_accepted_names_round_trip(self, store: GcodeStore, name: str) -> None:
        store.put(name, [b"G28\n"])
        assert store.exists(name)
        assert store.get(name) == b"G28\n"
        assert [i.name for i in store.list()] == [name]

    @pytest.mark.parametrize("method", sorted(_METHODS))
    @pytest.mark.parametrize(
        "name", ["../escape.gcode", "dir/x.gcode", ".hidden.gcode", "notes.txt", ""]
    )
    def test_invalid_names_are_refused_by_every_method(
        self, store: GcodeStore, method: str, name: str
    ) -> None:
        with pytest.raises(InvalidGcodeName):
            _METHODS[method](store, name)
        assert store.list() == []
