"""Webhook endpoints as the management API takes and shows them.

The stored document (`WebhookEndpoint`) holds no secret: the signing secrets live in a KMS
envelope next to it, and only a masked summary travels with the configuration.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema, field_validator, model_validator

from churnguard.models import (
    FieldPath,
    JsonBool,
    JsonInt,
    Model,
    OrganizationId,
    ProviderName,
    Secret,
    StrictModel,
    utc_now,
)
from churnguard.providers.registry import WEBHOOK_PROVIDERS, webhook_scheme
from churnguard.providers.sendgrid.webhook import check_public_key as check_sendgrid_public_key


class CustomScheme(StrEnum):
    STANDARD_WEBHOOKS = "standard_webhooks"
    HMAC_SHA256 = "hmac_sha256"


class SignatureEncoding(StrEnum):
    HEX = "hex"
    BASE64 = "base64"


def _has_webhooks(provider: ProviderName) -> ProviderName:
    if provider.value not in WEBHOOK_PROVIDERS:
        raise ValueError(f"{provider.value} has no webhook scheme; one of: {', '.join(sorted(WEBHOOK_PROVIDERS))}")
    return provider


# A provider with a webhook scheme in the provider registry.
WebhookProvider = Annotated[
    ProviderName,
    AfterValidator(_has_webhooks),
    WithJsonSchema({"type": "string", "enum": sorted(WEBHOOK_PROVIDERS)}),
]

EventName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
HeaderName = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9-]{1,64}$")]
SalesforceOrganizationId = Annotated[str, StringConstraints(pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$")]
EntityName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
EndpointStatus = Literal["active", "paused"]


def public_path(provider: str, organization_id: str) -> str:
    return f"/webhooks/{provider}/{organization_id}"


class EndpointOptions(StrictModel):
    """What the receiver and the processor need besides the secret."""

    allowed_events: list[EventName] = Field(default_factory=list, max_length=200)
    field_mappings: dict[FieldPath, FieldPath] = Field(default_factory=dict, max_length=500)
    status: EndpointStatus = "active"
    sendgrid_public_key: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)] | None = None
    salesforce_organization_id: SalesforceOrganizationId | None = None
    hubspot_allow_legacy_signatures: JsonBool = False
    custom_scheme: CustomScheme = CustomScheme.STANDARD_WEBHOOKS
    signature_header: HeaderName | None = None
    signature_encoding: SignatureEncoding = SignatureEncoding.HEX
    signature_prefix: Annotated[str, StringConstraints(max_length=32)] = ""
    event_id_field: FieldPath | None = None
    event_type_field: FieldPath | None = None
    event_time_field: FieldPath | None = None
    record_id_field: FieldPath | None = None
    entity: EntityName | None = None
    delete_event_types: list[EventName] = Field(default_factory=list, max_length=50)

    @field_validator("sendgrid_public_key")
    @classmethod
    def _sendgrid_key(cls, value: str | None) -> str | None:
        if value:
            check_sendgrid_public_key(value)
        return value


class WebhookEndpointCreateRequest(EndpointOptions):
    organization_id: OrganizationId | None = None
    provider: WebhookProvider
    url_path: Annotated[str, StringConstraints(max_length=256)] | None = None
    secret_key: Secret | None = None
    integration_id: Annotated[str, StringConstraints(max_length=64)] | None = None


class WebhookEndpointUpdateRequest(StrictModel):
    """PATCH body: any subset of the options. The secret changes through rotate-secret only."""

    organization_id: OrganizationId | None = None
    allowed_events: list[str] | None = None
    field_mappings: dict[str, str] | None = None
    status: str | None = None
    sendgrid_public_key: str | None = None
    salesforce_organization_id: str | None = None
    hubspot_allow_legacy_signatures: JsonBool | None = None
    custom_scheme: str | None = None
    signature_header: str | None = None
    signature_encoding: str | None = None
    signature_prefix: str | None = None
    event_id_field: str | None = None
    event_type_field: str | None = None
    event_time_field: str | None = None
    record_id_field: str | None = None
    entity: str | None = None
    delete_event_types: list[str] | None = None


class RotateSecretRequest(StrictModel):
    secret_key: Secret
    grace_period_seconds: JsonInt = Field(default=86_400, ge=0, le=7 * 86_400)


class SecretSummary(Model):
    current: str = Field(description="masked: `****` plus the last four characters of long secrets")
    rotated_at: datetime | None = None
    previous_valid_until: datetime | None = None


class WebhookEndpoint(EndpointOptions):
    """An endpoint as stored (the receiver reads this document as plain JSON)."""

    endpoint_id: str
    organization_id: OrganizationId
    integration_id: str
    owns_integration: bool
    provider: WebhookProvider
    url_path: str
    has_secret: bool
    secret: SecretSummary | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    version: int = 1

    @model_validator(mode="after")
    def _provider_rules(self) -> WebhookEndpoint:
        scheme = webhook_scheme(self.provider.value)
        if scheme.needs_secret and not self.has_secret:
            raise ValueError(f"a {self.provider.value} endpoint needs secret_key")
        problem = scheme.endpoint_problem(dict(self))
        if problem is not None:
            raise ValueError(problem)
        return self


class WebhookEndpointView(Model):
    endpoint_id: str
    organization_id: str
    integration_id: str
    provider: WebhookProvider
    url_path: str
    status: str
    allowed_events: list[str]
    field_mappings: dict[str, str]
    options: dict[str, Any]
    secret: SecretSummary | None
    events_ignored: int
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, endpoint: WebhookEndpoint, events_ignored: int) -> WebhookEndpointView:
        options = endpoint.model_dump(
            mode="json",
            exclude=set(WebhookEndpoint.model_fields) - set(EndpointOptions.model_fields)
            | {"allowed_events", "field_mappings", "status"},
            exclude_defaults=True,
        )
        return cls(
            endpoint_id=endpoint.endpoint_id,
            organization_id=endpoint.organization_id,
            integration_id=endpoint.integration_id,
            provider=endpoint.provider,
            url_path=endpoint.url_path,
            status=endpoint.status,
            allowed_events=endpoint.allowed_events,
            field_mappings=endpoint.field_mappings,
            options=options,
            secret=endpoint.secret,
            events_ignored=events_ignored,
            created_at=endpoint.created_at,
            updated_at=endpoint.updated_at,
            version=endpoint.version,
        )


class WebhookEndpointList(Model):
    items: list[WebhookEndpointView]


class DeadLetter(Model):
    message_key: str
    endpoint_id: str
    integration_id: str
    provider: str
    event_id: str
    event_type: str
    error: str
    receive_count: int
    failed_at: datetime


class DeadLetterPage(Model):
    items: list[DeadLetter]
    next_token: str | None = None


class RedriveResult(Model):
    redriven: int = Field(description="messages of this organisation moved back to the webhook queue")
