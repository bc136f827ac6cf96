"""Mailchimp syncs against a local Mailchimp (tests/support/fake_mailchimp.py) through the engine,
the pipeline and the moto data lake.

Pages are 5 items here (the connector asks for Mailchimp's maximum, 1000, in production) so a
few dozen members span many pages. The connector's clock is the fake's (a second after its last
change), so the incremental windows do not depend on when the test runs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus, SourceError, TransientSourceError
from churnguard.models import DataSyncMode, IntegrationConfiguration, IntegrationCredentials, ProviderName
from churnguard.providers.mailchimp import source as mailchimp
from churnguard.providers.mailchimp.source import MailchimpConnector
from churnguard.resilience import CircuitBreaker, Guard, RateLimiter, RetryPolicy
from churnguard.runs import SyncStatus
from tests.support.fake_api import Seen, request_gaps
from tests.support.fake_mailchimp import ACCESS_TOKEN, API_KEY, FakeMailchimp, member_id, problem
from tests.support.sync import ORG, drive, ref, sync

PAGE = 5
LIST_A, LIST_B = "a1b2c3d4e5", "f6a7b8c9d0"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMailchimp]:
    monkeypatch.setattr(MailchimpConnector, "page_size", PAGE)
    with FakeMailchimp() as api:
        monkeypatch.setattr(mailchimp, "_now", lambda: api.clock + timedelta(seconds=1))
        yield api


def api_key(key: str = API_KEY) -> IntegrationCredentials:
    return IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": key})


def oauth(token: str = ACCESS_TOKEN) -> IntegrationCredentials:
    return IntegrationCredentials.model_validate({"credential_type": "oauth2", "access_token": token})


def register(
    harness: Any, fake: FakeMailchimp, creds: IntegrationCredentials | None = None, name: str = "mc", **sync: Any
) -> Any:
    return harness.register(
        ProviderName.MAILCHIMP,
        f"{fake.url}/3.0",
        creds or api_key(),
        {},
        name=name,
        sync_config={"retry_attempts": 3, "requests_per_minute": 60_000, **sync},
    )


def populate(fake: FakeMailchimp) -> None:
    """Two audiences (23 and 9 members), three campaigns (two sent, with activity), one draft."""
    fake.seed(23, LIST_A)
    fake.seed(9, LIST_B)
    base = datetime(2024, 1, 2, tzinfo=UTC)
    first = fake.add_campaign("c0000000a01", LIST_A)
    for i in range(6):
        email = f"Member{i}@Example.com"
        first.activity.append((email, "open", base + timedelta(minutes=i), None))
        if i % 2 == 0:
            first.activity.append((email, "click", base + timedelta(minutes=i, seconds=5), "https://example.com/a"))
    first.activity.append(("Member7@Example.com", "bounce", base, None))
    first.unsubscribes.append(("Member8@Example.com", base + timedelta(hours=1), "NORMAL"))
    second = fake.add_campaign("c0000000b02", LIST_B)
    second.activity.append(("Member0@Example.com", "open", base, None))
    fake.add_campaign("c0000000c03", LIST_A, status="save")


def by_entity(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["entity"], []).append(record)
    return grouped


def member_path(seen: Seen) -> bool:
    return seen.path.endswith("/members")


def test_full_sync_reads_every_entity_once_in_the_fewest_requests(harness: Any, fake: FakeMailchimp) -> None:
    populate(fake)
    config = register(harness, fake)

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_rejected == 0
    records = by_entity(harness.lake_records())
    assert sorted(records) == ["audience", "campaign", "campaign_report", "email_event", "list_membership"]
    members = records["list_membership"]
    ids = Counter(r["record_id"] for r in members)
    assert len(ids) == 32 and max(ids.values()) == 1
    expected = f"{LIST_A}/{member_id('Member3@Example.com')}"
    sample = next(r for r in members if r["record_id"] == expected)
    assert sample["data"]["email"] == "Member3@Example.com" and sample["data"]["list_id"] == LIST_A
    assert sample["cursor"] == sample["data"]["raw"]["last_changed"]
    assert "_links" not in sample["data"]["raw"]
    assert {r["record_id"] for r in records["audience"]} == {LIST_A, LIST_B}
    assert len(records["campaign"]) == 3 and len(records["campaign_report"]) == 2
    activity = records["email_event"]
    actions = Counter(r["data"]["type"] for r in activity)
    assert actions == {"open": 7, "click": 3, "bounce": 1, "unsubscribe": 1}
    assert len({r["record_id"] for r in activity}) == 12
    click = next(r["data"] for r in activity if r["data"]["type"] == "click")
    assert click["campaign_id"] == "c0000000a01" and click["url"] == "https://example.com/a"
    assert click["email"] == "Member0@Example.com" and click["occurred_at"] == "2024-01-02T00:00:05Z"

    # The fewest requests paging allows: no empty last page, one listing per stream.
    member_pages = fake.seen("GET", "/3.0/lists/.*/members")
    assert len(member_pages) == 5 + 2  # ceil(23 / 5) + ceil(9 / 5)
    assert {s.param("count") for s in member_pages} == {str(PAGE)}
    assert all(s.param("exclude_fields") == "members._links,_links" for s in member_pages)
    assert all(s.param("status") is None for s in member_pages), "a full sync reads no archived members"
    assert len(fake.seen("GET", "/3.0/lists")) == 1, "the member stream reuses the audience stream's listing"
    assert fake.max_open == 1


def test_incremental_sync_reads_changes_per_audience_and_archived_members_as_deletes(
    harness: Any, fake: FakeMailchimp
) -> None:
    populate(fake)
    config = register(harness, fake)
    engine = harness.engine()
    first = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)
    assert first.status is SyncStatus.SUCCEEDED and first.records_written == 32 + 2 + 3 + 2 + 12

    changed = [member_id(f"Member{i}@Example.com") for i in (2, 11, 19)]
    for ident in changed:
        fake.change(LIST_A, ident, FNAME="Changed")
    fake.change(LIST_B, member_id("Member4@Example.com"), status="archived")
    (new_member,) = fake.seed(1, LIST_B)
    fake.members[LIST_B][new_member].last_changed = fake.tick()
    late = fake.tick()
    fake.campaigns["c0000000a01"].activity.append(("Member1@Example.com", "click", late, "https://example.com/b"))

    second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert second.status is SyncStatus.SUCCEEDED
    new = by_entity([r for r in harness.lake_records() if r["batch_id"] == second.sync_id])
    members = new["list_membership"]
    upserts = sorted(r["data"]["member_id"] for r in members if r["operation"] == "upsert")
    assert upserts == sorted([*changed, new_member])
    assert all(r["data"]["first_name"] == "Changed" for r in members if r["data"].get("member_id") in changed)
    (deleted,) = [r for r in members if r["operation"] == "delete"]
    assert deleted["record_id"] == f"{LIST_B}/{member_id('Member4@Example.com')}"
    (click,) = new["email_event"]
    assert click["data"]["url"] == "https://example.com/b" and click["data"]["email"] == "Member1@Example.com"
    assert len(new["campaign"]) == 3 and len(new["audience"]) == 2, "small objects are read whole every time"

    third = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)
    quiet = by_entity([r for r in harness.lake_records() if r["batch_id"] == third.sync_id])
    assert "list_membership" not in quiet and "email_event" not in quiet


def test_a_first_incremental_sync_starts_at_last_sync_timestamp(harness: Any, fake: FakeMailchimp) -> None:
    ids = fake.seed(12, LIST_A)
    recent = ids[3:5]
    for ident in recent:
        fake.change(LIST_A, ident)
    start = fake.members[LIST_A][recent[0]].last_changed
    config = harness.register(
        ProviderName.MAILCHIMP,
        f"{fake.url}/3.0",
        api_key(),
        {"member": "members"},
        sync_config={"requests_per_minute": 60_000, "last_sync_timestamp": start.isoformat()},
    )

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert run.status is SyncStatus.SUCCEEDED
    assert sorted(r["data"]["member_id"] for r in harness.lake_records()) == sorted(recent)
    (first_page, *_) = fake.seen("GET", "/3.0/lists/.*/members")
    assert first_page.param("since_last_changed") == (start - timedelta(seconds=1)).isoformat()


def test_a_member_changed_mid_read_shifts_no_one_out_of_the_window(harness: Any, fake: FakeMailchimp) -> None:
    ids = fake.seed(23, LIST_A)
    config = register(harness, fake)
    changed = {"done": False}

    def change_once(seen: Seen) -> bool:
        """While page 3 is asked for, an already read member changes: it leaves the window."""
        if member_path(seen) and seen.param("offset") == "10" and not changed["done"]:
            fake.change(LIST_A, ids[1], FNAME="Moved")
            changed["done"] = True
        return False

    fake.fail_next(1, match=change_once)
    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED
    read = Counter(r["data"]["member_id"] for r in harness.lake_records() if r["entity"] == "list_membership")
    assert set(read) == set(ids) and max(read.values()) == 1, "the member after the shift was not skipped"
    offsets = [s.param("offset") for s in fake.seen("GET", "/3.0/lists/.*/members")]
    assert offsets == ["0", "5", "10", "9", "14", "19"], "the offset moved back by the one member that left"


def test_an_outage_mid_sync_resumes_from_the_checkpoint_exactly_once(harness: Any, fake: FakeMailchimp) -> None:
    ids = fake.seed(48, LIST_A)
    config = register(harness, fake, retry_attempts=2)
    engine = harness.engine(flush_records=10)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))

    # A short burst inside one invocation is absorbed by retries; a longer outage fails the step.
    fake.fail_next(2, 503, match=lambda s: member_path(s) and s.param("offset") == "10")
    fake.fail_next(3, 502, match=lambda s: member_path(s) and s.param("offset") == "30")
    with pytest.raises(TransientSourceError) as outage:
        engine.extract_step(ref(run), 600, 1_000_000)
    assert "HTTP 502" in outage.value.message
    status = engine.get_sync_status(ORG, config.integration_id, run.sync_id)
    assert status.status is SyncStatus.RUNNING and "HTTP 502" in status.errors[-1].message

    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 48 + 1
    read = Counter(r["data"]["member_id"] for r in harness.lake_records() if r["entity"] == "list_membership")
    assert set(read) == set(ids) and max(read.values()) == 1
    served = [s.param("offset") for s in fake.seen("GET", "/3.0/lists/.*/members")]
    assert served.count("0") == served.count("5") == 1, "the retried step resumed from its checkpoint"
    assert served.count("10") == 3 and served.count("30") == 4


def test_rate_limits_are_honoured(harness: Any, fake: FakeMailchimp) -> None:
    fake.seed(12, LIST_A)
    config = register(harness, fake, requests_per_minute=300, concurrent_requests=1)
    throttled = problem(429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")
    fake.fail_next(1, 429, body=throttled.body, headers={"Retry-After": "1"}, match=member_path)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 12 + 1
    requests = fake.seen()[1:]  # after prepare's ping: the extract step's own limiter
    gaps = list(request_gaps(requests))
    # 300 a minute, one at a time: 0.2 s apart as sent (arrival adds a first connection's setup).
    assert min(gaps) >= 0.15 and requests[-1].at - requests[0].at >= 0.2 * len(gaps)
    after_429 = next(i for i, s in enumerate(requests) if member_path(s))
    assert requests[after_429 + 1].at - requests[after_429].at >= 0.9, "Retry-After: 1 was honoured"
    assert fake.max_open == 1 and fake.throttled() == 0


def test_bad_or_revoked_credentials_are_authentication_failed(harness: Any, fake: FakeMailchimp) -> None:
    fake.seed(12, LIST_A)
    bad = register(harness, fake, api_key("ffffffffffffffffffffffffffffffff-us21"))
    check = harness.engine().test_connection(ORG, bad.integration_id)
    assert check.status is CheckStatus.AUTHENTICATION_FAILED
    assert check.message == (
        "Mailchimp refused the configured credentials: API Key Invalid; replace them and test the connection"
    )
    assert "ffff" not in check.message

    # OAuth2: Mailchimp tokens do not expire and come without a refresh token, so a 401 is final.
    config = register(harness, fake, oauth(), name="mc-oauth")
    assert harness.engine().test_connection(ORG, config.integration_id).ok
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    fake.fail_next(1, 401, body=problem(401, "API Key Invalid", "revoked").body, match=member_path)
    with pytest.raises(SourceError) as refused:
        engine.extract_step(ref(run), 600, 1_000_000)
    assert refused.value.kind is CheckStatus.AUTHENTICATION_FAILED and not refused.value.retryable
    assert len(fake.seen("GET", "/3.0/lists/.*/members")) == 1, "an authentication failure is not retried"
    assert harness.integrations.get(ORG, config.integration_id).status.value == "auth_failed"


def connector(base_url: str, creds: IntegrationCredentials) -> MailchimpConnector:
    config = IntegrationConfiguration(
        organization_id=ORG, integration_name="mc", provider_name=ProviderName.MAILCHIMP, base_url=base_url
    )
    guard = Guard(
        retry=RetryPolicy(attempts=0, base_delay=0.0),
        limiter=RateLimiter(6000, 1),
        breaker=CircuitBreaker(None, ORG, "int_x"),  # type: ignore[arg-type]
    )
    return MailchimpConnector(config, creds, guard)


def test_the_address_comes_from_base_url_or_the_key_s_data_centre() -> None:
    assert connector("", api_key("abc-us21"))._base() == "https://us21.api.mailchimp.com/3.0"
    assert connector("http://127.0.0.1:9/3.0/", api_key("abc-us21"))._base() == "http://127.0.0.1:9/3.0"
    with_dc = IntegrationCredentials.model_validate(
        {"credential_type": "oauth2", "access_token": "t", "custom_fields": {"dc": "us6"}}
    )
    assert connector("", with_dc)._base() == "https://us6.api.mailchimp.com/3.0"
    with pytest.raises(SourceError) as no_dc:
        connector("", api_key("secret-key-without-suffix!"))._base()
    assert no_dc.value.kind is CheckStatus.INVALID_CONFIGURATION and "secret" not in no_dc.value.message
