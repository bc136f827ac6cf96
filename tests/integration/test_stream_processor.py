"""The stream processor's exactly-once rules against moto's DynamoDB and S3: a crash after the lake
write and before the checkpoint, a redelivery that covers less (a bisected batch), a redelivery
that covers more, copies of an ingest event at other positions, and a poison message."""

from __future__ import annotations

import gzip
import json
from typing import Any

import boto3
import pytest

from churnguard.pipeline.sinks import Part, PartKey, S3DataLakeSink
from churnguard.resilience import RetryPolicy
from churnguard.store.streams import StreamStore
from churnguard.stream_models import StreamConfiguration, StreamType
from churnguard.streaming.messages import StreamMessage
from churnguard.streaming.processor import StreamProcessor
from tests.integration.conftest import TABLE
from tests.support.sync import BUCKET


class Crash(Exception):
    pass


class CrashingStore(StreamStore):
    """Stops the invocation right after the parts are written, before the checkpoint moves."""

    crash_next_advance = False

    def advance(self, scope: str, partition: str, seen: Any, position: str) -> None:
        if self.crash_next_advance:
            self.crash_next_advance = False
            raise Crash
        super().advance(scope, partition, seen, position)


@pytest.fixture
def setup(aws: dict[str, Any], lake: Any) -> tuple[CrashingStore, StreamProcessor, StreamConfiguration]:
    store = CrashingStore(boto3.client("dynamodb"), TABLE)
    sink = S3DataLakeSink(lake, BUCKET, RetryPolicy(attempts=1, base_delay=0, max_delay=0))
    config = StreamConfiguration(
        organization_id="org_s", name="usage", stream_type=StreamType.CUSTOM, record_id_field="id"
    )
    return store, StreamProcessor(store, [sink]), config


def _lake(lake: Any) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for page in lake.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="org=org_s/"):
        for obj in page.get("Contents", []):
            body = gzip.decompress(lake.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read())
            lines.extend(json.loads(line) for line in body.splitlines() if line)
    return lines


def _messages(start: int, stop: int, identity: bool = False) -> list[StreamMessage]:
    return [
        StreamMessage(
            "shard-0",
            str(1000 + i),
            json.dumps({"id": f"r{i}", "type": "usage"}).encode(),
            1_796_000_000.0,
            identity=f"e{i}" if identity else None,
        )
        for i in range(start, stop)
    ]


def test_a_crash_after_the_lake_write_then_a_bisected_redelivery_lands_each_message_once(
    setup: tuple[CrashingStore, StreamProcessor, StreamConfiguration], lake: Any
) -> None:
    store, processor, config = setup
    resolve = lambda _message: config  # noqa: E731
    store.crash_next_advance = True
    with pytest.raises(Crash):
        processor.process_partition("ingest", "shard-0", _messages(0, 100), resolve)
    assert len(_lake(lake)) == 100, "the interrupted attempt wrote its part"
    # Lambda bisects the failed batch: the first half comes back alone, then the second.
    processor.process_partition("ingest", "shard-0", _messages(0, 50), resolve)
    processor.process_partition("ingest", "shard-0", _messages(50, 100), resolve)
    # A redelivery of everything (the source's checkpoint was older) lands nothing again.
    outcome = processor.process_partition("ingest", "shard-0", _messages(0, 100), resolve)
    assert outcome.duplicates == 100
    ids = sorted(line["record_id"] for line in _lake(lake))
    assert ids == sorted(f"r{i}" for i in range(100))


def test_a_redelivery_that_covers_more_overwrites_the_interrupted_part(
    setup: tuple[CrashingStore, StreamProcessor, StreamConfiguration], lake: Any
) -> None:
    store, processor, config = setup
    store.crash_next_advance = True
    with pytest.raises(Crash):
        processor.process_partition("ingest", "shard-0", _messages(0, 40), lambda _m: config)
    processor.process_partition("ingest", "shard-0", _messages(0, 80), lambda _m: config)
    assert sorted(line["record_id"] for line in _lake(lake)) == sorted(f"r{i}" for i in range(80))


