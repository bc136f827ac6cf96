"""Integration lifecycle: the logic behind the management API and the IntegrationEngine façade.

Every operation takes the caller's organisation explicitly; nothing reads it from request data.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pydantic import ValidationError

from churnguard.connectors.identifiers import validate_source_settings
from churnguard.crypto import CredentialCipher, encryption_context
from churnguard.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    ServiceUnavailableError,
    ValidationFailedError,
)
from churnguard.models import (
    DATABASE_PROVIDERS,
    DataSyncMode,
    IntegrationConfiguration,
    IntegrationCreateRequest,
    IntegrationCredentials,
    IntegrationPage,
    IntegrationStatus,
    IntegrationUpdateRequest,
    IntegrationView,
    utc_now,
)
from churnguard.store.integrations import IntegrationFilter, IntegrationStore


class Scheduler(Protocol):
    """Keeps an integration's scheduled syncs in line with it (sync.schedules.SyncScheduler)."""

    def apply(self, config: IntegrationConfiguration) -> None: ...

    def remove(self, integration_id: str) -> None: ...


def _validate(config: IntegrationConfiguration) -> None:
    """The source settings' checks, and that a real-time database is one whose log we read."""
    validate_source_settings(config)
    if config.provider_name in DATABASE_PROVIDERS and config.sync_config.sync_mode is DataSyncMode.REAL_TIME:
        from churnguard.providers.registry import PROVIDERS, change_log_available

        if not change_log_available(config.provider_name):
            readable = ", ".join(sorted(name for name, provider in PROVIDERS.items() if provider.changes))
            raise ValidationFailedError(
                "the integration's source settings are not valid",
                {
                    "fields": [
                        {
                            "field": "sync_config.sync_mode",
                            "message": f"real_time (change data capture) is available for {readable}",
                        }
                    ]
                },
            )


class RealtimeHook(Protocol):
    """Keeps a real-time database integration's change capture in line with it
    (cdc.lifecycle.CaptureLifecycle): `apply` after each change, `remove` before a deletion, while
    the credentials that reach the database still exist."""

    def apply(self, config: IntegrationConfiguration) -> None: ...

    def remove(self, config: IntegrationConfiguration) -> None: ...


logger = logging.getLogger(__name__)
_DELETE_ATTEMPTS = 3


def check_organization(caller_organization_id: str, claimed: str | None) -> None:
    """A body may name the organisation only if it is the caller's own."""
    if claimed is not None and claimed != caller_organization_id:
        raise ForbiddenError(
            "organization_id in the body does not match the API key's organisation",
            {"field": "organization_id"},
        )


