"""REST API ingestion rules (the seed's `APIIngestionRule`), built on integrations.

A rule is an integration of provider `custom` (type `api`) whose `rest_source` describes the
endpoint, so polling reuses what every integration has: its EventBridge schedule (every
`sync_frequency` seconds), the sync engine and state machine (a poll is an incremental sync:
one at a time, checkpointed, with history, status and cancel), KMS envelope encryption of the
secrets and the pipeline's `field_mappings` and `data_filters`. The rule id is the integration
id; an integration that is not a rule is not found here.

The secrets of a rule's auth (token, api_key, username/password, client_id/client_secret) are
write-only: stored only as the integration's encrypted credentials (custom fields named like
the request's), shown only as which are set, masked. So are query parameters that carry a
credential: those given in `secret_query`, and any in `query` whose name says it is one
(api_key, access_token, client_secret, ...), which move to `secret_query` on their own. A rule's
addresses are checked against `netguard` when it is created or changed (422 naming the field),
and again before every poll.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, SecretStr, StringConstraints, ValidationError, model_validator

from churnguard import netguard
from churnguard.connectors.identifiers import validate_source_settings
from churnguard.errors import NotFoundError, ValidationFailedError
from churnguard.integrations import IntegrationService, check_organization, validation_details
from churnguard.models import (
    REST_SOURCE_OBJECT,
    SECRET_QUERY_NAME,
    CredentialType,
    FieldPath,
    IntegrationConfiguration,
    IntegrationCredentials,
    IntegrationStatus,
    IntegrationType,
    JsonBool,
    JsonInt,
    Model,
    Name,
    OrganizationId,
    ParamName,
    ProviderName,
    RestAuth,
    RestAuthType,
    RestSource,
    Secret,
    StrictModel,
    SyncConfiguration,
    Tag,
    secret_query_field,
    utc_now,
)
from churnguard.store.integrations import IntegrationFilter

DEFAULT_ENTITY = "event"
RULE_REQUESTS_PER_MINUTE = 60  # an API we know nothing about: one request a second unless the rule says
AUTH_TYPE_FIELD = "auth_type"
SECRETS: dict[RestAuthType, tuple[str, ...]] = {
    RestAuthType.NONE: (),
    RestAuthType.BEARER: ("token",),
    RestAuthType.API_KEY: ("api_key",),
    RestAuthType.BASIC: ("username", "password"),
    RestAuthType.OAUTH2_CLIENT_CREDENTIALS: ("client_id", "client_secret"),
}
SECRET_NAMES = frozenset(name for names in SECRETS.values() for name in names)
_INVALID_CHANGE = "the rule would not be valid after this change"
EntityName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class RuleAuth(RestAuth):
    """A rule's auth as a request sends it: the settings plus the secrets of its type."""

    token: Secret | None = None
    api_key: Secret | None = None
    username: Secret | None = None
    password: Secret | None = None
    client_id: Secret | None = None
    client_secret: Secret | None = None

    def settings(self) -> RestAuth:
        return RestAuth.model_validate(self.model_dump(include=set(RestAuth.model_fields)))

    def secrets(self) -> dict[str, SecretStr]:
        return {name: value for name in SECRET_NAMES if (value := getattr(self, name)) is not None}


class APIIngestionRule(RestSource):
    """POST /api/ingestion-rules: a REST source, how often to poll it and what the rows feed."""

    organization_id: OrganizationId | None = None
    name: Name
    auth: RuleAuth = Field(default_factory=RuleAuth)
    secret_query: dict[ParamName, Secret] = Field(  # type: ignore[assignment]
        default_factory=dict,
        max_length=20,
        description="query parameters sent with every request whose values are stored encrypted and never shown",
    )
    entity: EntityName = Field(default=DEFAULT_ENTITY, description="the canonical entity the records feed")
    sync_frequency: JsonInt = Field(default=3600, ge=60, le=2_592_000, description="seconds between polls")
    enabled: JsonBool = True
    field_mappings: dict[FieldPath, FieldPath] = Field(default_factory=dict, max_length=500)
    data_filters: dict[FieldPath, Any] = Field(default_factory=dict, max_length=50)
    requests_per_minute: JsonInt = Field(default=RULE_REQUESTS_PER_MINUTE, ge=1, le=100_000)
    tags: list[Tag] = Field(default_factory=list, max_length=50)

    @model_validator(mode="before")
    @classmethod
    def _secret_query_out_of_query(cls, data: Any) -> Any:
        """A credential given as a plain query parameter is kept as a secret one instead."""
        if not isinstance(data, dict) or not isinstance(data.get("query"), dict):
            return data
        query = data["query"]
        moved = {
            name: value for name, value in query.items() if isinstance(name, str) and SECRET_QUERY_NAME.search(name)
        }
        if not moved:
            return data
        given = data.get("secret_query")
        secret_query = {**moved, **given} if isinstance(given, dict) else moved
        return {**data, "query": {k: v for k, v in query.items() if k not in moved}, "secret_query": secret_query}

    def source(self) -> RestSource:
        document = self.model_dump(include=set(RestSource.model_fields) - {"auth", "secret_query"})
        return RestSource.model_validate(
            {**document, "auth": self.auth.settings(), "secret_query": sorted(self.secret_query)}
        )


