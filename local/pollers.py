"""Event sources moto does not drive: SQS and Kinesis event source mappings, and schedules.

Each poller is a background thread that delivers batches to an in-process function with the
semantics of a Lambda event source mapping (batch size and window, ReportBatchItemFailures,
visibility timeouts so moto's redrive moves poison messages to the DLQ, Kinesis checkpoints).
The schedule runner fires EventBridge Scheduler schedules and EventBridge rules, from the
template or created at runtime, against an injectable clock.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from local import schedule
from local.aws import Clients
from local.runtime import LambdaRuntime

logger = logging.getLogger("local.pollers")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """A background loop that polls until stopped; an error in one poll is logged, not fatal."""

    name = "worker"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        # Set while what it polls for is disabled (a mapping): it keeps its place, as Lambda's does.
        self.suspended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = not self.suspended and self.poll_once()
            except Exception:
                logger.exception("%s: poll failed", self.name)
                busy = False
            if not busy:
                self._stop.wait(self.interval)

    def poll_once(self) -> bool:
        """Does one round of work; True when there may be more waiting right away."""
        raise NotImplementedError


def _batch_item_failures(payload: Any, identifiers: list[str]) -> set[str] | None:
    """The failed item ids of a ReportBatchItemFailures response; None when the whole batch failed."""
    if not isinstance(payload, dict) or not payload.get("batchItemFailures"):
        return set()
    failed: set[str] = set()
    for failure in payload["batchItemFailures"]:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in identifiers:
            return None
        failed.add(identifier)
    return failed


@dataclass
class SqsSource:
    """An SQS event of a function (SAM `Type: SQS`)."""

    function: str
    queue_arn: str
    batch_size: int = 10
    batching_window_s: float = 0.0
    report_failures: bool = False


class SqsPoller(Worker):
    """Receives, invokes, deletes what succeeded; failures reappear after the visibility timeout."""

    def __init__(self, source: SqsSource, clients: Clients, runtime: LambdaRuntime, *, interval: float) -> None:
        super().__init__(interval)
        self.source = source
        self.name = f"sqs-{source.function}"
        self._clients = clients
        self._runtime = runtime
        _, _, _, region, account, queue_name = source.queue_arn.split(":", 5)
        self._region = region
        self._queue_url = clients("sqs").get_queue_url(QueueName=queue_name, QueueOwnerAWSAccountId=account)["QueueUrl"]

    def poll_once(self) -> bool:
        messages = self._receive_batch()
        if not messages:
            return False
        event = {"Records": [self._record(message) for message in messages]}
        invocation = self._runtime.invoke(self.source.function, event)
        ids = [message["MessageId"] for message in messages]
        if invocation.errored:
            failed: set[str] | None = None
        elif self.source.report_failures:
            failed = _batch_item_failures(invocation.payload, ids)
        else:
            failed = set()
        succeeded = [m for m in messages if failed is not None and m["MessageId"] not in failed]
        for start in range(0, len(succeeded), 10):
            self._clients("sqs").delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                    for index, message in enumerate(succeeded[start : start + 10])
                ],
            )
        return len(messages) >= self.source.batch_size

    def _receive_batch(self) -> list[dict[str, Any]]:
        sqs = self._clients("sqs")
        deadline = time.monotonic() + self.source.batching_window_s
        messages: list[dict[str, Any]] = []
        while len(messages) < self.source.batch_size and not self.stopping:
            received = sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=min(10, self.source.batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            messages.extend(received)
            if time.monotonic() >= deadline:
                break
            if not received:
                self._stop.wait(min(self.interval, max(0.0, deadline - time.monotonic())))
        return messages

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": {
                name: _sqs_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self.source.queue_arn,
            "awsRegion": self._region,
        }
        if message.get("MD5OfMessageAttributes"):
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record


def _sqs_attribute(value: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {
        "stringListValues": value.get("StringListValues", []),
        "binaryListValues": [base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return converted


@dataclass
class KinesisSource:
    """A Kinesis event of a function (SAM `Type: Kinesis`)."""

    function: str
    stream_arn: str
    starting_position: str = "LATEST"
    starting_timestamp: datetime | None = None
    batch_size: int = 100
    bisect_on_error: bool = False
    report_failures: bool = False
    maximum_retry_attempts: int = -1
    retry_delay_s: float = 0.5


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    limit: int
    attempts: int = 0
    not_before: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)


class KinesisPoller(Worker):
    """Reads each shard in order; a failed batch is retried from its first failed record."""

    def __init__(
        self, source: KinesisSource, clients: Clients, runtime: LambdaRuntime, *, interval: float, role_arn: str
    ) -> None:
        super().__init__(interval)
        self.source = source
        self.name = f"kinesis-{source.function}"
        self._clients = clients
        self._runtime = runtime
        self._role_arn = role_arn
        self._region = source.stream_arn.split(":")[3]
        self._stream = source.stream_arn.split(":stream/", 1)[1]
        kinesis = clients("kinesis")
        self._shards: list[_Shard] = []
        for shard in kinesis.list_shards(StreamName=self._stream)["Shards"]:
            request: dict[str, Any] = {
                "StreamName": self._stream,
                "ShardId": shard["ShardId"],
                "ShardIteratorType": source.starting_position,
            }
            if source.starting_position == "AT_TIMESTAMP":
                request["Timestamp"] = source.starting_timestamp
            iterator = kinesis.get_shard_iterator(**request)["ShardIterator"]
            self._shards.append(_Shard(shard["ShardId"], iterator, source.batch_size))

    def poll_once(self) -> bool:
        busy = False
        for shard in self._shards:
            if self.stopping or shard.iterator is None or time.monotonic() < shard.not_before:
                continue
            if not shard.records:
                kinesis = self._clients("kinesis")
                response = kinesis.get_records(ShardIterator=shard.iterator, Limit=self.source.batch_size)
                shard.iterator = response.get("NextShardIterator")
                shard.records = response.get("Records", [])
            if shard.records:
                self._deliver(shard)
                busy = True
        return busy

    def _deliver(self, shard: _Shard) -> None:
        batch = shard.records[: shard.limit]
        event = {"Records": [self._record(shard.shard_id, record) for record in batch]}
        invocation = self._runtime.invoke(self.source.function, event)
        sequence_numbers = [record["SequenceNumber"] for record in batch]
        if invocation.errored:
            failed: set[str] | None = None
        elif self.source.report_failures:
            failed = _batch_item_failures(invocation.payload, sequence_numbers)
        else:
            failed = set()
        if failed == set():
            shard.records = shard.records[len(batch) :]
            shard.attempts, shard.limit = 0, self.source.batch_size
            return
        first_failed = 0 if failed is None else min(sequence_numbers.index(seq) for seq in failed)
        shard.records = shard.records[first_failed:]
        shard.attempts += 1
        limit = self.source.maximum_retry_attempts
        if 0 <= limit < shard.attempts:
            logger.error("%s: dropping %d records after %d retries", self.name, len(batch) - first_failed, limit)
            shard.records = shard.records[len(batch) - first_failed :]
            shard.attempts, shard.limit = 0, self.source.batch_size
            return
        if self.source.bisect_on_error and failed is None and len(batch) > 1:
            shard.limit = max(1, len(batch) // 2)
        shard.not_before = time.monotonic() + self.source.retry_delay_s

    def _record(self, shard_id: str, record: dict[str, Any]) -> dict[str, Any]:
        arrival = record.get("ApproximateArrivalTimestamp")
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode(),
                "approximateArrivalTimestamp": arrival.timestamp() if isinstance(arrival, datetime) else arrival,
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": self._role_arn,
            "awsRegion": self._region,
            "eventSourceARN": self.source.stream_arn,
        }


class MappingWatcher(Worker):
    """Runs the event source mappings created at runtime (the management API attaches a
    customer's Kinesis stream or Kafka topic to the stream processor) the way the template's are
    run: pollers per mapping, suspended while the mapping is disabled, stopped when it is deleted
    or its batch size changes. A Kafka mapping gets `kafka_consumers` consumers in its group, as
    Lambda scales a mapping out over a topic's partitions."""

    name = "event-source-mappings"

    def __init__(
        self,
        clients: Clients,
        runtime: LambdaRuntime,
        *,
        interval: float,
        poll_interval: float,
        role_arn: str,
        kafka_consumers: int = 2,
    ) -> None:
        super().__init__(interval)
        self._clients = clients
        self._runtime = runtime
        self._poll_interval = poll_interval
        self._role_arn = role_arn
        self._kafka_consumers = kafka_consumers
        self._pollers: dict[str, tuple[list[Worker], int]] = {}

    def poll_once(self) -> bool:
        found: dict[str, dict[str, Any]] = {}
        for page in self._clients("lambda").get_paginator("list_event_source_mappings").paginate():
            for mapping in page["EventSourceMappings"]:
                kafka = bool(mapping.get("SelfManagedEventSource"))
                kinesis = ":kinesis:" in mapping.get("EventSourceArn", "")
                if (kafka or kinesis) and self._runtime.knows(mapping["FunctionArn"]):
                    found[mapping["UUID"]] = mapping
        for mapping_id in list(self._pollers):
            pollers, batch_size = self._pollers[mapping_id]
            mapping = found.get(mapping_id)
            if mapping is None or mapping.get("BatchSize", 100) != batch_size:
                for poller in pollers:
                    poller.stop()
                del self._pollers[mapping_id]
        for mapping_id, mapping in found.items():
            if mapping_id not in self._pollers:
                pollers = self._start(mapping)
                self._pollers[mapping_id] = (pollers, int(mapping.get("BatchSize", 100)))
            for poller in self._pollers[mapping_id][0]:
                poller.suspended = mapping.get("State") == "Disabled"
        return False

    def _start(self, mapping: dict[str, Any]) -> list[Worker]:
        pollers: list[Worker]
        if mapping.get("SelfManagedEventSource"):
            from local.kafka import KafkaPoller

            count = self._kafka_consumers
            pollers = [
                KafkaPoller(mapping, self._clients, self._runtime, interval=self._poll_interval, slot=i, slots=count)
                for i in range(count)
            ]
        else:
            source = KinesisSource(
                function=mapping["FunctionArn"],
                stream_arn=mapping["EventSourceArn"],
                starting_position=mapping.get("StartingPosition", "LATEST"),
                batch_size=int(mapping.get("BatchSize", 100)),
                bisect_on_error=bool(mapping.get("BisectBatchOnFunctionError", False)),
                report_failures="ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or []),
                maximum_retry_attempts=int(mapping.get("MaximumRetryAttempts", -1)),
            )
            pollers = [
                KinesisPoller(
                    source, self._clients, self._runtime, interval=self._poll_interval, role_arn=self._role_arn
                )
            ]
        for poller in pollers:
            poller.start()
        return pollers

    def stop(self) -> None:
        super().stop()
        for pollers, _ in self._pollers.values():
            for poller in pollers:
                poller.stop()
        self._pollers = {}


@dataclass(frozen=True)
class _Target:
    arn: str
    input: str | None


@dataclass(frozen=True)
class _Job:
    key: str
    arn: str
    expression: str
    timezone: str | None
    anchor: datetime
    start: datetime | None
    end: datetime | None
    targets: tuple[_Target, ...]
    delete_after_completion: bool
    group: str | None
    scheduled_event: bool


@dataclass
class _JobState:
    signature: tuple[Any, ...]
    due: datetime | None


class ScheduleRunner(Worker):
    """Fires EventBridge Scheduler schedules and scheduled EventBridge rules when due."""

    name = "schedules"

    def __init__(
        self, clients: Clients, runtime: LambdaRuntime, *, clock: Clock, interval: float, owns: Callable[[str], bool]
    ) -> None:
        super().__init__(interval)
        self._clients = clients
        self._runtime = runtime
        self._clock = clock
        self._owns = owns
        self._states: dict[str, _JobState] = {}
        self._details: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._warned: set[str] = set()

    def poll_once(self) -> bool:
        now = self._clock()
        jobs = self._scheduler_jobs() + self._rule_jobs()
        self._states = {key: state for key, state in self._states.items() if key in {job.key for job in jobs}}
        for job in jobs:
            self._consider(job, now)
        return False

    def _consider(self, job: _Job, now: datetime) -> None:
        signature = (job.expression, job.timezone, job.anchor, job.start, job.end)
        state = self._states.get(job.key)
        if state is None or state.signature != signature:
            try:
                expression = schedule.parse(job.expression, job.timezone)
            except schedule.ScheduleExpressionError as exc:
                self._warn(job.key, f"{job.key}: {exc}")
                return
            state = self._states[job.key] = _JobState(signature, expression.first_due(_anchor(job)))
        if state.due is None or now < state.due:
            return
        if job.end is not None and state.due > job.end:
            state.due = None
            return
        fired_at = state.due
        expression = schedule.parse(job.expression, job.timezone)
        state.due = expression.next_due(now, _anchor(job))
        targets = [target for target in job.targets if self._owns(_unqualified(target.arn))]
        if not targets:
            return
        logger.info("firing %s (due %s)", job.key, fired_at.isoformat())
        for target in targets:
            self._deliver(job, target, fired_at)
        if job.delete_after_completion and state.due is None and job.group is not None:
            self._clients("scheduler").delete_schedule(Name=job.key.rsplit("/", 1)[1], GroupName=job.group)

    def _scheduler_jobs(self) -> list[_Job]:
        scheduler = self._clients("scheduler")
        jobs = []
        details: dict[str, tuple[Any, dict[str, Any]]] = {}
        for summary in _paginate(scheduler.list_schedules, "Schedules"):
            if summary.get("State") != "ENABLED":
                continue
            key = f"{summary['GroupName']}/{summary['Name']}"
            stamp = (summary.get("CreationDate"), summary.get("LastModificationDate"))
            cached = self._details.get(key)
            if cached is None or cached[0] != stamp:
                cached = (stamp, scheduler.get_schedule(Name=summary["Name"], GroupName=summary["GroupName"]))
            details[key] = cached
        self._details = details
        for _, detail in details.values():
            target = detail["Target"]
            jobs.append(
                _Job(
                    key=f"scheduler:{detail['GroupName']}/{detail['Name']}",
                    arn=detail["Arn"],
                    expression=detail["ScheduleExpression"],
                    timezone=detail.get("ScheduleExpressionTimezone"),
                    anchor=_aware(detail["CreationDate"]),
                    start=_aware(detail["StartDate"]) if detail.get("StartDate") else None,
                    end=_aware(detail["EndDate"]) if detail.get("EndDate") else None,
                    targets=(_Target(target["Arn"], target.get("Input")),),
                    delete_after_completion=detail.get("ActionAfterCompletion") == "DELETE",
                    group=detail["GroupName"],
                    scheduled_event=False,
                )
            )
        return jobs

    def _rule_jobs(self) -> list[_Job]:
        events = self._clients("events")
        jobs = []
        for rule in _paginate(events.list_rules, "Rules"):
            if not rule.get("ScheduleExpression") or rule.get("State") != "ENABLED":
                continue
            bus = rule.get("EventBusName", "default")
            targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=bus).get("Targets", [])
            jobs.append(
                _Job(
                    key=f"events:{bus}/{rule['Name']}",
                    arn=rule["Arn"],
                    expression=rule["ScheduleExpression"],
                    timezone=None,
                    anchor=self._first_seen(f"events:{bus}/{rule['Name']}"),
                    start=None,
                    end=None,
                    targets=tuple(_Target(t["Arn"], t.get("Input")) for t in targets),
                    delete_after_completion=False,
                    group=None,
                    scheduled_event=True,
                )
            )
        return jobs

    def _first_seen(self, key: str) -> datetime:
        state = self._states.get(key)
        return state.signature[2] if state else self._clock()

    def _deliver(self, job: _Job, target: _Target, fired_at: datetime) -> None:
        payload = target.input
        if payload is None:
            payload = json.dumps(_scheduled_event(job, fired_at)) if job.scheduled_event else "{}"
        service = target.arn.split(":")[2]
        try:
            if service == "lambda":
                function = target.arn.split(":")[6]
                if not self._runtime.knows(function):
                    self._warn(target.arn, f"{job.key}: target function {function} is not in the template")
                    return
                self._runtime.invoke(function, _json_or_text(payload))
            elif service == "states":
                self._clients("stepfunctions").start_execution(stateMachineArn=target.arn, input=payload)
            elif service == "sqs":
                _, _, _, _, account, queue = target.arn.split(":", 5)
                url = self._clients("sqs").get_queue_url(QueueName=queue, QueueOwnerAWSAccountId=account)["QueueUrl"]
                self._clients("sqs").send_message(QueueUrl=url, MessageBody=payload)
            elif service == "sns":
                self._clients("sns").publish(TopicArn=target.arn, Message=payload)
            else:
                self._warn(target.arn, f"{job.key}: targets of {service} are not emulated")
        except Exception:
            logger.exception("%s: delivery to %s failed", job.key, target.arn)

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message)


def _unqualified(arn: str) -> str:
    """A Lambda ARN without its version or alias qualifier; other ARNs unchanged."""
    parts = arn.split(":")
    return ":".join(parts[:7]) if parts[2:3] == ["lambda"] else arn


def _anchor(job: _Job) -> datetime:
    """Where a rate() counts from: the schedule's start date if later than its creation."""
    return max(job.anchor, job.start) if job.start else job.anchor


def _scheduled_event(job: _Job, fired_at: datetime) -> dict[str, Any]:
    """The event EventBridge sends a rule's target when the rule has no Input."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": job.arn.split(":")[4],
        "time": fired_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": job.arn.split(":")[3],
        "resources": [job.arn],
        "detail": {},
    }


def _json_or_text(payload: str) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _paginate(call: Callable[..., dict[str, Any]], key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {}
    while True:
        page = call(**request)
        items.extend(page.get(key, []))
        if not page.get("NextToken"):
            return items
        request["NextToken"] = page["NextToken"]
