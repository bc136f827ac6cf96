"""What every SaaS connector gets from ApiConnector: the address guard on `base_url`, HTTP
error kinds, Retry-After, and state that round-trips the provider's own resume point."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from churnguard.connectors.api import http_error, retry_after_seconds
from churnguard.connectors.base import CheckStatus, Position, SourceError, ThrottledError, TransientSourceError
from churnguard.models import IntegrationConfiguration, IntegrationCredentials, ProviderName
from churnguard.providers.registry import connector_class
from churnguard.resilience import CircuitBreaker, Guard, RateLimiter, RetryPolicy

SAAS = [ProviderName.HUBSPOT, ProviderName.STRIPE, ProviderName.MAILCHIMP, ProviderName.SENDGRID]


def connector(provider: ProviderName, base_url: str) -> Any:
    config = IntegrationConfiguration(
        organization_id="org_unit", integration_name="source", provider_name=provider, base_url=base_url
    )
    credentials = IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": "sk_test_1-us21"})
    guard = Guard(
        retry=RetryPolicy(attempts=0, base_delay=0.0),
        limiter=RateLimiter(60, 1),
        breaker=CircuitBreaker(cast(Any, None), "org_unit", "int_unit"),
    )
    return connector_class(provider)(config, credentials, guard)


@pytest.mark.parametrize("provider", SAAS)
@pytest.mark.parametrize(
    ("base_url", "allowed", "refused"),
    [
        ("http://169.254.169.254", "true", "metadata"),
        ("http://169.254.10.10", "true", "link-local"),
        ("http://127.0.0.1:9", "false", "loopback"),
        ("http://10.1.2.3", "false", "private"),
    ],
)
def test_a_base_url_the_deployment_must_not_reach_is_refused_before_any_request(
    provider: ProviderName, base_url: str, allowed: str, refused: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", allowed)
    source = connector(provider, base_url)
    check = source.check()
    assert check.status is CheckStatus.INVALID_CONFIGURATION
    assert check.message.startswith("base_url host") and refused in check.message
    with pytest.raises(SourceError) as raised:
        source.connect()
    assert raised.value.kind is CheckStatus.INVALID_CONFIGURATION


def test_http_statuses_become_error_kinds() -> None:
    throttled = http_error(429, {"Retry-After": "7"}, "Acme", "listing things")
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 7.0
    assert isinstance(http_error(503, {}, "Acme", "x"), TransientSourceError)
    assert http_error(401, {}, "Acme", "x").kind is CheckStatus.AUTHENTICATION_FAILED
    assert http_error(403, {}, "Acme", "x").kind is CheckStatus.MISSING_PRIVILEGES
    assert http_error(404, {}, "Acme", "x").kind is CheckStatus.MISSING_OBJECT
    assert not http_error(400, {}, "Acme", "x").retryable


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_the_providers_resume_point_round_trips_through_the_stored_state() -> None:
    source = connector(ProviderName.SENDGRID, "https://api.sendgrid.com")
    stream = source.stream("bounce")
    own = Position(cursor={"phase": "search", "id": 42, "since": "2026-01-01T00:00:00Z"})
    assert source.position_of(stream, source.state_of(stream, own)) == own
    since = Position(cursor=datetime(2026, 1, 1, tzinfo=UTC))
    assert source.position_of(stream, source.state_of(stream, since)) == since
    assert source.position_of(stream, {**source.state_of(stream, own), "cursor_field": "other"}) is None


def test_a_refreshed_token_without_expires_in_clears_the_old_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Salesforce answers a refresh without expires_in: keeping the old, past expiry would make
    every later call refresh again."""
    from pydantic import SecretStr

    from tests.support.fake_api import FakeApi, Reply, Seen, route

    class TokenEndpoint(FakeApi):
        @route("POST", "/token")
        def token(self, seen: Seen) -> Reply:
            assert seen.form()["refresh_token"] == ["refresh-1"]
            return Reply(200, {"access_token": "access-2", "refresh_token": "refresh-2"})

    monkeypatch.setenv("ALLOW_PRIVATE_NETWORK_SOURCES", "true")
    saved: list[IntegrationCredentials] = []
    source = connector(ProviderName.SENDGRID, "https://api.sendgrid.com")
    source.credentials = IntegrationCredentials.model_validate(
        {
            "credential_type": "oauth2",
            "access_token": "access-1",
            "refresh_token": "refresh-1",
            "token_expires_at": "2020-01-01T00:00:00+00:00",
        }
    )
    source.save_credentials = saved.append
    assert source.token_needs_refresh()
    with TokenEndpoint() as endpoint:
        source.refresh_oauth2(f"{endpoint.url}/token")
    (renewed,) = saved
    assert renewed.access_token == SecretStr("access-2") and renewed.refresh_token == SecretStr("refresh-2")
    assert renewed.token_expires_at is None and not source.token_needs_refresh()
