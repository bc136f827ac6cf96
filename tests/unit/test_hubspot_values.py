"""HubSpot's string property values typed by their definitions, and the request windows."""

from __future__ import annotations

from decimal import Decimal

import pytest

from churnguard.providers.hubspot.source import WINDOW_MARGIN, _bool, _number, _row, _Window


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("1250.50", 1250.5),
        ("1e3", 1000.0),
        ("12345678901234567890", 12345678901234567890),
        ("0.12345678901234567", Decimal("0.12345678901234567")),
        ("", None),
        ("not a number", None),
        ("NaN", None),
    ],
)
def test_numbers_are_exact_and_json_numbers_where_a_double_holds_them(text: str, expected: object) -> None:
    value = _number(text)
    assert value == expected and type(value) is type(expected)


def test_bools_and_rows() -> None:
    assert (_bool("true"), _bool("False"), _bool("")) == (True, False, None)
    row = _row(
        {
            "id": "7",
            "properties": {"amount": "10", "hs_is_closed": "false", "dealname": "X", "id": "no", "closedate": None},
            "createdAt": "2024-01-01T00:00:00.000Z",
            "archived": False,
        },
        {"amount": _number, "hs_is_closed": _bool, "closedate": _number},
    )
    assert row == {
        "amount": 10,
        "hs_is_closed": False,
        "dealname": "X",
        "id": "7",
        "closedate": None,
        "createdAt": "2024-01-01T00:00:00.000Z",
        "archived": False,
    }


def test_a_window_waits_for_its_oldest_request_and_for_hubspots_remaining_count() -> None:
    window = _Window(2, 1.0)
    window.take(0.0, waited=False)
    window.take(0.2, waited=False)
    assert window.delay(0.3) == pytest.approx(1.0 + WINDOW_MARGIN - 0.3)  # until the oldest leaves
    assert window.delay(1.2) == 0.0
    window.observe(None, None, 0)  # others spent the window
    assert window.delay(1.2) == pytest.approx(0.2 + 1.0 + WINDOW_MARGIN - 1.2)
    window.take(1.3, waited=True)
    assert window.budget == 0
    window.observe(10, 10.0, 5)
    assert (window.limit, window.seconds, window.budget) == (10, 10.0, 5)


def test_a_spent_daily_limit_pauses_the_sync_and_a_ten_second_limit_throttles_it() -> None:
    import json
    from typing import Any, cast

    from hubspot.crm.objects.exceptions import ApiException

    from churnguard.connectors.base import SourcePausedError, ThrottledError
    from churnguard.models import IntegrationConfiguration, IntegrationCredentials
    from churnguard.providers.hubspot.source import HubSpotConnector
    from churnguard.resilience import CircuitBreaker, Guard, RateLimiter, RetryPolicy

    connector = HubSpotConnector(
        IntegrationConfiguration(organization_id="org_unit", integration_name="crm", provider_name="hubspot"),  # type: ignore[arg-type]
        IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": "pat-na1-x"}),
        Guard(RetryPolicy(0, 0.0), RateLimiter(60, 1), CircuitBreaker(cast(Any, None), "org_unit", "int_unit")),
    )

    def limited(policy: str, retry_after: str | None = None) -> ApiException:
        exc = ApiException(status=429, reason="Too Many Requests")
        exc.body = json.dumps({"status": "error", "errorType": "RATE_LIMIT", "policyName": policy})
        exc.headers = {"Retry-After": retry_after} if retry_after else {}
        return exc

    daily = connector.translate(limited("DAILY"))
    assert isinstance(daily, SourcePausedError) and not daily.retryable
    assert daily.retry_after is not None and daily.retry_after >= 3600
    burst = connector.translate(limited("TEN_SECONDLY_ROLLING", "2"))
    assert type(burst) is ThrottledError and burst.retry_after == 2.0
