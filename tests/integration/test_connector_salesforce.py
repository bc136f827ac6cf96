"""The Salesforce connector through simple-salesforce against a local fake org
(tests/support/fake_salesforce.py), the engine, the pipeline and the moto data lake."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from churnguard.connectors.base import CheckStatus, SourceError, SourcePausedError, TransientSourceError
from churnguard.models import DataSyncMode, IntegrationCredentials, ProviderName
from churnguard.pipeline.core import StreamPipeline
from churnguard.providers.salesforce.source import SalesforceConnector
from churnguard.resilience import CLOSED
from churnguard.runs import SyncStatus
from tests.support.fake_api import Reply, Seen
from tests.support.fake_salesforce import FakeSalesforce
from tests.support.sync import ORG, drive, ref, sync

SECRET = "client-secret-value-0123456789"
QUERY = r"/services/data/v59\.0/query(All)?/?"
QUERY_MORE = r"/services/data/v59\.0/query(All)?/01g.*"
RESULTS = r"/services/data/v59\.0/jobs/query/750\w+/results"


@pytest.fixture
def fake() -> Iterator[FakeSalesforce]:
    server = FakeSalesforce()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def oauth(**custom: str) -> IntegrationCredentials:
    return IntegrationCredentials.model_validate(
        {
            "credential_type": "oauth2",
            "access_token": "access-0",
            "refresh_token": "refresh-0",
            "custom_fields": {"client_id": "cg-connected-app", "client_secret": SECRET, **custom},
        }
    )


def register(
    harness: Any,
    fake: FakeSalesforce,
    mappings: dict[str, str] | None = None,
    *,
    creds: IntegrationCredentials | None = None,
    name: str | None = None,
    source_options: dict[str, Any] | None = None,
    **sync_config: Any,
) -> Any:
    return harness.register(
        ProviderName.SALESFORCE,
        fake.url,
        creds or oauth(),
        {"account": "Account"} if mappings is None else mappings,
        name=name or f"salesforce-{secrets.token_hex(4)}",
        sync_config={"retry_attempts": 3, "requests_per_minute": 100_000, **sync_config},
        source_options=source_options or {},
    )


def ids_of(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["record_id"] for r in records)


def data_requests(fake: FakeSalesforce) -> list[Seen]:
    return fake.seen("GET", QUERY) + fake.seen("GET", QUERY_MORE)


def test_a_full_sync_reads_every_default_object_in_2000_row_pages(harness: Any, fake: FakeSalesforce) -> None:
    accounts = fake.seed(4_500)
    for sobject in ("Contact", "Lead", "Opportunity", "Case", "Task"):
        fake.seed(3, sobject)
    config = register(harness, fake, mappings={})

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 4_515
    records = harness.lake_records()
    assert set(ids_of(records).values()) == {1} and len(records) == 4_515
    by_entity = Counter(r["entity"] for r in records)
    assert by_entity == {"company": 4_500, "contact": 3, "lead": 3, "deal": 3, "ticket": 3, "task": 3}
    sample = next(r for r in records if r["record_id"] == accounts[41])
    assert sample["provider"] == "salesforce" and sample["source"] == "Account" and sample["operation"] == "upsert"
    assert sample["cursor"] == "2024-01-01T00:00:13+00:00"
    assert sample["schema_version"] == 2 and sample["data"] == {
        "id": accounts[41],
        "source_ids": {"salesforce": accounts[41]},
        "name": "Name 42",
        "industry": "New",
        "employees": 420,
        "annual_revenue_minor": 6300,
        "created_at": "2024-01-01T00:00:13Z",
        "updated_at": "2024-01-01T00:00:13Z",
        "raw": sample["data"]["raw"],
    }
    assert sample["data"]["raw"] == {
        "Id": accounts[41],
        "IsDeleted": False,
        "CreatedDate": "2024-01-01T00:00:13+00:00",
        "LastModifiedDate": "2024-01-01T00:00:13+00:00",
        "SystemModstamp": "2024-01-01T00:00:13+00:00",
        "Name": "Name 42",
        "Industry": "New",
        "AnnualRevenue": 63.0,
        "NumberOfEmployees": 420,
        "BillingCity": "BillingCity 42",
        "Churn_Score__c": 63.0,
        "Is_Strategic__c": True,
        "Renewal_Date__c": "2024-07-15",
    }
    # One describe per object, then the fewest pages: 4,500 accounts in 3 pages of at most 2,000.
    assert len(fake.seen("GET", r".*/describe/?")) == 6
    account_pages = [r for r in data_requests(fake) if "FROM Account " in (r.param("q") or "") or "query/01g" in r.path]
    assert len(fake.seen("GET", QUERY_MORE)) == 2 and len(account_pages) == 3
    assert {r.headers["sforce-query-options"] for r in data_requests(fake)} == {"batchSize=2000"}
    assert not fake.seen("GET", r".*/queryAll.*"), "a full read does not ask for deleted rows"
    assert len(fake.requests) == 6 + 3 + 5
    assert not fake.seen("POST"), "no token refresh and no bulk job were needed"


def test_incremental_sync_reads_changes_and_deletes_after_the_last_row(harness: Any, fake: FakeSalesforce) -> None:
    fake.batch_cap = 10
    ids = fake.seed(35)
    config = register(harness, fake)
    engine = harness.engine(flush_records=10)
    first = sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL, record_budget=15)
    assert first.status is SyncStatus.SUCCEEDED and first.steps > 1 and first.records_written == 35

    fake.update("Account", ids[3], Name="Renamed")
    fake.delete("Account", ids[7])
    added = fake.seed(2)
    second = sync(engine, config.integration_id)

    assert second.mode is DataSyncMode.INCREMENTAL and second.status is SyncStatus.SUCCEEDED
    changed = [r for r in harness.lake_records() if r["batch_id"] == second.sync_id]
    assert sorted((r["record_id"], r["operation"]) for r in changed) == sorted(
        [(ids[3], "upsert"), (ids[7], "delete"), *((i, "upsert") for i in added)]
    )
    assert next(r for r in changed if r["record_id"] == ids[3])["data"]["name"] == "Renamed"
    incremental = fake.soql[-1]
    assert "WHERE SystemModstamp > 2024-01-01T00:00:11Z OR (SystemModstamp = 2024-01-01T00:00:11Z AND Id >" in (
        incremental
    )
    assert incremental.endswith("ORDER BY SystemModstamp ASC, Id ASC")
    assert fake.seen("GET", r".*/queryAll/?"), "incremental reads include deleted rows"

    third = sync(engine, config.integration_id)
    assert third.status is SyncStatus.SUCCEEDED and third.records_written == 0


def test_a_record_whose_save_commits_late_is_read_by_the_next_incremental_sync(
    harness: Any, fake: FakeSalesforce
) -> None:
    """SystemModstamp is stamped when a save starts: a long transaction's record becomes visible
    after a sync has read past that time, and the lookback window reads it the next time."""
    fake.clock = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)  # stamps as Salesforce's
    ids = fake.seed(12)
    with_window = register(harness, fake)
    without = register(harness, fake, source_options={"account": {"lookback_seconds": 0}})
    engine = harness.engine()
    for config in (with_window, without):
        assert sync(engine, config.integration_id, mode=DataSyncMode.INCREMENTAL).records_written == 12

    late = fake.start_save()
    fake.update("Account", ids[0], Name="Renamed")  # a later stamp, committed at once
    for config in (with_window, without):
        assert harness.written_by(sync(engine, config.integration_id)) == [ids[0]]
    fake.commit(late)

    queries = len(data_requests(fake))
    caught = sync(engine, with_window.integration_id)
    assert harness.written_by(caught) == [late], "the records re-read in the window are not written again"
    assert "WHERE SystemModstamp >= " in fake.soql[-1]
    assert len(data_requests(fake)) == queries + 1, "the window costs no request while it fits one page"
    assert sync(engine, with_window.integration_id).records_written == 0
    assert harness.written_by(sync(engine, without.integration_id)) == [], "without a window the record is lost"


def test_an_expired_session_is_refreshed_and_the_read_goes_on(
    harness: Any, fake: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.batch_cap = 10
    fake.seed(40)
    config = register(harness, fake)
    original = StreamPipeline.process
    pages = {"count": 0}

    def process_then_expire(self: StreamPipeline, rows: Any, batch: Any, *args: Any) -> None:
        original(self, rows, batch, *args)
        pages["count"] += 1
        if pages["count"] == 2:
            fake.expire_tokens()  # the access token dies between two pages

    monkeypatch.setattr(StreamPipeline, "process", process_then_expire)
    saves: list[Any] = []
    replace = harness.service.replace_credentials

    def counted(*args: Any) -> Any:
        saves.append(args)
        return replace(*args)

    monkeypatch.setattr(harness.service, "replace_credentials", counted)
    run = sync(harness.engine(), config.integration_id)
    assert len(saves) == 1, "the renewed token and the instance URL it names are saved in one write"

    assert run.status is SyncStatus.SUCCEEDED
    counts = ids_of(harness.lake_records())
    assert len(counts) == 40 and max(counts.values()) == 1
    (refresh,) = fake.seen("POST", r"/services/oauth2/token")
    assert refresh.form()["client_secret"] == [SECRET] and refresh.form()["grant_type"] == ["refresh_token"]
    stored = harness.service.load_credentials(ORG, config.integration_id)
    assert stored.access_token is not None and stored.access_token.get_secret_value() in fake.tokens
    assert stored.custom_fields["instance_url"].get_secret_value() == fake.url
    assert fake.requests[-1].headers["authorization"] == f"Bearer {stored.access_token.get_secret_value()}"


def test_invalid_credentials_are_authentication_failed_with_a_clear_message(harness: Any, fake: FakeSalesforce) -> None:
    fake.seed(3)
    fake.expire_tokens()
    fake.refresh_tokens.clear()
    config = register(harness, fake)
    engine = harness.engine()

    check = engine.test_connection(ORG, config.integration_id)

    assert check.status is CheckStatus.AUTHENTICATION_FAILED
    assert check.message == ("Salesforce refused the OAuth2 refresh token (HTTP 400); authorise the integration again")
    with pytest.raises(SourceError) as failed:
        sync(engine, config.integration_id)
    assert failed.value.kind is CheckStatus.AUTHENTICATION_FAILED

    no_refresh = IntegrationCredentials.model_validate({"credential_type": "oauth2", "access_token": "stale"})
    other = register(harness, fake, creds=no_refresh)
    check = engine.test_connection(ORG, other.integration_id)
    assert check.status is CheckStatus.AUTHENTICATION_FAILED
    assert "INVALID_SESSION_ID" in check.message and "no refresh_token" in check.message
    for message in (check.message, str(failed.value)):
        assert SECRET not in message and "refresh-0" not in message and "stale" not in message


def test_429_with_retry_after_and_the_request_rate_are_honoured(harness: Any, fake: FakeSalesforce) -> None:
    fake.batch_cap = 10
    fake.seed(50)
    throttled_at: list[float] = []

    def too_many(_retry_after: float) -> Reply:
        throttled_at.append(time.monotonic())
        return Reply(
            429, [{"message": "Too many requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}], {"Retry-After": "1"}
        )

    fake.limit_rate(3, 1.0, too_many)
    config = register(harness, fake, retry_attempts=5)

    run = sync(harness.engine(sleep=time.sleep), config.integration_id)

    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 50
    assert throttled_at, "the fake should have throttled the sync"
    arrivals = [r.at for r in fake.requests]
    for at in throttled_at:
        following = min(a for a in arrivals if a > at)
        assert following - at >= 0.9, "the request after a 429 with Retry-After: 1 came too early"
    assert harness.breakers.load(ORG, config.integration_id).state == CLOSED

    paced = FakeSalesforce(batch_cap=10)
    paced.start()
    try:
        paced.seed(30)
        slow = register(harness, paced, requests_per_minute=300, concurrent_requests=1)
        sync(harness.engine(sleep=time.sleep), slow.integration_id)
        gaps = [b.at - a.at for a, b in zip(paced.requests, paced.requests[1:], strict=False)]
        # The describe belongs to prepare, the queries to the extract step: separate invocations
        # in AWS, each with its own limiter, so the pacing shows between the queries.
        assert len(gaps) == 3 and min(gaps[1:]) >= 0.18, "300 requests a minute is one every 0.2 s"
    finally:
        paced.stop()


def test_an_outage_mid_sync_resumes_from_the_checkpoint_exactly_once(harness: Any, fake: FakeSalesforce) -> None:
    fake.batch_cap = 10
    ids = fake.seed(60)
    config = register(harness, fake, retry_attempts=1)
    engine = harness.engine(flush_records=10)
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    calls = {"queries": 0}

    def outage(seen: Seen) -> bool:
        """The 2nd query request fails once (retried within the step); the 5th and the 6th
        (its retry) fail too, which outlasts the step's retries."""
        if "/query" not in seen.path:
            return False
        calls["queries"] += 1
        return calls["queries"] in {2, 5, 6}

    fake.fail_next(3, 503, match=outage)

    with pytest.raises(TransientSourceError, match="HTTP 503"):
        engine.extract_step(ref(run), 600, 1_000_000)
    failed = harness.syncs.get(ORG, config.integration_id, run.sync_id)
    assert failed.errors[-1].message.startswith("Salesforce failed reading Account (HTTP 503)")
    # What was read before the outage is written and checkpointed before the step fails.
    assert failed.streams[0].state and failed.records_written == 30

    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 60
    counts = ids_of(harness.lake_records())
    assert set(counts) == set(ids) and max(counts.values()) == 1
    resumed = fake.soql[-1]
    assert "WHERE SystemModstamp > 2024-01-01T00:00:09Z OR " in resumed and f"AND Id > '{ids[29]}')" in resumed


