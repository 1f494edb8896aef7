"""The MongoDB helper against the MongoDB-protocol server (or a real MongoDB via MONGO_URL)."""

from typing import Any

import pymongo.errors
import pytest

from pantheon_common.errors import StoreUnavailable
from pantheon_common.mongo import (
    ASCENDING,
    DESCENDING,
    IndexSpec,
    ensure_indexes,
    mongo_client,
    ping,
)


def test_indexes_declared_in_code_are_created_and_enforced(mongo_db: Any) -> None:
    client = mongo_client(mongo_db.url, app_name="test")
    db = client[mongo_db.name]
    specs = [
        IndexSpec("things", [("code", ASCENDING)], unique=True),
        IndexSpec("things", [("status", ASCENDING), ("priority", DESCENDING)]),
    ]
    try:
        ping(client)
        names = ensure_indexes(db, specs)
        assert names == ["code_1", "status_1_priority_-1"]
        assert ensure_indexes(db, specs) == names  # idempotent
        db.things.insert_one({"code": "a", "status": "queued", "priority": 1})
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            db.things.insert_one({"code": "a"})
    finally:
        client.close()


def test_unreachable_server_maps_to_own_error() -> None:
    client = mongo_client("mongodb://127.0.0.1:1", app_name="test", timeout_ms=300)
    try:
        with pytest.raises(StoreUnavailable, match="MongoDB unreachable"):
            ping(client)
    finally:
        client.close()
