"""Change data capture from a real MongoDB replica set through change streams.

No MongoDB server can be installed on the machines our CI runs on (no package provides one), so
these tests are skipped unless MONGODB_URI names a replica set (a single-node one will do), e.g.
MONGODB_URI=mongodb://127.0.0.1:27017/?replicaSet=rs0&directConnection=true make test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from churnguard.cdc_models import CapturePhase
from churnguard.models import IntegrationCredentials, ProviderName
from churnguard.store.cdc import CHECKPOINT_SCOPE
from tests.support.cdc import Cdc, crashed_turn, latest, once_each
from tests.support.sync import DatabaseUrl

MONGODB_URI = os.environ.get("MONGODB_URI", "")
pytestmark = [
    pytest.mark.skipif(not MONGODB_URI, reason="no MongoDB server here: set MONGODB_URI to a replica set to run"),
    pytest.mark.timeout(300),
]


class MongoDatabase:
    """A per-test database, in the shape the capture helper expects."""

    def __init__(self, client: Any, name: str) -> None:
        parts = urlsplit(MONGODB_URI)
        self.client, self.name = client, name
        self.db = client[name]
        self.url = DatabaseUrl(parts.hostname or "127.0.0.1", parts.port or 27017, "", "", name)
        self.options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.login = None


@pytest.fixture
def cdc(harness: Any) -> Iterator[Cdc]:
    import pymongo

    client = pymongo.MongoClient(MONGODB_URI, tz_aware=True)
    database = MongoDatabase(client, f"cg_{secrets.token_hex(6)}")
    capture = Cdc(harness, database, ProviderName.MONGODB)
    try:
        yield capture
    finally:
        client.drop_database(database.name)
        client.close()


def register(cdc: Cdc) -> None:
    """The integration, with the server's login (if MONGODB_URI has one) and replica set options."""
    parts = urlsplit(MONGODB_URI)
    fields = {"database": cdc.db.name}
    fields.update({key: cdc.db.options[key] for key in ("replicaSet", "directConnection") if key in cdc.db.options})
    if parts.username:
        login = {"credential_type": "basic_auth", "username": parts.username, "password": parts.password or ""}
        fields["authSource"] = cdc.db.options.get("authSource", "admin")
    else:
        login = {"credential_type": "custom"}
    cdc.register({"account": "accounts"}, IntegrationCredentials.model_validate({**login, "custom_fields": fields}))


def test_snapshot_then_changes_land_each_once_and_match_the_collection(cdc: Cdc) -> None:
    accounts = cdc.db.db["accounts"]
    accounts.insert_many([{"_id": i, "plan": "free", "mrr": 0} for i in range(1, 501)])
    register(cdc)
    assert cdc.turn(budget=2.0).keep_going
    assert cdc.state().phase is CapturePhase.STREAMING
    accounts.update_many({"_id": {"$lte": 100}}, {"$set": {"plan": "pro"}})
    accounts.delete_many({"_id": {"$gt": 450}})
    accounts.insert_one({"_id": 1_000, "plan": "new", "mrr": 5})
    cdc.turn(budget=2.0)

    records = cdc.records()
    once_each(records)
    lake = latest(records)
    table = {str(doc["_id"]): doc for doc in accounts.find()}
    assert set(lake) == set(table)
    assert {key: doc["plan"] for key, doc in lake.items()} == {key: doc["plan"] for key, doc in table.items()}
    assert sorted(int(r["record_id"]) for r in records if r["operation"] == "delete") == list(range(451, 501))


def test_a_crash_before_the_checkpoint_lands_each_change_once(cdc: Cdc, monkeypatch: pytest.MonkeyPatch) -> None:
    accounts = cdc.db.db["accounts"]
    accounts.insert_many([{"_id": i, "plan": "free"} for i in range(1, 6)])
    register(cdc)
    cdc.turn(budget=1.0)
    accounts.update_many({}, {"$set": {"plan": "team"}})
    crashed_turn(cdc, monkeypatch, budget=2.0)
    cdc.turn(budget=2.0)

    records = cdc.records()
    once_each(records)
    assert len([r for r in records if r["data"]["plan"] == "team"]) == 5


def test_a_resume_token_the_oplog_no_longer_holds_is_snapshotted_again(cdc: Cdc) -> None:
    accounts = cdc.db.db["accounts"]
    accounts.insert_many([{"_id": i, "plan": "free"} for i in range(1, 11)])
    register(cdc)
    cdc.turn(budget=1.0)
    seen = cdc.checkpoints.checkpoint(CHECKPOINT_SCOPE, cdc.integration_id)
    # A position from 1970: long before anything the oplog holds.
    cdc.checkpoints.advance(CHECKPOINT_SCOPE, cdc.integration_id, seen, "82" + "00000001" + "00000001")
    cdc.captures.update("org_sync", cdc.integration_id, snapshot_position=None)

    cdc.turn(budget=1.0)

    state = cdc.state()
    assert state.snapshots == 2 and any("lost" in note.message for note in state.notes)