class APIIngestionRulePatch(StrictModel):
    """PATCH body: what is given replaces the current value; `auth`, `pagination` and
    `incremental` merge field by field (incremental null removes it). Secrets are replaced
    only when given; changing auth.type needs the new type's secrets. `secret_query`, when
    given, replaces every secret query parameter ({} removes them)."""

    organization_id: OrganizationId | None = None
    name: str | None = None
    url: str | None = None
    method: str | None = None
    headers: dict[str, str] | None = None
    query: dict[str, str] | None = None
    secret_query: dict[str, Secret] | None = None
    body: dict[str, Any] | None = None
    params_in: str | None = None
    auth: dict[str, Any] | None = None
    data_path: str | None = None
    primary_key: list[str] | None = None
    pagination: dict[str, Any] | None = None
    incremental: dict[str, Any] | None = None
    entity: str | None = None
    sync_frequency: JsonInt | None = None
    enabled: JsonBool | None = None
    field_mappings: dict[str, str] | None = None
    data_filters: dict[str, Any] | None = None
    requests_per_minute: JsonInt | None = None
    tags: list[str] | None = None


class RuleAuthView(RestAuth):
    secrets_set: dict[str, str] = Field(description="which secrets are stored, masked; never their values")


def _masked(config: IntegrationConfiguration) -> dict[str, str]:
    summary = config.credentials_summary
    return summary.custom_fields_set if summary is not None else {}


class APIIngestionRuleView(Model):
    """A rule as the API returns it: no secret, only which are set."""

    rule_id: str
    organization_id: str
    name: str
    url: str
    method: str
    headers: dict[str, str]
    query: dict[str, str]
    secret_query_set: dict[str, str] = Field(description="secret query parameters, masked; never their values")
    body: dict[str, Any] | None
    params_in: str
    auth: RuleAuthView
    data_path: str
    primary_key: list[str]
    pagination: dict[str, Any]
    incremental: dict[str, Any] | None
    entity: str
    sync_frequency: int
    enabled: bool
    status: IntegrationStatus
    field_mappings: dict[str, str]
    data_filters: dict[str, Any]
    requests_per_minute: int
    tags: list[str]
    last_poll_at: datetime | None = Field(description="when the last poll finished")
    last_error: str
    total_records_synced: int
    created_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of(cls, config: IntegrationConfiguration) -> APIIngestionRuleView:
        source = _rule_source(config)
        stored = _masked(config)
        masked = {name: stored[name] for name in SECRETS[source.auth.type] if name in stored}
        query_masked = {
            name: stored[secret_query_field(name)] for name in source.secret_query if secret_query_field(name) in stored
        }
        sync = config.sync_config
        return cls(
            rule_id=config.integration_id,
            organization_id=config.organization_id,
            name=config.integration_name,
            url=source.url,
            method=source.method,
            headers=source.headers,
            query=source.query,
            secret_query_set=query_masked,
            body=source.body,
            params_in=source.params_in,
            auth=RuleAuthView(**source.auth.model_dump(), secrets_set=masked),
            data_path=source.data_path,
            primary_key=source.primary_key,
            pagination=source.pagination.model_dump(mode="json"),
            incremental=None if source.incremental is None else source.incremental.model_dump(mode="json"),
            entity=next(iter(config.entity_mappings), DEFAULT_ENTITY),
            sync_frequency=sync.sync_frequency,
            enabled=config.status is not IntegrationStatus.PAUSED,
            status=config.status,
            field_mappings=sync.field_mappings,
            data_filters=sync.data_filters,
            requests_per_minute=sync.requests_per_minute or RULE_REQUESTS_PER_MINUTE,
            tags=config.tags,
            last_poll_at=config.last_sync_at,
            last_error=config.last_error,
            total_records_synced=config.total_records_synced,
            created_at=config.created_at,
            updated_at=config.updated_at,
            version=config.version,
        )


class APIIngestionRuleCreated(Model):
    rule_id: str
    rule: APIIngestionRuleView


