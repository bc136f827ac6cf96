"""Pydantic models for integrations, with the seed's public names and fields.

Everything a client can send is validated here, strictly: unknown fields are refused, sizes and
rates are bounded, providers and URLs are checked. The same models validate stored documents, so
a record that reaches DynamoDB has passed the rules a client's request did.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    StringConstraints,
    field_validator,
    model_validator,
)

from churnguard.config import platform_settings


class IntegrationType(StrEnum):
    CRM = "crm"
    PAYMENT = "payment"
    EMAIL_MARKETING = "email_marketing"
    DATABASE = "database"
    WEBHOOK = "webhook"
    API = "api"
    STREAMING = "streaming"


class DataSyncMode(StrEnum):
    FULL_SYNC = "full_sync"
    INCREMENTAL = "incremental"
    REAL_TIME = "real_time"
    SCHEDULED = "scheduled"


class IntegrationStatus(StrEnum):
    INACTIVE = "inactive"
    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"
    SYNCING = "syncing"
    RATE_LIMITED = "rate_limited"
    AUTHENTICATION_FAILED = "auth_failed"


CLIENT_SETTABLE_STATUSES = frozenset({IntegrationStatus.INACTIVE, IntegrationStatus.ACTIVE, IntegrationStatus.PAUSED})


class ProviderName(StrEnum):
    SALESFORCE = "salesforce"
    HUBSPOT = "hubspot"
    STRIPE = "stripe"
    MYSQL = "mysql"
    POSTGRESQL = "postgresql"
    MONGODB = "mongodb"
    MAILCHIMP = "mailchimp"
    SENDGRID = "sendgrid"
    CUSTOM = "custom"


PROVIDER_TYPES: dict[ProviderName, frozenset[IntegrationType]] = {
    ProviderName.SALESFORCE: frozenset({IntegrationType.CRM}),
    ProviderName.HUBSPOT: frozenset({IntegrationType.CRM}),
    ProviderName.STRIPE: frozenset({IntegrationType.PAYMENT}),
    ProviderName.MYSQL: frozenset({IntegrationType.DATABASE}),
    ProviderName.POSTGRESQL: frozenset({IntegrationType.DATABASE}),
    ProviderName.MONGODB: frozenset({IntegrationType.DATABASE}),
    ProviderName.MAILCHIMP: frozenset({IntegrationType.EMAIL_MARKETING}),
    ProviderName.SENDGRID: frozenset({IntegrationType.EMAIL_MARKETING}),
    ProviderName.CUSTOM: frozenset(IntegrationType),
}
DEFAULT_PROVIDER_TYPE: dict[ProviderName, IntegrationType] = {
    ProviderName.CUSTOM: IntegrationType.API,
    **{p: next(iter(types)) for p, types in PROVIDER_TYPES.items() if p is not ProviderName.CUSTOM},
}
DATABASE_PROVIDERS = frozenset({ProviderName.MYSQL, ProviderName.POSTGRESQL, ProviderName.MONGODB})


class CredentialType(StrEnum):
    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    BASIC_AUTH = "basic_auth"
    CUSTOM = "custom"


ORGANIZATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
OrganizationId = Annotated[str, StringConstraints(pattern=ORGANIZATION_ID_PATTERN)]
FieldPath = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256, pattern=r"^[^\s]+$")]
Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$"),
]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Secret = Annotated[SecretStr, Field(max_length=8192)]


def _pem_certificates(value: SecretStr) -> SecretStr:
    """A CA bundle must be PEM certificates; anything else would only fail at connect time."""
    from cryptography import x509

    try:
        certificates = x509.load_pem_x509_certificates(value.get_secret_value().encode())
    except ValueError:
        raise ValueError("must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)") from None
    if len(certificates) > 20:
        raise ValueError("holds more than 20 certificates")
    return value


# The CA a source's TLS certificate is checked against instead of the public ones (a corporate
# TLS proxy, a sandbox with its own CA). Verification is never switched off.
CaBundle = Annotated[SecretStr, Field(max_length=65_536), AfterValidator(_pem_certificates)]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV6_BRACKETED = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")


def _check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host, or empty (not configured)."""
    if value == "":
        return value
    if len(value) > 2048:
        raise ValueError("URL is longer than 2048 characters")
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise ValueError("must not embed credentials; put them in credentials instead")
    try:
        parts.port  # noqa: B018 - accessing port validates it
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return value


