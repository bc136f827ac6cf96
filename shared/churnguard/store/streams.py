"""Streams' items: configurations, lookups, checkpoints, landed-message marks, quarantine, metrics.

ORG#<org>            STREAM#<id>                 the configuration (doc), beside its integration item
INGESTKEY#<hash>     -                           a custom stream's ingest key → org, stream
STREAMSOURCE#<src>   -                           a Kafka topic or Kinesis stream → org, stream
STREAMPOS#<scope>#<partition>  -                 the last position landed, and the attempt in flight
STREAMMSG#<stream>#<identity>  -                 where a message (by identity) landed, TTL 7 days
STREAMQ#<stream>     <partition>#<position>      a quarantined message with its error
STREAMSTATS#<stream> M#<minute>                  per-minute counters the metrics route reads, TTL 2 days
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from churnguard.errors import ConflictError, NotFoundError
from churnguard.store import transact
from churnguard.store.keys import SINGLETON_SK, key, org_pk
from churnguard.store.paging import every_item
from churnguard.stream_models import StreamConfiguration

STREAM_PREFIX = "STREAM#"
MARK_TTL_SECONDS = 7 * 24 * 3600
STATS_TTL_SECONDS = 2 * 24 * 3600
QUARANTINE_TTL_SECONDS = 30 * 24 * 3600
_BATCH_GET = 100
_BATCH_WRITE = 25


def stream_key(organization_id: str, stream_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), STREAM_PREFIX + stream_id)


def ingest_key_key(key_hash: str) -> dict[str, dict[str, str]]:
    return key(f"INGESTKEY#{key_hash}", SINGLETON_SK)


def source_key(source: str) -> dict[str, dict[str, str]]:
    return key(f"STREAMSOURCE#{source}", SINGLETON_SK)


def position_key(scope: str, partition: str) -> dict[str, dict[str, str]]:
    return key(f"STREAMPOS#{scope}#{partition}", SINGLETON_SK)


def mark_key(stream_id: str, identity: str) -> dict[str, dict[str, str]]:
    return key(f"STREAMMSG#{stream_id}#{identity}", SINGLETON_SK)


def quarantine_key(stream_id: str, partition: str, position: str) -> dict[str, dict[str, str]]:
    return key(f"STREAMQ#{stream_id}", f"{partition}#{position}")


def stats_key(stream_id: str, minute: int) -> dict[str, dict[str, str]]:
    return key(f"STREAMSTATS#{stream_id}", f"M#{minute:012d}")


@dataclass(frozen=True)
class Checkpoint:
    """What has landed from one partition: everything up to `position`, plus possibly the attempt
    that was writing (`attempt_*`) when its invocation stopped."""

    position: str | None
    attempt_start: str | None
    attempt_end: str | None
    attempt_parts: tuple[str, ...]
    version: int


@dataclass(frozen=True)
class QuarantineItem:
    stream_id: str
    partition: str
    position: str
    identity: str
    payload: bytes
    arrived_at: float
    error: str
    attempts: int
    quarantined_at: float


class StreamStore:
    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._db = dynamodb
        self._table = table_name

    # ------------------------------------------------------------------ configurations
    # In a create transaction: the integration's 3 or 4 items come first, then the stream's.
    def items_for_create(
        self, config: StreamConfiguration, ingest_key_hash: str | None, sources: list[str]
    ) -> list[dict[str, Any]]:
        """The transaction items that create the stream beside its integration (a source already
        read by another stream fails the transaction)."""
        items = [transact.put(self._table, self._stream_item(config), "attribute_not_exists(pk)")]
        if ingest_key_hash is not None:
            items.append(
                transact.put(
                    self._table, self._lookup(ingest_key_key(ingest_key_hash), config), "attribute_not_exists(pk)"
                )
            )
        for source in sources:
            items.append(
                transact.put(self._table, self._lookup(source_key(source), config), "attribute_not_exists(pk)")
            )
        return items

    def items_for_update(self, before: StreamConfiguration, after: StreamConfiguration) -> list[dict[str, Any]]:
        return [
            transact.put(
                self._table,
                self._stream_item(after),
                "#version = :expected",
                {"#version": "version"},
                {":expected": {"N": str(before.version)}},
            )
        ]

    def items_for_delete(
        self, config: StreamConfiguration, ingest_key_hash: str | None, sources: list[str]
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = [
            {"Delete": {"TableName": self._table, "Key": stream_key(config.organization_id, config.stream_id)}}
        ]
        if ingest_key_hash is not None:
            items.append({"Delete": {"TableName": self._table, "Key": ingest_key_key(ingest_key_hash)}})
        for source in sources:
            items.append({"Delete": {"TableName": self._table, "Key": source_key(source)}})
        return items

    def get(self, organization_id: str, stream_id: str) -> StreamConfiguration:
        item = self._db.get_item(
            TableName=self._table, Key=stream_key(organization_id, stream_id), ConsistentRead=True
        ).get("Item")
        if not item:
            raise NotFoundError("stream not found", {"stream_id": stream_id})
        return StreamConfiguration.model_validate_json(item["doc"]["S"])

    def put(self, before: StreamConfiguration, after: StreamConfiguration) -> None:
        """Saves a change the platform makes (its mapping, its consumer) without the integration."""
        try:
            self._db.transact_write_items(TransactItems=self.items_for_update(before, after))
        except self._db.exceptions.TransactionCanceledException:
            raise ConflictError(
                "the stream was changed by another request; read it again and retry",
                {"reason": "concurrent_modification"},
            ) from None

    def for_organization(self, organization_id: str) -> list[StreamConfiguration]:
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": org_pk(organization_id)}, ":prefix": {"S": STREAM_PREFIX}},
            "ConsistentRead": True,
        }
        return [StreamConfiguration.model_validate_json(item["doc"]["S"]) for item in every_item(self._db, request)]

    def find(self, lookup: dict[str, dict[str, str]]) -> tuple[str, str] | None:
        """(organisation, stream) an ingest key hash or a source names."""
        item = self._db.get_item(TableName=self._table, Key=lookup, ConsistentRead=True).get("Item")
        if not item:
            return None
        return item["organization_id"]["S"], item["stream_id"]["S"]

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self, scope: str, partition: str) -> Checkpoint:
        item = self._db.get_item(TableName=self._table, Key=position_key(scope, partition), ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return Checkpoint(None, None, None, (), 0)
        return Checkpoint(
            position=item["position"]["S"] if "position" in item else None,
            attempt_start=item["attempt_start"]["S"] if "attempt_start" in item else None,
            attempt_end=item["attempt_end"]["S"] if "attempt_end" in item else None,
            attempt_parts=tuple(json.loads(item["attempt_parts"]["S"])) if "attempt_parts" in item else (),
            version=int(item["version"]["N"]),
        )

    def begin_attempt(
        self, scope: str, partition: str, seen: Checkpoint, start: str, end: str, parts: Iterable[str]
    ) -> Checkpoint:
        """Records which parts this attempt is about to write, so a later attempt can remove them
        if it has to cover less; conditional on nobody having moved the checkpoint since."""
        attempt = Checkpoint(seen.position, start, end, tuple(parts), seen.version + 1)
        self._write_checkpoint(scope, partition, seen, attempt)
        return attempt

    def advance(self, scope: str, partition: str, seen: Checkpoint, position: str) -> Checkpoint:
        """Moves the checkpoint to `position`; the checkpoint as now stored."""
        landed = Checkpoint(position, None, None, (), seen.version + 1)
        self._write_checkpoint(scope, partition, seen, landed)
        return landed

    def _write_checkpoint(self, scope: str, partition: str, seen: Checkpoint, new: Checkpoint) -> None:
        item: dict[str, Any] = {**position_key(scope, partition), "version": {"N": str(new.version)}}
        if new.position is not None:
            item["position"] = {"S": new.position}
        if new.attempt_start is not None and new.attempt_end is not None:
            item["attempt_start"] = {"S": new.attempt_start}
            item["attempt_end"] = {"S": new.attempt_end}
            item["attempt_parts"] = {"S": json.dumps(list(new.attempt_parts))}
        condition = "attribute_not_exists(pk)" if seen.version == 0 else "#version = :seen"
        request: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if seen.version:
            request["ExpressionAttributeNames"] = {"#version": "version"}
            request["ExpressionAttributeValues"] = {":seen": {"N": str(seen.version)}}
        try:
            self._db.put_item(**request)
        except self._db.exceptions.ConditionalCheckFailedException:
            raise ConflictError(
                "another consumer moved this partition's checkpoint", {"partition": partition}
            ) from None

    # ------------------------------------------------------------------ landed-message marks
    def landed_positions(self, stream_id: str, identities: list[str]) -> dict[str, str]:
        """identity → the position it landed from, for those of `identities` that landed."""
        found: dict[str, str] = {}
        for start in range(0, len(identities), _BATCH_GET):
            keys = [mark_key(stream_id, identity) for identity in identities[start : start + _BATCH_GET]]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._db.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    identity = item["pk"]["S"].split("#", 2)[2]
                    found[identity] = item["landed_at"]["S"]
                request = response.get("UnprocessedKeys") or {}
        return found

    def mark_landed(self, stream_id: str, landed: Mapping[str, str], now: float) -> None:
        expires = str(int(now) + MARK_TTL_SECONDS)
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        **mark_key(stream_id, identity),
                        "landed_at": {"S": position},
                        "expires_at": {"N": expires},
                    }
                }
            }
            for identity, position in landed.items()
        ]
        self._batch_write(puts)

    # ------------------------------------------------------------------ quarantine
    def quarantine(self, items: list[QuarantineItem]) -> None:
        puts = [
            {
                "PutRequest": {
                    "Item": {
                        **quarantine_key(item.stream_id, item.partition, item.position),
                        "identity": {"S": item.identity},
                        "payload": {"B": item.payload},
                        "arrived_at": {"N": repr(item.arrived_at)},
                        "error": {"S": item.error[:2000]},
                        "attempts": {"N": str(item.attempts)},
                        "quarantined_at": {"N": repr(item.quarantined_at)},
                        "expires_at": {"N": str(int(item.quarantined_at) + QUARANTINE_TTL_SECONDS)},
                    }
                }
            }
            for item in items
        ]
        self._batch_write(puts)

    def quarantined(self, stream_id: str, limit: int | None = None) -> list[QuarantineItem]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"STREAMQ#{stream_id}"}},
            "ConsistentRead": True,
        }
        found: list[QuarantineItem] = []
        for item in every_item(self._db, request):
            partition, _, position = item["sk"]["S"].rpartition("#")
            found.append(
                QuarantineItem(
                    stream_id=stream_id,
                    partition=partition,
                    position=position,
                    identity=item["identity"]["S"],
                    payload=bytes(item["payload"]["B"]),
                    arrived_at=float(item["arrived_at"]["N"]),
                    error=item["error"]["S"],
                    attempts=int(item["attempts"]["N"]),
                    quarantined_at=float(item["quarantined_at"]["N"]),
                )
            )
            if limit is not None and len(found) >= limit:
                break
        return found

    def release(self, stream_id: str, items: Iterable[QuarantineItem]) -> None:
        self._batch_write(
            [{"DeleteRequest": {"Key": quarantine_key(stream_id, item.partition, item.position)}} for item in items]
        )

    def forget(self, stream_id: str) -> None:
        """Removes a deleted stream's quarantine and counters (marks and checkpoints expire or
        are never read again)."""
        for pk in (f"STREAMQ#{stream_id}", f"STREAMSTATS#{stream_id}"):
            request = {
                "TableName": self._table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": pk}},
                "ProjectionExpression": "pk, sk",
            }
            keys = [{"pk": item["pk"], "sk": item["sk"]} for item in every_item(self._db, request)]
            self._batch_write([{"DeleteRequest": {"Key": k}} for k in keys])

    # ------------------------------------------------------------------ metrics
    def add_stats(
        self,
        stream_id: str,
        at: float,
        counts: Mapping[str, float],
        newest_arrival: float | None,
        gauges: Mapping[str, float] | None = None,
    ) -> None:
        """Adds `counts` to the minute of `at`; `gauges` (a lag) replace the minute's value."""
        minute = int(at // 60)
        names = {f"#c{index}": name for index, name in enumerate(counts)}
        values: dict[str, Any] = {f":c{index}": {"N": repr(value)} for index, value in enumerate(counts.values())}
        values[":expires"] = {"N": str(int(at) + STATS_TTL_SECONDS)}
        values[":at"] = {"N": repr(at)}
        adds = ", ".join(f"#c{index} :c{index}" for index in range(len(counts)))
        sets = "expires_at = :expires, processed_at = :at"
        if newest_arrival is not None:
            values[":arrival"] = {"N": repr(newest_arrival)}
            sets += ", newest_arrival = :arrival"
        for index, (name, value) in enumerate((gauges or {}).items()):
            names[f"#g{index}"] = name
            values[f":g{index}"] = {"N": repr(value)}
            sets += f", #g{index} = :g{index}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": stats_key(stream_id, minute),
            "UpdateExpression": f"SET {sets}" + (f" ADD {adds}" if adds else ""),
            "ExpressionAttributeValues": values,
        }
        if names:
            request["ExpressionAttributeNames"] = names
        self._db.update_item(**request)

    def stats(self, stream_id: str, since: float) -> list[dict[str, float]]:
        request = {
            "TableName": self._table,
            "KeyConditionExpression": "pk = :pk AND sk >= :since",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"STREAMSTATS#{stream_id}"},
                ":since": stats_key(stream_id, int(since // 60))["sk"],
            },
            "ConsistentRead": True,
        }
        minutes = []
        for item in every_item(self._db, request):
            minutes.append(
                {name: float(value["N"]) for name, value in item.items() if "N" in value}
                | {"minute": float(item["sk"]["S"][2:])}
            )
        return minutes

    # ------------------------------------------------------------------ helpers
    def _batch_write(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), _BATCH_WRITE):
            pending: dict[str, Any] = {self._table: requests[start : start + _BATCH_WRITE]}
            while pending:
                response = self._db.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    def _stream_item(self, config: StreamConfiguration) -> dict[str, Any]:
        return {
            **stream_key(config.organization_id, config.stream_id),
            "entity": {"S": "stream"},
            "doc": {"S": config.model_dump_json()},
            "version": {"N": str(config.version)},
        }

    @staticmethod
    def _lookup(lookup: dict[str, dict[str, str]], config: StreamConfiguration) -> dict[str, Any]:
        return {
            **lookup,
            "organization_id": {"S": config.organization_id},
            "stream_id": {"S": config.stream_id},
        }
