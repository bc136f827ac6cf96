"""Integration configurations, their name reservations and their encrypted credentials."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from churnguard.errors import ConflictError, NotFoundError
from churnguard.models import IntegrationConfiguration, IntegrationStatus, IntegrationType, ProviderName
from churnguard.store import pagetokens, transact
from churnguard.store.keys import (
    INTEGRATION_PREFIX,
    credentials_key,
    integration_key,
    integration_name_key,
    org_pk,
    run_history_key,
)
from churnguard.store.paging import every_item, filled_page

_QUERY_PAGE = 100


@dataclass(frozen=True)
class IntegrationFilter:
    integration_type: IntegrationType | None = None
    status: IntegrationStatus | None = None
    provider_name: ProviderName | None = None


class IntegrationStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def create(
        self,
        config: IntegrationConfiguration,
        envelope: dict[str, Any] | None,
        also: list[dict[str, Any]] | None = None,
    ) -> None:
        """`also`: transaction items written with it or not at all (a stream's own items)."""
        items = [
            transact.put(self._table, self._integration_item(config), "attribute_not_exists(pk)"),
            transact.put(self._table, self._name_item(config), "attribute_not_exists(pk)"),
        ]
        if envelope is not None:
            items.append(transact.put(self._table, self._credentials_item(config, envelope), None))
        self._transact([*items, *(also or [])], name=config.integration_name, name_index=1)

    def get(self, organization_id: str, integration_id: str) -> IntegrationConfiguration:
        item = self._db.get_item(
            TableName=self._table, Key=integration_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        if not item:
            raise NotFoundError("integration not found", {"integration_id": integration_id})
        return IntegrationConfiguration.model_validate_json(item["doc"]["S"])

    def page(
        self, organization_id: str, filters: IntegrationFilter, limit: int, next_token: str | None
    ) -> tuple[list[IntegrationConfiguration], str | None]:
        """One page of an organisation's integrations, ordered by id (filters run in DynamoDB)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": INTEGRATION_PREFIX}},
            "ConsistentRead": True,
            "Limit": _QUERY_PAGE,
        }
        given = (
            ("integration_type", filters.integration_type),
            ("status", filters.status),
            ("provider_name", filters.provider_name),
        )
        # What a token is valid for: this list with these filters.
        query = "integrations?" + "&".join(f"{name}={value.value if value else ''}" for name, value in given)
        conditions = []
        names: dict[str, str] = {}
        for attribute, value in given:
            if value is not None:
                conditions.append(f"#{attribute} = :{attribute}")
                names[f"#{attribute}"] = attribute
                request["ExpressionAttributeValues"][f":{attribute}"] = {"S": value.value}
        if conditions:
            request["FilterExpression"] = " AND ".join(conditions)
            request["ExpressionAttributeNames"] = names
        if next_token is not None:
            request["ExclusiveStartKey"] = {
                "pk": {"S": org_pk(organization_id)},
                "sk": {"S": pagetokens.read(next_token, organization_id, query, INTEGRATION_PREFIX)},
            }

        items, token = filled_page(
            self._db, request, limit, lambda sort_key: pagetokens.issue(organization_id, query, sort_key)
        )
        return [IntegrationConfiguration.model_validate_json(item["doc"]["S"]) for item in items], token

    def all(self, organization_id: str) -> list[IntegrationConfiguration]:
        """Every integration of the organisation, in as few queries as their size allows (a
        query returns up to 1 MB: about 400 integrations)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": INTEGRATION_PREFIX}},
            "ProjectionExpression": "doc",
        }
        return [
            IntegrationConfiguration.model_validate_json(item["doc"]["S"]) for item in every_item(self._db, request)
        ]

    def update(
        self,
        before: IntegrationConfiguration,
        after: IntegrationConfiguration,
        envelope: dict[str, Any] | None = None,
        also: list[dict[str, Any]] | None = None,
    ) -> None:
        """Writes `after` only if nobody changed the integration since `before` was read."""
        items = [
            transact.put(
                self._table,
                self._integration_item(after),
                "#version = :expected",
                names={"#version": "version"},
                values={":expected": {"N": str(before.version)}},
            )
        ]
        renamed = integration_name_key(before.organization_id, before.integration_name) != integration_name_key(
            after.organization_id, after.integration_name
        )
        if renamed:
            items.append(
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": integration_name_key(before.organization_id, before.integration_name),
                    }
                }
            )
            items.append(transact.put(self._table, self._name_item(after), "attribute_not_exists(pk)"))
        if envelope is not None:
            items.append(transact.put(self._table, self._credentials_item(after, envelope), None))
        self._transact(
            [*items, *(also or [])],
            name=after.integration_name,
            name_index=2 if renamed else None,
            version_index=0,
        )

    def delete(self, config: IntegrationConfiguration, also: list[dict[str, Any]] | None = None) -> None:
        org, integration_id = config.organization_id, config.integration_id
        self._transact(
            [
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": integration_key(org, integration_id),
                        "ConditionExpression": "#version = :expected",
                        "ExpressionAttributeNames": {"#version": "version"},
                        "ExpressionAttributeValues": {":expected": {"N": str(config.version)}},
                    }
                },
                {"Delete": {"TableName": self._table, "Key": integration_name_key(org, config.integration_name)}},
                {"Delete": {"TableName": self._table, "Key": credentials_key(org, integration_id)}},
                {"Delete": {"TableName": self._table, "Key": run_history_key(org, integration_id)}},
                *(also or []),
            ],
            name=config.integration_name,
            version_index=0,
        )

    def get_credentials_envelope(self, organization_id: str, integration_id: str) -> dict[str, Any] | None:
        item = self._db.get_item(
            TableName=self._table, Key=credentials_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        envelope: dict[str, Any] = json.loads(item["envelope"]["S"])
        return envelope

    def _transact(
        self,
        items: list[dict[str, Any]],
        *,
        name: str,
        name_index: int | None = None,
        version_index: int | None = None,
    ) -> None:
        try:
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
            if name_index is not None and _failed(reasons, name_index):
                raise ConflictError(
                    f"an integration named {name!r} already exists in this organisation",
                    {"field": "integration_name"},
                ) from None
            if version_index is not None and _failed(reasons, version_index):
                raise ConflictError(
                    "the integration was changed or deleted by another request; read it again and retry",
                    {"reason": "concurrent_modification"},
                ) from None
            raise

    @staticmethod
    def _integration_item(config: IntegrationConfiguration) -> dict[str, Any]:
        return {
            **integration_key(config.organization_id, config.integration_id),
            "entity": {"S": "integration"},
            "doc": {"S": config.model_dump_json()},
            "integration_type": {"S": (config.integration_type or IntegrationType.API).value},
            "status": {"S": config.status.value},
            "provider_name": {"S": config.provider_name.value},
            "version": {"N": str(config.version)},
        }

    @staticmethod
    def _name_item(config: IntegrationConfiguration) -> dict[str, Any]:
        return {
            **integration_name_key(config.organization_id, config.integration_name),
            "entity": {"S": "integration_name"},
            "integration_id": {"S": config.integration_id},
        }

    @staticmethod
    def _credentials_item(config: IntegrationConfiguration, envelope: dict[str, Any]) -> dict[str, Any]:
        return {
            **credentials_key(config.organization_id, config.integration_id),
            "entity": {"S": "credentials"},
            "envelope": {"S": json.dumps(envelope, separators=(",", ":"))},
        }


def _failed(reasons: list[str], index: int) -> bool:
    return index < len(reasons) and reasons[index] == "ConditionalCheckFailed"
