"""Stream processor function: Kinesis batches (the stack's ingest stream and customers' streams)
and Kafka batches through the record pipeline into the lake.

Each shard or partition is landed on its own (churnguard.streaming.processor). A Kinesis shard
that could not be landed is reported by its first record, so Lambda resumes it there and the other
shards move on. A Kafka batch has no partial answer: if a partition could not be landed the
invocation fails and Lambda delivers the batch again; the partitions that did land are skipped by
their checkpoints.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from churnguard.stream_models import StreamConfiguration
from churnguard.streaming.messages import StreamMessage
from churnguard.streaming.processor import Outcome, StreamProcessor
from churnguard.streaming.sources import INGEST_SCOPE, PartitionBatch, kafka_batches, kinesis_batches

KAFKA_SOURCES = frozenset({"SelfManagedKafka", "aws:kafka"})

logger = Logger()
metrics = Metrics()


class PartitionsNotLanded(Exception):
    """Fails a Kafka invocation, so its offsets are not committed."""


@cache
def processor() -> StreamProcessor:
    from churnguard.wiring.streams import stream_processor

    return stream_processor()


def _resolver(batch: PartitionBatch) -> Any:
    """Ingest events name their stream; a customer's stream is found by its ARN."""
    routes = {id(message): route for message, route in zip(batch.messages, batch.routes, strict=True)}
    owner = None if batch.scope == INGEST_SCOPE else processor().source_owner(batch.scope)

    def resolve(message: StreamMessage) -> StreamConfiguration | None:
        route = routes.get(id(message))
        if route is None:
            return owner
        return processor().config(*route)

    return resolve


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    kafka = event.get("eventSource") in KAFKA_SOURCES
    batches = kafka_batches(event) if kafka else kinesis_batches(event, os.environ["INGEST_STREAM_ARN"])
    failures: list[dict[str, str]] = []
    total = Outcome()
    for batch in batches:
        try:
            total.add(processor().process_partition(batch.scope, batch.partition, batch.messages, _resolver(batch)))
        except Exception:
            logger.exception("shard batch not landed", extra={"partition": batch.partition, "scope": batch.scope})
            failures.append({"itemIdentifier": min(batch.item_ids, key=int)})
    metrics.add_metric(name="StreamMessagesLanded", unit=MetricUnit.Count, value=total.landed)
    metrics.add_metric(name="StreamMessagesQuarantined", unit=MetricUnit.Count, value=total.quarantined)
    metrics.add_metric(name="StreamDuplicatesSkipped", unit=MetricUnit.Count, value=total.duplicates)
    metrics.add_metric(name="StreamShardsFailed", unit=MetricUnit.Count, value=len(failures))
    if kafka and failures:
        raise PartitionsNotLanded(f"{len(failures)} partition(s) not landed; the batch is delivered again")
    return {"batchItemFailures": failures}
