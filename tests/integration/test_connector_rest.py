"""REST ingestion rules end to end through the sync engine, against FakeRest on 127.0.0.1:
paging, incremental polls with boundary dedupe, auth (OAuth2 client credentials renewed when
they expire and on 401), 429 pacing, an outage resumed from the checkpoint, and the SSRF guard."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from churnguard import netguard
from churnguard.connectors.base import CheckStatus, SourceError, TransientSourceError
from churnguard.ingestion import rule_credentials
from churnguard.models import (
    REST_SOURCE_OBJECT,
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationStatus,
    ProviderName,
    RestAuthType,
    RestSource,
)
from churnguard.runs import SyncStatus
from tests.support.fake_rest import API_KEY, CLIENT, LOGIN, TOKEN, FakeRest, stamp
from tests.support.sync import ORG, drive, ref, sync

SECRETS = {
    RestAuthType.BEARER: {"token": TOKEN},
    RestAuthType.API_KEY: {"api_key": API_KEY},
    RestAuthType.BASIC: {"username": LOGIN[0], "password": LOGIN[1]},
    RestAuthType.OAUTH2_CLIENT_CREDENTIALS: {"client_id": CLIENT[0], "client_secret": CLIENT[1]},
}
PAGING = {
    "cursor": {"type": "cursor", "cursor_path": "meta.next_cursor", "size_param": "limit"},
    "offset": {"type": "offset", "size_param": "limit"},
    "page": {"type": "page", "size_param": "per_page", "start_page": 1},
    "link": {"type": "link_header", "size_param": "limit"},
}
INCREMENTAL = {"param": "updated_since", "cursor_field": "updated_at", "format": "iso8601"}


@pytest.fixture(autouse=True)
def private_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fakes listen on 127.0.0.1, which only a deployment allowing private networks polls."""
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")


@pytest.fixture
def api() -> Iterator[FakeRest]:
    with FakeRest() as fake:
        yield fake  # type: ignore[misc]


def register(
    harness: Any,
    fake: FakeRest,
    *,
    auth: RestAuthType = RestAuthType.NONE,
    secrets: dict[str, str] | None = None,
    paging: str = "cursor",
    page_size: int = 20,
    incremental: dict[str, Any] | None = INCREMENTAL,
    sync_config: dict[str, Any] | None = None,
    query_secrets: dict[str, str] | None = None,
    **source: Any,
) -> IntegrationConfiguration:
    auth_settings: dict[str, Any] = {"type": auth}
    if auth is RestAuthType.OAUTH2_CLIENT_CREDENTIALS:
        auth_settings["token_url"] = f"{fake.url}/oauth/token"
    if fake.auth == "api_key_query":
        auth_settings["api_key_in"] = "query"
        auth_settings["api_key_name"] = "api_key"
    spec = RestSource.model_validate(
        {
            "url": f"{fake.url}/v1/events",
            "data_path": "data",
            "auth": auth_settings,
            "pagination": {**PAGING[paging], "page_size": page_size},
            "incremental": incremental,
            **source,
        }
    )
    given = SECRETS.get(auth, {}) if secrets is None else secrets
    creds = rule_credentials(
        auth,
        {k: SecretStr(v) for k, v in given.items()},
        {k: SecretStr(v) for k, v in (query_secrets or {}).items()},
    )
    return harness.register(  # type: ignore[no-any-return]
        ProviderName.CUSTOM,
        "",
        creds,
        {"event": REST_SOURCE_OBJECT},
        sync_config={"retry_attempts": 2, **(sync_config or {})},
        rest_source=spec,
    )


def record_ids(harness: Any) -> Counter[str]:
    return Counter(r["record_id"] for r in harness.lake_records())


def listing(fake: FakeRest) -> list[Any]:
    return fake.seen(path="/v1/events")


# ---------------------------------------------------------------- full sync and paging


@pytest.mark.parametrize("paging", sorted(PAGING))
def test_a_full_sync_reads_every_page_once_with_the_fewest_requests(harness: Any, paging: str) -> None:
    with FakeRest(paging=paging) as fake:
        fake.seed(95)
        config = register(harness, fake, paging=paging)
        run = sync(harness.engine(), config.integration_id, mode=DataSyncMode.FULL_SYNC)

        assert run.status is SyncStatus.SUCCEEDED and run.records_written == 95
        counts = record_ids(harness)
        assert len(counts) == 95 and max(counts.values()) == 1
        assert len(listing(fake)) == 5, "95 records in pages of 20: five requests, no empty one"
        assert all(seen.param("updated_since") is None for seen in listing(fake)), "a full read has no bound"
    record = harness.lake_records()[0]
    assert record["entity"] == "event" and record["provider"] == "custom" and record["source"] == REST_SOURCE_OBJECT
    assert set(record["data"]) == {"id", "name", "email", "updated_at", "value"}