def validation_details(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> dict[str, Any]:
    """Field-level errors without the offending input, which may be a secret."""
    return {
        "fields": [
            {
                "field": ".".join(str(part) for part in (*prefix, *error["loc"])) or "body",
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
    }


class IntegrationService:
    def __init__(
        self,
        store: IntegrationStore,
        cipher: CredentialCipher,
        scheduler: Scheduler | None = None,
        realtime: RealtimeHook | None = None,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._scheduler = scheduler
        self._realtime = realtime

    def create(self, organization_id: str, request: IntegrationCreateRequest) -> IntegrationView:
        check_organization(organization_id, request.organization_id)
        config = IntegrationConfiguration(
            **request.model_dump(exclude={"organization_id", "credentials"}),
            organization_id=organization_id,
        )
        _validate(config)
        envelope = None
        if request.credentials is not None:
            envelope = self._seal(config, request.credentials)
        self._store.create(config, envelope)
        self._schedule_new(config)
        return IntegrationView.of(config)

    def draft(
        self, organization_id: str, request: IntegrationCreateRequest
    ) -> tuple[IntegrationConfiguration, IntegrationCredentials]:
        """The configuration `create` would store, validated the same way, not stored: what a
        connection test before saving runs against."""
        check_organization(organization_id, request.organization_id)
        config = IntegrationConfiguration(
            **request.model_dump(exclude={"organization_id", "credentials"}),
            organization_id=organization_id,
        )
        _validate(config)
        if request.credentials is None:
            raise ValidationFailedError(
                "a connection test needs credentials",
                {"fields": [{"field": "credentials", "message": "set credentials to test the connection"}]},
            )
        return config, request.credentials

    def register(self, config: IntegrationConfiguration) -> IntegrationView:
        """Stores a configuration built in Python (the engine's path), credentials included."""
        _validate(config)
        envelope = self._seal(config, config.credentials) if config.credentials is not None else None
        self._store.create(config, envelope)
        self._schedule_new(config)
        return IntegrationView.of(config)

    def get(self, organization_id: str, integration_id: str) -> IntegrationView:
        return IntegrationView.of(self._store.get(organization_id, integration_id))

    def list(
        self, organization_id: str, filters: IntegrationFilter, limit: int, next_token: str | None
    ) -> IntegrationPage:
        configs, token = self._store.page(organization_id, filters, limit, next_token)
        return IntegrationPage(items=[IntegrationView.of(c) for c in configs], next_token=token)

    def update(self, organization_id: str, integration_id: str, patch: IntegrationUpdateRequest) -> IntegrationView:
        check_organization(organization_id, patch.organization_id)
        before = self._store.get(organization_id, integration_id)
        changes = patch.model_dump(exclude_unset=True, exclude={"organization_id", "sync_config"})
        document = before.model_dump(mode="json")
        document.update(changes)
        if patch.sync_config is not None:
            document["sync_config"].update(patch.sync_config.model_dump(mode="json", exclude_unset=True))
        document.update(version=before.version + 1, updated_at=utc_now().isoformat())
        try:
            after = IntegrationConfiguration.model_validate(document)
        except ValidationError as exc:
            raise ValidationFailedError(
                "the integration would not be valid after this change", validation_details(exc)
            ) from None
        _validate(after)
        self._store.update(before, after)
        self._reschedule(after)
        return IntegrationView.of(after)

    def delete(self, organization_id: str, integration_id: str) -> None:
        """Deletes whatever version is current: the platform's own writes (a sync recording its
        totals) may bump the version between our read and the delete, and are no reason to
        refuse the caller; each attempt is still conditional on the version it read."""
        if self._realtime is not None:
            self._realtime.remove(self._store.get(organization_id, integration_id))
        for attempt in range(_DELETE_ATTEMPTS):
            try:
                self._store.delete(self._store.get(organization_id, integration_id))
                break
            except ConflictError as exc:
                concurrent = isinstance(exc.details, dict) and exc.details.get("reason") == "concurrent_modification"
                if not concurrent or attempt == _DELETE_ATTEMPTS - 1:
                    raise
        if self._scheduler is not None:
            try:
                self._scheduler.remove(integration_id)
            except Exception:
                # Harmless: a schedule that fires for a deleted integration removes itself.
                logger.exception("sync schedule removal failed", extra={"integration_id": integration_id})

    def replace_credentials(
        self, organization_id: str, integration_id: str, credentials: IntegrationCredentials
    ) -> IntegrationView:
        before = self._store.get(organization_id, integration_id)
        after = before.model_copy(update={"version": before.version + 1, "updated_at": utc_now()})
        envelope = self._seal(after, credentials)
        self._store.update(before, after, envelope)
        return IntegrationView.of(after)

    def set_status(self, organization_id: str, integration_id: str, status: IntegrationStatus) -> IntegrationView:
        """A status the platform decides (e.g. auth_failed after a failed connection test)."""
        before = self._store.get(organization_id, integration_id)
        after = before.model_copy(update={"status": status, "version": before.version + 1, "updated_at": utc_now()})
        self._store.update(before, after)
        if self._scheduler is not None:
            self._scheduler.apply(after)
        if self._realtime is not None:
            self._realtime.apply(after)
        return IntegrationView.of(after)

    def has_credentials(self, organization_id: str, integration_id: str) -> bool:
        return self._store.get_credentials_envelope(organization_id, integration_id) is not None

    def load_credentials(self, organization_id: str, integration_id: str) -> IntegrationCredentials:
        """Decrypted credentials, for connectors only; never for a response."""
        self._store.get(organization_id, integration_id)
        envelope = self._store.get_credentials_envelope(organization_id, integration_id)
        if envelope is None:
            raise NotFoundError("the integration has no credentials", {"integration_id": integration_id})
        plaintext = self._cipher.decrypt(envelope, encryption_context(organization_id, integration_id))
        return IntegrationCredentials.model_validate(plaintext)

    def _schedule_new(self, config: IntegrationConfiguration) -> None:
        """Creates the integration's schedule (or change capture), or undoes the creation so
        nothing is half-made."""
        try:
            if self._scheduler is not None:
                self._scheduler.apply(config)
            if self._realtime is not None:
                self._realtime.apply(config)
        except Exception as exc:
            logger.exception("sync schedule creation failed", extra={"integration_id": config.integration_id})
            self._store.delete(config)
            raise ServiceUnavailableError(
                "the integration's sync schedule could not be created, so it was not registered; retry",
                {"integration_name": config.integration_name},
            ) from exc

    def _reschedule(self, config: IntegrationConfiguration) -> None:
        """Makes the saved configuration's schedule match it; a failure asks for a repeat (the
        change is saved, and applying the same schedule again is harmless)."""
        try:
            if self._scheduler is not None:
                self._scheduler.apply(config)
            if self._realtime is not None:
                self._realtime.apply(config)
        except Exception as exc:
            logger.exception("sync schedule update failed", extra={"integration_id": config.integration_id})
            raise ServiceUnavailableError(
                "the change was saved but its sync schedule could not be updated; repeat the request",
                {"integration_id": config.integration_id},
            ) from exc

    def _seal(self, config: IntegrationConfiguration, credentials: IntegrationCredentials) -> dict[str, Any]:
        """Encrypts the credentials and records their masked summary on the configuration."""
        config.credentials_summary = credentials.summary(updated_at=utc_now())
        return self._cipher.encrypt(
            credentials.to_plaintext(), encryption_context(config.organization_id, config.integration_id)
        )
