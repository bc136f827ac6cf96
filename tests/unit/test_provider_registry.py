"""The provider registry is the one list of providers: every name it holds has its folder, and
every module it names exists and offers what the registry promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnguard.connectors.base import Connector
from churnguard.inbound.scheme import WebhookScheme
from churnguard.models import ProviderName
from churnguard.providers import registry
from churnguard.webhooks.models import WebhookEndpointCreateRequest

PROVIDERS_DIR = Path(registry.__file__).parent


def test_every_provider_name_has_a_registry_line_and_a_folder_with_its_readme() -> None:
    assert set(registry.PROVIDERS) == {name.value for name in ProviderName}
    assert {path.name for path in PROVIDERS_DIR.iterdir() if path.is_dir() and path.name != "__pycache__"} == set(
        registry.PROVIDERS
    )
    for name, provider in registry.PROVIDERS.items():
        folder = PROVIDERS_DIR / name
        assert (folder / "README.md").is_file(), name
        assert (folder / "source.py").is_file() == (provider.source is not None), name
        assert (folder / "webhook.py").is_file() == provider.webhooks, name
        assert (folder / "events.py").is_file() == provider.webhooks, name


@pytest.mark.parametrize("name", sorted(registry.PROVIDERS))
def test_each_registered_source_is_a_connector_for_its_provider(name: str) -> None:
    if registry.PROVIDERS[name].source is None:
        pytest.skip("no sync source")
    cls = registry.connector_class(ProviderName(name))
    assert issubclass(cls, Connector) and cls.provider is ProviderName(name)


@pytest.mark.parametrize("name", sorted(registry.WEBHOOK_PROVIDERS))
def test_each_webhook_provider_has_a_scheme_and_its_event_changes(name: str) -> None:
    assert isinstance(registry.webhook_scheme(name), WebhookScheme)
    assert callable(registry.event_changes(name))


def test_a_provider_without_webhooks_has_no_scheme_and_no_endpoint() -> None:
    with pytest.raises(KeyError):
        registry.webhook_scheme("postgresql")
    with pytest.raises(ValueError, match="no webhook scheme"):
        WebhookEndpointCreateRequest.model_validate({"provider": "postgresql", "secret_key": "s" * 32})
    schema = WebhookEndpointCreateRequest.model_json_schema()
    assert sorted(schema["properties"]["provider"]["enum"]) == sorted(registry.WEBHOOK_PROVIDERS)


@pytest.mark.parametrize(
    ("provider", "options", "problem"),
    [
        ("sendgrid", {}, "sendgrid_public_key"),
        ("salesforce", {}, "salesforce_organization_id"),
        ("custom", {"custom_scheme": "hmac_sha256"}, "signature_header"),
        ("custom", {"custom_scheme": "hmac_sha256", "signature_header": "X-Sig"}, None),
        ("stripe", {}, None),
    ],
)
def test_each_scheme_says_what_its_endpoints_must_also_set(
    provider: str, options: dict[str, str], problem: str | None
) -> None:
    found = registry.webhook_scheme(provider).endpoint_problem(options)
    assert (found is None) if problem is None else (found is not None and problem in found)
