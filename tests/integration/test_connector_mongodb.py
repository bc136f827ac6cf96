"""MongoDB syncs through the engine and pipeline.

No MongoDB server can be installed here, so these tests run pymongo's real code against
mongomock (`mongomock.patch` swaps pymongo.MongoClient for an in-memory server). Set
MONGODB_URI (e.g. mongodb://user:pass@127.0.0.1:27017) and the same tests run against that real
server instead, each in its own database, dropped afterwards. The unreachable-host test always
uses real pymongo against a closed local port.
"""

from __future__ import annotations

import os
import secrets
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import mongomock
import pymongo
import pytest
from bson import Binary, Decimal128, ObjectId

from churnguard.connectors.base import CheckStatus
from churnguard.models import DataSyncMode, ProviderName
from churnguard.providers.mongodb import source as mongodb_connector
from churnguard.runs import SyncStatus
from tests.support.sync import ORG, credentials, sync

MONGODB_URI = os.environ.get("MONGODB_URI", "")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Mongo:
    database: Any
    host: str
    port: int
    user: str
    password: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@pytest.fixture
def mongo() -> Iterator[Mongo]:
    name = f"cg_{secrets.token_hex(6)}"
    with ExitStack() as stack:
        if MONGODB_URI:
            parts = urlsplit(MONGODB_URI)
            host, port = parts.hostname or "127.0.0.1", parts.port or 27017
            user, password = unquote(parts.username or ""), unquote(parts.password or "")
        else:
            host, port, user, password = "127.0.0.1", 27017, "reader", "unused-password"
            stack.enter_context(mongomock.patch(servers=((host, port),)))
        client = pymongo.MongoClient(MONGODB_URI or f"mongodb://{host}:{port}", tz_aware=True)
        try:
            yield Mongo(client[name], host, port, user, password)
        finally:
            client.drop_database(name)
            client.close()


def register(
    harness: Any,
    mongo: Mongo,
    *,
    mappings: dict[str, str] | None = None,
    name: str = "mongo",
    port: int | None = None,
    **options: Any,
) -> Any:
    return harness.register(
        ProviderName.MONGODB,
        f"{mongo.host}:{port or mongo.port}",
        credentials(mongo.user, mongo.password, mongo.database.name),
        mappings or {"customer": "customers"},
        name=name,
        sync_config={"batch_size": 100, **options.pop("sync_config", {})},
        **options,
    )


def test_full_then_incremental_sync_is_exact_with_shared_timestamps(harness: Any, mongo: Mongo) -> None:
    customers = mongo.database.customers
    customers.insert_many(
        [
            {"email": f"user{i}@example.com", "updated_at": T0 if i < 1_000 else T0 + timedelta(seconds=i % 37)}
            for i in range(3_000)
        ]
    )
    ids = {str(doc["_id"]) for doc in customers.find({}, projection={"_id": 1})}
    config = register(harness, mongo)
    engine = harness.engine(flush_records=400)

    first = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC, record_budget=700)

    assert first.status is SyncStatus.SUCCEEDED and first.steps > 1
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert set(counts) == ids and max(counts.values()) == 1

    changed = [doc["_id"] for doc in customers.find({}, projection={"_id": 1}).sort("_id", 1)][::97][:30]
    later = T0 + timedelta(days=30)
    customers.update_many({"_id": {"$in": changed}}, {"$set": {"updated_at": later, "plan": "team"}})
    inserted = customers.insert_many([{"email": "new@example.com", "updated_at": later} for _ in range(20)])
    second = sync(engine, config.integration_id, record_budget=15)

    new = [r["record_id"] for r in harness.lake_records() if r["batch_id"] == second.sync_id]
    assert sorted(new) == sorted(str(i) for i in [*changed, *inserted.inserted_ids])


def test_types_and_projection(harness: Any, mongo: Mongo) -> None:
    owner = ObjectId()
    mongo.database.accounts.insert_one(
        {
            "owner": owner,
            "balance": Decimal128(Decimal("1234567890123456789.123456789012345")),
            "seen": datetime(2024, 3, 10, 10, 34, 56, 789000, tzinfo=UTC),
            "profile": {"plan": {"name": "gold"}, "seats": 12},
            "avatar": Binary(b"\x00\xff\x10"),
            "tags": ["a", "b"],
            "secret_note": "not mapped, not read",
            "updated_at": T0,
        }
    )
    config = register(
        harness,
        mongo,
        mappings={"account": "accounts"},
        sync_config={
            "field_mappings": {
                "_id": "account_id",
                "owner": "owner_id",
                "balance": "balance",
                "seen": "seen",
                "profile.plan.name": "plan",
                "avatar": "avatar",
                "tags": "tags",
            }
        },
    )
    engine = harness.engine()
    check = engine.test_connection(ORG, config.integration_id)
    assert check.ok and check.streams[0].primary_key == ["_id"] and check.streams[0].cursor_field == "updated_at"

    run = sync(engine, config.integration_id)

    assert run.streams[0].stream.fields is not None and "secret_note" not in run.streams[0].stream.fields
    (record,) = harness.lake_records()
    assert record["record_id"] == record["data"]["account_id"] and len(record["record_id"]) == 24
    assert record["data"] == {
        "account_id": record["record_id"],
        "owner_id": str(owner),
        "balance": "1234567890123456789.123456789012345",
        "seen": "2024-03-10T10:34:56.789000+00:00",
        "plan": "gold",
        "avatar": {"$base64": "AP8Q"},
        "tags": ["a", "b"],
    }
    assert record["cursor"] == "2024-01-01T00:00:00+00:00"


def test_a_missing_collection_is_reported(harness: Any, mongo: Mongo) -> None:
    mongo.database.customers.insert_one({"updated_at": T0})
    config = register(harness, mongo, mappings={"customer": "customers", "invoice": "invoices"})
    result = harness.engine().test_connection(ORG, config.integration_id)
    assert result.status is CheckStatus.MISSING_OBJECT
    assert [s.status for s in result.streams] == [CheckStatus.OK, CheckStatus.MISSING_OBJECT]


def test_an_unreachable_server_is_reported(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mongodb_connector, "TIMEOUT_MS", 300)
    unreachable = Mongo(
        database=pymongo.MongoClient(connect=False)["cg_unreachable"],
        host="127.0.0.1",
        port=1,
        user="reader",
        password="reader-password-9876",
    )
    config = register(harness, unreachable)
    result = harness.engine().test_connection(ORG, config.integration_id)
    assert result.status is CheckStatus.UNREACHABLE and "127.0.0.1:1" in result.message
    assert "reader-password-9876" not in result.model_dump_json()