def test_copies_of_an_ingest_event_at_other_positions_are_skipped(
    setup: tuple[CrashingStore, StreamProcessor, StreamConfiguration], lake: Any
) -> None:
    _, processor, config = setup
    first = _messages(0, 10, identity=True)
    processor.process_partition("ingest", "shard-0", first, lambda _m: config)
    # The client retried: the same events again, at later positions of the ingest stream.
    copies = [StreamMessage("shard-0", str(int(m.position) + 500), m.payload, m.arrived_at, m.identity) for m in first]
    outcome = processor.process_partition("ingest", "shard-0", copies, lambda _m: config)
    assert outcome.duplicates == 10 and outcome.landed == 0
    assert len(_lake(lake)) == 10


def test_a_poison_message_is_quarantined_and_the_partition_moves_on(
    setup: tuple[CrashingStore, StreamProcessor, StreamConfiguration], lake: Any
) -> None:
    store, processor, config = setup
    batch = [*_messages(0, 5), StreamMessage("shard-0", "2000", b"{not json", 1_796_000_000.0), *_messages(5, 6)]
    batch[-1] = StreamMessage("shard-0", "2001", batch[-1].payload, batch[-1].arrived_at)
    outcome = processor.process_partition("ingest", "shard-0", batch, lambda _m: config)
    assert (outcome.landed, outcome.quarantined) == (6, 1)
    held = store.quarantined(config.stream_id)
    assert [item.position for item in held] == ["2000"] and "not json" in held[0].error
    assert store.checkpoint("ingest", "shard-0").position == "2001"
    assert len(_lake(lake)) == 6


def test_a_part_key_survives_its_round_trip_through_the_checkpoint() -> None:
    from churnguard.store.landing import key_of, key_text

    key = PartKey("org", "custom", "event", "2026-12-07", "stm_x_1", 0)
    assert key_of(key_text(key)) == key
    assert Part(key, b"", 0, b"", 0).key.path() == key.path()


def test_rows_of_an_own_entity_land_as_they_came_with_their_id_and_time(
    setup: tuple[CrashingStore, StreamProcessor, StreamConfiguration], lake: Any
) -> None:
    _, processor, event_config = setup
    config = event_config.model_copy(update={"entity": "usage", "event_time_field": "at", "version": 2})
    pretty = json.dumps({"id": "p1", "at": "2026-12-07T10:00:00Z", "n": 1}, indent=2).encode()
    batch = [
        StreamMessage("shard-0", "1", b'{"id":"a1","at":"2026-12-07T09:30:00.5Z","n":{"deep":[1,2]}}', 1_796_000_000.0),
        StreamMessage("shard-0", "2", pretty, 1_796_000_000.0),
        StreamMessage("shard-0", "3", b'[{"id":"b1"},{"id":"b2","at":1796000000}]', 1_796_000_000.0),
    ]
    processor.process_partition("ingest", "shard-0", batch, lambda _m: config)
    lines = {line["record_id"]: line for line in _lake(lake)}
    assert set(lines) == {"a1", "p1", "b1", "b2"}
    assert lines["a1"]["data"] == {"id": "a1", "at": "2026-12-07T09:30:00.5Z", "n": {"deep": [1, 2]}}
    assert lines["a1"]["event_time"] == "2026-12-07T09:30:00.500000+00:00"
    assert lines["p1"]["data"]["n"] == 1 and lines["p1"]["cursor"] == "2"
    assert lines["b1"]["event_time"] == lines["b2"]["event_time"] == "2026-11-30T00:53:20+00:00"
    assert all(line["entity"] == "usage" and line["schema_version"] for line in lines.values())
    assert len({line["dedupe_key"] for line in lines.values()}) == 4
