"""G-code store: one protocol, one name validator, and the local-filesystem implementation."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import unicodedata
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG
from typing import BinaryIO, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "ALLOWED_EXTENSIONS",
    "CHUNK_SIZE",
    "MAX_NAME_BYTES",
    "GcodeExists",
    "GcodeFileInfo",
    "GcodeNotFound",
    "GcodeStore",
    "GcodeStoreError",
    "GcodeTooLarge",
    "InvalidGcodeName",
    "LocalGcodeStore",
    "validate_gcode_name",
]

CHUNK_SIZE = 1024 * 1024
"""Bytes per chunk when streaming in and out (1 MiB)."""

MAX_NAME_BYTES = 200
"""Longest accepted file name, in UTF-8 bytes (leaves room under the usual 255-byte limit)."""

# Longest first, so `x.gcode.3mf` is reported as `.gcode.3mf`. Bambu printers take
# `.gcode.3mf` (sliced project) and plain `.gcode`; `.bgcode` is binary G-code.
ALLOWED_EXTENSIONS: tuple[str, ...] = (".gcode.3mf", ".bgcode", ".gcode", ".3mf")


class GcodeStoreError(Exception):
    """Base class of every G-code store error; backend errors are chained as `__cause__`."""


class GcodeNotFound(GcodeStoreError):
    """No file of that name in the store."""

    def __init__(self, name: str) -> None:
        super().__init__(f"G-code file not found: {name!r}")
        self.name = name


class InvalidGcodeName(GcodeStoreError):
    """The name is not an acceptable flat G-code file name (or points outside the store)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"invalid G-code file name {name!r}: {reason}")
        self.name = name
        self.reason = reason


class GcodeTooLarge(GcodeStoreError):
    """The upload went over `max_bytes`; nothing was stored."""

    def __init__(self, name: str, limit: int) -> None:
        super().__init__(f"G-code file {name!r} is larger than the limit of {limit} bytes")
        self.name = name
        self.limit = limit


class GcodeExists(GcodeStoreError):
    """`put(..., overwrite=False)` found a file of that name already there."""

    def __init__(self, name: str) -> None:
        super().__init__(f"G-code file already exists: {name!r}")
        self.name = name


class GcodeFileInfo(BaseModel):
    """What the store knows about one file."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Flat file name, as validated by validate_gcode_name.")
    size: int = Field(ge=0, description="Size in bytes.")
    modified_at: AwareDatetime = Field(description="Last modification time, UTC.")
    sha256: str | None = Field(
        default=None,
        description="Hex SHA-256 of the content. Always set by put(); None from stat()/list() "
        "when the backend cannot get it cheaply (LocalGcodeStore: always None there).",
    )


def validate_gcode_name(name: str) -> str:
    """Return `name` unchanged if it is an acceptable flat G-code file name, else raise.

    Rules: not empty; no `/`, `\\`, `..`, NUL or other control characters; no leading dot
    (reserved for temp files); no leading or trailing whitespace; at most MAX_NAME_BYTES in
    UTF-8; ends with one of ALLOWED_EXTENSIONS (case-insensitive) after a non-empty stem.
    """
    if not isinstance(name, str):
        raise InvalidGcodeName(repr(name), "must be a string")
    if not name:
        raise InvalidGcodeName(name, "is empty")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidGcodeName(name, "contains a control character")
    if ".." in name:
        raise InvalidGcodeName(name, "must not contain '..'")
    if "/" in name or "\\" in name:
        raise InvalidGcodeName(name, "must be a flat file name, without '/' or '\\'")
    if name.startswith("."):
        raise InvalidGcodeName(name, "must not start with '.'")
    if name != name.strip():
        raise InvalidGcodeName(name, "must not start or end with whitespace")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError as err:  # lone surrogates from a mis-decoded upload
        raise InvalidGcodeName(name, "is not valid UTF-8") from err
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidGcodeName(name, f"is longer than {MAX_NAME_BYTES} bytes in UTF-8")
    lowered = name.lower()
    extension = next((ext for ext in ALLOWED_EXTENSIONS if lowered.endswith(ext)), None)
    if extension is None:
        allowed = ", ".join(ALLOWED_EXTENSIONS)
        raise InvalidGcodeName(name, f"extension must be one of {allowed}")
    if not name[: -len(extension)].strip():
        raise InvalidGcodeName(name, "has nothing before the extension")
    return name


@runtime_checkable
class GcodeStore(Protocol):
    """Where G-code files live; implemented over a local directory here, over SFTP elsewhere.

    Every method validates the name with validate_gcode_name first (InvalidGcodeName).
    Nothing returns a local path, so a remote backend implements the same surface.
    """

    def put(
        self,
        name: str,
        data: BinaryIO | Iterable[bytes],
        *,
        max_bytes: int | None = None,
        overwrite: bool = True,
    ) -> GcodeFileInfo:
        """Stream `data` into the store atomically, computing size and sha256 on the way.

        A failed or over-limit upload (GcodeTooLarge) leaves no file and no partial content;
        with `overwrite=False` an existing file raises GcodeExists and is kept. Errors
        raised by `data` itself propagate unchanged; the store's own I/O errors become
        GcodeStoreError.
        """
        ...

    def open(self, name: str) -> Generator[bytes, None, None]:
        """Stream the file in chunks; GcodeNotFound is raised by the call itself.

        Close the generator (or wrap it in contextlib.closing) when stopping early.
        """
        ...

    def get(self, name: str) -> bytes:
        """Return the whole file (convenience for small files and tests)."""
        ...

    def stat(self, name: str) -> GcodeFileInfo:
        """Return the file's info, or raise GcodeNotFound."""
        ...

    def list(self) -> list[GcodeFileInfo]:
        """Return every stored file, sorted by name; temp and foreign files are left out."""
        ...

    def delete(self, name: str) -> None:
        """Remove the file, or raise GcodeNotFound."""
        ...

    def exists(self, name: str) -> bool:
        """Tell whether a file of that name is stored."""
        ...