class APIIngestionRulePage(Model):
    items: list[APIIngestionRuleView]
    next_token: str | None = None


def _rule_source(config: IntegrationConfiguration) -> RestSource:
    if config.provider_name is not ProviderName.CUSTOM or config.rest_source is None:
        raise NotFoundError("ingestion rule not found", {"rule_id": config.integration_id})
    return config.rest_source


def rule_credentials(
    auth_type: RestAuthType, secrets: dict[str, SecretStr], secret_query: dict[str, SecretStr] | None = None
) -> IntegrationCredentials:
    """The encrypted credentials of a rule: its type's secrets and its secret query parameters as
    custom fields. Raises ValidationFailedError naming each missing secret."""
    missing = [name for name in SECRETS[auth_type] if name not in secrets]
    if missing:
        raise ValidationFailedError(
            f"auth type {auth_type.value} needs {' and '.join(missing)}",
            {"fields": [{"field": f"auth.{name}", "message": "required for this auth type"} for name in missing]},
        )
    fields = {AUTH_TYPE_FIELD: SecretStr(auth_type.value), **{n: secrets[n] for n in SECRETS[auth_type]}}
    fields.update({secret_query_field(name): value for name, value in (secret_query or {}).items()})
    return IntegrationCredentials(credential_type=CredentialType.CUSTOM, custom_fields=fields)


def check_addresses(source: RestSource) -> None:
    """422 naming the field when the URL or token URL is one sources may not reach."""
    targets = [("url", source.url)]
    if source.auth.type is RestAuthType.OAUTH2_CLIENT_CREDENTIALS:
        targets.append(("auth.token_url", source.auth.token_url))
    problems = []
    for name, url in targets:
        try:
            netguard.check_url(url)
        except netguard.BlockedAddressError as exc:
            problems.append({"field": name, "message": str(exc)})
    if problems:
        raise ValidationFailedError("the rule's address may not be polled", {"fields": problems})


def _sync_config(rule: APIIngestionRule, base: SyncConfiguration | None = None) -> SyncConfiguration:
    document = base.model_dump(mode="json") if base is not None else {}
    document.update(
        sync_mode="incremental",
        sync_frequency=rule.sync_frequency,
        field_mappings=rule.field_mappings,
        data_filters=rule.data_filters,
        requests_per_minute=rule.requests_per_minute,
    )
    return SyncConfiguration.model_validate(document)


def _rule_document(config: IntegrationConfiguration) -> dict[str, Any]:
    """A stored rule in the shape of an APIIngestionRule body, without secrets."""
    source = _rule_source(config)
    sync = config.sync_config
    return {
        **source.model_dump(mode="json", exclude={"secret_query"}),
        "name": config.integration_name,
        "entity": next(iter(config.entity_mappings), DEFAULT_ENTITY),
        "sync_frequency": sync.sync_frequency,
        "enabled": config.status is not IntegrationStatus.PAUSED,
        "field_mappings": sync.field_mappings,
        "data_filters": sync.data_filters,
        "requests_per_minute": sync.requests_per_minute or RULE_REQUESTS_PER_MINUTE,
        "tags": config.tags,
    }


