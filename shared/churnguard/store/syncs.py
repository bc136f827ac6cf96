"""Sync runs, the one-sync-per-integration lock, and the cursor incremental syncs resume from.

    ORG#<org>  SYNC#<integration_id>#<sync_id>  a run: JSON document, status, version, and
                                                cancel_requested (outside the document, so a
                                                cancel request never conflicts with a checkpoint)
    ORG#<org>  SYNC_LOCK#<integration_id>       the running sync's id and its lease (expires_at,
                                                epoch seconds), renewed by every checkpoint
    ORG#<org>  SYNC_CURSOR#<integration_id>     per entity, the final state of the last successful
                                                sync: where the next incremental sync starts

Sync ids sort by start time, so history is a descending query. Every write of a run is
conditional on its version: a zombie task (one Step Functions gave up on) cannot overwrite the
checkpoint of the task that replaced it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from churnguard.errors import ConflictError, NotFoundError
from churnguard.runs import SyncRun, SyncStatus
from churnguard.store import pagetokens
from churnguard.store.keys import SYNC_LOCK_PREFIX, org_pk, sync_cursor_key, sync_key, sync_lock_key, sync_prefix
from churnguard.store.paging import every_item


class SyncStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    # ------------------------------------------------------------ runs

    def create(self, run: SyncRun, *, lease_until: float, replacing: str | None) -> None:
        """Stores a new run and takes the integration's lock: free, or held by `replacing` (a
        run the caller found finished or abandoned). Raises ConflictError if another holds it."""
        lock_condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        if replacing is not None:
            lock_condition = {
                "ConditionExpression": "attribute_not_exists(pk) OR sync_id = :holder",
                "ExpressionAttributeValues": {":holder": {"S": replacing}},
            }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._lock_item(run, lease_until),
                            **lock_condition,
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": self._run_item(run),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except self._db.exceptions.TransactionCanceledException:
            raise ConflictError(
                "a sync of this integration is already running", {"integration_id": run.integration_id}
            ) from None

    def get(self, organization_id: str, integration_id: str, sync_id: str) -> SyncRun:
        item = self._db.get_item(
            TableName=self._table, Key=sync_key(organization_id, integration_id, sync_id), ConsistentRead=True
        ).get("Item")
        if not item:
            raise NotFoundError("sync not found", {"sync_id": sync_id})
        return _run(item)

    def save(self, run: SyncRun, *, lease_until: float | None) -> None:
        """Writes `run` (a checkpoint) if nobody wrote it since it was read, bumping its version;
        renews the lock's lease in the same transaction, which fails if the lock is not ours."""
        expected = run.version
        run.version += 1
        items = [self._run_update(run, expected)]
        if lease_until is not None:
            items.append(
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": sync_lock_key(run.organization_id, run.integration_id),
                        "UpdateExpression": "SET expires_at = :until",
                        "ConditionExpression": "sync_id = :sync",
                        "ExpressionAttributeValues": {
                            ":until": {"N": repr(lease_until)},
                            ":sync": {"S": run.sync_id},
                        },
                    }
                }
            )
        try:
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException:
            run.version = expected
            raise ConflictError(
                "the sync was changed by another task, or lost its lock; this task stops",
                {"sync_id": run.sync_id, "reason": "concurrent_modification"},
            ) from None

    def finish(
        self,
        run: SyncRun,
        *,
        cursor_states: dict[str, dict[str, Any]] | None,
        counters: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Writes a finished run (and, for a success, the cursor the next incremental sync starts
        from; and `counters`, updates of store.activity, so a run counts exactly once) in one
        transaction, then releases the lock if it is still this run's."""
        expected = run.version
        run.version += 1
        items = [self._run_update(run, expected), *({"Update": update} for update in counters)]
        if cursor_states is not None:
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            **sync_cursor_key(run.organization_id, run.integration_id),
                            "entity": {"S": "sync_cursor"},
                            "sync_id": {"S": run.sync_id},
                            "states": {"S": json.dumps(cursor_states, separators=(",", ":"))},
                        },
                    }
                }
            )
        try:
            self._db.transact_write_items(TransactItems=items)
        except self._db.exceptions.TransactionCanceledException:
            run.version = expected
            raise ConflictError(
                "the sync was changed by another task; read it again",
                {"sync_id": run.sync_id, "reason": "concurrent_modification"},
            ) from None
        self.release_lock(run.organization_id, run.integration_id, run.sync_id)

    def release_lock(self, organization_id: str, integration_id: str, sync_id: str) -> None:
        # Already released, or taken over after the lease ran out: either way not ours to delete.
        with contextlib.suppress(self._db.exceptions.ConditionalCheckFailedException):
            self._db.delete_item(
                TableName=self._table,
                Key=sync_lock_key(organization_id, integration_id),
                ConditionExpression="sync_id = :sync",
                ExpressionAttributeValues={":sync": {"S": sync_id}},
            )

    def lock_holder(self, organization_id: str, integration_id: str) -> tuple[str, float] | None:
        """(sync_id, lease end in epoch seconds) of the lock, if any."""
        item = self._db.get_item(
            TableName=self._table, Key=sync_lock_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return item["sync_id"]["S"], float(item["expires_at"]["N"])

    def running(self, organization_id: str, now: float) -> list[str]:
        """The sync ids holding a live lock in the organisation: its syncs that have not ended."""
        return list(self.running_by_integration(organization_id, now).values())

    def running_by_integration(self, organization_id: str, now: float) -> dict[str, str]:
        """{integration_id: sync_id} of the live locks in the organisation."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "expires_at > :now",
            "ProjectionExpression": "sk, sync_id",
            "ExpressionAttributeValues": {
                ":pk": {"S": org_pk(organization_id)},
                ":prefix": {"S": SYNC_LOCK_PREFIX},
                ":now": {"N": repr(now)},
            },
            "ConsistentRead": True,
        }
        return {
            item["sk"]["S"][len(SYNC_LOCK_PREFIX) :]: item["sync_id"]["S"] for item in every_item(self._db, request)
        }

    def withdraw(self, run: SyncRun) -> None:
        """Removes a run that was created but never started, and its lock if it is still the run's."""
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": sync_key(run.organization_id, run.integration_id, run.sync_id),
                    }
                },
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": sync_lock_key(run.organization_id, run.integration_id),
                        "ConditionExpression": "attribute_not_exists(pk) OR sync_id = :sync",
                        "ExpressionAttributeValues": {":sync": {"S": run.sync_id}},
                    }
                },
            ]
        )

    def request_cancel(self, organization_id: str, integration_id: str, sync_id: str) -> None:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=sync_key(organization_id, integration_id, sync_id),
                UpdateExpression="SET cancel_requested = :yes",
                ConditionExpression="attribute_exists(pk) AND #status IN (:started, :running, :paused)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={
                    ":yes": {"BOOL": True},
                    ":started": {"S": SyncStatus.STARTED.value},
                    ":running": {"S": SyncStatus.RUNNING.value},
                    ":paused": {"S": SyncStatus.PAUSED.value},
                },
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError("the sync has already finished", {"sync_id": sync_id}) from None

    def cancel_requested(self, organization_id: str, integration_id: str, sync_id: str) -> bool:
        item = self._db.get_item(
            TableName=self._table,
            Key=sync_key(organization_id, integration_id, sync_id),
            ConsistentRead=True,
            ProjectionExpression="cancel_requested",
        ).get("Item", {})
        return bool(item.get("cancel_requested", {}).get("BOOL", False))

    def recent(self, organization_id: str, integration_id: str, limit: int) -> list[SyncRun]:
        """The newest `limit` runs, newest first (one query; no page token to sign)."""
        response = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
            ExpressionAttributeValues={
                ":pk": {"S": org_pk(organization_id)},
                ":prefix": {"S": sync_prefix(integration_id)},
            },
            ScanIndexForward=False,
            ConsistentRead=True,
            Limit=limit,
        )
        return [_run(item) for item in response.get("Items", [])]

    def history(
        self, organization_id: str, integration_id: str, limit: int, next_token: str | None
    ) -> tuple[list[SyncRun], str | None]:
        """Runs newest first."""
        prefix = sync_prefix(integration_id)
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": prefix}},
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": limit,
        }
        if next_token is not None:
            request["ExclusiveStartKey"] = {
                "pk": {"S": org_pk(organization_id)},
                "sk": {"S": pagetokens.read(next_token, organization_id, f"syncs?{integration_id}", prefix)},
            }
        response = self._db.query(**request)
        runs = [_run(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return runs, pagetokens.issue(organization_id, f"syncs?{integration_id}", last["sk"]["S"]) if last else None

    def last_cursor(self, organization_id: str, integration_id: str) -> dict[str, dict[str, Any]]:
        item = self._db.get_item(
            TableName=self._table, Key=sync_cursor_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        if not item:
            return {}
        states: dict[str, dict[str, Any]] = json.loads(item["states"]["S"])
        return states

    # ------------------------------------------------------------ items

    def _run_item(self, run: SyncRun) -> dict[str, Any]:
        return {
            **sync_key(run.organization_id, run.integration_id, run.sync_id),
            "entity": {"S": "sync_run"},
            "doc": {"S": run.model_dump_json(exclude={"cancel_requested"})},
            "status": {"S": run.status.value},
            "version": {"N": str(run.version)},
            "cancel_requested": {"BOOL": run.cancel_requested},
        }

    def _run_update(self, run: SyncRun, expected: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": sync_key(run.organization_id, run.integration_id, run.sync_id),
                "UpdateExpression": "SET doc = :doc, #status = :status, version = :version",
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":doc": {"S": run.model_dump_json(exclude={"cancel_requested"})},
                    ":status": {"S": run.status.value},
                    ":version": {"N": str(run.version)},
                    ":expected": {"N": str(expected)},
                },
            }
        }

    @staticmethod
    def _lock_item(run: SyncRun, lease_until: float) -> dict[str, Any]:
        return {
            **sync_lock_key(run.organization_id, run.integration_id),
            "entity": {"S": "sync_lock"},
            "sync_id": {"S": run.sync_id},
            "expires_at": {"N": repr(lease_until)},
        }


def _run(item: dict[str, Any]) -> SyncRun:
    run = SyncRun.model_validate_json(item["doc"]["S"])
    run.cancel_requested = bool(item.get("cancel_requested", {}).get("BOOL", False))
    return run
