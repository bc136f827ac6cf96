"""Organisations: the tenant record that API keys and integrations hang off."""

from __future__ import annotations

from typing import Any

from churnguard.models import utc_now
from churnguard.store.keys import ORGANIZATION_INDEX_PK, ORGANIZATION_SK, key, org_pk, organization_index_key
from churnguard.store.paging import every_item


class OrganizationStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def ensure(self, organization_id: str) -> bool:
        """Creates the organisation unless it exists (and lists it in the index either way, for
        organisations created before the index); True when it was created now."""
        self._db.put_item(
            TableName=self._table,
            Item={**organization_index_key(organization_id), "entity": {"S": "organization_index"}},
        )
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **key(org_pk(organization_id), ORGANIZATION_SK),
                    "entity": {"S": "organization"},
                    "organization_id": {"S": organization_id},
                    "created_at": {"S": utc_now().isoformat()},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def all(self) -> list[str]:
        """Every organisation's id, from the index."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": ORGANIZATION_INDEX_PK}},
            "ProjectionExpression": "sk",
        }
        return [item["sk"]["S"] for item in every_item(self._db, request)]
