"""Alerts and each organisation's alert settings.

    ORG#<org>  ALERT#<alert_id>                an alert: JSON document (rule, subject, message, opened_at)
                                               and its state outside it (state, acknowledged_*,
                                               resolved_at), so changing state never rewrites it
    ORG#<org>  ALERT_OPEN#<rule>#<subject>     held while that alert is open or acknowledged: at
                                               most one per rule and subject. Also holds which
                                               notifications were sent (`sent`) and `resolving`
                                               while the resolve notification is on its way
    ORG#<org>  ALERT_SETTINGS                  thresholds, rules and the chat webhook's envelope

Alert ids sort by opening time, so the list is a descending query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from churnguard.errors import ConflictError, NotFoundError
from churnguard.store import pagetokens
from churnguard.store.keys import (
    ALERT_OPEN_PREFIX,
    ALERT_PREFIX,
    alert_key,
    alert_settings_key,
    open_alert_key,
    org_pk,
)
from churnguard.store.paging import every_item, filled_page

STATES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True)
class OpenAlert:
    """An ALERT_OPEN item: which alert holds the rule and subject, and what was sent for it."""

    alert_id: str
    rule: str
    subject: str
    resolving: bool = False
    sent: frozenset[str] = field(default_factory=frozenset)


class AlertStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def open(self, organization_id: str, alert_id: str, document: dict[str, Any]) -> bool:
        """Opens the alert unless one of its rule and subject is open already (False then)."""
        rule, subject = document["rule"], document["subject"]
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                **open_alert_key(organization_id, rule, subject),
                                "entity": {"S": "alert_open"},
                                "alert_id": {"S": alert_id},
                                "rule": {"S": rule},
                                "subject": {"S": subject},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {
                                **alert_key(organization_id, alert_id),
                                "entity": {"S": "alert"},
                                "doc": {"S": json.dumps(document, separators=(",", ":"))},
                                "state": {"S": "open"},
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except self._db.exceptions.TransactionCanceledException:
            return False
        return True

    def open_alerts(self, organization_id: str) -> list[OpenAlert]:
        """The organisation's open and acknowledged alerts (and those being resolved)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": ALERT_OPEN_PREFIX}},
            "ConsistentRead": True,
        }
        return [
            OpenAlert(
                alert_id=item["alert_id"]["S"],
                rule=item["rule"]["S"],
                subject=item["subject"]["S"],
                resolving=bool(item.get("resolving", {}).get("BOOL", False)),
                sent=frozenset(item.get("sent", {}).get("SS", [])),
            )
            for item in every_item(self._db, request)
        ]

    def mark_sent(self, organization_id: str, alert: OpenAlert, notification: str) -> None:
        """Records that `notification` (e.g. "sns:opened") went out, so it is never sent twice."""
        self._db.update_item(
            TableName=self._table,
            Key=open_alert_key(organization_id, alert.rule, alert.subject),
            UpdateExpression="ADD sent :n",
            ConditionExpression="alert_id = :id",
            ExpressionAttributeValues={":n": {"SS": [notification]}, ":id": {"S": alert.alert_id}},
        )

    def start_resolving(self, organization_id: str, alert: OpenAlert, resolved_at: str) -> None:
        """Marks the alert resolved; its ALERT_OPEN item stays (resolving) until the resolve
        notifications went out, so a crash in between sends them on the next evaluation."""
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": open_alert_key(organization_id, alert.rule, alert.subject),
                        "UpdateExpression": "SET resolving = :yes",
                        "ConditionExpression": "alert_id = :id",
                        "ExpressionAttributeValues": {":yes": {"BOOL": True}, ":id": {"S": alert.alert_id}},
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": alert_key(organization_id, alert.alert_id),
                        "UpdateExpression": "SET #state = :resolved, resolved_at = :at",
                        "ExpressionAttributeNames": {"#state": "state"},
                        "ExpressionAttributeValues": {":resolved": {"S": "resolved"}, ":at": {"S": resolved_at}},
                    }
                },
            ]
        )

    def finish_resolving(self, organization_id: str, alert: OpenAlert) -> None:
        """Frees the rule and subject: a new alert may open for them from now on."""
        self._db.delete_item(
            TableName=self._table,
            Key=open_alert_key(organization_id, alert.rule, alert.subject),
            ConditionExpression="alert_id = :id",
            ExpressionAttributeValues={":id": {"S": alert.alert_id}},
        )

    def acknowledge(self, organization_id: str, alert_id: str, at: str, by: str) -> dict[str, Any]:
        try:
            item = self._db.update_item(
                TableName=self._table,
                Key=alert_key(organization_id, alert_id),
                UpdateExpression="SET #state = :ack, acknowledged_at = :at, acknowledged_by = :by",
                ConditionExpression="attribute_exists(pk) AND #state = :open",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues={
                    ":ack": {"S": "acknowledged"},
                    ":open": {"S": "open"},
                    ":at": {"S": at},
                    ":by": {"S": by},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self._db.exceptions.ConditionalCheckFailedException:
            current = self.get(organization_id, alert_id)  # 404 when there is none
            raise ConflictError(
                f"the alert is {current['state']}; only an open alert can be acknowledged",
                {"alert_id": alert_id, "state": current["state"]},
            ) from None
        return _alert(item)

    def get(self, organization_id: str, alert_id: str) -> dict[str, Any]:
        item = self._db.get_item(
            TableName=self._table, Key=alert_key(organization_id, alert_id), ConsistentRead=True
        ).get("Item")
        if not item:
            raise NotFoundError("alert not found", {"alert_id": alert_id[:64]})
        return _alert(item)

    def page(
        self, organization_id: str, state: str | None, limit: int, next_token: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Alerts newest first, optionally of one state."""
        query = f"alerts?state={state or ''}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": ALERT_PREFIX}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": 100,
        }
        if state is not None:
            request["FilterExpression"] = "#state = :state"
            request["ExpressionAttributeNames"] = {"#state": "state"}
            request["ExpressionAttributeValues"][":state"] = {"S": state}
        if next_token is not None:
            request["ExclusiveStartKey"] = {
                "pk": {"S": org_pk(organization_id)},
                "sk": {"S": pagetokens.read(next_token, organization_id, query, ALERT_PREFIX)},
            }
        items, token = filled_page(
            self._db, request, limit, lambda sort_key: pagetokens.issue(organization_id, query, sort_key)
        )
        return [_alert(item) for item in items], token

    # ------------------------------------------------------------ settings

    def settings(self, organization_id: str) -> tuple[dict[str, Any], dict[str, Any] | None, int]:
        """(settings document, chat webhook envelope or None, version); defaults when never set."""
        item = self._db.get_item(
            TableName=self._table, Key=alert_settings_key(organization_id), ConsistentRead=True
        ).get("Item")
        if not item:
            return {}, None, 0
        envelope = json.loads(item["chat_webhook"]["S"]) if "chat_webhook" in item else None
        return json.loads(item["doc"]["S"]), envelope, int(item["version"]["N"])

    def save_settings(
        self, organization_id: str, document: dict[str, Any], envelope: dict[str, Any] | None, expected_version: int
    ) -> None:
        item: dict[str, Any] = {
            **alert_settings_key(organization_id),
            "entity": {"S": "alert_settings"},
            "doc": {"S": json.dumps(document, separators=(",", ":"))},
            "version": {"N": str(expected_version + 1)},
        }
        if envelope is not None:
            item["chat_webhook"] = {"S": json.dumps(envelope, separators=(",", ":"))}
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if expected_version == 0
            else {
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        )
        try:
            self._db.put_item(TableName=self._table, Item=item, **condition)
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError(
                "the alert settings were changed by another request; read them again and retry",
                {"reason": "concurrent_modification"},
            ) from None


def _alert(item: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(item["doc"]["S"])
    document["state"] = item["state"]["S"]
    for name in ("acknowledged_at", "acknowledged_by", "resolved_at"):
        if name in item:
            document[name] = item[name]["S"]
    return document