def iter_chunks(data: BinaryIO | Iterable[bytes]) -> Iterable[bytes]:
    """The chunks of ``put``'s data, for every implementation of the store.

    A file object is also an iterable of *lines*; it is read in fixed chunks instead.
    """
    read = getattr(data, "read", None)
    if callable(read):
        while chunk := read(CHUNK_SIZE):
            yield bytes(chunk)
        return
    for chunk in data:
        if chunk:
            yield bytes(chunk)


class LocalGcodeStore:
    """G-code files as plain files in one flat directory.

    Writes go to a hidden temp file in the same directory, are fsynced and then renamed over
    the target, so readers see the old file or the new one, never a partial one. stat() and
    list() leave sha256 as None: hashing every file on each listing is not cheap; the sha256
    returned by put() is recorded in MongoDB `gcode_files` by the caller.
    """

    _TEMP_SUFFIX = ".part"

    def __init__(self, root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            self._root = root.resolve(strict=True)
        except OSError as err:
            raise GcodeStoreError(f"cannot use {root} as G-code store: {err}") from err
        if not self._root.is_dir():
            raise GcodeStoreError(f"G-code store root {root} is not a directory")

    @property
    def root(self) -> Path:
        """The resolved store directory (local implementation only, not in the protocol)."""
        return self._root

    def __repr__(self) -> str:
        return f"LocalGcodeStore({str(self._root)!r})"

    # -- path safety ---------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        """Validated path of `name` inside root; refuses a symlink leading outside root."""
        path = self._root / validate_gcode_name(name)
        if path.is_symlink():
            try:
                target = path.resolve(strict=False)
            except (OSError, RuntimeError) as err:  # symlink loop: RuntimeError before 3.13
                raise InvalidGcodeName(name, "is a broken symlink") from err
            if not target.is_relative_to(self._root):
                raise InvalidGcodeName(name, "is a symlink pointing outside the store")
        return path

    def _stat_file(self, name: str, path: Path) -> os.stat_result:
        try:
            st = path.stat()
        except FileNotFoundError as err:
            raise GcodeNotFound(name) from err
        except OSError as err:
            raise GcodeStoreError(f"cannot stat {name!r}: {err}") from err
        if not _is_regular(st):
            raise GcodeNotFound(name)  # a directory or device is not a G-code file
        return st

    # -- protocol ------------------------------------------------------------------------

    def put(
        self,
        name: str,
        data: BinaryIO | Iterable[bytes],
        *,
        max_bytes: int | None = None,
        overwrite: bool = True,
    ) -> GcodeFileInfo:
        """Stream `data` into `name` atomically (see GcodeStore.put)."""
        path = self._path(name)
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if not overwrite and path.exists():
            raise GcodeExists(name)  # fail before streaming a large upload for nothing
        try:
            fd, tmp_name = tempfile.mkstemp(
                prefix=f".{name}.", suffix=self._TEMP_SUFFIX, dir=self._root
            )
        except OSError as err:
            raise GcodeStoreError(f"cannot create a temp file for {name!r}: {err}") from err
        tmp = Path(tmp_name)
        try:
            size, sha256 = self._write_temp(fd, name, data, max_bytes)
            with _io_errors(f"cannot store {name!r}"):
                self._commit(tmp, path, name, overwrite=overwrite)
                st = path.stat()
        finally:
            # After os.replace the temp name is gone; after os.link it is a second link.
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return GcodeFileInfo(name=name, size=size, modified_at=_mtime(st), sha256=sha256)

    @staticmethod
    def _write_temp(
        fd: int, name: str, data: BinaryIO | Iterable[bytes], max_bytes: int | None
    ) -> tuple[int, str]:
        """Copy `data` into the open temp file `fd`; return (size, sha256 hex)."""
        digest = hashlib.sha256()
        size = 0
        fh = os.fdopen(fd, "wb")
        try:
            with _io_errors(f"cannot write {name!r}"):
                # mkstemp makes the file 0600; other farm services (and the FTPS uploader)
                # run as other users, so publish it world-readable like a normal upload.
                os.fchmod(fd, 0o644)
            # Errors raised by the caller's stream itself propagate unchanged.
            for chunk in iter_chunks(data):
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise GcodeTooLarge(name, max_bytes)
                digest.update(chunk)
                with _io_errors(f"cannot write {name!r}"):
                    fh.write(chunk)
            with _io_errors(f"cannot write {name!r}"):
                fh.flush()
                os.fsync(fd)
        finally:
            with contextlib.suppress(OSError):
                fh.close()
        return size, digest.hexdigest()

    def _commit(self, tmp: Path, path: Path, name: str, *, overwrite: bool) -> None:
        if overwrite:
            os.replace(tmp, path)
        else:
            # link() refuses an existing target atomically, closing the race between the
            # early exists() check and the end of a long upload.
            try:
                os.link(tmp, path)
            except FileExistsError as err:
                raise GcodeExists(name) from err
        self._fsync_root()

    def _fsync_root(self) -> None:
        # The rename is only durable once the directory entry itself reaches the disk.
        dir_fd = os.open(self._root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def open(self, name: str) -> Generator[bytes, None, None]:
        """Stream `name` in CHUNK_SIZE chunks (see GcodeStore.open)."""
        path = self._path(name)
        self._stat_file(name, path)
        return self._read_chunks(name, path)

    @staticmethod
    def _read_chunks(name: str, path: Path) -> Generator[bytes, None, None]:
        # The file is opened on first next(), so an unstarted generator holds no descriptor.
        try:
            fh = path.open("rb")
        except FileNotFoundError as err:  # deleted between open() and the first chunk
            raise GcodeNotFound(name) from err
        except OSError as err:
            raise GcodeStoreError(f"cannot read {name!r}: {err}") from err
        with fh:
            while True:
                try:
                    chunk = fh.read(CHUNK_SIZE)
                except OSError as err:
                    raise GcodeStoreError(f"cannot read {name!r}: {err}") from err
                if not chunk:
                    return
                yield chunk

    def get(self, name: str) -> bytes:
        """Return the whole content of `name`."""
        return b"".join(self.open(name))

    def stat(self, name: str) -> GcodeFileInfo:
        """Return size and mtime of `name`; sha256 is None (see class docstring)."""
        path = self._path(name)
        st = self._stat_file(name, path)
        return GcodeFileInfo(name=name, size=st.st_size, modified_at=_mtime(st))

    def list(self) -> list[GcodeFileInfo]:
        """Return every valid G-code file in root, sorted by name."""
        infos: list[GcodeFileInfo] = []
        try:
            entries = sorted(os.scandir(self._root), key=lambda entry: entry.name)
        except OSError as err:
            raise GcodeStoreError(f"cannot list {self._root}: {err}") from err
        for entry in entries:
            try:
                info = self.stat(entry.name)
            except GcodeStoreError:
                # Temp files (leading dot), foreign files, escaping symlinks, directories
                # and files deleted meanwhile are not part of the listing.
                continue
            infos.append(info)
        return infos

    def delete(self, name: str) -> None:
        """Remove `name` (a symlink inside root is removed itself, never its target)."""
        path = self._path(name)
        self._stat_file(name, path)
        try:
            path.unlink()
        except FileNotFoundError as err:
            raise GcodeNotFound(name) from err
        except OSError as err:
            raise GcodeStoreError(f"cannot delete {name!r}: {err}") from err

    def exists(self, name: str) -> bool:
        """Tell whether `name` is a stored file; an escaping symlink does not count."""
        try:
            self._stat_file(name, self._path(name))
        except GcodeNotFound:
            return False
        except InvalidGcodeName:
            validate_gcode_name(name)  # a bad name still raises; an escaping link is absent
            return False
        return True


@contextlib.contextmanager
def _io_errors(what: str) -> Iterator[None]:
    """Turn OSError from the filesystem into GcodeStoreError, keeping the cause."""
    try:
        yield
    except OSError as err:
        raise GcodeStoreError(f"{what}: {err}") from err


def _is_regular(st: os.stat_result) -> bool:
    return S_ISREG(st.st_mode)


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, tz=UTC)