def _check_host_port(value: str) -> str:
    """The seed's database address form, host:port."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must be host:port with a port between 1 and 65535")
    if not (_HOSTNAME.match(host) or _IPV6_BRACKETED.match(host)):
        raise ValueError("has an invalid host name")
    return value


HttpUrl = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_check_http_url)]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_integration_id() -> str:
    return f"int_{secrets.token_hex(10)}"


# JSON numbers and booleans as themselves in request bodies: lax validation would take `true` for 1
# and "5" for 5, which the OpenAPI document (integer, boolean) does not allow.
JsonInt = Annotated[int, Strict()]
JsonBool = Annotated[bool, Strict()]


class Model(BaseModel):
    """Base of the package's models. Schemas are built on first use rather than at import: a
    request touches a handful of models, and building all of them would cost every cold start
    about a hundred milliseconds."""

    model_config = ConfigDict(defer_build=True)


class StrictModel(Model):
    model_config = ConfigDict(extra="forbid", validate_default=True, hide_input_in_errors=True)


class IntegrationCredentials(StrictModel):
    """Secrets for one integration. Every secret is a SecretStr so repr/logging shows stars."""

    credential_type: CredentialType
    access_token: Secret | None = None
    refresh_token: Secret | None = None
    token_expires_at: datetime | None = None
    api_key: Secret | None = None
    api_secret: Secret | None = None
    username: Secret | None = None
    password: Secret | None = None
    ca_bundle: CaBundle | None = Field(
        default=None, description="PEM CA certificates to verify the source's TLS certificate with (SaaS and REST)"
    )
    custom_fields: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")], Secret] = Field(
        default_factory=dict, max_length=50
    )

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = (
        "access_token",
        "refresh_token",
        "api_key",
        "api_secret",
        "username",
        "password",
        "ca_bundle",
    )

    @field_validator(
        "access_token", "refresh_token", "api_key", "api_secret", "username", "password", "ca_bundle", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _required_for_type(self) -> IntegrationCredentials:
        required: dict[CredentialType, tuple[tuple[str, ...], str]] = {
            CredentialType.OAUTH2: (("access_token", "refresh_token"), "oauth2 needs access_token or refresh_token"),
            CredentialType.API_KEY: (("api_key",), "api_key credentials need api_key"),
        }
        if self.credential_type in required:
            fields, message = required[self.credential_type]
            if not any(getattr(self, name) for name in fields):
                raise ValueError(message)
        if self.credential_type is CredentialType.BASIC_AUTH and not (self.username and self.password):
            raise ValueError("basic_auth credentials need username and password")
        if self.credential_type is CredentialType.CUSTOM and not self.custom_fields:
            raise ValueError("custom credentials need at least one custom_fields entry")
        return self

    def to_plaintext(self) -> dict[str, Any]:
        """The secret document that gets encrypted; never logged or returned."""
        document: dict[str, Any] = {"credential_type": self.credential_type.value}
        for name in self.SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None:
                document[name] = secret.get_secret_value()
        if self.token_expires_at is not None:
            document["token_expires_at"] = self.token_expires_at.isoformat()
        if self.custom_fields:
            document["custom_fields"] = {k: v.get_secret_value() for k, v in self.custom_fields.items()}
        return document

    def summary(self, updated_at: datetime) -> CredentialsSummary:
        fields = {name: mask_secret(getattr(self, name)) for name in self.SECRET_FIELDS if getattr(self, name)}
        return CredentialsSummary(
            credential_type=self.credential_type,
            fields_set=fields,
            custom_fields_set={key: mask_secret(value) for key, value in self.custom_fields.items()},
            token_expires_at=self.token_expires_at,
            updated_at=updated_at,
        )


def mask_secret(secret: SecretStr) -> str:
    """Shows the last four characters only of long secrets, where four reveal nothing useful."""
    value = secret.get_secret_value()
    return f"****{value[-4:]}" if len(value) >= 16 else "****"


class CredentialsSummary(Model):
    """What the API shows about credentials: their type and which fields are set, masked."""

    credential_type: CredentialType
    fields_set: dict[str, str]
    custom_fields_set: dict[str, str]
    token_expires_at: datetime | None = None
    updated_at: datetime


class SyncConfiguration(StrictModel):
    sync_mode: DataSyncMode = DataSyncMode.INCREMENTAL
    sync_frequency: JsonInt = Field(default=3600, ge=60, le=2_592_000, description="seconds between scheduled syncs")
    batch_size: JsonInt = Field(default_factory=lambda: platform_settings().default_batch_size, ge=1, le=10_000)
    retry_attempts: JsonInt = Field(default_factory=lambda: platform_settings().default_retry_attempts, ge=0, le=10)
    retry_backoff: JsonInt = Field(default=60, ge=1, le=3600, description="seconds")
    data_filters: dict[FieldPath, Any] = Field(default_factory=dict, max_length=50)
    field_mappings: dict[FieldPath, FieldPath] = Field(default_factory=dict, max_length=500)
    incremental_field: Identifier = "updated_at"
    last_sync_timestamp: datetime | None = None
    requests_per_minute: JsonInt | None = Field(
        default=None, ge=1, le=100_000, description="an override; unset, the provider's documented pace"
    )
    concurrent_requests: JsonInt | None = Field(
        default=None, ge=1, le=100, description="an override; unset, what the provider allows at once"
    )
    include_raw: JsonBool = Field(
        default=True, description="whether canonical records keep the provider's original object under data.raw"
    )


class SyncConfigurationPatch(StrictModel):
    """A partial SyncConfiguration; omitted fields keep their current value."""

    sync_mode: DataSyncMode | None = None
    sync_frequency: JsonInt | None = None
    batch_size: JsonInt | None = None
    retry_attempts: JsonInt | None = None
    retry_backoff: JsonInt | None = None
    data_filters: dict[str, Any] | None = None
    field_mappings: dict[str, str] | None = None
    incremental_field: str | None = None
    last_sync_timestamp: datetime | None = None
    requests_per_minute: JsonInt | None = None
    concurrent_requests: JsonInt | None = None
    include_raw: JsonBool | None = None


SourceQuery = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]


class SourceOptions(StrictModel):
    """Per-entity settings of a database source, for what `entity_mappings` cannot say.

    `query` (PostgreSQL, MySQL) reads the entity from a SELECT instead of a table; the primary key
    then has to be given, since no catalog knows it. `primary_key` otherwise overrides the
    catalog's and `cursor_field` overrides `sync_config.incremental_field` for this entity.
    `lookback_seconds` overrides the provider's lookback window of incremental reads (0: none).
    """

    query: SourceQuery | None = None
    primary_key: list[Identifier] | None = Field(default=None, min_length=1, max_length=8)
    cursor_field: Identifier | None = None
    lookback_seconds: JsonInt | None = Field(
        default=None,
        ge=0,
        le=86_400,
        description="seconds before the last read's start that an incremental read starts; null: the provider's",
    )


# ---------------------------------------------------------------- REST API sources (ingestion rules)

ParamName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-\[\]]+$")]
HeaderName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]
HeaderValue = Annotated[str, StringConstraints(max_length=4096, pattern=r"^[^\r\n]*$")]
KeyField = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s.]+$")]
DottedPath = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=256, pattern=r"^([^\s.]+(\.[^\s.]+)*)?$")
]
# Headers that carry credentials: those belong in `auth`, where they are encrypted.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key"})
# Query parameter names that carry a credential (api_key, access_token, client_secret, hapikey,
# sig, ...): their values are stored encrypted, never in the rule.
SECRET_QUERY_NAME = re.compile(
    r"(api[-_.]?key|token|secret|passw(or)?d|credential|signature|session|auth|private)|^(key|sig|code)$",
    re.IGNORECASE,
)


def secret_query_field(name: str) -> str:
    """The credentials custom field that holds query parameter `name`'s encrypted value."""
    return "query." + hashlib.sha256(name.encode()).hexdigest()[:24]


