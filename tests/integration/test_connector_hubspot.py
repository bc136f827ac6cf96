"""The HubSpot connector through the real `hubspot-api-client` against a local HubSpot
(tests/support/fake_hubspot.py): full and incremental syncs, the search cap, OAuth2 refresh,
rate limits, an outage mid-sync, and refused credentials."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from churnguard.connectors.base import CheckStatus, SourceError, TransientSourceError
from churnguard.models import DataSyncMode, IntegrationCredentials, ProviderName
from churnguard.runs import SyncStatus
from tests.support.fake_api import Seen, request_gaps
from tests.support.fake_hubspot import BASE_TIME, SEARCH_CAP, FakeHubSpot, iso, now_ms
from tests.support.sync import ORG, drive, ref, sync

TOKEN = "pat-na1-test-token"
SEARCH = r"/crm/v3/objects/\w+/search"


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot(token=TOKEN) as fake:
        yield fake  # type: ignore[misc]


def private_app(token: str = TOKEN) -> IntegrationCredentials:
    return IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": token})


def register(
    harness: Any,
    fake: FakeHubSpot,
    mappings: dict[str, str] | None = None,
    creds: IntegrationCredentials | None = None,
    **sync_config: Any,
) -> Any:
    return harness.register(
        ProviderName.HUBSPOT,
        fake.url,
        creds or private_app(),
        mappings if mappings is not None else {"contact": "contacts"},
        sync_config={"requests_per_minute": 100_000, "retry_attempts": 3, **sync_config},
    )


def by_entity(records: list[dict[str, Any]], entity: str, operation: str = "upsert") -> dict[str, dict[str, Any]]:
    return {r["record_id"]: r["data"] for r in records if r["entity"] == entity and r["operation"] == operation}


def searched_after(seen: Seen) -> int:
    """The hs_object_id a search request starts after."""
    filters = seen.json()["filterGroups"][0]["filters"]
    return int(next(f["value"] for f in filters if f["propertyName"] == "hs_object_id"))


def test_full_sync_reads_discovered_properties_typed_with_associations_and_archived_as_deletes(
    harness: Any, hubspot: FakeHubSpot
) -> None:
    hubspot.add_property("contacts", "churn_score", "number")
    hubspot.add_property("contacts", "is_vip", "bool")
    contacts = hubspot.seed(800, properties={"churn_score": "0.75", "is_vip": "true"})
    companies = hubspot.seed(3, "companies")
    deals = hubspot.seed(2, "deals")
    tickets = hubspot.seed(1, "tickets")
    hubspot.associate("contacts", contacts[10], "companies", companies[0])
    hubspot.associate("contacts", contacts[10], "deals", deals[0])
    hubspot.associate("deals", deals[0], "companies", companies[1])
    for contact in contacts[100:700]:  # more than HubSpot returns for one id: paged
        hubspot.associate("companies", companies[2], "contacts", contact)
    hubspot.archive("contacts", contacts[:3])
    hubspot.add_owner("csm@example.com")
    gone = hubspot.add_owner("left@example.com", archived=True)
    config = register(
        harness,
        hubspot,
        {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets", "owner": "owners"},
    )

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED
    records = harness.lake_records()
    people = by_entity(records, "contact")
    assert set(people) == {str(i) for i in contacts[3:]}
    person = people[str(contacts[10])]
    assert person["email"] == f"user{contacts[10]}@example.com" and person["source_ids"] == {
        "hubspot": str(contacts[10])
    }
    assert person["company_id"] == str(companies[0]), "the first associated company"
    assert person["updated_at"] == iso(BASE_TIME + contacts[10] * 1000).replace("+00:00", "Z").replace(".000", "")
    raw = person["raw"]
    assert raw["churn_score"] == 0.75 and raw["is_vip"] is True and raw["hs_object_id"] == contacts[10]
    assert raw["associatedcompanyid"] is None
    assert raw["associations"] == {"companies": [str(companies[0])], "deals": [str(deals[0])], "tickets": []}
    assert set(by_entity(records, "contact", "delete")) == {str(i) for i in contacts[:3]}
    assert by_entity(records, "contact", "delete")[str(contacts[0])] == {
        "id": str(contacts[0]),
        "source_ids": {"hubspot": str(contacts[0])},
    }
    companies_to_contacts = hubspot.seen("POST", "/crm/v4/associations/companies/contacts/batch/read")
    assert [len(s.json()["inputs"]) for s in companies_to_contacts] == [3, 1]  # the second: the rest of one id
    assert by_entity(records, "company")[str(companies[0])]["employees"] == 42
    assert by_entity(records, "company")[str(companies[2])]["raw"]["associations"]["contacts"] == [
        str(i) for i in contacts[100:700]
    ]
    deal = by_entity(records, "deal")[str(deals[0])]
    assert deal["amount_minor"] == 125050 and deal["company_id"] == str(companies[1])
    assert deal["raw"]["associations"] == {
        "contacts": [str(contacts[10])],
        "companies": [str(companies[1])],
    }
    assert set(by_entity(records, "ticket")) == {str(tickets[0])}
    assert [o["email"] for o in by_entity(records, "user").values()] == ["csm@example.com"]
    assert set(by_entity(records, "user", "delete")) == {str(gone)}
    assert all(r["operation"] in ("upsert", "delete") for r in records)
    # 797 live contacts: 4 searches of 200; one associations batch per associated type.
    assert len(hubspot.seen("POST", "/crm/v3/objects/contacts/search")) == 4
    assert len(hubspot.seen("POST", r"/crm/v4/associations/contacts/\w+/batch/read")) == 3
    assert all(len(s.json()["properties"]) == 9 for s in hubspot.seen("POST", "/crm/v3/objects/contacts/search"))


def test_incremental_sync_reads_what_changed_and_what_was_archived_since_the_last_sync(
    harness: Any, hubspot: FakeHubSpot
) -> None:
    contacts = hubspot.seed(600)
    hubspot.archive("contacts", contacts[:2], at=BASE_TIME + 700_000 * 1000)  # before the first sync
    config = register(harness, hubspot)
    engine = harness.engine()
    first = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    assert first.records_written == 600  # 598 contacts and the 2 archived ones as deletes

    changed, archived = contacts[100:105], contacts[200:202]
    hubspot.modify("contacts", changed, firstname="Renamed")
    hubspot.archive("contacts", archived)
    created = hubspot.seed(3, modified=now_ms())
    before = len(hubspot.requests)
    second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert second.status is SyncStatus.SUCCEEDED
    records = [r for r in harness.lake_records() if r["batch_id"] == second.sync_id]
    upserts = by_entity(records, "contact")
    assert set(upserts) == {str(i) for i in [*changed, *created]}
    assert all(upserts[str(i)]["first_name"] == "Renamed" for i in changed)
    assert set(by_entity(records, "contact", "delete")) == {str(i) for i in archived}
    searches = [s for s in hubspot.requests[before:] if s.path.endswith("/search")]
    filters = searches[0].json()["filterGroups"][0]["filters"]
    since = next(int(f["value"]) for f in filters if f["propertyName"] == "lastmodifieddate")
    assert since <= int(first.started_at.timestamp() * 1000) and since > BASE_TIME + 600_000 * 1000
    assert len(searches) == 1


def test_more_than_10000_matches_sharing_one_timestamp_are_read_once_each_within_the_search_cap(
    harness: Any, hubspot: FakeHubSpot
) -> None:
    shared = BASE_TIME + 86_400_000
    ids = hubspot.seed(3_000) + hubspot.seed(6_500, modified=shared) + hubspot.seed(1_000)
    config = register(
        harness,
        hubspot,
        field_mappings={"email": "email", "updated_at": "modified_at"},
        include_raw=False,
        last_sync_timestamp=datetime.fromtimestamp(BASE_TIME / 1000, UTC).isoformat(),
    )

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert run.status is SyncStatus.SUCCEEDED
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert set(counts) == {str(i) for i in ids} and max(counts.values()) == 1
    searches = hubspot.seen("POST", SEARCH)
    assert len(searches) == math.ceil(len(ids) / 200)  # the minimum 200 rows a request allows
    assert all(s.json()["limit"] == 200 and "after" not in s.json() for s in searches)
    # Without raw, only the properties the canonical contact reads, and no associations.
    assert sorted(searches[0].json()["properties"]) == [
        "associatedcompanyid",
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ]
    assert {tuple(r["data"]) for r in harness.lake_records()} == {("email", "modified_at")}
    assert not hubspot.seen("POST", r"/crm/v4/.*")
    # Besides: the properties once (the mapped ones' types travel with the stream), one archived page.
    assert len(hubspot.requests) == len(searches) + 2
    # The cap is real: paging a query past 10,000 results is refused.
    refused = requests.post(
        f"{hubspot.url}/crm/v3/objects/contacts/search",
        json={"after": str(SEARCH_CAP), "limit": 200},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert refused.status_code == 400 and refused.json()["category"] == "VALIDATION_ERROR"


def test_an_outage_mid_sync_resumes_from_the_checkpoint_with_nothing_lost_or_repeated(
    harness: Any, hubspot: FakeHubSpot
) -> None:
    ids = hubspot.seed(5_000)
    config = register(harness, hubspot, retry_attempts=2)
    engine = harness.engine(flush_records=1_000)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))

    # A short burst is retried within the step; then HubSpot stays down longer than the retries.
    hubspot.fail_next(2, 502, match=lambda s: s.path.endswith("/search") and searched_after(s) == ids[999])
    hubspot.fail_next(3, 503, match=lambda s: s.path.endswith("/search") and searched_after(s) >= ids[2_999])
    with pytest.raises(TransientSourceError, match="HubSpot failed"):
        engine.extract_step(ref(run), 600, 1_000_000)
    failed_at = len(hubspot.requests)
    checkpoint = harness.syncs.get(ORG, config.integration_id, run.sync_id).streams[0].state["cursor"]["$state"]
    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 5_000
    counts = Counter(r["record_id"] for r in harness.lake_records())
    assert set(counts) == {str(i) for i in ids} and max(counts.values()) == 1
    resumed = next(s for s in hubspot.requests[failed_at:] if s.path.endswith("/search"))
    assert checkpoint["phase"] == "search" and checkpoint["id"] >= ids[999]
    assert searched_after(resumed) == checkpoint["id"]  # from the last checkpoint, not the beginning


def test_oauth2_refreshes_before_expiry_and_on_401_and_persists_the_rotated_refresh_token(
    harness: Any, hubspot: FakeHubSpot
) -> None:
    hubspot.seed(250)
    hubspot.rotate_refresh_tokens = True
    hubspot.oauth_client("client-1", "client-secret-1", "refresh-original")
    soon = datetime.fromtimestamp(time.time() + 30, UTC).isoformat()  # inside the refresh margin
    creds = IntegrationCredentials.model_validate(
        {
            "credential_type": "oauth2",
            "access_token": "oauth-about-to-expire",
            "refresh_token": "refresh-original",
            "token_expires_at": soon,
            "custom_fields": {"client_id": "client-1", "client_secret": "client-secret-1"},
        }
    )
    config = register(harness, hubspot, creds=creds)
    engine = harness.engine()

    first = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert first.status is SyncStatus.SUCCEEDED and first.records_written == 250
    stored = harness.service.load_credentials(ORG, config.integration_id)
    assert stored.refresh_token.get_secret_value() not in ("refresh-original", None)
    assert stored.refresh_token.get_secret_value() in hubspot.refresh_tokens
    assert stored.access_token.get_secret_value() != "oauth-about-to-expire"
    assert len(hubspot.seen("POST", "/oauth/v1/token")) == 1
    assert not any(s.headers.get("authorization") == "Bearer oauth-about-to-expire" for s in hubspot.requests)

    # HubSpot revokes the token early: the 401 is answered by one refresh, and the sync goes on.
    rotated = stored.refresh_token.get_secret_value()
    hubspot.expire(stored.access_token.get_secret_value())
    second = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert second.status is SyncStatus.SUCCEEDED and second.records_written == 250
    again = harness.service.load_credentials(ORG, config.integration_id)
    assert again.refresh_token.get_secret_value() not in (rotated, "refresh-original")
    assert len(hubspot.seen("POST", "/oauth/v1/token")) == 2
    form = hubspot.seen("POST", "/oauth/v1/token")[-1].form()
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == [rotated]


def test_searches_and_other_requests_are_paced_to_hubspots_limits(harness: Any, hubspot: FakeHubSpot) -> None:
    hubspot.seed(1_600)
    hubspot.limit_rates(general=(4, 1.0), search=(5, 1.0))
    # Another client of the same app has already used half of this second's budget.
    for _ in range(2):
        requests.get(f"{hubspot.url}/crm/v3/owners/", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    config = register(harness, hubspot)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 1_600
    assert hubspot.throttled() == 0, "the connector should wait before HubSpot has to refuse"
    searches = hubspot.seen("POST", SEARCH)
    general = [s for s in hubspot.requests if not s.path.endswith("/search")]
    assert len(searches) == 8 and len(general) > 8
    # At most 5 searches in any second, and at most 4 other requests (the window HubSpot's
    # X-HubSpot-RateLimit-* headers described).
    assert all(later.at - earlier.at >= 1.0 for earlier, later in zip(searches, searches[5:], strict=False))
    assert all(later.at - earlier.at >= 1.0 for earlier, later in zip(general, general[4:], strict=False))


@pytest.mark.parametrize("left", [1, 2])
def test_an_incremental_sync_completes_while_another_app_spends_most_of_the_search_allowance(
    harness: Any, hubspot: FakeHubSpot, left: int
) -> None:
    """Issue 10: with 4 of HubSpot's 5 searches a second spent by another app, 1,000 changed
    contacts used to end in 0 written: every 429 threw the group's answered searches away."""
    contacts = hubspot.seed(1_200)
    config = register(harness, hubspot, mappings={"contact": "contacts"})
    engine = harness.engine(sleep=time.sleep)
    assert sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC).records_written == 1_200
    changed = contacts[100:1_100]
    hubspot.modify("contacts", changed, firstname="Renamed")
    created = hubspot.seed(100, modified=now_ms())
    hubspot.limit_rates(search=(5, 1.0), other_searches=5 - left)
    before = len(hubspot.requests)

    run = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert run.status is SyncStatus.SUCCEEDED, run.errors
    records = [r for r in harness.lake_records() if r["batch_id"] == run.sync_id and r["operation"] == "upsert"]
    counts = Counter(r["record_id"] for r in records)
    assert set(counts) == {str(i) for i in [*changed, *created]} and max(counts.values()) == 1
    searches = [s for s in hubspot.requests[before:] if s.path.endswith("/search")]
    refused = hubspot.throttled()
    assert len(searches) - refused == 6, "1,000 rows in 200s: no answered search was asked again"
    assert refused <= 4, "the pace adapts instead of meeting a 429 at every search"