def test_the_sync_pauses_at_the_daily_api_limit_and_resumes(harness: Any, fake: FakeSalesforce) -> None:
    fake.batch_cap = 10
    ids = fake.seed(150)
    fake.api_limit, fake.api_used = 100, 80
    config = register(harness, fake, mappings={"account": "Account"})
    engine = harness.engine(flush_records=10)
    run = engine.start_sync(ORG, config.integration_id)
    engine.prepare(ref(run))

    with pytest.raises(SourcePausedError) as paused:
        engine.extract_step(ref(run), 600, 1_000_000)

    holder = harness.syncs.lock_holder(ORG, config.integration_id)
    assert holder is not None and holder[0] == run.sync_id
    assert holder[1] >= time.time() + 3600, "the run keeps its integration through the pause"
    message = (
        "Salesforce API usage is 90% of the org's daily limit (90 of 100 requests; this integration pauses at 90%);"
        " the sync stops at its last checkpoint and resumes from it when the step is retried"
    )
    assert paused.value.message == message and paused.value.retryable is False
    status = engine.get_sync_status(ORG, config.integration_id, run.sync_id)
    assert status.errors[-1].message == message
    assert fake.api_used == 90, "no request after the threshold was reached"
    quota = harness.histories.get(ORG, config.integration_id).quota
    assert quota is not None and (quota.used, quota.limit) == (90, 100), "the dashboard sees the pause's quota"
    assert harness.breakers.load(ORG, config.integration_id).state == CLOSED
    checkpointed = harness.syncs.get(ORG, config.integration_id, run.sync_id).records_written
    assert 0 < checkpointed < 150

    fake.api_used = 0  # the rolling 24-hour window moved on
    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 150
    counts = ids_of(harness.lake_records())
    assert set(counts) == set(ids) and max(counts.values()) == 1

    fake.api_used = fake.api_limit  # past the limit: 403 REQUEST_LIMIT_EXCEEDED
    fake.seed(1)
    with pytest.raises(TransientSourceError, match="used its daily API allocation"):
        sync(engine, config.integration_id)


