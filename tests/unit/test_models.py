"""The validation rules of the integration models: what a client may and may not send."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from churnguard.models import (
    CredentialType,
    IntegrationConfiguration,
    IntegrationCreateRequest,
    IntegrationCredentials,
    IntegrationType,
    IntegrationUpdateRequest,
    SourceOptions,
    SyncConfiguration,
    mask_secret,
)

SECRET = "sk_live_THIS-IS-A-VERY-SECRET-VALUE-9876"


def _create(**overrides: Any) -> IntegrationCreateRequest:
    body: dict[str, Any] = {"integration_name": "Stripe", "provider_name": "stripe"}
    body.update(overrides)
    return IntegrationCreateRequest.model_validate(body)


def _error_fields(exc: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.value.errors()}


def test_the_seed_body_is_accepted_and_typed() -> None:
    request = _create(
        organization_id="org_123",
        integration_name="Salesforce Production",
        provider_name="salesforce",
        integration_type="crm",
        base_url="https://example.my.salesforce.com",
        credentials={"credential_type": "oauth2", "access_token": "a" * 20, "refresh_token": "r" * 20},
        sync_config={"sync_mode": "incremental", "sync_frequency": 3600, "batch_size": 1000},
    )
    assert request.integration_type is IntegrationType.CRM
    assert request.credentials is not None
    assert request.credentials.credential_type is CredentialType.OAUTH2


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        ("salesforce", "crm"),
        ("hubspot", "crm"),
        ("stripe", "payment"),
        ("mysql", "database"),
        ("postgresql", "database"),
        ("mongodb", "database"),
        ("mailchimp", "email_marketing"),
        ("sendgrid", "email_marketing"),
        ("custom", "api"),
    ],
)
def test_integration_type_defaults_from_the_provider(provider: str, expected: str) -> None:
    assert _create(provider_name=provider).integration_type == expected


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        _create(provider_name="oracle")
    assert _error_fields(exc) == {"provider_name"}


def test_integration_type_must_fit_the_provider() -> None:
    with pytest.raises(ValidationError, match="does not fit provider 'stripe'"):
        _create(integration_type="crm")
    assert _create(provider_name="custom", integration_type="streaming").integration_type == "streaming"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("batch_size", 0),
        ("batch_size", 10_001),
        ("sync_frequency", 59),
        ("sync_frequency", 2_592_001),
        ("retry_attempts", 11),
        ("retry_backoff", 0),
        ("requests_per_minute", 0),
        ("concurrent_requests", 101),
        ("incremental_field", "updated at; drop table"),
        ("sync_mode", "sometimes"),
        ("unknown_option", True),
    ],
)
def test_sync_configuration_is_bounded(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        SyncConfiguration.model_validate({field: value})
    assert _error_fields(exc) == {field}


def test_sync_configuration_defaults_come_from_the_platform_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from churnguard.config import platform_settings

    monkeypatch.setenv("INTEGRATION_DEFAULT_BATCH_SIZE", "250")
    monkeypatch.setenv("INTEGRATION_DEFAULT_RETRY_ATTEMPTS", "5")
    platform_settings.cache_clear()
    try:
        config = SyncConfiguration()
        assert (config.batch_size, config.retry_attempts) == (250, 5)
    finally:
        platform_settings.cache_clear()


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com", "example.com", "https://", "https://user:pw@example.com", "https://example.com:99999"],
)
def test_saas_base_url_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        _create(base_url=url)


@pytest.mark.parametrize("address", ["db.example.com:5432", "127.0.0.1:3306", "[::1]:27017", "primary-db:5432"])
def test_database_base_url_is_host_and_port(address: str) -> None:
    assert _create(provider_name="postgresql", base_url=address).base_url == address


@pytest.mark.parametrize(
    "address", ["db.example.com", "db.example.com:0", "db.example.com:70000", "https://db:5432", "bad host:5432"]
)
def test_database_base_url_rejects_other_shapes(address: str) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        _create(provider_name="mysql", base_url=address)


def test_webhook_url_must_be_http() -> None:
    with pytest.raises(ValidationError) as exc:
        _create(webhook_url="javascript:alert(1)")
    assert _error_fields(exc) == {"webhook_url"}


def test_names_are_trimmed_and_bounded() -> None:
    assert _create(integration_name="  Billing  ").integration_name == "Billing"
    for name in ("", "   ", "x" * 129):
        with pytest.raises(ValidationError):
            _create(integration_name=name)


def test_clients_cannot_set_platform_statuses() -> None:
    assert _create(status="active").status == "active"
    with pytest.raises(ValidationError, match="set by the platform"):
        _create(status="syncing")
    with pytest.raises(ValidationError, match="set by the platform"):
        IntegrationUpdateRequest.model_validate({"status": "auth_failed"})


def test_unknown_fields_are_refused_everywhere() -> None:
    with pytest.raises(ValidationError) as exc:
        _create(integration_id="chosen_by_client")
    assert _error_fields(exc) == {"integration_id"}
    with pytest.raises(ValidationError):
        IntegrationUpdateRequest.model_validate({"credentials": {"credential_type": "api_key", "api_key": "x"}})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"credential_type": "oauth2"}, "access_token or refresh_token"),
        ({"credential_type": "api_key"}, "need api_key"),
        ({"credential_type": "basic_auth", "username": "u"}, "username and password"),
        ({"credential_type": "custom"}, "custom_fields"),
        ({"credential_type": "api_key", "api_key": ""}, "need api_key"),
    ],
)
def test_credentials_need_the_fields_of_their_type(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IntegrationCredentials.model_validate(body)


def test_secrets_never_appear_in_repr_or_validation_errors() -> None:
    credentials = IntegrationCredentials(credential_type=CredentialType.API_KEY, api_key=SECRET)  # type: ignore[arg-type]
    assert SECRET not in repr(credentials)
    assert SECRET not in str(credentials)
    with pytest.raises(ValidationError) as exc:
        IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": SECRET, "extra": SECRET})
    assert SECRET not in str(exc.value)
    with pytest.raises(ValidationError) as exc:
        IntegrationCredentials.model_validate({"credential_type": "api_key", "api_key": SECRET * 300})
    assert SECRET not in str(exc.value)


def test_masking_shows_only_the_last_four_of_long_secrets() -> None:
    credentials = IntegrationCredentials.model_validate(
        {
            "credential_type": "basic_auth",
            "username": "reader",
            "password": SECRET,
            "custom_fields": {"database": "crm"},
        }
    )
    from datetime import UTC, datetime

    summary = credentials.summary(updated_at=datetime.now(UTC))
    assert summary.fields_set == {"username": "****", "password": "****9876"}
    assert summary.custom_fields_set == {"database": "****"}
    assert mask_secret(credentials.password) == "****9876"  # type: ignore[arg-type]


def test_plaintext_document_round_trips() -> None:
    credentials = IntegrationCredentials.model_validate(
        {
            "credential_type": "oauth2",
            "access_token": "at",
            "refresh_token": "rt",
            "token_expires_at": "2030-01-01T00:00:00Z",
            "custom_fields": {"client_id": "cid", "client_secret": "cs"},
        }
    )
    again = IntegrationCredentials.model_validate(credentials.to_plaintext())
    assert again.to_plaintext() == credentials.to_plaintext()


def test_stored_configuration_excludes_credentials_from_its_document() -> None:
    config = IntegrationConfiguration(
        organization_id="org_1",
        integration_name="Stripe",
        provider_name="stripe",  # type: ignore[arg-type]
        credentials=IntegrationCredentials(credential_type=CredentialType.API_KEY, api_key=SECRET),  # type: ignore[arg-type]
    )
    assert SECRET not in config.model_dump_json()
    assert config.integration_id.startswith("int_") and len(config.integration_id) == 24


def test_organization_ids_are_restricted() -> None:
    for bad in ("", "org 1", "org#1", "x" * 65, "../org"):
        with pytest.raises(ValidationError):
            _create(organization_id=bad)


@pytest.mark.parametrize("value", [-1, 86_401, "300", 1.5, True])
def test_a_lookback_window_is_whole_seconds_up_to_a_day(value: Any) -> None:
    with pytest.raises(ValidationError):
        SourceOptions.model_validate({"lookback_seconds": value})
    assert SourceOptions.model_validate({"lookback_seconds": 0}).lookback_seconds == 0
    assert SourceOptions().lookback_seconds is None, "unset: the provider's window"
