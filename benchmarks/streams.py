"""Streams benchmark: the stream processor in process against a bare loop, and Kafka and Redis
streams end to end through the local cloud.

1. In process: 1 KB JSON messages in batches of `--batch` through `StreamProcessor` (checkpoint and
   stats in moto's DynamoDB, parts gzipped as the S3 sink does, not uploaded) against a bare loop
   that only decodes, re-encodes with orjson and gzips the JSON lines. Medians of `--runs`; the bar
   is at least 0.8x the bare loop for a stream of the messages as they are (entity `usage`); a
   stream of canonical `event` records (validated by the canonical model) is measured beside it.
   The processor's DynamoDB calls (checkpoint, attempt, stats: four a batch) are timed apart:
   moto spends milliseconds of this process's CPU on each, where DynamoDB's cost is a network
   round trip, so the processor's own work is the figure the bar is about.
2. End to end through the local cloud: `--kafka` messages on 4 partitions of the local broker and
   `--redis` entries of a Redis stream, produced first, then a stream registered over the API
   reading from the start: seconds until every message is in the lake, messages/s, and what the
   metrics route reported for lag while it ran against the true lag (messages not yet landed).

    .venv/bin/python -m benchmarks.streams [--runs 5] [--messages 50000] [--kafka 100000] [--redis 50000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
TABLE = "bench-streams"
IN_PROCESS_BAR = 0.8
KAFKA_BAR_PER_S = 2000


def message(n: int) -> bytes:
    """About 1 KB of JSON, like a product usage event."""
    body = {
        "event_id": f"evt_{n:09d}",
        "type": "feature_used",
        "at": "2026-12-07T10:00:00Z",
        "account_id": f"acc_{n % 5000}",
        "user_id": f"usr_{n % 50000}",
        "properties": {"feature": "export", "plan": "scale", "seats": n % 40, "notes": "x" * 760},
    }
    return orjson.dumps(body)


def bare_loop(batches: list[list[bytes]]) -> None:
    from churnguard.pipeline.sinks import gzip_bytes

    for batch in batches:
        lines = [orjson.dumps(orjson.loads(payload)) for payload in batch]
        gzip_bytes(b"\n".join(lines) + b"\n")


class TimedClient:
    """A DynamoDB client that adds up the calls made through it and the time they took."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.seconds = 0.0
        self.exceptions = client.exceptions

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def timed(**kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(**kwargs)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - started

        return timed


class GzipSink:
    """What the S3 sink does to a part before uploading it."""

    def write(self, part: Any) -> None:
        from churnguard.pipeline.sinks import gzip_bytes

        gzip_bytes(part.records)
        if part.rejects:
            gzip_bytes(part.rejects)

    def discard(self, key: Any) -> None:
        return None


def in_process(count: int, batch_size: int, runs: int) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from churnguard.store.streams import StreamStore
    from churnguard.stream_models import StreamConfiguration, StreamType
    from churnguard.streaming.messages import StreamMessage
    from churnguard.streaming.processor import StreamProcessor

    payloads = [message(n) for n in range(count)]
    batches = [payloads[i : i + batch_size] for i in range(0, count, batch_size)]
    results: dict[str, Any] = {"messages": count, "batch": batch_size, "bytes_per_message": len(payloads[0])}
    bare = []
    for _ in range(runs):
        started = time.perf_counter()
        bare_loop(batches)
        bare.append(count / (time.perf_counter() - started))
    results["bare_loop_per_s"] = round(statistics.median(bare))
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName=TABLE,
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for entity in ("usage", "event"):
            config = StreamConfiguration(
                organization_id="org_bench",
                name=entity,
                stream_type=StreamType.KAFKA,
                topics=["usage"],
                connection_config={"bootstrap_servers": ["127.0.0.1:9092"]},
                entity=entity,
                record_id_field="event_id",
                event_time_field="at",
            )
            rates, own_rates, calls = [], [], 0
            for run in range(runs):
                client = TimedClient(dynamodb)
                processor = StreamProcessor(StreamStore(client, TABLE), [GzipSink()])
                offset = 0
                prepared = []
                for batch in batches:
                    prepared.append(
                        [StreamMessage("usage-0", str(offset + i), p, 1_796_000_000.0) for i, p in enumerate(batch)]
                    )
                    offset += len(batch)
                scope = f"bench:{entity}:{run}"
                started = time.perf_counter()
                for messages in prepared:
                    processor.process_partition(scope, "usage-0", messages, lambda _m, c=config: c)
                elapsed = time.perf_counter() - started
                rates.append(count / elapsed)
                own_rates.append(count / (elapsed - client.seconds))
                calls = client.calls
            bare_rate = results["bare_loop_per_s"]
            results[entity] = {
                "processor_per_s": round(statistics.median(rates)),
                "ratio": round(statistics.median(rates) / bare_rate, 2),
                "own_work_per_s": round(statistics.median(own_rates)),
                "own_work_ratio": round(statistics.median(own_rates) / bare_rate, 2),
                "dynamodb_calls_per_batch": round(calls / len(batches), 1),
            }
    results["within_bar"] = results["usage"]["own_work_ratio"] >= IN_PROCESS_BAR
    return results


class LakeCounter:
    """Records landed under a prefix, from each part's `records` metadata (each part read once)."""

    def __init__(self, cloud: Any, prefix: str) -> None:
        self._s3 = cloud.boto3_client("s3")
        self._bucket = cloud.resources["DataLakeBucket"]["physical_id"]
        self._prefix = prefix
        self._seen: dict[str, int] = {}

    def count(self) -> int:
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix):
            for obj in page.get("Contents", []):
                if obj["Key"] not in self._seen:
                    head = self._s3.head_object(Bucket=self._bucket, Key=obj["Key"])
                    self._seen[obj["Key"]] = int(head["Metadata"].get("records", "0"))
        return sum(self._seen.values())