def test_a_429_waits_for_the_retry_after_hubspot_names(harness: Any, hubspot: FakeHubSpot) -> None:
    hubspot.seed(500)
    body = {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": "c0ffee",
        "policyName": "SECONDLY",
    }
    hubspot.fail_next(1, 429, body=body, headers={"Retry-After": "1"}, match=lambda s: s.path.endswith("/search"))
    config = register(harness, hubspot)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 500
    first, retried = hubspot.seen("POST", SEARCH)[:2]
    assert searched_after(first) == searched_after(retried) == 0
    assert next(request_gaps([first, retried])) >= 0.9


def test_refused_credentials_are_authentication_failed_with_a_clear_message(harness: Any, hubspot: FakeHubSpot) -> None:
    hubspot.seed(10)
    config = register(harness, hubspot, creds=private_app("pat-na1-revoked"))
    engine = harness.engine()

    check = engine.test_connection(ORG, config.integration_id)

    assert check.status is CheckStatus.AUTHENTICATION_FAILED
    assert "HubSpot refused the configured credentials" in check.message
    assert "INVALID_AUTHENTICATION" in check.message and "pat-na1-revoked" not in check.message
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    with pytest.raises(SourceError) as raised:
        engine.prepare(ref(run))
    assert raised.value.kind is CheckStatus.AUTHENTICATION_FAILED
    assert len(hubspot.requests) == 2  # refused once each: no retries of a 401


def test_the_daily_allowance_hubspot_reports_reaches_the_dashboard(
    harness: Any, hubspot: FakeHubSpot, api: Any
) -> None:
    hubspot.seed(30)
    config = register(harness, hubspot)
    run = sync(harness.engine(), config.integration_id)
    assert run.quota is not None and (run.quota.used, run.quota.limit) == (1_000, 250_000)
    (item,) = api.call("GET", "/api/dashboard/integrations", org=ORG).body["items"]
    assert item["quota"]["used"] == 1_000 and item["quota"]["limit"] == 250_000
    quota = next(c for c in item["health"]["components"] if c["name"] == "quota")
    assert quota["score"] == 1.0 and "1000 of 250000 daily API requests" in quota["detail"]