def test_post_requests_carry_paging_and_the_cursor_in_the_body(harness: Any, api: FakeRest) -> None:
    api.seed(30)
    config = register(
        harness, api, url=f"{api.url}/v1/search", method="POST", params_in="body", body={"kind": "signup"}
    )
    run = sync(harness.engine(), config.integration_id)
    assert run.records_written == 30
    searches = api.seen("POST", "/v1/search")
    assert [s.json().get("cursor") is None for s in searches] == [True, False]
    assert searches[0].json() == {"kind": "signup", "limit": 20}


def test_field_mappings_and_filters_apply_in_the_pipeline(harness: Any, api: FakeRest) -> None:
    api.seed(10)
    config = register(
        harness,
        api,
        sync_config={
            "field_mappings": {"id": "id", "email": "email", "value": "score"},
            "data_filters": {"value": {"$gt": 5}},
        },
    )
    run = sync(harness.engine(), config.integration_id)
    assert run.records_written == 5 and run.records_filtered == 5
    assert {r["data"]["score"] for r in harness.lake_records()} == {6, 7, 8, 9, 10}
    assert all(set(r["data"]) == {"id", "email", "score"} for r in harness.lake_records())


# ---------------------------------------------------------------- incremental polls


def test_incremental_polls_send_the_last_cursor_and_skip_what_was_delivered(harness: Any, api: FakeRest) -> None:
    api.seed(40)
    api.seed(3, start=40, updated_at=40)  # three more records share the last timestamp
    config = register(harness, api)
    engine = harness.engine()

    first = sync(engine, config.integration_id)
    assert first.records_written == 43 and listing(api)[0].param("updated_since") is None

    api.seed(5, start=43, updated_at=50)
    api.touch(["evt_000007"], 60)
    api.seed(1, start=48, updated_at=40)  # arrives late, at the boundary timestamp itself
    already = len(listing(api))
    second = sync(engine, config.integration_id)
    polls = listing(api)[already:]
    assert polls[0].param("updated_since") == stamp(40), "the bound is the largest cursor seen"
    assert second.records_written == 7, "5 new + 1 changed + 1 late at the boundary; the 4 boundary ones skipped"

    third = sync(engine, config.integration_id)
    assert third.records_written == 0 and listing(api)[-1].param("updated_since") == stamp(60)

    counts = record_ids(harness)
    assert len(counts) == 49
    assert counts["evt_000007"] == 2 and sum(counts.values()) == 50, "only the changed record came twice"


def test_the_first_incremental_poll_starts_at_last_sync_timestamp(harness: Any, api: FakeRest) -> None:
    api.seed(30)
    config = register(harness, api, sync_config={"last_sync_timestamp": stamp(25)})
    run = sync(harness.engine(), config.integration_id)
    assert listing(api)[0].param("updated_since") == stamp(25)
    assert run.records_written == 6


def test_unix_cursor_format_renders_the_bound_as_epoch_seconds(harness: Any, api: FakeRest) -> None:
    api.seed(5)
    config = register(harness, api, incremental={"param": "since", "cursor_field": "updated_at", "format": "unix"})
    engine = harness.engine()
    sync(engine, config.integration_id)
    sync(engine, config.integration_id)
    bound = listing(api)[-1].param("since")
    assert bound == str(int((datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=5)).timestamp()))
    assert record_ids(harness).total() == 5, "the API ignores `since`; the connector skips what it delivered"


# ---------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("fake_auth", "auth"),
    [
        ("bearer", RestAuthType.BEARER),
        ("api_key_header", RestAuthType.API_KEY),
        ("api_key_query", RestAuthType.API_KEY),
        ("basic", RestAuthType.BASIC),
        ("oauth2", RestAuthType.OAUTH2_CLIENT_CREDENTIALS),
    ],
)
def test_each_auth_type_connects_and_syncs(harness: Any, fake_auth: str, auth: RestAuthType) -> None:
    with FakeRest(auth=fake_auth) as fake:
        fake.seed(25)
        config = register(harness, fake, auth=auth)
        check = harness.engine().test_connection(ORG, config.integration_id)
        assert check.ok, check.message
        run = sync(harness.engine(), config.integration_id)
        assert run.records_written == 25
    secrets = SECRETS.get(auth, {}).values()
    assert not any(secret in str(harness.lake_records()) for secret in secrets)


