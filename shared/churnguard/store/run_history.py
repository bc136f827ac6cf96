"""Each integration's recent runs in one item, so the dashboard lists 200 integrations' health
with one query instead of one per integration.

    ORG#<org>  RUNSTATS#<integration_id>  RunHistory (JSON document) and its version

Written after a run's final state is stored; idempotent per run (a retried finalize adds nothing),
and conditional on the version read, so two writers cannot lose each other's run.
"""

from __future__ import annotations

from typing import Any

from churnguard.runs import RunHistory, SyncRun
from churnguard.store.keys import RUNSTATS_PREFIX, org_pk, run_history_key
from churnguard.store.paging import every_item

_ATTEMPTS = 5


class RunHistoryStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    def get(self, organization_id: str, integration_id: str) -> RunHistory:
        item = self._db.get_item(
            TableName=self._table, Key=run_history_key(organization_id, integration_id), ConsistentRead=True
        ).get("Item")
        return _history(item) if item else RunHistory(integration_id=integration_id)

    def all(self, organization_id: str) -> dict[str, RunHistory]:
        """Every integration's history in the organisation (a few kilobytes each: one page per
        few hundred integrations)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": RUNSTATS_PREFIX}},
        }
        histories = (_history(item) for item in every_item(self._db, request))
        return {history.integration_id: history for history in histories}

    def record(self, run: SyncRun) -> None:
        """Adds a finished run to its integration's history."""
        for _ in range(_ATTEMPTS):
            before = self.get(run.organization_id, run.integration_id)
            after = before.with_run(run)
            if after is before:
                return
            after.version = before.version + 1
            if self._put(run, after, before.version):
                return

    def _put(self, run: SyncRun, after: RunHistory, seen: int) -> bool:
        """Writes `after` if the history is still at version `seen`; False if someone wrote first."""
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if seen == 0
            else {"ConditionExpression": "version = :seen", "ExpressionAttributeValues": {":seen": {"N": str(seen)}}}
        )
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    **run_history_key(run.organization_id, run.integration_id),
                    "entity": {"S": "run_history"},
                    "doc": {"S": after.model_dump_json(exclude={"version"})},
                    "version": {"N": str(after.version)},
                },
                **condition,
            )
        except self._db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def record_quota(self, run: SyncRun) -> None:
        """Keeps the quota a running run observed (a run that paused for its allocation shows
        on the dashboard before it finishes)."""
        if run.quota is None:
            return
        for _ in range(_ATTEMPTS):
            before = self.get(run.organization_id, run.integration_id)
            after = before.model_copy(update={"quota": run.quota, "version": before.version + 1})
            if self._put(run, after, before.version):
                return

    def delete(self, organization_id: str, integration_id: str) -> None:
        self._db.delete_item(TableName=self._table, Key=run_history_key(organization_id, integration_id))


def _history(item: dict[str, Any]) -> RunHistory:
    history = RunHistory.model_validate_json(item["doc"]["S"])
    history.version = int(item["version"]["N"])
    return history
