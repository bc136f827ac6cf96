"""A REST ingestion rule end to end: created through the gateway, its poll schedule fired by the
local cloud once its clock passes the due time, the poll run by the state machine against a
REST API on 127.0.0.1 (the local cloud allows private networks; a default deployment does not)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from local.testing import wait_for
from tests.e2e.conftest import ShiftableClock, Tenant
from tests.support.fake_rest import TOKEN, FakeRest


@pytest.fixture
def rest_api() -> Iterator[FakeRest]:
    with FakeRest(auth="bearer") as fake:
        yield fake  # type: ignore[misc]


def test_a_rule_is_polled_on_its_schedule(new_tenant: Any, schedule_clock: ShiftableClock, rest_api: FakeRest) -> None:
    rest_api.seed(45)
    tenant: Tenant = new_tenant(f"org_rule_{uuid.uuid4().hex[:6]}")
    created = tenant.request(
        "POST",
        "/api/ingestion-rules",
        json={
            "name": "Product events",
            "url": f"{rest_api.url}/v1/events",
            "auth": {"type": "bearer", "token": TOKEN},
            "data_path": "data",
            "pagination": {"type": "cursor", "cursor_path": "meta.next_cursor", "page_size": 20},
            "incremental": {"param": "updated_since", "cursor_field": "updated_at", "format": "iso8601"},
            "sync_frequency": 120,
        },
    )
    assert created.status_code == 201, created.text
    assert TOKEN not in created.text
    rule_id = created.json()["rule_id"]
    history = f"/api/integrations/{rule_id}/syncs"
    try:
        schedule_clock.shift(timedelta(minutes=2, seconds=5))
        runs = wait_for(
            lambda: [r for r in tenant.request("GET", history).json()["items"] if r["status"] == "succeeded"],
            timeout=120,
            what="the scheduled poll to succeed",
        )
        assert runs[0]["trigger"] == "schedule" and runs[0]["progress"]["records_written"] == 45
        assert len(rest_api.seen(path="/v1/events")) == 3
        # The run is final before its totals reach the rule (the same finalize task, a write later).
        rule = wait_for(
            lambda: (
                (r := tenant.request("GET", f"/api/ingestion-rules/{rule_id}").json())["total_records_synced"] and r
            ),
            timeout=30,
            what="the poll's totals on the rule",
        )
        assert rule["total_records_synced"] == 45 and rule["last_poll_at"] is not None
    finally:
        # The session's cloud and clock are shared: a rule left behind would poll in later tests.
        assert tenant.request("DELETE", f"/api/ingestion-rules/{rule_id}").status_code == 204
    assert tenant.request("GET", f"/api/ingestion-rules/{rule_id}").status_code == 404
