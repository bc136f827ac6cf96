"""The providers, one line each: which has a sync source, which a webhook scheme. Everything is
imported on first use, so the receiver loads no SDK and a PostgreSQL sync never imports pymysql.
Adding a provider is a folder (source.py, webhook.py and events.py, canonical.py, README.md)
and a line here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING, Any

from churnguard.errors import ValidationFailedError

if TYPE_CHECKING:
    from churnguard.connectors.base import Connector
    from churnguard.connectors.changes import ChangeLog
    from churnguard.inbound.changes import Change
    from churnguard.inbound.queued import ProviderEvent
    from churnguard.inbound.scheme import WebhookScheme
    from churnguard.models import ProviderName


@dataclass(frozen=True)
class Provider:
    name: str  # a ProviderName value, and the provider's folder
    source: str | None = None  # the sync source's class in <folder>/source.py
    webhooks: bool = False  # <folder>/webhook.py (SCHEME) and <folder>/events.py (changes)
    # How long the source keeps the changes an incremental sync reads: an integration that has
    # not synced for longer starts losing changes (the dashboard's time to data loss).
    change_retention_seconds: int | None = None
    # The database's log for change data capture: the class in <folder>/changes.py.
    changes: str | None = None


PROVIDERS: Mapping[str, Provider] = {
    provider.name: provider
    for provider in (
        Provider("postgresql", source="PostgresConnector", changes="PostgresChangeLog"),
        Provider("mysql", source="MySqlConnector", changes="MySqlChangeLog"),
        Provider("mongodb", source="MongoConnector", changes="MongoChangeLog"),
        # Incremental syncs read /v1/events, which Stripe keeps for 30 days; past that a sync reads
        # everything again and deletions in between are not seen.
        Provider("stripe", source="StripeConnector", webhooks=True, change_retention_seconds=30 * 86_400),
        Provider("hubspot", source="HubSpotConnector", webhooks=True),
        Provider("salesforce", source="SalesforceConnector", webhooks=True),
        Provider("mailchimp", source="MailchimpConnector", webhooks=True),
        Provider("sendgrid", source="SendGridConnector", webhooks=True),
        # REST ingestion rules, and webhooks from anything that signs with Standard Webhooks or an HMAC.
        Provider("custom", source="RestConnector", webhooks=True),
    )
}
WEBHOOK_PROVIDERS = frozenset(name for name, provider in PROVIDERS.items() if provider.webhooks)

EventChanges = Callable[["ProviderEvent", Mapping[str, Any]], "list[Change]"]


def _module(provider: str, part: str) -> Any:
    return import_module(f"churnguard.providers.{provider}.{part}")


@cache
def supported_providers() -> frozenset[ProviderName]:
    """The providers that can sync (ProviderName is imported here: it pulls in pydantic)."""
    from churnguard.models import ProviderName

    return frozenset(ProviderName(name) for name, provider in PROVIDERS.items() if provider.source)


def connector_class(provider: ProviderName) -> type[Connector]:
    entry = PROVIDERS.get(provider.value)
    if entry is None or entry.source is None:
        raise ValidationFailedError(
            f"provider {provider.value!r} has no sync connector yet",
            {"fields": [{"field": "provider_name", "message": "no sync connector for this provider"}]},
        )
    cls: type[Connector] = getattr(_module(entry.name, "source"), entry.source)
    return cls


def change_log_available(provider: ProviderName) -> bool:
    entry = PROVIDERS.get(provider.value)
    return entry is not None and entry.changes is not None


def change_log_class(provider: ProviderName) -> Callable[[Connector, str], ChangeLog]:
    """The class of a provider's log (change data capture), built from its connector and the
    integration id."""
    entry = PROVIDERS.get(provider.value)
    if entry is None or entry.changes is None:
        raise ValidationFailedError(
            f"provider {provider.value!r} has no change data capture",
            {"fields": [{"field": "sync_config.sync_mode", "message": "real_time is not available for this provider"}]},
        )
    cls: Callable[[Connector, str], ChangeLog] = getattr(_module(entry.name, "changes"), entry.changes)
    return cls


def _webhook_part(provider: str, module: str, name: str) -> Any:
    if provider not in WEBHOOK_PROVIDERS:
        raise KeyError(provider)
    return getattr(_module(provider, module), name)


@cache
def webhook_scheme(provider: str) -> WebhookScheme:
    """The provider's signature check and parser (KeyError for a provider without webhooks)."""
    scheme: WebhookScheme = _webhook_part(provider, "webhook", "SCHEME")
    return scheme


@cache
def event_changes(provider: str) -> EventChanges:
    """The provider's events → canonical changes (KeyError for a provider without webhooks)."""
    changes: EventChanges = _webhook_part(provider, "events", "changes")
    return changes