def paused_before_the_first_page(harness: Any, fake: FakeSalesforce, records: int) -> tuple[Any, Any, Any]:
    """A sync started on an org whose daily API allocation is spent: its prepare pauses."""
    fake.seed(records)
    fake.api_used = fake.api_limit
    config = register(harness, fake, mappings={"account": "Account"})
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id)
    with pytest.raises(SourcePausedError):
        engine.prepare(ref(run))
    return engine, config, run


def test_a_sync_started_with_no_api_allocation_left_says_paused_why_and_when_and_can_be_cancelled(
    harness: Any, fake: FakeSalesforce
) -> None:
    """Issue 10: the pause before the first page used to leave the run `started`, without a
    word, for up to a day; a second start answered 409 and nobody could tell why."""
    from churnguard.errors import ConflictError

    engine, config, run = paused_before_the_first_page(harness, fake, 10)
    status = engine.get_sync_status(ORG, config.integration_id, run.sync_id)
    assert status.status is SyncStatus.PAUSED
    assert status.pause_reason is not None and "TotalRequests Limit exceeded." in status.pause_reason
    assert status.paused_until is not None
    assert 3500 <= status.paused_until.timestamp() - time.time() <= 3700, "the workflow's hourly retry"
    assert status.errors[-1].message == status.pause_reason
    assert not any(token in status.model_dump_json() for token in fake.tokens | fake.refresh_tokens)
    with pytest.raises(ConflictError):
        engine.start_sync(ORG, config.integration_id)

    cancelled = engine.cancel(ORG, config.integration_id, run.sync_id)
    assert cancelled.status is SyncStatus.CANCELLED and cancelled.paused_until is None
    assert harness.syncs.lock_holder(ORG, config.integration_id) is None
    assert engine.prepare(ref(run)).done, "the workflow's next try finds the run finished"
    fake.api_used = 0
    assert sync(engine, config.integration_id).status is SyncStatus.SUCCEEDED


