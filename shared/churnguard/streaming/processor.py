"""The stream processor: batches of one partition → records in the lake, each message once.

Exactly once, whatever the source redelivers:
- Each partition (Kafka topic-partition, Kinesis shard, the ingest stream's shard) has a
  checkpoint: the last position landed. Messages at or before it are skipped.
- A batch's parts are named after the partition and the batch's first new position, so an
  attempt that is repeated over the same or a longer range overwrites what the interrupted one
  wrote. Before writing, the attempt records its range and parts on the checkpoint; a later
  attempt that covers less (a bisected batch) first removes them, so no part keeps a message
  the checkpoint does not cover.
- The checkpoint moves (conditionally) only after the parts are in every sink.
- Events that came through the ingest stream (HTTPS, WebSocket, Redis) may have been put twice
  (a client's retry, a consumer that crashed before acknowledging). Their identity is marked
  with the position it landed from; a second copy at another position is skipped.

A message that cannot become a record (it does not decode, it does not fit the entity) is set
aside in quarantine with its error and the partition moves on; it lands when replayed after a
fix. An error of the platform itself (S3 or DynamoDB failing) fails the batch so the source
redelivers it.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import blake2b
from itertools import pairwise
from typing import Any

from churnguard.canonical.entities import ENTITIES as CANONICAL_ENTITIES
from churnguard.errors import NotFoundError
from churnguard.pipeline.core import Batch, StreamContext, StreamPipeline
from churnguard.pipeline.sinks import Part, PartKey, Sink
from churnguard.store.activity import ActivityStore
from churnguard.store.landing import write_attempt
from churnguard.store.streams import QuarantineItem, StreamStore, source_key
from churnguard.stream_models import ProcessingMode, StreamConfiguration
from churnguard.streaming.messages import (
    RecordBuilder,
    StreamMessage,
    UndecodableMessage,
    position_order,
)

logger = logging.getLogger(__name__)

CONFIG_CACHE_SECONDS = 30.0
Resolver = Callable[[StreamMessage], StreamConfiguration | None]


@dataclass
class Outcome:
    """What one call landed, skipped and set aside."""

    messages: int = 0
    landed: int = 0
    duplicates: int = 0
    quarantined: int = 0
    unrouted: int = 0
    records: int = 0
    rejects: int = 0

    def add(self, other: Outcome) -> None:
        for name in ("messages", "landed", "duplicates", "quarantined", "unrouted", "records", "rejects"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Group:
    """One stream's share of a partition batch."""

    config: StreamConfiguration
    messages: list[StreamMessage] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)
    failed: list[tuple[StreamMessage, str]] = field(default_factory=list)
    identities: dict[str, str] = field(default_factory=dict)
    duplicates: int = 0


def _hash(*parts: str) -> str:
    return blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


