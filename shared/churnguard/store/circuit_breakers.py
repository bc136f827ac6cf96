"""Circuit breaker state per integration, shared by every Lambda invocation.

Item `ORG#<org>` / `CIRCUIT#<integration_id>`: state (closed | open | half_open), failures
(consecutive failed calls), changed_at (epoch seconds of the last transition) and version. Every
change is a conditional write, so two invocations failing at once count two failures, open the
breaker once, and only one of them gets the half-open probe.
"""

from __future__ import annotations

from typing import Any

from churnguard.resilience import CLOSED, HALF_OPEN, OPEN, BreakerState
from churnguard.store.keys import CIRCUIT_PREFIX, circuit_key, org_pk
from churnguard.store.paging import every_item


class CircuitBreakerStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def load(self, organization_id: str, integration_id: str) -> BreakerState:
        item = self._db.get_item(
            TableName=self._table, Key=circuit_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        return _state(item) if item else BreakerState()

    def all(self, organization_id: str) -> dict[str, BreakerState]:
        """Every breaker of the organisation's integrations that has ever counted a failure."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": CIRCUIT_PREFIX}},
        }
        return {item["sk"]["S"][len(CIRCUIT_PREFIX) :]: _state(item) for item in every_item(self._db, request)}

    def record_failure(self, organization_id: str, integration_id: str, now: float, threshold: int) -> BreakerState:
        """Counts one failure atomically, then opens the breaker if this one reached the threshold
        (or failed the half-open probe)."""
        key = circuit_key(organization_id, integration_id)
        item = self._db.update_item(
            TableName=self._table,
            Key=key,
            UpdateExpression=(
                "SET failures = if_not_exists(failures, :zero) + :one, #state = if_not_exists(#state, :closed),"
                " changed_at = if_not_exists(changed_at, :now), entity = :entity ADD version :one"
            ),
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":closed": {"S": CLOSED},
                ":now": {"N": repr(now)},
                ":entity": {"S": "circuit_breaker"},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        state = _state(item)
        should_open = state.state == HALF_OPEN or (state.state == CLOSED and state.failures >= threshold)
        if not should_open:
            return state
        try:
            item = self._db.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="SET #state = :open, changed_at = :now ADD version :one",
                ConditionExpression="version = :seen",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":open": {"S": OPEN},
                    ":now": {"N": repr(now)},
                    ":one": {"N": "1"},
                    ":seen": {"N": str(state.version)},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self._db.exceptions.ConditionalCheckFailedException:
            return self.load(organization_id, integration_id)  # someone else moved it first
        return _state(item)

    def acquire_probe(self, organization_id: str, integration_id: str, seen: BreakerState, now: float) -> bool:
        """Moves an open (or stale half-open) breaker to half-open for exactly one caller."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=circuit_key(organization_id, integration_id),
                UpdateExpression="SET #state = :half, changed_at = :now ADD version :one",
                ConditionExpression="version = :seen",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":half": {"S": HALF_OPEN},
                    ":now": {"N": repr(now)},
                    ":one": {"N": "1"},
                    ":seen": {"N": str(seen.version)},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def close(self, organization_id: str, integration_id: str) -> BreakerState:
        item = self._db.update_item(
            TableName=self._table,
            Key=circuit_key(organization_id, integration_id),
            UpdateExpression="SET #state = :closed, failures = :zero, entity = :entity ADD version :one",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={
                ":closed": {"S": CLOSED},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":entity": {"S": "circuit_breaker"},
            },
            ReturnValues="ALL_NEW",
        )["Attributes"]
        return _state(item)


def _state(item: dict[str, Any]) -> BreakerState:
    return BreakerState(
        state=item.get("state", {}).get("S", CLOSED),
        failures=int(item.get("failures", {}).get("N", "0")),
        changed_at=float(item.get("changed_at", {}).get("N", "0")),
        version=int(item.get("version", {}).get("N", "0")),
    )