def test_a_paused_run_picks_up_where_it_was_when_the_allocation_returns(harness: Any, fake: FakeSalesforce) -> None:
    engine, _, run = paused_before_the_first_page(harness, fake, 20)
    fake.api_used = 0
    finished = drive(engine, run)
    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 20
    assert finished.paused_until is None and finished.pause_reason is None


def test_large_full_reads_use_a_bulk_api_2_query_job_and_resume_it(
    harness: Any, fake: FakeSalesforce, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.batch_cap = 10
    ids = fake.seed(75)
    monkeypatch.setattr(SalesforceConnector, "bulk_result_records", 25)
    rest = register(harness, fake, name="rest")
    sync(harness.engine(), rest.integration_id, mode=DataSyncMode.FULL_SYNC)
    by_rest = {r["record_id"]: r["data"] for r in harness.lake_records()}
    fake.requests.clear()

    bulk = register(harness, fake, creds=oauth(bulk_threshold="20"), retry_attempts=1)
    engine = harness.engine(flush_records=10)
    run = engine.start_sync(ORG, bulk.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    # The third result set (locator "1e": row 50) fails past the step's retries.
    fake.fail_next(2, 503, match=lambda seen: seen.path.endswith("/results") and seen.param("locator") == "1e")

    with pytest.raises(TransientSourceError):
        engine.extract_step(ref(run), 600, 1_000_000)
    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 75
    records = [r for r in harness.lake_records() if r["batch_id"] == run.sync_id]
    counts = ids_of(records)
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert {r["record_id"]: r["data"] for r in records} == by_rest, "Bulk CSV rows are typed like REST rows"
    (job,) = fake.seen("POST", r".*/jobs/query/?")
    assert job.json()["operation"] == "query" and " ORDER BY " not in job.json()["query"]
    assert (
        f"WHERE SystemModstamp > 2024-01-01T00:00:03Z OR (SystemModstamp = 2024-01-01T00:00:03Z AND Id > '{ids[9]}')"
        in (job.json()["query"])
    )
    # Three result sets of 25, 25 and 15 rows and two failures: what was read before the failure
    # landed before the step failed, so no set is fetched twice.
    assert len(fake.seen("GET", RESULTS)) == 3 + 2

    fake.update("Account", ids[0], Name="After the bulk read")
    after = sync(engine, bulk.integration_id)
    assert [r["record_id"] for r in harness.lake_records() if r["batch_id"] == after.sync_id] == [ids[0]]


def test_an_expired_bulk_job_is_replaced(harness: Any, fake: FakeSalesforce, monkeypatch: pytest.MonkeyPatch) -> None:
    fake.batch_cap = 10
    monkeypatch.setattr(SalesforceConnector, "bulk_result_records", 10)
    ids = fake.seed(40)
    config = register(harness, fake, creds=oauth(bulk_threshold="0"))
    engine = harness.engine()
    run = engine.start_sync(ORG, config.integration_id, mode=DataSyncMode.FULL_SYNC)
    engine.prepare(ref(run))
    engine.extract_step(ref(run), 600, 11)  # the first page, the job and its first result set
    assert "job" in harness.syncs.get(ORG, config.integration_id, run.sync_id).streams[0].state["cursor"]["$state"]
    fake.expire_jobs()

    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED
    assert set(ids_of(harness.lake_records())) == set(ids)
    assert len(fake.seen("POST", r".*/jobs/query/?")) == 2


def test_objects_the_bulk_api_refuses_are_paged_over_rest(harness: Any, fake: FakeSalesforce) -> None:
    fake.batch_cap = 10
    ids = fake.seed(25, "Task")
    fake.bulk_unsupported.add("Task")
    config = register(harness, fake, mappings={"task": "Task"}, creds=oauth(bulk_threshold="0"))

    run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

    assert run.status is SyncStatus.SUCCEEDED
    counts = ids_of(harness.lake_records())
    assert set(counts) == set(ids) and max(counts.values()) == 1
    assert len(fake.seen("POST", r".*/jobs/query/?")) == 1 and len(data_requests(fake)) == 3


def test_custom_objects_and_connection_checks(harness: Any, fake: FakeSalesforce) -> None:
    fake.seed(4, "Churn_Risk__c")
    fake.seed(2)
    config = register(harness, fake, mappings={"churn_risk": "Churn_Risk__c", "company": "Account"})
    engine = harness.engine()

    check = engine.test_connection(ORG, config.integration_id)
    assert check.status is CheckStatus.OK, check.message
    assert [(s.entity, s.source, s.cursor_field, s.primary_key) for s in check.streams] == [
        ("churn_risk", "Churn_Risk__c", "SystemModstamp", ["Id"]),
        ("company", "Account", "SystemModstamp", ["Id"]),
    ]
    run = sync(engine, config.integration_id)
    records = harness.lake_records()
    assert run.status is SyncStatus.SUCCEEDED and run.records_written == 6 and run.records_rejected == 0
    risk = next(r for r in records if r["entity"] == "churn_risk")
    assert risk["data"]["Score__c"] == 1.5 and risk["source"] == "Churn_Risk__c"

    bad = register(harness, fake, mappings={"account": "Account;DROP"})
    check = engine.test_connection(ORG, bad.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION and "object API name" in check.message
    missing = register(harness, fake, mappings={"account": "Nope__c"})
    check = engine.test_connection(ORG, missing.integration_id)
    assert check.status is CheckStatus.MISSING_OBJECT and "describing Nope__c" in check.message