REST_SOURCE_OBJECT = "rest_api"


class RestAuthType(StrEnum):
    NONE = "none"
    BEARER = "bearer"
    API_KEY = "api_key"
    BASIC = "basic"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials"


class RestAuth(StrictModel):
    """How a REST source authenticates. Only the non-secret half lives here; the token, key,
    login or client secret are the integration's encrypted credentials."""

    type: RestAuthType = RestAuthType.NONE
    api_key_name: HeaderName = "X-API-Key"
    api_key_in: Literal["header", "query"] = "header"
    token_url: HttpUrl = ""
    scope: Annotated[str, StringConstraints(max_length=1024, pattern=r"^[^\r\n]*$")] = ""
    client_auth: Literal["basic", "body"] = Field(
        default="basic", description="client credentials in an HTTP Basic header (RFC 6749 2.3.1) or the form body"
    )

    @model_validator(mode="after")
    def _token_url_for_oauth2(self) -> RestAuth:
        if self.type is RestAuthType.OAUTH2_CLIENT_CREDENTIALS and not self.token_url:
            raise ValueError("oauth2_client_credentials needs token_url")
        return self


class PaginationType(StrEnum):
    NONE = "none"
    CURSOR = "cursor"
    OFFSET = "offset"
    PAGE = "page"
    LINK_HEADER = "link_header"


