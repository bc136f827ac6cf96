"""The Salesforce connector's pure parts: hosts, SOQL from state, API usage, error kinds, Bulk CSV
typing. The HTTP paths are in tests/integration/test_connector_salesforce.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
import requests
from requests.structures import CaseInsensitiveDict
from simple_salesforce.exceptions import (
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from churnguard.connectors.base import CheckStatus, SourceError, Stream, ThrottledError, TransientSourceError
from churnguard.models import DataSyncMode, IntegrationConfiguration, IntegrationCredentials
from churnguard.providers.salesforce.source import SalesforceConnector, _state_time
from churnguard.resilience import CircuitBreaker, Guard, RateLimiter, RetryPolicy

ACCOUNT = Stream(
    entity="account",
    source="Account",
    primary_key=("Id",),
    cursor_field="SystemModstamp",
    sync_modes=frozenset({DataSyncMode.FULL_SYNC, DataSyncMode.INCREMENTAL}),
    fields=("Id", "Name", "IsDeleted", "SystemModstamp", "Score__c", "Seats__c"),
    column_kinds={
        "Id": "text",
        "Name": "text",
        "IsDeleted": "bool",
        "SystemModstamp": "datetime",
        "Score__c": "float",
        "Seats__c": "int",
    },
)
ID = "001000000000042AAA"


def connector(base_url: str = "https://acme.my.salesforce.com", **custom: str) -> SalesforceConnector:
    config = IntegrationConfiguration(
        organization_id="org_unit",
        integration_name="crm",
        provider_name="salesforce",  # type: ignore[arg-type]
        base_url=base_url,
    )
    credentials = IntegrationCredentials.model_validate(
        {"credential_type": "oauth2", "access_token": "token-value", "custom_fields": custom}
    )
    guard = Guard(
        retry=RetryPolicy(attempts=0, base_delay=0.0),
        limiter=RateLimiter(60, 1),
        breaker=CircuitBreaker(cast(Any, None), "org_unit", "int_unit"),
    )
    return SalesforceConnector(config, credentials, guard)


def response(status: int, body: Any = None, **headers: str) -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.headers = CaseInsensitiveDict(headers)
    answer._content = b"" if body is None else requests.compat.json.dumps(body).encode()
    return answer


@pytest.mark.parametrize(
    ("base_url", "custom", "token_url", "instance"),
    [
        ("", {}, "https://login.salesforce.com/services/oauth2/token", None),
        ("", {"domain": "test"}, "https://test.salesforce.com/services/oauth2/token", None),
        ("https://test.salesforce.com", {}, "https://test.salesforce.com/services/oauth2/token", None),
        (
            "https://acme.my.salesforce.com/",
            {},
            "https://acme.my.salesforce.com/services/oauth2/token",
            "https://acme.my.salesforce.com",
        ),
        (
            "https://login.salesforce.com",
            {"instance_url": "https://acme.my.salesforce.com"},
            "https://login.salesforce.com/services/oauth2/token",
            "https://acme.my.salesforce.com",
        ),
    ],
)
def test_login_hosts_and_instance_urls(
    base_url: str, custom: dict[str, str], token_url: str, instance: str | None
) -> None:
    sf = connector(base_url, **custom)
    assert sf.token_url() == token_url and sf.configured_instance() == instance


def test_bad_settings_are_invalid_configuration() -> None:
    for sf, call in [
        (connector("", domain="staging"), "token_url"),
        (connector(instance_url="ftp://acme"), "configured_instance"),
        (connector(bulk_threshold="many"), "bulk_threshold"),
        (connector(api_usage_threshold="1.5"), "usage_threshold"),
    ]:
        with pytest.raises(SourceError) as bad:
            getattr(sf, call)()
        assert bad.value.kind is CheckStatus.INVALID_CONFIGURATION


def test_soql_comes_from_checked_names_and_formatted_literals() -> None:
    soql = connector()._soql
    select = "SELECT Id, Name, IsDeleted, SystemModstamp, Score__c, Seats__c FROM Account"
    assert soql(ACCOUNT, {"full": True}, ordered=True) == f"{select} ORDER BY SystemModstamp ASC, Id ASC"
    assert soql(ACCOUNT, {"ts": "2024-03-01T10:00:00.000Z"}, ordered=True) == (
        f"{select} WHERE SystemModstamp >= 2024-03-01T10:00:00Z ORDER BY SystemModstamp ASC, Id ASC"
    )
    assert soql(ACCOUNT, {"ts": "2024-03-01T10:00:00.250Z", "id": ID}, ordered=False) == (
        f"{select} WHERE SystemModstamp > 2024-03-01T10:00:00.250Z"
        f" OR (SystemModstamp = 2024-03-01T10:00:00.250Z AND Id > '{ID}')"
    )
    no_cursor = ACCOUNT.model_copy(update={"cursor_field": None})
    assert soql(no_cursor, {"id": ID}, ordered=True) == f"{select} WHERE Id > '{ID}' ORDER BY Id ASC"
    for state in ({"id": "x' OR Name != '"}, {"ts": "yesterday"}, {"ts": 5}):
        with pytest.raises(SourceError, match="checkpoint"):
            soql(ACCOUNT, state, ordered=True)
    with pytest.raises(SourceError):
        soql(ACCOUNT.model_copy(update={"source": "Account WHERE"}), {}, ordered=True)


def test_state_times_are_utc_even_from_a_naive_last_sync_timestamp() -> None:
    assert _state_time(datetime(2024, 5, 1, 12, 30)) == "2024-05-01T12:30:00.000Z"
    assert _state_time(datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))) == "2024-05-01T12:30:00.000Z"


def test_api_usage_pauses_past_the_threshold() -> None:
    sf = connector(api_usage_threshold="0.5")
    sf.observe(response(200, **{"Sforce-Limit-Info": "api-usage=49/100, per-app-api-usage=3/250(appName=cg)"}))
    sf.check_usage()
    sf.observe(response(200, **{"Sforce-Limit-Info": "api-usage=50/100"}))
    with pytest.raises(TransientSourceError) as paused:
        sf.check_usage()
    assert paused.value.retryable is False and paused.value.retry_after == 3600.0
    assert paused.value.message.startswith("Salesforce API usage is 50% of the org's daily limit (50 of 100")


def test_limit_answers_raise_with_their_retry_after() -> None:
    sf = connector()
    sf.doing = "reading Account"
    concurrent = [
        {
            "message": "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]
    with pytest.raises(ThrottledError):
        sf.raise_for_limits(response(403, concurrent))
    daily = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    with pytest.raises(TransientSourceError, match="daily API allocation") as paused:
        sf.raise_for_limits(response(403, daily))
    assert paused.value.retryable is False
    with pytest.raises(TransientSourceError) as outage:
        sf.raise_for_limits(
            response(503, [{"message": "down", "errorCode": "SERVER_UNAVAILABLE"}], **{"Retry-After": "7"})
        )
    assert outage.value.retry_after == 7.0 and outage.value.message.startswith(
        "Salesforce failed reading Account (HTTP 503): SERVER_UNAVAILABLE"
    )
    sf.raise_for_limits(response(403, [{"message": "no", "errorCode": "INSUFFICIENT_ACCESS"}]))  # the SDK's to raise
    with pytest.raises(SourceError, match="redirected reading Account") as moved:
        sf.raise_for_limits(response(301, Location="https://login.salesforce.com/"))
    assert moved.value.kind is CheckStatus.INVALID_CONFIGURATION


def test_sdk_errors_become_source_error_kinds_without_their_text() -> None:
    sf = connector()
    sf.doing = "reading Account"
    url = "https://acme.my.salesforce.com/services/data/v59.0/query"
    leaky = [{"message": "secret-looking text", "errorCode": "INVALID_FIELD"}]
    cases = [
        (SalesforceMalformedRequest(url, 400, "query", leaky), CheckStatus.INVALID_CONFIGURATION, False),
        (
            SalesforceMalformedRequest(url, 400, "query", [{"errorCode": "INVALID_QUERY_LOCATOR"}]),
            CheckStatus.ERROR,
            True,
        ),
        (SalesforceRefusedRequest(url, 403, "query", leaky), CheckStatus.MISSING_PRIVILEGES, False),
        (SalesforceResourceNotFound(url, 404, "describe", leaky), CheckStatus.MISSING_OBJECT, False),
        (requests.ConnectionError("refused"), CheckStatus.UNREACHABLE, True),
    ]
    for exc, kind, retryable in cases:
        error = sf.translate(exc)
        assert error is not None and error.kind is kind and error.retryable is retryable
        assert "secret-looking" not in error.message and "reading Account" in error.message
    assert sf.translate(ValueError("not ours")) is None


def test_bulk_csv_rows_are_typed_like_rest_rows() -> None:
    text = (
        '"Id","Name","IsDeleted","SystemModstamp","Score__c","Seats__c"\n'
        f'"{ID}","Acme, Inc.","false","2024-03-01T10:00:00.000Z","2.5","12"\n'
        f'"{ID[:-1]}B","","true","2024-03-01T10:00:01.000Z","",""\n'
    )
    rows = connector()._csv_rows(ACCOUNT, text)
    assert rows == [
        {
            "Id": ID,
            "Name": "Acme, Inc.",
            "IsDeleted": False,
            "SystemModstamp": datetime(2024, 3, 1, 10, tzinfo=UTC),
            "Score__c": 2.5,
            "Seats__c": 12,
        },
        {
            "Id": f"{ID[:-1]}B",
            "Name": None,
            "IsDeleted": True,
            "SystemModstamp": datetime(2024, 3, 1, 10, 0, 1, tzinfo=UTC),
            "Score__c": None,
            "Seats__c": None,
        },
    ]
    with pytest.raises(SourceError, match="do not match"):
        connector()._csv_rows(ACCOUNT, '"Id","Seats__c"\n"x","many"\n')


def test_an_instance_url_the_deployment_must_not_reach_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session token goes to the instance URL, which the credentials or a token answer name:
    it gets the same address guard as base_url."""
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    source = connector("", instance_url="http://169.254.169.254")
    check = source.check()
    assert check.status is CheckStatus.INVALID_CONFIGURATION
    assert check.message.startswith("the Salesforce instance URL host '169.254.169.254'")
