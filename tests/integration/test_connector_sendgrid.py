"""SendGrid syncs against a local SendGrid (tests/support/fake_sendgrid.py) through the engine,
the pipeline and the moto data lake.

Suppression pages are 5 rows here (500, SendGrid's maximum, in production), and every 3
suppressions share a `created` second, so equal cursor values straddle page boundaries. The
connector's clock is pinned to `clock["now"]`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus, SourceError, TransientSourceError
from churnguard.models import DataSyncMode, IntegrationCredentials, ProviderName
from churnguard.providers.sendgrid import source as sendgrid
from churnguard.providers.sendgrid.source import SendGridConnector
from churnguard.runs import SyncStatus
from tests.support.fake_sendgrid import API_KEY, EPOCH, FakeSendGrid, errors
from tests.support.sync import ORG, drive, ref, sync

PAGE = 5
NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> dict[str, datetime]:
    now = {"now": NOW}
    monkeypatch.setattr(sendgrid, "_now", lambda: now["now"])
    monkeypatch.setattr(SendGridConnector, "page_size", PAGE)
    return now


@pytest.fixture
def fake() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as api:
        yield api


def key(value: str = API_KEY) -> IntegrationCredentials:
    return IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": value})


def register(
    harness: Any,
    fake: FakeSendGrid,
    mappings: dict[str, str] | None = None,
    *,
    creds: IntegrationCredentials | None = None,
    name: str = "sg",
    **sync: Any,
) -> Any:
    return harness.register(
        ProviderName.SENDGRID,
        fake.url,
        creds or key(),
        mappings or {},
        name=name,
        sync_config={"retry_attempts": 3, "requests_per_minute": 60_000, **sync},
    )


def populate(fake: FakeSendGrid) -> None:
    fake.seed(23, "bounces")
    fake.seed(10, "blocks")
    fake.seed(3, "spam_reports")
    fake.seed(2, "invalid_emails")
    fake.seed(7, "unsubscribes")
    fake.categories = [f"cat{i:02d}" for i in range(12)]
    fake.stats["2024-03-09"] = {"requests": 100, "delivered": 97, "opens": 40, "clicks": 9}
    fake.category_stats[("2024-03-09", "cat03")] = {"requests": 10, "delivered": 10, "opens": 4}


def by_entity(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records by entity; suppressions, all canonical email events, by their type."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        kind = record["data"]["type"] if record["entity"] == "email_event" else record["entity"]
        grouped.setdefault(kind, []).append(record)
    return grouped


def suppressions(kind: str) -> Any:
    return lambda seen: seen.path == f"/v3/suppression/{kind}"


def test_full_sync_reads_stats_and_suppressions_in_the_fewest_requests(
    harness: Any, fake: FakeSendGrid, clock: Any
) -> None:
    populate(fake)
    config = register(harness, fake)

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_rejected == 0
    records = by_entity(harness.lake_records())
    counts = {entity: len(rows) for entity, rows in records.items()}
    days = sendgrid.STATS_LOOKBACK_DAYS + 1
    assert counts == {
        "bounce": 23,
        "block": 10,
        "spam_report": 3,
        "invalid_email": 2,
        "unsubscribe": 7,
        "email_stat": days,
        "category_stat": days * 12,
    }
    bounce = next(r for r in records["bounce"] if r["data"]["email"] == "bounces4@example.com")
    assert bounce["entity"] == "email_event" and bounce["cursor"] == EPOCH + 1
    assert bounce["record_id"] == f"bounce:bounces4@example.com:{EPOCH + 1}", (
        "type, address, time: as its webhook event"
    )
    assert bounce["data"]["occurred_at"] == "2024-01-01T00:00:01Z" and bounce["data"]["status"] == "5.1.1"
    assert len({r["record_id"] for r in records["bounce"]}) == 23
    day = next(r for r in records["email_stat"] if r["record_id"] == "2024-03-09")
    assert day["data"] == {"date": "2024-03-09", "requests": 100, "delivered": 97, "opens": 40, "clicks": 9}
    cat = next(r for r in records["category_stat"] if r["record_id"] == '["2024-03-09","cat03"]')
    assert cat["data"]["opens"] == 4 and cat["data"]["category"] == "cat03"

    # The fewest requests: no empty page after a full one (the Link header says it was the last).
    assert len(fake.seen("GET", "/v3/suppression/bounces")) == 5  # ceil(23 / 5)
    assert len(fake.seen("GET", "/v3/suppression/blocks")) == 2  # 10 rows: two full pages, no third
    assert {s.param("limit") for s in fake.seen("GET", "/v3/suppression/.*")} == {str(PAGE)}
    chunks = math.ceil(days / sendgrid.STATS_CHUNK_DAYS)
    assert len(fake.seen("GET", "/v3/stats")) == chunks
    assert len(fake.seen("GET", "/v3/categories/stats")) == chunks * 2  # 12 categories: 10 + 2 per request
    assert all(len(s.query["categories"]) <= 10 for s in fake.seen("GET", "/v3/categories/stats"))


def test_incremental_sync_reads_new_suppressions_and_rereads_recent_stats(
    harness: Any, fake: FakeSendGrid, clock: Any
) -> None:
    populate(fake)
    config = register(harness, fake)
    engine = harness.engine()
    first = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)
    assert first.status is SyncStatus.SUCCEEDED

    # New suppressions, some in the very second the first run's window ended on (it ended a
    # second before its start), some sharing a second across a page boundary.
    until = int(NOW.timestamp()) - 1
    fake.suppressions["bounces"].append(fake.suppression("bounces", "late@example.com", until + 1))
    new = fake.seed(11, "bounces", start=until + 60)
    fake.stats["2024-03-10"] = {"requests": 5, "delivered": 5}
    clock["now"] = NOW + timedelta(days=1)

    second = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL)

    assert second.status is SyncStatus.SUCCEEDED and second.mode is DataSyncMode.INCREMENTAL
    fresh = by_entity([r for r in harness.lake_records() if r["batch_id"] == second.sync_id])
    assert sorted(r["data"]["email"] for r in fresh["bounce"]) == sorted(["late@example.com", *new])
    assert "block" not in fresh and "unsubscribe" not in fresh
    assert sorted(r["record_id"] for r in fresh["email_stat"]) == [
        "2024-03-08",
        "2024-03-09",
        "2024-03-10",
        "2024-03-11",
    ], "the last two days before the previous end are read again: their stats may have changed"
    assert next(r for r in fresh["email_stat"] if r["record_id"] == "2024-03-10")["data"]["requests"] == 5
    starts = {s.param("start_time") for s in fake.seen("GET", "/v3/suppression/bounces") if s.param("start_time")}
    assert starts == {str(until + 1)}


def test_an_outage_mid_sync_resumes_from_the_checkpoint_exactly_once(
    harness: Any, fake: FakeSendGrid, clock: Any
) -> None:
    emails = fake.seed(48, "bounces")
    config = register(harness, fake, {"bounce": "bounces"}, retry_attempts=2)
    engine = harness.engine(flush_records=10)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))

    fake.fail_next(2, 503, match=lambda s: suppressions("bounces")(s) and s.param("offset") == "10")
    fake.fail_next(3, 500, match=lambda s: suppressions("bounces")(s) and s.param("offset") == "30")
    with pytest.raises(TransientSourceError) as outage:
        engine.extract_step(ref(run), 600, 1_000_000)
    assert "HTTP 500" in outage.value.message

    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 48
    read = Counter(r["data"]["email"] for r in harness.lake_records())
    assert set(read) == set(emails) and max(read.values()) == 1
    served = [s.param("offset") for s in fake.seen("GET", "/v3/suppression/bounces")]
    assert served.count("0") == served.count("5") == 1, "the retried step resumed from its checkpoint"
    assert served.count("10") == 3 and served.count("30") == 4


def test_the_rate_limit_headers_are_honoured(harness: Any, fake: FakeSendGrid, clock: Any) -> None:
    fake.seed(30, "bounces")
    config = register(harness, fake, {"bounce": "bounces"})
    fake.rate_limit(3, 1.0)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 30
    assert fake.throttled() == 0, "the client paused when Remaining reached 0 instead of running into 429s"
    arrivals = [s.at for s in fake.seen()]
    assert len(fake.exhausted) >= 2
    for spent_at, reset_at in fake.exhausted:
        following = [at for at in arrivals if at > spent_at]
        if following:
            assert following[0] >= reset_at - 0.02, "the next request waited for X-RateLimit-Reset"


def test_a_429_is_retried_after_the_rate_limit_reset(harness: Any, fake: FakeSendGrid, clock: Any) -> None:
    fake.seed(30, "bounces")
    config = register(harness, fake, {"bounce": "bounces"})
    reset = math.ceil(time.time()) + 2
    fake.fail_next(
        1,
        429,
        body=errors("too many requests"),
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)},
        match=lambda s: s.param("offset") == "20",
    )

    run = sync(harness.engine(sleep=time.sleep), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 30
    requests = fake.seen()
    throttled = next(i for i, s in enumerate(requests) if s.param("offset") == "20")
    epoch_at = time.time() - (time.monotonic() - requests[throttled].at)
    gap = requests[throttled + 1].at - requests[throttled].at
    assert gap >= reset - epoch_at - 0.05 and gap >= 0.9, "the retry waited for X-RateLimit-Reset"


def test_bad_or_revoked_keys_are_authentication_failed(harness: Any, fake: FakeSendGrid, clock: Any) -> None:
    fake.seed(12, "bounces")
    bad = register(harness, fake, creds=key("SG.not-a-valid-key"), name="sg-bad")
    check = harness.engine().test_connection(ORG, bad.integration_id)
    assert check.status is CheckStatus.AUTHENTICATION_FAILED
    assert check.message == (
        "SendGrid refused the configured credentials: authorization required; replace them and test the connection"
    )

    # API keys do not expire and there is no refresh token: a 401 mid-sync is final.
    config = register(harness, fake, {"bounce": "bounces"})
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    fake.fail_next(1, 401, body=errors("authorization required"), match=suppressions("bounces"))
    with pytest.raises(SourceError) as refused:
        engine.extract_step(ref(run), 600, 1_000_000)
    assert refused.value.kind is CheckStatus.AUTHENTICATION_FAILED and not refused.value.retryable
    assert len(fake.seen("GET", "/v3/suppression/bounces")) == 1
    assert harness.integrations.get(ORG, config.integration_id).status.value == "auth_failed"


def test_only_the_checked_entities_are_probed(harness: Any, fake: FakeSendGrid, clock: Any) -> None:
    config = register(harness, fake, {"bounce": "bounces", "daily": "stats"})
    check = harness.engine().test_connection(ORG, config.integration_id)
    assert check.ok and [s.entity for s in check.streams] == ["bounce", "daily"]
    assert check.streams[0].primary_key == ["type", "email"] and check.streams[0].cursor_field == "created"
    paths = [s.path for s in fake.seen()]
    assert paths == ["/v3/scopes", "/v3/suppression/bounces", "/v3/stats"]