class RestPagination(StrictModel):
    """How the API pages. `size_param` (None: the API takes no page size) is sent with
    `page_size`; offset and page paging stop at the first page shorter than `page_size`, so it
    must not exceed the API's own maximum."""

    type: PaginationType = PaginationType.NONE
    cursor_param: ParamName = "cursor"
    cursor_path: DottedPath = Field(default="", description="dotted path to the next cursor in each response")
    offset_param: ParamName = "offset"
    page_param: ParamName = "page"
    start_page: JsonInt = Field(default=1, ge=0, le=1_000_000)
    size_param: ParamName | None = "limit"
    page_size: JsonInt = Field(default=100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _cursor_path_for_cursor(self) -> RestPagination:
        if self.type is PaginationType.CURSOR and not self.cursor_path:
            raise ValueError("cursor pagination needs cursor_path, where each response names the next cursor")
        return self


class RestIncremental(StrictModel):
    """Incremental polling: `param` carries the largest `cursor_field` value seen so far.
    `format` renders it: as the records hold it (raw), ISO 8601, or Unix seconds/milliseconds."""

    param: ParamName
    cursor_field: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\s.]+(\.[^\s.]+)*$")]
    format: Literal["raw", "iso8601", "unix", "unix_ms"] = "raw"


class RestSource(StrictModel):
    """A polled REST endpoint: request, record extraction, paging and the incremental cursor."""

    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    headers: dict[HeaderName, HeaderValue] = Field(default_factory=dict, max_length=50)
    query: dict[ParamName, Annotated[str, StringConstraints(max_length=2048)]] = Field(
        default_factory=dict, max_length=50
    )
    body: dict[str, Any] | None = None
    params_in: Literal["query", "body"] = Field(
        default="query", description="where paging and incremental parameters go (body: POST only)"
    )
    auth: RestAuth = Field(default_factory=RestAuth)
    secret_query: list[ParamName] = Field(
        default_factory=list,
        max_length=20,
        description="query parameters whose values are stored encrypted with the credentials (names only)",
    )
    data_path: DottedPath = Field(default="", description="dotted path to the record array; empty: the response is it")
    primary_key: list[KeyField] = Field(default_factory=lambda: ["id"], min_length=1, max_length=8)
    pagination: RestPagination = Field(default_factory=RestPagination)
    incremental: RestIncremental | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RestSource:
        if not self.url:
            raise ValueError("url is required")
        secret = sorted(name for name in self.headers if name.lower() in SECRET_HEADERS)
        if self.auth.type is RestAuthType.API_KEY and self.auth.api_key_in == "header":
            secret += [name for name in self.headers if name.lower() == self.auth.api_key_name.lower()]
        if secret:
            raise ValueError(f"headers {', '.join(secret)} carry credentials; configure them under auth instead")
        if self.method == "GET" and (self.body is not None or self.params_in == "body"):
            raise ValueError("a GET request has no body; use method POST or params_in query")
        both = sorted(set(self.query) & set(self.secret_query))
        if both:
            raise ValueError(f"query parameters {', '.join(both)} are both in query and secret_query")
        return self


class IntegrationSettings(StrictModel):
    """The client-editable part of an integration, with the cross-field rules."""

    integration_name: Name
    integration_type: IntegrationType | None = None
    provider_name: ProviderName
    status: IntegrationStatus = IntegrationStatus.INACTIVE
    sync_config: SyncConfiguration = Field(default_factory=SyncConfiguration)
    base_url: Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048)] = ""
    api_version: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=32, pattern=r"^[A-Za-z0-9._-]*$")
    ] = ""
    webhook_url: HttpUrl = ""
    entity_mappings: dict[FieldPath, FieldPath] = Field(default_factory=dict, max_length=100)
    source_options: dict[FieldPath, SourceOptions] = Field(default_factory=dict, max_length=100)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    rest_source: RestSource | None = None

    @model_validator(mode="after")
    def _provider_rules(self) -> IntegrationSettings:
        allowed = PROVIDER_TYPES[self.provider_name]
        if self.integration_type is None:
            self.integration_type = DEFAULT_PROVIDER_TYPE[self.provider_name]
        elif self.integration_type not in allowed:
            raise ValueError(
                f"integration_type {self.integration_type.value!r} does not fit provider "
                f"{self.provider_name.value!r} (allowed: {', '.join(sorted(t.value for t in allowed))})"
            )
        if self.base_url:
            check = _check_host_port if self.provider_name in DATABASE_PROVIDERS else _check_http_url
            try:
                check(self.base_url)
            except ValueError as exc:
                raise ValueError(f"base_url {exc}") from None
        if self.rest_source is not None:
            if self.provider_name is not ProviderName.CUSTOM:
                raise ValueError("rest_source is only for provider 'custom'")
            if len(self.entity_mappings) > 1:
                raise ValueError("a REST source feeds one entity: entity_mappings takes one entry")
        return self