def test_a_key_echoed_in_next_links_is_neither_stored_nor_sent_twice(harness: Any) -> None:
    with FakeRest(auth="api_key_query", paging="link", echo_key_in_links=True) as fake:
        fake.seed(45)
        config = register(harness, fake, auth=RestAuthType.API_KEY, paging="link", page_size=10)
        states: list[str] = []

        def checkpoint(_: Any) -> None:
            (stream,) = harness.syncs.get(ORG, config.integration_id, run.sync_id).streams
            states.append(str(stream.state))

        engine = harness.engine()
        run = engine.start_sync(ORG, config.integration_id)
        finished = drive(engine, run, record_budget=10, after_step=checkpoint)
        assert finished.records_written == 45
        assert len(states) >= 4 and any("after" in state for state in states), "checkpoints mid-pagination"
        assert not any(API_KEY in state for state in states)
        pages = listing(fake)
        # Each step's prefetch reads one page past its budget, which the next step reads again.
        assert len({tuple(page.query.get("after", [])) for page in pages}) == 5
        assert all(page.query["api_key"] == [API_KEY] for page in pages), "the key is sent once per request"


def test_secret_query_parameters_are_sent_from_the_credentials_and_never_checkpointed(harness: Any) -> None:
    with FakeRest(auth="api_key_query", paging="link", echo_key_in_links=True) as fake:
        fake.seed(25)
        config = register(
            harness, fake, paging="link", page_size=10, secret_query=["api_key"], query_secrets={"api_key": API_KEY}
        )
        assert API_KEY not in str(config.rest_source)
        engine = harness.engine()
        run = engine.start_sync(ORG, config.integration_id)
        finished = drive(engine, run, record_budget=10)
        assert finished.records_written == 25
        assert all(page.query["api_key"] == [API_KEY] for page in listing(fake)), "sent once per request"
        (stream,) = harness.syncs.get(ORG, config.integration_id, run.sync_id).streams
        assert API_KEY not in str(stream.state)


@pytest.mark.parametrize(
    ("fake_auth", "auth", "wrong", "advice"),
    [
        ("bearer", RestAuthType.BEARER, {"token": "wrong-token-000000"}, "replace them"),
        ("basic", RestAuthType.BASIC, {"username": LOGIN[0], "password": "wrong-password-0"}, "replace them"),
        (
            "oauth2",
            RestAuthType.OAUTH2_CLIENT_CREDENTIALS,
            {"client_id": CLIENT[0], "client_secret": "wrong-secret-00000"},
            "replace client_id and client_secret",
        ),
    ],
)
def test_invalid_credentials_are_authentication_failed_with_a_clear_message(
    harness: Any, fake_auth: str, auth: RestAuthType, wrong: dict[str, str], advice: str
) -> None:
    with FakeRest(auth=fake_auth) as fake:
        fake.seed(5)
        config = register(harness, fake, auth=auth, secrets=wrong)
        check = harness.engine().test_connection(ORG, config.integration_id)
        assert check.status is CheckStatus.AUTHENTICATION_FAILED and advice in check.message
        engine = harness.engine()
        run = engine.start_sync(ORG, config.integration_id)
        with pytest.raises(SourceError) as raised:
            drive(engine, run)
        assert raised.value.kind is CheckStatus.AUTHENTICATION_FAILED and advice in raised.value.message
        for secret in wrong.values():
            assert secret not in raised.value.message and secret not in check.model_dump_json()
    if auth is not RestAuthType.OAUTH2_CLIENT_CREDENTIALS:  # that one already fails preparing the sync
        assert harness.integrations.get(ORG, config.integration_id).status is IntegrationStatus.AUTHENTICATION_FAILED


def test_oauth2_tokens_are_reused_renewed_when_they_expire_and_once_on_401(harness: Any) -> None:
    with FakeRest(auth="oauth2") as fake:
        fake.seed(60)
        config = register(harness, fake, auth=RestAuthType.OAUTH2_CLIENT_CREDENTIALS)
        engine = harness.engine()

        sync(engine, config.integration_id)
        sync(engine, config.integration_id)
        grants = fake.seen("POST", "/oauth/token")
        assert len(grants) == 1, "the stored token is reused by the next poll"
        assert grants[0].headers["authorization"].startswith("Basic ") and grants[0].form() == {
            "grant_type": ["client_credentials"]
        }

        stored = harness.service.load_credentials(ORG, config.integration_id)
        expired = stored.model_copy(update={"token_expires_at": datetime.now(UTC) - timedelta(seconds=1)})
        harness.service.replace_credentials(ORG, config.integration_id, expired)
        fake.seed(10, start=60)
        assert sync(engine, config.integration_id).records_written == 10
        assert len(fake.seen("POST", "/oauth/token")) == 2, "an expired token is replaced before the poll"

        # The API revokes every token after the first page of a full read: renewed once, then on.
        fake.on_page = lambda seen, reply: fake.revoke_tokens() if seen.param("cursor") is None else None
        finished = sync(engine, config.integration_id, mode=DataSyncMode.FULL_SYNC)
        assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 70
        assert len(fake.seen("POST", "/oauth/token")) == 3 and fake.unauthorized == 1
    assert all(CLIENT[1] not in str(r) for r in harness.lake_records())


