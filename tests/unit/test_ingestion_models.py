"""Ingestion rule models (REST source, rule request, view, credentials) and the REST
connector's cursor arithmetic and poll state, without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from churnguard.connectors.base import Position
from churnguard.errors import ValidationFailedError
from churnguard.ingestion import APIIngestionRule, APIIngestionRuleView, rule_credentials
from churnguard.models import (
    CredentialType,
    IntegrationConfiguration,
    IntegrationCreateRequest,
    RestAuthType,
    RestSource,
)
from churnguard.providers.custom.source import PollState, compare, render, value_at

URL = "https://api.example.com/v1/events"


def source(**changes: Any) -> RestSource:
    return RestSource.model_validate({"url": URL, **changes})


def test_defaults_read_one_unpaged_get() -> None:
    spec = source()
    assert (spec.method, spec.auth.type, spec.pagination.type, spec.incremental) == ("GET", "none", "none", None)
    assert spec.primary_key == ["id"] and spec.data_path == ""


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": ""}, "url is required"),
        ({"url": "http://user:pw@example.com/"}, "must not embed credentials"),
        ({"pagination": {"type": "cursor"}}, "cursor_path"),
        ({"auth": {"type": "oauth2_client_credentials"}}, "token_url"),
        ({"headers": {"Authorization": "Bearer x"}}, "configure them under auth"),
        ({"headers": {"cookie": "a=b"}}, "configure them under auth"),
        ({"auth": {"type": "api_key", "api_key_name": "X-Token"}, "headers": {"x-token": "k"}}, "under auth"),
        ({"headers": {"X-Evil": "a\r\nInjected: 1"}}, "pattern"),
        ({"body": {"q": 1}}, "a GET request has no body"),
        ({"params_in": "body"}, "a GET request has no body"),
        ({"primary_key": ["customer.id"]}, "pattern"),
        ({"primary_key": []}, "at least 1"),
        ({"data_path": "a..b"}, "pattern"),
        ({"pagination": {"type": "offset", "page_size": 0}}, "greater than or equal to 1"),
        ({"incremental": {"param": "since"}}, "cursor_field"),
        ({"incremental": {"param": "since", "cursor_field": "t", "format": "rfc2822"}}, "format"),
    ],
)
def test_invalid_sources_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        source(**changes)


def test_post_sources_may_carry_a_body_and_body_parameters() -> None:
    spec = source(method="POST", body={"filter": {"kind": "signup"}}, params_in="body")
    assert spec.body == {"filter": {"kind": "signup"}}


def test_a_rest_source_belongs_to_a_custom_integration_with_one_entity() -> None:
    base = {"organization_id": "org_a", "integration_name": "Rule", "rest_source": {"url": URL}}
    assert IntegrationConfiguration.model_validate({**base, "provider_name": "custom"}).rest_source is not None
    with pytest.raises(ValidationError, match="only for provider 'custom'"):
        IntegrationConfiguration.model_validate({**base, "provider_name": "stripe"})
    with pytest.raises(ValidationError, match="one entity"):
        IntegrationConfiguration.model_validate(
            {**base, "provider_name": "custom", "entity_mappings": {"a": "rest_api", "b": "rest_api"}}
        )


def test_the_integrations_route_leaves_rest_sources_to_the_rules_route() -> None:
    with pytest.raises(ValidationError, match="POST /api/ingestion-rules"):
        IntegrationCreateRequest.model_validate(
            {"integration_name": "Rule", "provider_name": "custom", "rest_source": {"url": URL}}
        )


def test_a_rule_splits_into_a_secret_free_source_and_credentials() -> None:
    rule = APIIngestionRule.model_validate(
        {
            "name": "Usage",
            "url": URL,
            "auth": {
                "type": "oauth2_client_credentials",
                "token_url": "https://auth.example.com/token",
                "client_id": "client-0001",
                "client_secret": "very-secret-value-4242",
            },
        }
    )
    spec = rule.source()
    assert "very-secret" not in spec.model_dump_json() and "client-0001" not in spec.model_dump_json()
    assert "very-secret" not in repr(rule)
    creds = rule_credentials(spec.auth.type, rule.auth.secrets())
    assert creds.credential_type is CredentialType.CUSTOM
    assert {k: v.get_secret_value() for k, v in creds.custom_fields.items()} == {
        "auth_type": "oauth2_client_credentials",
        "client_id": "client-0001",
        "client_secret": "very-secret-value-4242",
    }
    assert (rule.entity, rule.sync_frequency, rule.enabled) == ("event", 3600, True)


def test_missing_secrets_name_their_fields() -> None:
    with pytest.raises(ValidationFailedError) as raised:
        rule_credentials(RestAuthType.BASIC, {"username": SecretStr("u")})
    assert raised.value.details == {"fields": [{"field": "auth.password", "message": "required for this auth type"}]}
    assert rule_credentials(RestAuthType.NONE, {}).custom_fields["auth_type"].get_secret_value() == "none"


def test_rules_are_at_least_a_minute_apart() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 60"):
        APIIngestionRule.model_validate({"name": "Fast", "url": URL, "sync_frequency": 59})


def test_the_view_shows_which_secrets_are_set_masked() -> None:
    creds = rule_credentials(RestAuthType.BEARER, {"token": SecretStr("bearer-token-abcdef-1234")})
    config = IntegrationConfiguration(
        organization_id="org_a",
        integration_name="Rule",
        provider_name="custom",
        status="paused",
        entity_mappings={"customer": "rest_api"},
        rest_source=source(auth={"type": "bearer"}),
        credentials_summary=creds.summary(updated_at=datetime.now(UTC)),
    )
    view = APIIngestionRuleView.of(config)
    assert view.auth.secrets_set == {"token": "****1234"} and view.enabled is False and view.entity == "customer"
    assert "bearer-token" not in view.model_dump_json()


# ---------------------------------------------------------------- cursor values and poll state


@pytest.mark.parametrize(
    ("left", "right", "fmt", "expected"),
    [
        (5, 7, "raw", -1),
        (7.5, 7, "raw", 1),
        ("b", "a", "raw", 1),
        ("5", 5, "raw", None),
        (None, 5, "raw", None),
        (True, 1, "raw", None),
        ("2026-01-01T00:00:05Z", "2026-01-01T00:00:05+00:00", "iso8601", 0),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z", "iso8601", 0),
        (1767225605, "2026-01-01T00:00:05Z", "unix", 0),
        ("1767225605000", "2026-01-01T00:00:06Z", "unix_ms", -1),
        ("not a time", "2026-01-01T00:00:06Z", "iso8601", None),
    ],
)
def test_cursor_values_compare_by_format(left: Any, right: Any, fmt: str, expected: int | None) -> None:
    assert compare(left, right, fmt) == expected


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("raw", "2026-01-01T01:00:05.250+01:00"),
        ("iso8601", "2026-01-01T00:00:05.250000Z"),
        ("unix", 1767225605),
        ("unix_ms", 1767225605250),
    ],
)
def test_the_bound_renders_in_the_rules_format(fmt: str, expected: Any) -> None:
    assert render("2026-01-01T01:00:05.250+01:00", fmt) == expected


def test_values_are_found_by_dotted_path_literal_keys_first() -> None:
    document = {"meta": {"next": "abc"}, "a.b": 1, "a": {"b": 2}}
    assert value_at(document, "meta.next") == (True, "abc")
    assert value_at(document, "a.b") == (True, 1)
    assert value_at(document, "meta.missing") == (False, None)
    assert value_at([1, 2], "") == (True, [1, 2])


def test_poll_state_starts_resumes_and_moves_its_bound() -> None:
    assert PollState.at(Position()) == PollState()
    since = PollState.at(Position(cursor=datetime(2026, 3, 1, tzinfo=UTC)))
    assert since.bound == "2026-03-01T00:00:00+00:00" and since.page is None
    mid = {"bound": 5, "bound_keys": ['["a"]'], "max": 9, "max_keys": ['["b"]'], "page": "tok", "done": False}
    assert PollState.at(Position(cursor=mid)) == PollState(5, frozenset({'["a"]'}), 9, frozenset({'["b"]'}), "tok")
    finished = PollState.at(Position(cursor={**mid, "done": True}))
    assert finished == PollState(9, frozenset({'["b"]'}), 9, frozenset({'["b"]'}), None, False)
    assert PollState.at(Position(cursor=finished.to_json())) == finished
