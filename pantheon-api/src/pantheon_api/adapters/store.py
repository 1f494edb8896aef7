"""MongoDB access of pantheon-api: users, API keys, printers, beds, files, jobs, prints.

Owned here: ``users``, ``api_keys``, ``gcode_files``, ``counters`` (the job ``seq``), the
static fields of ``printers`` and ``beds`` edited from the API, and new ``jobs``. Everything
else is read. pymongo errors become `StoreUnavailable` (503) / `Duplicate` (409) here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pymongo
import pymongo.errors
from pymongo import ReturnDocument
from pymongo.database import Database

from pantheon_common.errors import StoreUnavailable
from pantheon_common.mongo import ASCENDING, DESCENDING, Document, IndexSpec, ensure_indexes
from pantheon_contracts.names import Collections

__all__ = ["INDEXES", "Duplicate", "FarmStore", "utcnow"]

COUNTERS = "counters"

INDEXES = (
    IndexSpec(Collections.API_KEYS, [("hash", ASCENDING)], unique=True),
    IndexSpec(Collections.USERS, [("role", ASCENDING)]),
    IndexSpec(Collections.JOBS, [("status", ASCENDING), ("priority", DESCENDING), ("seq", 1)]),
    IndexSpec(Collections.JOBS, [("file", ASCENDING), ("status", ASCENDING)]),
    IndexSpec(Collections.JOBS, [("updated_at", ASCENDING)]),
    IndexSpec(Collections.PRINTS, [("started_at", DESCENDING)]),
    IndexSpec(Collections.PRINTS, [("printer_id", ASCENDING), ("started_at", DESCENDING)]),
    IndexSpec(Collections.ROBOT_TASKS, [("updated_at", ASCENDING)]),
)


class Duplicate(Exception):
    """An insert hit an existing id or unique key."""


def utcnow() -> datetime:
    """Aware UTC now, at MongoDB's millisecond resolution."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@contextlib.contextmanager
def _mapped(what: str) -> Iterator[None]:
    try:
        yield
    except pymongo.errors.DuplicateKeyError as err:
        raise Duplicate(f"{what}: already exists") from err
    except pymongo.errors.PyMongoError as err:
        raise StoreUnavailable(f"MongoDB: {what} failed: {err}") from err


class FarmStore:
    """Thin typed access to the collections (documents are plain dicts)."""

    def __init__(self, db: Database[Document]) -> None:
        self.db = db

    def ensure_indexes(self) -> None:
        ensure_indexes(self.db, INDEXES)

    def ping(self) -> None:
        with _mapped("ping"):
            self.db.command("ping")

    # -- generic -------------------------------------------------------------------------

    def find(
        self,
        collection: str,
        query: Mapping[str, Any],
        *,
        sort: Sequence[tuple[str, int]] | None = None,
        limit: int = 0,
        skip: int = 0,
        projection: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        with _mapped(f"reading {collection}"):
            cursor = self.db[collection].find(dict(query), projection=projection)
            if sort:
                cursor = cursor.sort(list(sort))
            if skip:
                cursor = cursor.skip(skip)
            if limit:
                cursor = cursor.limit(limit)
            return [dict(doc) for doc in cursor]

    def get(self, collection: str, doc_id: Any) -> dict[str, Any] | None:
        with _mapped(f"reading {collection}"):
            doc = self.db[collection].find_one({"_id": doc_id})
        return dict(doc) if doc is not None else None

    def count(self, collection: str, query: Mapping[str, Any]) -> int:
        """Documents matching ``query``; for no filter, the collection's own count (metadata,
        no scan: cheap on a large collection)."""
        with _mapped(f"counting {collection}"):
            if not query:
                return int(self.db[collection].estimated_document_count())
            return int(self.db[collection].count_documents(dict(query)))

    def insert(self, collection: str, doc: Mapping[str, Any]) -> None:
        with _mapped(f"writing {collection}"):
            self.db[collection].insert_one(dict(doc))

    def replace(self, collection: str, doc_id: Any, doc: Mapping[str, Any]) -> None:
        with _mapped(f"writing {collection}"):
            self.db[collection].replace_one({"_id": doc_id}, dict(doc), upsert=True)

    def update(
        self,
        collection: str,
        query: Mapping[str, Any],
        update: Mapping[str, Any],
    ) -> dict[str, Any] | None:
        """Apply ``update`` to the first document matching ``query``; the new document or None."""
        with _mapped(f"updating {collection}"):
            doc = self.db[collection].find_one_and_update(
                dict(query), dict(update), return_document=ReturnDocument.AFTER
            )
        return dict(doc) if doc is not None else None

    def delete(self, collection: str, query: Mapping[str, Any]) -> int:
        with _mapped(f"deleting from {collection}"):
            return int(self.db[collection].delete_one(dict(query)).deleted_count)

    # -- specific ------------------------------------------------------------------------

    def next_seq(self, name: str) -> int:
        """A monotonic counter (job ``seq``): 1, 2, 3... across restarts and processes."""
        with _mapped("counting"):
            doc = self.db[COUNTERS].find_one_and_update(
                {"_id": name},
                {"$inc": {"value": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        assert doc is not None
        value = doc["value"]
        return value if isinstance(value, int) else int(str(value))

    def distinct_statuses(self, file: str) -> list[str]:
        with _mapped("reading jobs"):
            return [str(s) for s in self.db[Collections.JOBS].distinct("status", {"file": file})]

    def changed_since(
        self, collection: str, field: str, since: datetime, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Documents whose ``field`` is later than ``since``, oldest first."""
        return self.find(
            collection, {field: {"$gt": since}}, sort=[(field, pymongo.ASCENDING)], limit=limit
        )