# ---------------------------------------------------------------- resilience


def test_a_429_with_retry_after_is_honoured(harness: Any, api: FakeRest) -> None:
    api.seed(80)
    api.fail_next(1, 429, headers={"Retry-After": "1"}, match=lambda s: len(api.requests) == 3)
    config = register(harness, api)
    run = sync(harness.engine(sleep=time.sleep), config.integration_id)

    assert run.records_written == 80 and len(record_ids(harness)) == 80
    seen = listing(api)
    assert len(seen) == 5, "four pages and the one throttled request"
    assert seen[3].param("cursor") == seen[2].param("cursor"), "the throttled page is asked again"
    assert seen[3].at - seen[2].at >= 0.9, "after the Retry-After second"


def test_rate_limit_windows_are_waited_out(harness: Any, api: FakeRest) -> None:
    api.seed(60)
    api.limit_rate(2, 1.0)
    config = register(harness, api, sync_config={"retry_attempts": 3})
    run = sync(harness.engine(sleep=time.sleep), config.integration_id)
    assert run.records_written == 60 and api.throttled() >= 1
    counts = record_ids(harness)
    assert len(counts) == 60 and max(counts.values()) == 1


def test_an_outage_mid_sync_resumes_from_the_checkpoint_exactly(harness: Any, api: FakeRest) -> None:
    api.seed(100)
    config = register(harness, api, sync_config={"retry_attempts": 1})
    engine = harness.engine(flush_records=20)  # a checkpoint after every page
    run = engine.start_sync(ORG, config.integration_id)
    engine.prepare(ref(run))
    # The fourth page fails three times: more than one retry covers, so the step fails.
    api.fail_next(3, 503, match=lambda s: len(api.requests) >= 4)
    with pytest.raises(TransientSourceError):
        engine.extract_step(ref(run), 600, 1_000_000)
    failed_at = len(listing(api))
    finished = drive(engine, run)

    assert finished.status is SyncStatus.SUCCEEDED and finished.records_written == 100
    counts = record_ids(harness)
    assert len(counts) == 100 and max(counts.values()) == 1
    assert listing(api)[failed_at].param("cursor") is not None, "resumed from the checkpoint, not the first page"
    assert len(listing(api)) <= failed_at + 4, "at most the page before the failure is read again"


# ---------------------------------------------------------------- configuration and the network guard


def test_a_wrong_data_path_is_a_configuration_error(harness: Any, api: FakeRest) -> None:
    api.seed(3)
    config = register(harness, api, data_path="items")
    check = harness.engine().test_connection(ORG, config.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION and "data_path 'items'" in check.message


def test_loopback_is_refused_unless_the_deployment_allows_private_networks(
    harness: Any, api: FakeRest, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.seed(3)
    config = register(harness, api)
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "false")
    check = harness.engine().test_connection(ORG, config.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION and "loopback" in check.message
    assert api.requests == []


def test_a_name_that_rebinds_to_loopback_is_refused_at_connect(
    harness: Any, api: FakeRest, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.seed(3)
    config = register(harness, api)
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "false")
    monkeypatch.setattr(netguard, "resolve", lambda host, port: ["93.184.215.14"])  # the check sees a public IP
    check = harness.engine().test_connection(ORG, config.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION
    assert "connected to 127.0.0.1 is a loopback address" in check.message
    assert api.requests == [], "the connection was closed before a byte of the request was sent"


def test_redirects_are_not_followed(harness: Any, api: FakeRest) -> None:
    api.seed(3)
    api.fail_next(1, 302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    config = register(harness, api)
    check = harness.engine().test_connection(ORG, config.integration_id)
    assert check.status is CheckStatus.INVALID_CONFIGURATION and "redirects are not followed" in check.message


def test_a_next_link_to_another_host_is_refused(harness: Any) -> None:
    with FakeRest(paging="link") as fake:
        fake.seed(30)
        config = register(harness, fake, paging="link")
        fake.on_page = lambda seen, reply: reply.headers.update(Link='<https://attacker.example/x?after=y>; rel="next"')
        engine = harness.engine()
        with pytest.raises(SourceError) as raised:
            sync(engine, config.integration_id)
        assert raised.value.kind is CheckStatus.INVALID_CONFIGURATION and "attacker.example" in raised.value.message
