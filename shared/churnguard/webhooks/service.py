"""Webhook endpoints and the dead-letter queue behind the management API.

Every operation takes the caller's organisation explicitly. An endpoint belongs to an
integration: creating one links the integration named in the request or registers a
`real_time` integration for the provider, so webhooks show up with everything else.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

from pydantic import SecretStr, ValidationError

from churnguard.crypto import CredentialCipher
from churnguard.errors import ChurnGuardError, NotFoundError, ValidationFailedError
from churnguard.inbound.signatures import standard_webhooks_key
from churnguard.integrations import IntegrationService, check_organization, validation_details
from churnguard.models import (
    DataSyncMode,
    IntegrationCreateRequest,
    IntegrationStatus,
    IntegrationType,
    ProviderName,
    SyncConfiguration,
    mask_secret,
    utc_now,
)
from churnguard.store.webhooks import StoredEndpoint, WebhookStore
from churnguard.webhooks.models import (
    CustomScheme,
    DeadLetter,
    DeadLetterPage,
    RedriveResult,
    RotateSecretRequest,
    SecretSummary,
    WebhookEndpoint,
    WebhookEndpointCreateRequest,
    WebhookEndpointUpdateRequest,
    WebhookEndpointView,
    public_path,
)
from churnguard.webhooks.secrets import secret_context

logger = logging.getLogger(__name__)

_ENDPOINT_ID = re.compile(r"^whe_[0-9a-f]{20}$")
REDRIVE_MAX_MESSAGES = 10_000


def new_endpoint_id() -> str:
    return f"whe_{secrets.token_hex(10)}"


def _check_secret(provider: ProviderName, scheme: CustomScheme, secret: SecretStr | None) -> None:
    if secret is None or provider is not ProviderName.CUSTOM or scheme is not CustomScheme.STANDARD_WEBHOOKS:
        return
    try:
        valid = len(standard_webhooks_key(secret.get_secret_value())) >= 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise ValidationFailedError(
            "the request is not valid",
            {"fields": [{"field": "secret_key", "message": "must be whsec_ and base64 of at least 16 bytes"}]},
        )


class WebhookEndpointService:
    def __init__(
        self,
        store: WebhookStore,
        cipher: CredentialCipher,
        integrations: IntegrationService,
    ) -> None:
        self._store = store
        self._cipher = cipher
        self._integrations = integrations

    def create(self, organization_id: str, request: WebhookEndpointCreateRequest) -> WebhookEndpointView:
        check_organization(organization_id, request.organization_id)
        path = public_path(request.provider.value, organization_id)
        if request.url_path is not None and request.url_path.rstrip("/") != path:
            raise ValidationFailedError(
                "the request is not valid",
                {"fields": [{"field": "url_path", "message": f"the endpoint's URL path is {path}"}]},
            )
        _check_secret(request.provider, request.custom_scheme, request.secret_key)
        endpoint_id = new_endpoint_id()
        options = request.model_dump(
            exclude={"organization_id", "provider", "url_path", "secret_key", "integration_id"}
        )
        now = utc_now()
        try:
            endpoint = WebhookEndpoint(
                **options,
                endpoint_id=endpoint_id,
                organization_id=organization_id,
                integration_id=request.integration_id or "pending",
                owns_integration=request.integration_id is None,
                provider=request.provider,
                url_path=path,
                has_secret=request.secret_key is not None,
                secret=SecretSummary(current=mask_secret(request.secret_key), rotated_at=now)
                if request.secret_key
                else None,
            )
        except ValidationError as exc:
            raise ValidationFailedError("the request is not valid", validation_details(exc)) from None
        if request.integration_id is not None:
            linked = self._integrations.get(organization_id, request.integration_id)
            if linked.provider_name is not request.provider:
                raise ValidationFailedError(
                    "the request is not valid",
                    {"fields": [{"field": "integration_id", "message": "the integration is for another provider"}]},
                )
        else:
            endpoint.integration_id = self._register_integration(organization_id, endpoint).integration_id
        plaintext = {"current": request.secret_key.get_secret_value() if request.secret_key else None}
        envelope = self._cipher.encrypt(plaintext, secret_context(organization_id, endpoint_id))
        try:
            self._store.create_endpoint(endpoint.model_dump(mode="json"), envelope)
        except ChurnGuardError:
            self._remove_owned_integration(endpoint)
            raise
        return WebhookEndpointView.of(endpoint, 0)

    def list_endpoints(self, organization_id: str) -> list[WebhookEndpointView]:
        return [
            self._view(stored)
            for stored in sorted(self._store.endpoints(organization_id), key=lambda s: s.doc["endpoint_id"])
        ]

    def get(self, organization_id: str, endpoint_id: str) -> WebhookEndpointView:
        return self._view(self._find(organization_id, endpoint_id))

    def update(
        self, organization_id: str, endpoint_id: str, patch: WebhookEndpointUpdateRequest
    ) -> WebhookEndpointView:
        check_organization(organization_id, patch.organization_id)
        stored = self._find(organization_id, endpoint_id)
        document = dict(stored.doc)
        document.update(patch.model_dump(exclude_unset=True, exclude={"organization_id"}))
        document.update(version=stored.version + 1, updated_at=utc_now().isoformat())
        try:
            after = WebhookEndpoint.model_validate(document)
        except ValidationError as exc:
            raise ValidationFailedError(
                "the endpoint would not be valid after this change", validation_details(exc)
            ) from None
        self._store.replace_endpoint(stored.version, after.model_dump(mode="json"), stored.envelope)
        return WebhookEndpointView.of(after, stored.events_ignored)

    def rotate_secret(
        self, organization_id: str, endpoint_id: str, request: RotateSecretRequest
    ) -> WebhookEndpointView:
        """The new secret verifies at once; the old one keeps verifying for the grace period."""
        stored = self._find(organization_id, endpoint_id)
        before = WebhookEndpoint.model_validate(stored.doc)
        _check_secret(before.provider, before.custom_scheme, request.secret_key)
        context = secret_context(organization_id, endpoint_id)
        current = self._cipher.decrypt(stored.envelope, context).get("current")
        now = utc_now()
        valid_until = now + timedelta(seconds=request.grace_period_seconds)
        plaintext = {
            "current": request.secret_key.get_secret_value(),
            "previous": current if request.grace_period_seconds else None,
            "previous_expires_at": valid_until.timestamp() if request.grace_period_seconds else None,
        }
        after = before.model_copy(
            update={
                "has_secret": True,
                "secret": SecretSummary(
                    current=mask_secret(request.secret_key),
                    rotated_at=now,
                    previous_valid_until=valid_until if current and request.grace_period_seconds else None,
                ),
                "version": before.version + 1,
                "updated_at": now,
            }
        )
        envelope = self._cipher.encrypt(plaintext, context)
        self._store.replace_endpoint(stored.version, after.model_dump(mode="json"), envelope)
        return WebhookEndpointView.of(after, stored.events_ignored)

    def delete(self, organization_id: str, endpoint_id: str) -> None:
        stored = self._find(organization_id, endpoint_id)
        endpoint = WebhookEndpoint.model_validate(stored.doc)
        self._store.delete_endpoint(organization_id, endpoint.provider.value, stored.version)
        self._remove_owned_integration(endpoint)

    def _find(self, organization_id: str, endpoint_id: str) -> StoredEndpoint:
        if _ENDPOINT_ID.match(endpoint_id):
            for stored in self._store.endpoints(organization_id):
                if stored.doc["endpoint_id"] == endpoint_id:
                    return stored
        raise NotFoundError("webhook endpoint not found", {"endpoint_id": endpoint_id[:64]})

    @staticmethod
    def _view(stored: StoredEndpoint) -> WebhookEndpointView:
        return WebhookEndpointView.of(WebhookEndpoint.model_validate(stored.doc), stored.events_ignored)

    def _register_integration(self, organization_id: str, endpoint: WebhookEndpoint) -> Any:
        return self._integrations.create(
            organization_id,
            IntegrationCreateRequest(
                integration_name=f"{endpoint.provider.value} webhooks ({endpoint.endpoint_id})",
                provider_name=endpoint.provider,
                integration_type=IntegrationType.WEBHOOK if endpoint.provider is ProviderName.CUSTOM else None,
                status=IntegrationStatus.ACTIVE,
                sync_config=SyncConfiguration(sync_mode=DataSyncMode.REAL_TIME),
                tags=["webhooks"],
            ),
        )

    def _remove_owned_integration(self, endpoint: WebhookEndpoint) -> None:
        if not endpoint.owns_integration or endpoint.integration_id == "pending":
            return
        with contextlib.suppress(NotFoundError):
            self._integrations.delete(endpoint.organization_id, endpoint.integration_id)


class DeadLetterService:
    """The organisation's view of the shared dead-letter queue: failures with their error, and replay."""

    def __init__(self, store: WebhookStore, sqs: Any, queue_url: str, dlq_url: str) -> None:
        self._store = store
        self._sqs = sqs
        self._queue_url = queue_url
        self._dlq_url = dlq_url

    def page(self, organization_id: str, limit: int, next_token: str | None) -> DeadLetterPage:
        documents, token = self._store.deadletters(organization_id, limit, next_token)
        return DeadLetterPage(items=[DeadLetter.model_validate(d) for d in documents], next_token=token)

    def redrive(self, organization_id: str) -> RedriveResult:
        """Moves this organisation's dead letters back to the webhook queue.

        The DLQ is shared, so it is scanned: other organisations' messages stay hidden for the
        scan (so each is seen once) and are made visible again at the end, untouched.
        """
        others: list[str] = []
        redriven = 0
        seen = 0
        try:
            while seen < REDRIVE_MAX_MESSAGES:
                messages = self._sqs.receive_message(
                    QueueUrl=self._dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0
                ).get("Messages", [])
                if not messages:
                    break
                seen += len(messages)
                mine: list[tuple[dict[str, Any], dict[str, Any]]] = []
                for message in messages:
                    body = _message_body(message)
                    if body is not None and body.get("organization_id") == organization_id:
                        mine.append((message, body))
                    else:
                        others.append(message["ReceiptHandle"])
                redriven += self._move(organization_id, mine)
        finally:
            self._release(others)
        return RedriveResult(redriven=redriven)

    def _move(self, organization_id: str, mine: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        if not mine:
            return 0
        result = self._sqs.send_message_batch(
            QueueUrl=self._queue_url,
            Entries=[{"Id": str(i), "MessageBody": message["Body"]} for i, (message, _) in enumerate(mine)],
        )
        sent = [mine[int(entry["Id"])] for entry in result.get("Successful", [])]
        if sent:
            self._sqs.delete_message_batch(
                QueueUrl=self._dlq_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]} for i, (message, _) in enumerate(sent)
                ],
            )
        for _, body in sent:
            self._store.delete_deadletter(organization_id, f"{body.get('endpoint_id')}#{body.get('event_id')}")
        return len(sent)

    def _release(self, receipt_handles: list[str]) -> None:
        for start in range(0, len(receipt_handles), 10):
            chunk = receipt_handles[start : start + 10]
            try:
                self._sqs.change_message_visibility_batch(
                    QueueUrl=self._dlq_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)],
                )
            except Exception:
                # They become visible again when the scan's visibility timeout runs out.
                logger.exception("could not release other organisations' dead letters")


def _message_body(message: dict[str, Any]) -> dict[str, Any] | None:
    try:
        body = json.loads(message["Body"])
    except (ValueError, KeyError):
        return None
    return body if isinstance(body, dict) else None
