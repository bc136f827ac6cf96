"""Change data capture's state per integration (see churnguard.cdc_models).

ORG#<org>   CDC#<integration>   the capture's state (doc), written conditionally on its version

The capture's position in the log is a checkpoint of the stream store (scope `cdc`, partition the
integration id), moved by the same conditional writes as every stream partition's.
"""

from __future__ import annotations

from typing import Any

from churnguard.cdc_models import CaptureState
from churnguard.errors import ConflictError, NotFoundError
from churnguard.store.keys import key, org_pk
from churnguard.store.paging import every_item

CDC_PREFIX = "CDC#"
CHECKPOINT_SCOPE = "cdc"
_SAVE_ATTEMPTS = 5


def capture_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), CDC_PREFIX + integration_id)


class CaptureStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def find(self, organization_id: str, integration_id: str) -> CaptureState | None:
        item = self._db.get_item(
            TableName=self._table, Key=capture_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        return CaptureState.model_validate_json(item["doc"]["S"]) if item else None

    def get(self, organization_id: str, integration_id: str) -> CaptureState:
        state = self.find(organization_id, integration_id)
        if state is None:
            raise NotFoundError("the integration captures no changes", {"integration_id": integration_id})
        return state

    def save(self, state: CaptureState) -> CaptureState:
        """Stores `state` as the next version; refuses if someone saved another meanwhile."""
        saved = state.model_copy(update={"version": state.version + 1})
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                **capture_key(state.organization_id, state.integration_id),
                "entity": {"S": "capture"},
                "doc": {"S": saved.model_dump_json()},
                "version": {"N": str(saved.version)},
            },
            "ConditionExpression": "attribute_not_exists(pk)" if state.version == 0 else "#version = :seen",
        }
        if state.version:
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":seen": {"N": str(state.version)}}
        try:
            self._db.put_item(**request)
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError(
                "the capture's state was changed meanwhile", {"integration_id": state.integration_id}
            ) from None
        return saved

    def update(self, organization_id: str, integration_id: str, **changes: Any) -> CaptureState:
        """Saves `changes` onto the latest state, read again after a concurrent save (the API and
        a turn both write it, each its own fields)."""
        for attempt in range(_SAVE_ATTEMPTS):
            state = self.get(organization_id, integration_id)
            try:
                return self.save(state.model_copy(update=changes))
            except ConflictError:
                if attempt == _SAVE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def delete(self, organization_id: str, integration_id: str) -> None:
        self._db.delete_item(TableName=self._table, Key=capture_key(organization_id, integration_id))

    def for_organization(self, organization_id: str) -> list[CaptureState]:
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": CDC_PREFIX}},
            "ConsistentRead": True,
        }
        return [CaptureState.model_validate_json(item["doc"]["S"]) for item in every_item(self._db, request)]
