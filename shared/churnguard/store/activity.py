"""Counters the platform keeps as it works, so the dashboard reads a few items instead of runs,
the lake or the whole table.

    STATS#<org>  H#<yyyy-mm-ddThh>            the organisation's counters for one UTC hour; TTL 35 d
    STATS#<org>  D#<integration>#<yyyy-mm-dd>  one integration's counters for one UTC day; TTL 95 d

Every change is one `ADD`, so concurrent writers never conflict. A sync's counters are written in
the transaction that finishes its run (exactly once). Webhook events accepted, and the records
they land, are added by the processor once per batch; duplicates, ignored events and refusals by
the receiver (a plain accepted delivery costs the receiver no extra write). Webhook counters are
best effort (a failed write is logged, never fails a delivery); the lake itself stays exact.

Imported by the webhook receiver, whose cold start is budgeted: plain dicts, no pydantic.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from churnguard.store.keys import key
from churnguard.store.paging import every_item

logger = logging.getLogger(__name__)

HOUR_TTL_SECONDS = 35 * 86_400
DAY_TTL_SECONDS = 95 * 86_400
_COUNTER = re.compile(r"^[a-z0-9_#]{1,64}$")
_ITEM_KEYS = frozenset({"pk", "sk", "expires_at", "entity"})


def stats_pk(organization_id: str) -> str:
    return f"STATS#{organization_id}"


def hour_sk(at: datetime) -> str:
    return "H#" + at.astimezone(UTC).strftime("%Y-%m-%dT%H")


def day_sk(integration_id: str, day: str) -> str:
    return f"D#{integration_id}#{day}"


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class ActivityStore:
    def __init__(self, dynamodb: Any, table_name: str, clock: Any = time.time) -> None:
        self._db = dynamodb
        self._table = table_name
        self._clock = clock

    # ------------------------------------------------------------ writing

    def hour_update(self, organization_id: str, counts: Mapping[str, int], at: float | None = None) -> dict[str, Any]:
        """The update (for update_item or a transaction) adding `counts` to the hour of `at`."""
        moment = self._clock() if at is None else at
        return self._update(
            key(stats_pk(organization_id), hour_sk(_utc(moment))), counts, int(moment) + HOUR_TTL_SECONDS
        )

    def day_update(
        self, organization_id: str, integration_id: str, counts: Mapping[str, int], at: float | None = None
    ) -> dict[str, Any]:
        moment = self._clock() if at is None else at
        day = _utc(moment).date().isoformat()
        return self._update(
            key(stats_pk(organization_id), day_sk(integration_id, day)), counts, int(moment) + DAY_TTL_SECONDS
        )

    def add(self, update: dict[str, Any]) -> None:
        """Applies one update; a failure is logged and swallowed (see the module's note)."""
        try:
            self._db.update_item(**update)
        except Exception:
            logger.exception("could not update the activity counters")

    def _update(self, item_key: dict[str, Any], counts: Mapping[str, int], expires_at: int) -> dict[str, Any]:
        names: dict[str, str] = {"#expires": "expires_at"}
        values: dict[str, Any] = {":expires": {"N": str(expires_at)}}
        adds = []
        for index, (counter, amount) in enumerate(sorted(counts.items())):
            if not _COUNTER.match(counter):
                raise ValueError(f"not a counter name: {counter!r}")
            names[f"#c{index}"] = counter
            values[f":c{index}"] = {"N": str(int(amount))}
            adds.append(f"#c{index} :c{index}")
        expression = "SET #expires = :expires"
        if adds:
            expression += " ADD " + ", ".join(adds)
        return {
            "TableName": self._table,
            "Key": item_key,
            "UpdateExpression": expression,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    # ------------------------------------------------------------ reading

    def hours(self, organization_id: str, since: datetime) -> dict[str, dict[str, int]]:
        """The organisation's hourly counters from `since` on: {"yyyy-mm-ddThh": {counter: n}}.
        Seven days are 168 small items: one query."""
        items = self._query(
            "pk = :pk AND sk BETWEEN :low AND :high",
            {
                ":pk": {"S": stats_pk(organization_id)},
                ":low": {"S": hour_sk(since)},
                ":high": {"S": "H#~"},
            },
        )
        return {item["sk"]["S"][2:]: _counters(item) for item in items}

    def days(self, organization_id: str, integration_id: str, since: datetime) -> dict[str, dict[str, int]]:
        """One integration's daily counters from `since` on: {"yyyy-mm-dd": {counter: n}}."""
        prefix = f"D#{integration_id}#"
        items = self._query(
            "pk = :pk AND sk BETWEEN :low AND :high",
            {
                ":pk": {"S": stats_pk(organization_id)},
                ":low": {"S": prefix + since.astimezone(UTC).date().isoformat()},
                ":high": {"S": prefix + "~"},
            },
        )
        return {item["sk"]["S"][len(prefix) :]: _counters(item) for item in items}

    def _query(self, condition: str, values: dict[str, Any]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
        return list(every_item(self._db, request))


def _counters(item: Mapping[str, Any]) -> dict[str, int]:
    return {name: int(value["N"]) for name, value in item.items() if name not in _ITEM_KEYS and "N" in value}


def total(buckets: Mapping[str, Mapping[str, int]], counter: str, since: str = "") -> int:
    """The sum of `counter` over the buckets whose key is at or after `since`."""
    return sum(counts.get(counter, 0) for bucket, counts in buckets.items() if bucket >= since)


def hour_key(at: datetime) -> str:
    return hour_sk(at)[2:]
