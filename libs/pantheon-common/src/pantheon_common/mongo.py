"""MongoDB helper: a client from a URL, indexes declared in code, errors mapped at the edge.

Code here keeps to what real MongoDB and the nx-27017 test server do the same
(infrastructure.md section 1): no transactions, no ``$setOnInsert`` inside
``find_one_and_update``, no partial indexes, no regex objects.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymongo
import pymongo.errors
from pymongo import MongoClient
from pymongo.database import Database

from pantheon_common.errors import StoreUnavailable

log = logging.getLogger(__name__)

Document = dict[str, object]


@dataclass(frozen=True)
class IndexSpec:
    """One index a service needs, declared beside the code that queries it."""

    collection: str
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    sparse: bool = False
    name: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def index_name(self) -> str:
        """Explicit name, or MongoDB's default ``field_1_other_-1``."""
        return self.name or "_".join(f"{k}_{d}" for k, d in self.keys)


def mongo_client(url: str, *, app_name: str, timeout_ms: int = 5000) -> MongoClient[Document]:
    """A client for ``url`` with aware UTC datetimes and bounded waits.

    Creating it opens no socket; the first operation does.
    """
    return MongoClient(
        url,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms, 10_000),
    )


def ping(client: MongoClient[Document]) -> None:
    """Raise :class:`StoreUnavailable` unless the server answers ``ping``."""
    try:
        client.admin.command("ping")
    except pymongo.errors.PyMongoError as err:
        raise StoreUnavailable(f"MongoDB unreachable: {err}") from err


def ensure_indexes(db: Database[Document], specs: Iterable[IndexSpec]) -> list[str]:
    """Create every index in ``specs`` (idempotent); returns their names."""
    names = []
    try:
        for spec in specs:
            options: dict[str, Any] = {"name": spec.index_name, **spec.extra}
            if spec.unique:
                options["unique"] = True
            if spec.sparse:
                options["sparse"] = True
            db[spec.collection].create_index(list(spec.keys), **options)
            names.append(spec.index_name)
    except pymongo.errors.PyMongoError as err:
        raise StoreUnavailable(f"creating MongoDB indexes failed: {err}") from err
    return names


ASCENDING = pymongo.ASCENDING
DESCENDING = pymongo.DESCENDING
