"""ProviderName → connector class, imported on first use.

A handler that syncs PostgreSQL never imports pymysql or pymongo: the table names modules, and
`connector_class` imports only the one asked for. Adding a provider is one module and one entry.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from churnguard.errors import ValidationFailedError
from churnguard.models import ProviderName

if TYPE_CHECKING:
    from churnguard.connectors.base import Connector

_CONNECTORS: dict[ProviderName, str] = {
    ProviderName.POSTGRESQL: "churnguard.connectors.postgresql:PostgresConnector",
    ProviderName.MYSQL: "churnguard.connectors.mysql:MySqlConnector",
    ProviderName.MONGODB: "churnguard.connectors.mongodb:MongoConnector",
    ProviderName.STRIPE: "churnguard.connectors.stripe:StripeConnector",
    ProviderName.HUBSPOT: "churnguard.connectors.hubspot:HubSpotConnector",
    ProviderName.SALESFORCE: "churnguard.connectors.salesforce:SalesforceConnector",
    ProviderName.MAILCHIMP: "churnguard.connectors.mailchimp:MailchimpConnector",
    ProviderName.SENDGRID: "churnguard.connectors.sendgrid:SendGridConnector",
    ProviderName.CUSTOM: "churnguard.connectors.rest:RestConnector",
}


def supported_providers() -> frozenset[ProviderName]:
    return frozenset(_CONNECTORS)


def connector_class(provider: ProviderName) -> type[Connector]:
    target = _CONNECTORS.get(provider)
    if target is None:
        raise ValidationFailedError(
            f"provider {provider.value!r} has no sync connector yet",
            {"fields": [{"field": "provider_name", "message": "no sync connector for this provider"}]},
        )
    module_name, _, class_name = target.partition(":")
    cls: type[Connector] = getattr(import_module(module_name), class_name)
    return cls