class StreamProcessor:
    def __init__(
        self,
        store: StreamStore,
        sinks: list[Sink],
        *,
        activity: ActivityStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._sinks = sinks
        self._activity = activity
        self._clock = clock
        self._configs: dict[tuple[str, str], tuple[float, StreamConfiguration | None]] = {}
        self._builders: dict[tuple[str, int], RecordBuilder] = {}

    def config(self, organization_id: str, stream_id: str) -> StreamConfiguration | None:
        """The stream's configuration, re-read at most every CONFIG_CACHE_SECONDS."""

        def load() -> StreamConfiguration | None:
            try:
                return self._store.get(organization_id, stream_id)
            except NotFoundError:
                return None

        return self._cached((organization_id, stream_id), load)

    def source_owner(self, source: str) -> StreamConfiguration | None:
        """The stream that reads `source` (a customer's Kinesis stream), cached as `config` is."""

        def load() -> StreamConfiguration | None:
            found = self._store.find(source_key(source))
            return self.config(*found) if found is not None else None

        return self._cached(("source", source), load)

    def _cached(
        self, key: tuple[str, str], load: Callable[[], StreamConfiguration | None]
    ) -> StreamConfiguration | None:
        now = time.monotonic()
        cached = self._configs.get(key)
        if cached is not None and now - cached[0] < CONFIG_CACHE_SECONDS:
            return cached[1]
        found = load()
        self._configs[key] = (now, found)
        return found

    def process_partition(
        self, scope: str, partition: str, messages: Sequence[StreamMessage], resolve: Resolver
    ) -> Outcome:
        """Lands one partition's batch (in position order); raises when it could not, with
        nothing moved, so the source delivers it again."""
        started = time.perf_counter()
        outcome = Outcome(messages=len(messages))
        places = [position_order(m.position) for m in messages]
        if all(a < b for a, b in pairwise(places)):  # as sources deliver
            ordered = list(messages)
        else:
            pairs = sorted(zip(places, messages, strict=True), key=lambda pair: pair[0])
            places, ordered = [place for place, _ in pairs], [message for _, message in pairs]
        seen = self._store.checkpoint(scope, partition)
        start = bisect_right(places, position_order(seen.position)) if seen.position is not None else 0
        fresh = ordered[start:]
        outcome.duplicates += len(ordered) - len(fresh)
        if len(fresh) < len(ordered):
            self._count_redelivered(ordered[: len(ordered) - len(fresh)], resolve)
        if not fresh:
            return outcome
        groups = self._groups(fresh, resolve, outcome)
        first, last = fresh[0], fresh[-1]
        parts = [self._part(scope, partition, group, first) for group in groups]
        attempt = write_attempt(
            self._store, self._sinks, scope, partition, seen, (first.position, last.position), parts, position_order
        )
        now = self._clock()
        for group, part in zip(groups, parts, strict=True):
            if group.failed:
                self._store.quarantine(
                    [
                        QuarantineItem(
                            stream_id=group.config.stream_id,
                            partition=partition,
                            position=message.position,
                            identity=message.identity or message.position,
                            payload=message.payload,
                            arrived_at=message.arrived_at,
                            error=error,
                            attempts=message.attempts,
                            quarantined_at=now,
                        )
                        for message, error in group.failed
                    ]
                )
            if group.identities and group.config.processing_mode is ProcessingMode.EXACTLY_ONCE:
                self._store.mark_landed(group.config.stream_id, group.identities, now)
            outcome.landed += len(group.messages) - len(group.failed)
            outcome.quarantined += len(group.failed)
            outcome.records += part.record_count
            outcome.rejects += part.reject_count
        self._store.advance(scope, partition, attempt, last.position)
        elapsed_ms = (time.perf_counter() - started) * 1000
        for group, part in zip(groups, parts, strict=True):
            self._count(group, part, elapsed_ms * len(group.messages) / max(1, len(fresh)), now)
        return outcome

    def _groups(self, fresh: list[StreamMessage], resolve: Resolver, outcome: Outcome) -> list[_Group]:
        groups: dict[str, _Group] = {}
        for message in fresh:
            config = resolve(message)
            if config is None:
                outcome.unrouted += 1
                continue
            group = groups.get(config.stream_id)
            if group is None:
                group = groups[config.stream_id] = _Group(config)
            group.messages.append(message)
        ordered = [groups[stream_id] for stream_id in sorted(groups)]
        for group in ordered:
            self._skip_landed(group, outcome)
            self._build(group)
        return ordered

    def _skip_landed(self, group: _Group, outcome: Outcome) -> None:
        """Drops copies of ingest events that already landed from another position."""
        if group.config.processing_mode is not ProcessingMode.EXACTLY_ONCE:
            return
        identified = [m for m in group.messages if m.identity is not None]
        if not identified:
            return
        landed = self._store.landed_positions(group.config.stream_id, sorted({m.identity or "" for m in identified}))
        kept: list[StreamMessage] = []
        claimed: dict[str, str] = {}
        for message in group.messages:
            identity = message.identity
            if identity is not None:
                where = f"{message.partition}:{message.position}"
                if landed.get(identity, where) != where or identity in claimed:
                    outcome.duplicates += 1
                    group.duplicates += 1
                    continue
                claimed[identity] = where
            kept.append(message)
        group.messages = kept
        group.identities = claimed

    def _build(self, group: _Group) -> None:
        builder = self._builder(group.config)
        for message in group.messages:
            try:
                rows = builder.rows(message, message.identity or f"{message.partition}:{message.position}")
            except UndecodableMessage as exc:
                group.failed.append((message, str(exc)))
                continue
            except ValueError as exc:
                group.failed.append((message, f"does not fit entity {group.config.entity!r}: {_short(exc)}"))
                continue
            group.envelopes.extend(rows)

    def _builder(self, config: StreamConfiguration) -> RecordBuilder:
        key = (config.stream_id, config.version)
        builder = self._builders.get(key)
        if builder is None:
            builder = self._builders[key] = RecordBuilder(config)
        return builder

    def _part(self, scope: str, partition: str, group: _Group, first: StreamMessage) -> Part:
        batch_id = f"stm_{_hash(scope, partition, group.config.stream_id)}_{first.position}"
        return encoded_part(group.config, batch_id, first.arrived_at, group.envelopes)

    def _count_redelivered(self, messages: list[StreamMessage], resolve: Resolver) -> None:
        """Messages at or before a checkpoint, delivered again: counted on their streams' metrics."""
        per_stream: Counter[str] = Counter()
        for message in messages:
            config = resolve(message)
            if config is not None:
                per_stream[config.stream_id] += 1
        for stream_id, count in per_stream.items():
            try:
                self._store.add_stats(stream_id, self._clock(), {"duplicates": count}, None)
            except Exception:
                logger.exception("could not update stream metrics", extra={"stream_id": stream_id})

    def _count(self, group: _Group, part: Part, elapsed_ms: float, now: float) -> None:
        """The stream's per-minute metrics and the dashboard's counters; never fails the batch."""
        config = group.config
        newest = max((m.arrived_at for m in group.messages), default=None)
        counts = {
            "messages": len(group.messages),
            "errors": len(group.failed),
            "processing_ms": round(elapsed_ms, 3),
            "records": part.record_count,
            "rejects": part.reject_count,
            "duplicates": group.duplicates,
        }
        try:
            self._store.add_stats(config.stream_id, now, counts, newest)
        except Exception:
            logger.exception("could not update stream metrics", extra={"stream_id": config.stream_id})
        if self._activity is not None:
            tally = {
                "records_written": part.record_count,
                "records_rejected": part.reject_count,
                "stream_messages": len(group.messages),
            }
            if group.failed:  # what the dashboard's stream_problems alert reads
                tally[f"st#{config.stream_id}#quarantined"] = len(group.failed)
            self._activity.add(self._activity.hour_update(config.organization_id, tally, now))
            self._activity.add(self._activity.day_update(config.organization_id, config.stream_id, tally, now))

    def replay(
        self, config: StreamConfiguration, items: Sequence[QuarantineItem]
    ) -> tuple[list[QuarantineItem], list[str]]:
        """Lands quarantined messages with the stream's current configuration, each under a part
        named after its position, so a replay repeated after a crash overwrites, never adds.
        Returns the items that landed and the errors of those that still fail."""
        landed: list[QuarantineItem] = []
        errors: list[str] = []
        for item in items:
            message = StreamMessage(item.partition, item.position, item.payload, item.arrived_at, item.identity)
            group = _Group(config, [message])
            self._build(group)
            if group.failed:
                errors.append(f"{item.partition}#{item.position}: {group.failed[0][1]}")
                continue
            batch_id = f"stq_{_hash(config.stream_id, item.partition, item.position)}"
            part = encoded_part(config, batch_id, item.arrived_at, group.envelopes)
            for sink in self._sinks:
                sink.write(part)
            landed.append(item)
        return landed, errors


def encoded_part(config: StreamConfiguration, batch_id: str, arrived_at: float, rows: list[dict[str, Any]]) -> Part:
    """`rows` through the stream's pipeline, as the part named `batch_id` on the day of `arrived_at`."""
    batch = Batch()
    pipeline(config, batch_id).process(rows, batch)
    return Part(
        key=PartKey(
            organization_id=config.organization_id,
            provider=config.stream_type.value,
            entity=config.entity,
            day=_day(arrived_at),
            batch_id=batch_id,
            seq=0,
        ),
        records=batch.payload(),
        record_count=batch.accepted,
        rejects=batch.rejects_payload(),
        reject_count=batch.rejected,
    )


def pipeline(config: StreamConfiguration, batch_id: str) -> StreamPipeline:
    """The record pipeline of a stream's rows (RecordBuilder.rows): canonical envelopes, or rows
    already encoded."""
    canonical = config.entity in CANONICAL_ENTITIES
    return StreamPipeline(
        StreamContext(
            organization_id=config.organization_id,
            integration_id=config.stream_id,
            provider=config.stream_type.value,
            entity=config.entity,
            source="stream",
            batch_id=batch_id,
            primary_key=("id",),
            cursor_field="position",
            event_time_field="event_time",
        ),
        canonicalize=_envelope_data if canonical else None,
        encoded=not canonical,
    )


def _envelope_data(envelope: Any) -> dict[str, Any]:
    data: dict[str, Any] = envelope["data"]
    return data


def _short(exc: ValueError) -> str:
    text = str(exc)
    return text if len(text) <= 500 else text[:500] + "…"
