"""Lambda's Kafka and Kinesis events as partition batches, and the stack's ingest stream.

The ingest stream is the buffer HTTPS events, WebSocket feeds and Redis consumers write to: each
record is an envelope naming the organisation, the stream and the event's identity, with the
identity as the partition key, so copies of one event land on one shard, in order.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from churnguard.streaming.messages import StreamMessage

INGEST_SCOPE = "ingest"
PUT_RECORDS_LIMIT = 500
PUT_ATTEMPTS = 3


@dataclass(frozen=True)
class IngestEvent:
    organization_id: str
    stream_id: str
    identity: str
    payload: bytes
    arrived_at: float
    attempts: int = 1


def encode_ingest(event: IngestEvent) -> bytes:
    return orjson.dumps(
        {
            "o": event.organization_id,
            "s": event.stream_id,
            "i": event.identity,
            "p": base64.b64encode(event.payload).decode("ascii"),
            "t": event.arrived_at,
            "a": event.attempts,
        }
    )


def decode_ingest(data: bytes) -> IngestEvent:
    body = orjson.loads(data)
    return IngestEvent(
        organization_id=body["o"],
        stream_id=body["s"],
        identity=body["i"],
        payload=base64.b64decode(body["p"]),
        arrived_at=float(body["t"]),
        attempts=int(body.get("a", 1)),
    )


@dataclass(frozen=True)
class PartitionBatch:
    """Messages of one partition, with where they came from (`scope`: the ingest stream, a
    customer's Kinesis stream ARN, or a Kafka cluster and topic) and the ids Lambda retries by."""

    scope: str
    partition: str
    messages: list[StreamMessage]
    item_ids: list[str]
    routes: list[tuple[str, str] | None]  # ingest events: (organisation, stream) of each message


class IngestWriter:
    """Puts events on the ingest stream; a record Kinesis refused is retried, then reported."""

    def __init__(self, kinesis: Any, stream_name: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self._kinesis = kinesis
        self._stream = stream_name
        self._sleep = sleep

    def put(self, events: Sequence[IngestEvent]) -> list[str | None]:
        """None for each event now on the stream, else why it is not."""
        results: list[str | None] = [None] * len(events)
        for start in range(0, len(events), PUT_RECORDS_LIMIT):
            pending = list(range(start, min(len(events), start + PUT_RECORDS_LIMIT)))
            for attempt in range(PUT_ATTEMPTS):
                response = self._kinesis.put_records(
                    StreamName=self._stream,
                    Records=[{"Data": encode_ingest(events[i]), "PartitionKey": events[i].identity} for i in pending],
                )
                failed = []
                for index, record in zip(pending, response["Records"], strict=True):
                    if record.get("ErrorCode"):
                        failed.append(index)
                        results[index] = f"{record['ErrorCode']}: {record.get('ErrorMessage', '')}"
                    else:
                        results[index] = None
                pending = failed
                if not pending:
                    break
                self._sleep(0.05 * 2**attempt)
        return results


def kinesis_batches(event: Mapping[str, Any], ingest_stream_arn: str) -> list[PartitionBatch]:
    """A Kinesis event's records by shard; the ingest stream's are decoded to their events."""
    batches: dict[tuple[str, str], PartitionBatch] = {}
    for record in event.get("Records", []):
        arn = record["eventSourceARN"]
        shard = record["eventID"].split(":", 1)[0]
        kinesis = record["kinesis"]
        data = base64.b64decode(kinesis["data"])
        sequence = kinesis["sequenceNumber"]
        ingest = arn == ingest_stream_arn
        scope = INGEST_SCOPE if ingest else f"kinesis:{arn}"
        batch = batches.get((scope, shard))
        if batch is None:
            batch = batches[(scope, shard)] = PartitionBatch(scope, shard, [], [], [])
        arrived = float(kinesis.get("approximateArrivalTimestamp") or time.time())
        if ingest:
            try:
                carried = decode_ingest(data)
            except (ValueError, KeyError, TypeError):
                batch.messages.append(StreamMessage(shard, sequence, data, arrived))
                batch.routes.append(None)
            else:
                batch.messages.append(
                    StreamMessage(
                        shard, sequence, carried.payload, carried.arrived_at, carried.identity, carried.attempts
                    )
                )
                batch.routes.append((carried.organization_id, carried.stream_id))
        else:
            batch.messages.append(StreamMessage(shard, sequence, data, arrived))
            batch.routes.append(None)
        batch.item_ids.append(sequence)
    return list(batches.values())


def kafka_source(event: Mapping[str, Any], topic: str) -> str:
    """The source a Kafka event's topic is, named as the stream that reads it was registered."""
    servers = str(event.get("bootstrapServers", "")).split(",")
    return kafka_source_of(servers, event.get("eventSourceArn"), topic)


def kafka_source_of(bootstrap_servers: Sequence[str], msk_cluster_arn: str | None, topic: str) -> str:
    """The lookup name of a Kafka topic as a stream's source: its cluster and topic."""
    cluster = msk_cluster_arn or ",".join(sorted(bootstrap_servers))
    return f"kafka:{cluster}/{topic}"


def kafka_batches(event: Mapping[str, Any]) -> list[PartitionBatch]:
    """A Kafka event (self-managed or MSK) by topic-partition."""
    batches = []
    for name, records in (event.get("records") or {}).items():
        if not records:
            continue
        topic = records[0]["topic"]
        scope = kafka_source(event, topic)
        messages = [
            StreamMessage(
                name,
                str(record["offset"]),
                base64.b64decode(record.get("value") or b""),
                float(record.get("timestamp", 0)) / 1000 or time.time(),
            )
            for record in records
        ]
        batches.append(
            PartitionBatch(scope, name, messages, [str(r["offset"]) for r in records], [None] * len(records))
        )
    return batches