def follow(
    tenant: Any, stream_id: str, counter: LakeCounter, total: int, timeout: float = 1800
) -> tuple[float, list[dict[str, Any]]]:
    """Seconds until `total` records landed, with the metrics route's lag sampled every 2 s."""
    started = time.perf_counter()
    samples: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        landed = counter.count()
        metrics = tenant(f"/api/streaming/streams/{stream_id}/metrics")
        samples.append(
            {
                "at_s": round(time.perf_counter() - started, 1),
                "true_lag_messages": total - landed,
                "reported_lag_messages": metrics["lag_messages"],
                "reported_lag_seconds": metrics["lag_seconds"],
            }
        )
        if landed >= total:
            return time.perf_counter() - started, samples
        time.sleep(2)
    raise RuntimeError(f"only {counter.count()} of {total} records landed within {timeout:.0f} s")


def end_to_end(kafka_count: int, redis_count: int) -> dict[str, Any]:
    import redis
    import requests
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from churnguard.admin import create_api_key
    from local.broker import HOST, PORT, ensure_broker
    from local.cloud import LocalCloud

    ensure_broker()
    servers = f"{HOST}:{PORT}"
    results: dict[str, Any] = {}
    overrides = {"LogLevel": "WARNING", "StreamConsumerTurnSeconds": "10"}
    with LocalCloud(
        REPO / "template.yaml", ports={"ManagementApi": 0, "WebhookApi": 0}, moto_port=0, parameter_overrides=overrides
    ) as cloud:
        organization_id = f"org_bench_{uuid.uuid4().hex[:6]}"
        key = create_api_key(
            table_name=cloud.resources["DataTable"]["physical_id"],
            organization_id=organization_id,
            name="bench",
            dynamodb=cloud.boto3_client("dynamodb"),
        ).api_key
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        base = cloud.api_urls["ManagementApi"]

        def get(path: str) -> Any:
            return session.get(base + path, timeout=60).json()

        if kafka_count:
            topic = f"bench-{uuid.uuid4().hex[:6]}"
            admin = KafkaAdminClient(bootstrap_servers=servers)
            admin.create_topics([NewTopic(topic, 4, 1)])
            admin.close()
            producer = KafkaProducer(bootstrap_servers=servers, linger_ms=20, batch_size=262_144)
            produced = time.perf_counter()
            for n in range(kafka_count):
                producer.send(topic, message(n), partition=n % 4)
            producer.flush()
            producer.close()
            produce_s = time.perf_counter() - produced
            created = session.post(
                base + "/api/streaming/streams",
                json={
                    "name": "Kafka bench",
                    "stream_type": "kafka",
                    "topics": [topic],
                    "entity": "usage",
                    "record_id_field": "event_id",
                    "batch_size": 2000,
                    "connection_config": {"bootstrap_servers": [servers], "starting_position": "TRIM_HORIZON"},
                },
                timeout=60,
            )
            created.raise_for_status()
            counter = LakeCounter(cloud, f"org={organization_id}/provider=kafka/")
            seconds, samples = follow(get, created.json()["stream_id"], counter, kafka_count)
            results["kafka"] = {
                "messages": kafka_count,
                "partitions": 4,
                "produce_seconds": round(produce_s, 1),
                "seconds_until_all_in_lake": round(seconds, 1),
                "messages_per_s": round(kafka_count / seconds),
                "within_bar": kafka_count / seconds >= KAFKA_BAR_PER_S,
                "lag_samples": samples[:: max(1, len(samples) // 8)],
            }
        if redis_count:
            client = redis.Redis(host="127.0.0.1", port=6379)
            stream_key = f"bench:{uuid.uuid4().hex[:6]}"
            pipe = client.pipeline(transaction=False)
            for n in range(redis_count):
                pipe.xadd(stream_key, {"data": message(n)})
                if n % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
            created = session.post(
                base + "/api/streaming/streams",
                json={
                    "name": "Redis bench",
                    "stream_type": "redis_streams",
                    "topics": [stream_key],
                    "entity": "usage",
                    "record_id_field": "event_id",
                    "batch_size": 1000,
                    "connection_config": {"url": "redis://127.0.0.1:6379/0", "starting_position": "TRIM_HORIZON"},
                },
                timeout=60,
            )
            created.raise_for_status()
            stream_id = created.json()["stream_id"]
            counter = LakeCounter(cloud, f"org={organization_id}/provider=redis_streams/")
            seconds, samples = follow(get, stream_id, counter, redis_count)
            session.delete(base + f"/api/streaming/streams/{stream_id}", timeout=60)
            client.delete(stream_key)
            results["redis"] = {
                "entries": redis_count,
                "seconds_until_all_in_lake": round(seconds, 1),
                "messages_per_s": round(redis_count / seconds),
                "lag_samples": samples[:: max(1, len(samples) // 8)],
            }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--kafka", type=int, default=100_000)
    parser.add_argument("--redis", type=int, default=50_000)
    args = parser.parse_args()
    results = {"in_process": in_process(args.messages, args.batch, args.runs)}
    if args.kafka or args.redis:
        results["end_to_end"] = end_to_end(args.kafka, args.redis)
    print(json.dumps(results, indent=2))
    ok = results["in_process"]["within_bar"] and results.get("end_to_end", {}).get("kafka", {}).get("within_bar", True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