class IntegrationCreateRequest(IntegrationSettings):
    """The seed's POST /api/integrations body."""

    organization_id: OrganizationId | None = None
    credentials: IntegrationCredentials | None = None
    created_by: Annotated[str, StringConstraints(max_length=128)] = ""

    @field_validator("status")
    @classmethod
    def _client_status(cls, value: IntegrationStatus) -> IntegrationStatus:
        return _client_settable(value)

    @field_validator("rest_source")
    @classmethod
    def _rules_have_their_route(cls, value: RestSource | None) -> RestSource | None:
        if value is not None:
            raise ValueError("REST sources are created as ingestion rules: POST /api/ingestion-rules")
        return value


class IntegrationUpdateRequest(StrictModel):
    """PATCH body: any subset of the editable settings. Credentials have their own route."""

    organization_id: OrganizationId | None = None
    integration_name: Name | None = None
    integration_type: IntegrationType | None = None
    status: IntegrationStatus | None = None
    sync_config: SyncConfigurationPatch | None = None
    base_url: str | None = None
    api_version: str | None = None
    webhook_url: str | None = None
    entity_mappings: dict[str, str] | None = None
    source_options: dict[str, Any] | None = None
    tags: list[str] | None = None

    @field_validator("status")
    @classmethod
    def _client_status(cls, value: IntegrationStatus | None) -> IntegrationStatus | None:
        return None if value is None else _client_settable(value)


def _client_settable(value: IntegrationStatus) -> IntegrationStatus:
    if value not in CLIENT_SETTABLE_STATUSES:
        allowed = ", ".join(sorted(s.value for s in CLIENT_SETTABLE_STATUSES))
        raise ValueError(f"status {value.value!r} is set by the platform; clients may set {allowed}")
    return value


class IntegrationConfiguration(IntegrationSettings):
    """An integration as stored: the seed's fields. Credentials are held encrypted elsewhere and
    only `credentials_summary` travels with the configuration."""

    integration_id: str = Field(default_factory=new_integration_id)
    organization_id: OrganizationId
    credentials: IntegrationCredentials | None = Field(default=None, exclude=True)
    credentials_summary: CredentialsSummary | None = None
    last_sync_at: datetime | None = None
    last_error: str = ""
    total_records_synced: int = 0
    sync_metrics: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    created_by: str = ""
    version: int = 1


class IntegrationView(Model):
    """An integration as the API returns it: no secret, only the masked credentials summary."""

    integration_id: str
    organization_id: str
    integration_name: str
    integration_type: IntegrationType
    provider_name: ProviderName
    status: IntegrationStatus
    credentials: CredentialsSummary | None
    sync_config: SyncConfiguration
    base_url: str
    api_version: str
    webhook_url: str
    entity_mappings: dict[str, str]
    source_options: dict[str, SourceOptions]
    tags: list[str]
    rest_source: RestSource | None = None
    last_sync_at: datetime | None
    last_error: str
    total_records_synced: int
    sync_metrics: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    created_by: str
    version: int

    @classmethod
    def of(cls, config: IntegrationConfiguration) -> IntegrationView:
        data = config.model_dump(exclude={"credentials", "credentials_summary"})
        return cls(**data, credentials=config.credentials_summary)


class IntegrationPage(Model):
    items: list[IntegrationView]
    next_token: str | None = None


class IntegrationCreated(Model):
    integration_id: str
    integration: IntegrationView


class ApiKeyCreateRequest(StrictModel):
    name: Name
    organization_id: OrganizationId | None = None


class ApiKeyView(Model):
    key_id: str
    name: str
    prefix: str = Field(description="the first characters of the key, to recognise it")
    created_at: datetime
    revoked_at: datetime | None = None
    status: str


class ApiKeyCreated(ApiKeyView):
    api_key: str = Field(description="shown once; only its hash is stored")


class ApiKeyList(Model):
    items: list[ApiKeyView]