class IngestionRuleService(IntegrationService):
    """Ingestion rules on top of the integration lifecycle (same store, key and schedules)."""

    @classmethod
    def wrapping(cls, service: IntegrationService) -> IngestionRuleService:
        return cls(service._store, service._cipher, service._scheduler)

    def create_rule(self, organization_id: str, rule: APIIngestionRule) -> APIIngestionRuleView:
        check_organization(organization_id, rule.organization_id)
        source = rule.source()
        credentials = rule_credentials(source.auth.type, rule.auth.secrets(), rule.secret_query)
        check_addresses(source)
        config = IntegrationConfiguration(
            organization_id=organization_id,
            integration_name=rule.name,
            integration_type=IntegrationType.API,
            provider_name=ProviderName.CUSTOM,
            status=IntegrationStatus.ACTIVE if rule.enabled else IntegrationStatus.PAUSED,
            sync_config=_sync_config(rule),
            entity_mappings={rule.entity: REST_SOURCE_OBJECT},
            tags=rule.tags,
            rest_source=source,
            credentials=credentials,
        )
        self.register(config)
        return APIIngestionRuleView.of(config)

    def get_rule(self, organization_id: str, rule_id: str) -> APIIngestionRuleView:
        return APIIngestionRuleView.of(self._rule(organization_id, rule_id))

    def list_rules(self, organization_id: str, limit: int, next_token: str | None) -> APIIngestionRulePage:
        """Custom integrations that are rules; a page may hold fewer than `limit` when other
        custom integrations share the range, and the token still continues after it."""
        configs, token = self._store.page(
            organization_id, IntegrationFilter(provider_name=ProviderName.CUSTOM), limit, next_token
        )
        items = [APIIngestionRuleView.of(c) for c in configs if c.rest_source is not None]
        return APIIngestionRulePage(items=items, next_token=token)

    def update_rule(self, organization_id: str, rule_id: str, patch: APIIngestionRulePatch) -> APIIngestionRuleView:
        check_organization(organization_id, patch.organization_id)
        before = self._rule(organization_id, rule_id)
        current = _rule_document(before)
        changes = patch.model_dump(exclude_unset=True, exclude={"organization_id"})
        for name in ("auth", "pagination", "incremental"):
            if isinstance(changes.get(name), dict) and isinstance(current.get(name), dict):
                changes[name] = {**current[name], **changes[name]}
        try:
            rule = APIIngestionRule.model_validate({**current, **changes})
        except ValidationError as exc:
            raise ValidationFailedError(_INVALID_CHANGE, validation_details(exc)) from None
        source = rule.source()
        check_addresses(source)
        credentials, query_names = self._replaced_credentials(
            before, source, rule.auth.secrets(), rule.secret_query, replace_query="secret_query" in changes
        )
        source = source.model_copy(update={"secret_query": query_names})
        status = before.status
        if patch.enabled is not None:
            status = IntegrationStatus.ACTIVE if patch.enabled else IntegrationStatus.PAUSED
        elif credentials is not None and status is IntegrationStatus.AUTHENTICATION_FAILED:
            status = IntegrationStatus.ACTIVE  # new credentials: polling resumes
        document = before.model_dump(mode="json")
        document.update(
            integration_name=rule.name,
            status=status.value,
            sync_config=_sync_config(rule, before.sync_config).model_dump(mode="json"),
            entity_mappings={rule.entity: REST_SOURCE_OBJECT},
            tags=rule.tags,
            rest_source=source.model_dump(mode="json"),
            version=before.version + 1,
            updated_at=utc_now().isoformat(),
        )
        try:
            after = IntegrationConfiguration.model_validate(document)
        except ValidationError as exc:
            raise ValidationFailedError(_INVALID_CHANGE, validation_details(exc)) from None
        validate_source_settings(after)
        envelope = None if credentials is None else self._seal(after, credentials)
        self._store.update(before, after, envelope)
        self._reschedule(after)
        return APIIngestionRuleView.of(after)

    def _replaced_credentials(
        self,
        before: IntegrationConfiguration,
        source: RestSource,
        given: dict[str, SecretStr],
        query_given: dict[str, SecretStr],
        *,
        replace_query: bool,
    ) -> tuple[IntegrationCredentials | None, list[str]]:
        """The rule's new credentials (None when they stay as they are) and the names of its
        secret query parameters. Secrets not given are kept while the auth type stays; secret
        query parameters are kept unless `secret_query` itself was given, which replaces them
        all; a cached OAuth2 token is dropped with any change."""
        previous = before.rest_source.auth if before.rest_source is not None else None
        kept_names = [] if replace_query or before.rest_source is None else before.rest_source.secret_query
        names = sorted({*kept_names, *query_given} - set(source.query))
        same_type = previous is not None and previous.type is source.auth.type
        token_url_changed = previous is not None and previous.token_url != source.auth.token_url
        if not (given or query_given or replace_query or not same_type or token_url_changed):
            return None, names
        stored: dict[str, SecretStr] = {}
        # Registered without credentials: the given ones must do. Nothing kept: no decryption.
        if same_type or kept_names:
            with contextlib.suppress(NotFoundError):
                stored = self.load_credentials(before.organization_id, before.integration_id).custom_fields
        kept = {name: stored[name] for name in SECRETS[source.auth.type] if same_type and name in stored}
        kept_query = {n: stored[secret_query_field(n)] for n in kept_names if secret_query_field(n) in stored}
        query_values = {name: value for name, value in {**kept_query, **query_given}.items() if name in names}
        return rule_credentials(source.auth.type, {**kept, **given}, query_values), names

    def delete_rule(self, organization_id: str, rule_id: str) -> None:
        self._rule(organization_id, rule_id)
        self.delete(organization_id, rule_id)

    def _rule(self, organization_id: str, rule_id: str) -> IntegrationConfiguration:
        try:
            config = self._store.get(organization_id, rule_id)
        except NotFoundError:
            raise NotFoundError("ingestion rule not found", {"rule_id": rule_id}) from None
        _rule_source(config)
        return config
