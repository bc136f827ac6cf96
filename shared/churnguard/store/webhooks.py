"""Webhook state: endpoints, dedupe claims, rate windows, record ordering and dead letters.

Imported by the receiver, whose cold start is budgeted: plain dicts here, no pydantic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from churnguard.errors import ConflictError, NotFoundError
from churnguard.store import pagetokens
from churnguard.store.keys import (
    DEADLETTER_PREFIX,
    WEBHOOK_PREFIX,
    deadletter_key,
    org_pk,
    record_state_key,
    webhook_event_key,
    webhook_key,
    webhook_rate_key,
)
from churnguard.store.paging import every_item


@dataclass(frozen=True)
class StoredEndpoint:
    """An endpoint item: its configuration document and the envelope of its secrets."""

    doc: dict[str, Any]
    envelope: dict[str, Any]
    version: int
    events_ignored: int = 0


class Claim(StrEnum):
    CLAIMED = "claimed"
    DUPLICATE = "duplicate"


class WebhookStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    # ------------------------------------------------------------------ endpoints
    def create_endpoint(self, doc: dict[str, Any], envelope: dict[str, Any]) -> None:
        try:
            self._db.put_item(
                TableName=self._table,
                Item=self._endpoint_item(doc, envelope),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError(
                f"this organisation already has a {doc['provider']} webhook endpoint; change or delete it",
                {"field": "provider"},
            ) from None

    def endpoint(self, organization_id: str, provider: str) -> StoredEndpoint | None:
        item = self._db.get_item(
            TableName=self._table, Key=webhook_key(organization_id, provider), ConsistentRead=True
        ).get("Item")
        return None if not item else _stored(item)

    def endpoints(self, organization_id: str) -> list[StoredEndpoint]:
        """Every endpoint of an organisation (at most one per provider, so one page)."""
        response = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": WEBHOOK_PREFIX}},
            ConsistentRead=True,
        )
        return [_stored(item) for item in response.get("Items", [])]

    def replace_endpoint(self, expected_version: int, doc: dict[str, Any], envelope: dict[str, Any]) -> None:
        """Writes the new document and envelope if nobody changed the endpoint meanwhile; counters stay."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=webhook_key(doc["organization_id"], doc["provider"]),
                UpdateExpression="SET doc = :doc, envelope = :envelope, version = :version",
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={
                    ":doc": {"S": json.dumps(doc, separators=(",", ":"))},
                    ":envelope": {"S": json.dumps(envelope, separators=(",", ":"))},
                    ":version": {"N": str(doc["version"])},
                    ":expected": {"N": str(expected_version)},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError(
                "the endpoint was changed or deleted by another request; read it again and retry",
                {"reason": "concurrent_modification"},
            ) from None

    def delete_endpoint(self, organization_id: str, provider: str, expected_version: int) -> None:
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=webhook_key(organization_id, provider),
                ConditionExpression="version = :expected",
                ExpressionAttributeValues={":expected": {"N": str(expected_version)}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError(
                "the endpoint was changed or deleted by another request; read it again and retry",
                {"reason": "concurrent_modification"},
            ) from None

    def count_ignored(self, organization_id: str, provider: str, count: int) -> None:
        """Counts deliveries outside the endpoint's allowed_events (acknowledged, not processed)."""
        self._db.update_item(
            TableName=self._table,
            Key=webhook_key(organization_id, provider),
            UpdateExpression="ADD events_ignored :n",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":n": {"N": str(count)}},
        )

    @staticmethod
    def _endpoint_item(doc: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
        return {
            **webhook_key(doc["organization_id"], doc["provider"]),
            "entity": {"S": "webhook_endpoint"},
            "doc": {"S": json.dumps(doc, separators=(",", ":"))},
            "envelope": {"S": json.dumps(envelope, separators=(",", ":"))},
            "version": {"N": str(doc["version"])},
        }

    # ------------------------------------------------------------------ receiving
    def claim_event(
        self, organization_id: str, endpoint_id: str, event_id: str, *, now: int, lease_seconds: int, ttl_seconds: int
    ) -> Claim:
        """Claims a provider event id for enqueueing.

        A claim is pending (with a lease) until `mark_queued`; a pending claim whose lease ran out
        belongs to a receiver that died before enqueueing, so it may be taken over. A queued or a
        live pending claim makes the delivery a duplicate.
        """
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **webhook_event_key(organization_id, endpoint_id, event_id),
                    "state": {"S": "pending"},
                    "lease_until": {"N": str(now + lease_seconds)},
                    "expires_at": {"N": str(now + ttl_seconds)},
                },
                ConditionExpression="attribute_not_exists(pk) OR (#state = :pending AND lease_until < :now)",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={":pending": {"S": "pending"}, ":now": {"N": str(now)}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return Claim.DUPLICATE
        return Claim.CLAIMED

    def mark_queued(self, organization_id: str, endpoint_id: str, event_id: str) -> None:
        self._db.update_item(
            TableName=self._table,
            Key=webhook_event_key(organization_id, endpoint_id, event_id),
            UpdateExpression="SET #state = :queued REMOVE lease_until",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":queued": {"S": "queued"}},
        )

    def release_event(self, organization_id: str, endpoint_id: str, event_id: str) -> None:
        """Drops a pending claim whose event could not be enqueued, so the provider's retry is accepted."""
        self._db.delete_item(
            TableName=self._table,
            Key=webhook_event_key(organization_id, endpoint_id, event_id),
            ConditionExpression="#state = :pending",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":pending": {"S": "pending"}},
        )

    def take_rate(self, subject: str, window: int, limit: int, expires_at: int) -> bool:
        """Counts one delivery in `subject`'s fixed window; False once the window is full.

        Subjects: an organisation (its verified deliveries), or `<org>#source#<address>` and
        `<org>#endpoint#<id>` for deliveries that failed verification."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=webhook_rate_key(subject, window),
                UpdateExpression="ADD hits :one SET expires_at = if_not_exists(expires_at, :expires)",
                ConditionExpression="attribute_not_exists(hits) OR hits < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":expires": {"N": str(expires_at)},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def rate_spent(self, subject: str, window: int, limit: int) -> bool:
        """Whether `subject`'s window is full, without counting: one read, no write."""
        item = self._db.get_item(
            TableName=self._table, Key=webhook_rate_key(subject, window), ProjectionExpression="hits"
        ).get("Item")
        return item is not None and int(item["hits"]["N"]) >= limit

    # ------------------------------------------------------------------ processing
    def advance_record(
        self,
        organization_id: str,
        integration_id: str,
        entity: str,
        ordering_key: str,
        *,
        event_time_ms: int,
        event_key: str,
        expires_at: int,
    ) -> bool:
        """Records `event_key` as the record's newest event unless a newer one was applied.

        Ties on time are broken by the event key, and re-applying the same event succeeds, so a
        redelivered message gets the same answer as long as nothing newer arrived meanwhile.
        """
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **record_state_key(organization_id, integration_id, entity, ordering_key),
                    "event_time": {"N": str(event_time_ms)},
                    "event_key": {"S": event_key},
                    "expires_at": {"N": str(expires_at)},
                },
                ConditionExpression=(
                    "attribute_not_exists(pk) OR event_time < :t OR (event_time = :t AND event_key <= :k)"
                ),
                ExpressionAttributeValues={":t": {"N": str(event_time_ms)}, ":k": {"S": event_key}},
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    # ------------------------------------------------------------------ dead letters
    def put_deadletter(self, organization_id: str, message_key: str, document: dict[str, Any]) -> None:
        self._db.put_item(
            TableName=self._table,
            Item={
                **deadletter_key(organization_id, message_key),
                "entity": {"S": "deadletter"},
                # Outside the document, so the dashboard counts them per integration cheaply.
                "integration_id": {"S": str(document.get("integration_id") or "")},
                "doc": {"S": json.dumps(document, separators=(",", ":"))},
            },
        )

    def deadletters(
        self, organization_id: str, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": DEADLETTER_PREFIX}},
            "ConsistentRead": True,
            "Limit": limit,
        }
        if next_token is not None:
            sort_key = pagetokens.read(next_token, organization_id, "deadletters", DEADLETTER_PREFIX)
            request["ExclusiveStartKey"] = {"pk": {"S": org_pk(organization_id)}, "sk": {"S": sort_key}}
        response = self._db.query(**request)
        last = response.get("LastEvaluatedKey")
        documents = [json.loads(item["doc"]["S"]) for item in response.get("Items", [])]
        return documents, pagetokens.issue(organization_id, "deadletters", last["sk"]["S"]) if last else None

    def deadletters_by_integration(self, organization_id: str) -> dict[str, int]:
        """How many dead letters wait per integration: one query of a small projection."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": DEADLETTER_PREFIX}},
            "ProjectionExpression": "integration_id",
        }
        counts: dict[str, int] = {}
        for item in every_item(self._db, request):
            integration_id = item.get("integration_id", {}).get("S", "")
            counts[integration_id] = counts.get(integration_id, 0) + 1
        return counts

    def delete_deadletter(self, organization_id: str, message_key: str) -> None:
        self._db.delete_item(TableName=self._table, Key=deadletter_key(organization_id, message_key))


def _stored(item: dict[str, Any]) -> StoredEndpoint:
    return StoredEndpoint(
        doc=json.loads(item["doc"]["S"]),
        envelope=json.loads(item["envelope"]["S"]),
        version=int(item["version"]["N"]),
        events_ignored=int(item.get("events_ignored", {}).get("N", "0")),
    )


def endpoint_or_404(stored: StoredEndpoint | None, endpoint_id: str) -> StoredEndpoint:
    if stored is None:
        raise NotFoundError("webhook endpoint not found", {"endpoint_id": endpoint_id[:64]})
    return stored
