"""Kafka event source mappings in the local cloud: what Lambda does for a self-managed Kafka
mapping, against the local broker.

moto stores only mappings with an event source ARN; `allow_self_managed_kafka` teaches its Lambda
backend to store self-managed Kafka mappings (topic, bootstrap servers, consumer group) too, so the
management API creates, pauses and deletes them with the same boto3 calls as in AWS. A mapping's
`KafkaPoller`s then read the topic, invoke the function with Lambda's Kafka event, and commit the
offsets in the mapping's consumer group only after the invocation succeeded (a failed batch is
sought back and delivered again).

The pollers of one mapping share its partitions by assignment (poller i of n takes the partitions
p with p % n == i) and start from the group's committed offsets, rather than through the group's
rebalance protocol: with the local broker (tansu 0.6) a kafka-python member that joins from a busy
process rejoins forever after each successful SyncGroup, and no batch is ever delivered.
"""

from __future__ import annotations

import base64
import logging
from functools import cache
from typing import Any

from moto.awslambda.exceptions import InvalidParameterValueException
from moto.awslambda.models import EventSourceMapping, LambdaBackend

from local.aws import Clients
from local.pollers import Worker
from local.runtime import LambdaRuntime

logger = logging.getLogger("local.kafka")

RETRY_DELAY_S = 0.5


class _SelfManagedKafkaMapping(EventSourceMapping):
    """A mapping whose source is named by its bootstrap servers and topic, not an ARN."""

    @property  # type: ignore[override]
    def event_source_arn(self) -> str:
        return self._event_source_arn

    @event_source_arn.setter
    def event_source_arn(self, value: str) -> None:
        self._event_source_arn = value

    @property  # type: ignore[override]
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int | None) -> None:
        if value is not None and not 1 <= int(value) <= 10_000:
            raise ValueError("InvalidParameterValueException", f"BatchSize {value} is out of range")
        self._batch_size = 100 if value is None else int(value)

    def _get_service_source_from_arn(self, event_source_arn: str | None = None) -> str:
        return "kafka"

    def get_configuration(self) -> dict[str, Any]:
        configuration = super().get_configuration()
        configuration.pop("EventSourceArn", None)
        return configuration


@cache
def allow_self_managed_kafka() -> None:
    """Lets moto's Lambda backend store self-managed Kafka mappings (once per process)."""
    original = LambdaBackend.create_event_source_mapping

    def create(self: LambdaBackend, spec: dict[str, Any]) -> EventSourceMapping:
        if spec.get("EventSourceArn") or not spec.get("SelfManagedEventSource"):
            return original(self, spec)
        servers = (spec["SelfManagedEventSource"].get("Endpoints") or {}).get("KAFKA_BOOTSTRAP_SERVERS") or []
        if not servers:
            raise InvalidParameterValueException("KAFKA_BOOTSTRAP_SERVERS is required")
        if len(spec.get("Topics") or []) != 1:
            raise InvalidParameterValueException("Topics must name exactly one topic")
        function = self._lambdas.get_function_by_name_or_arn_with_qualifier(spec.get("FunctionName", ""))
        spec.update(
            {"RegionName": self.region_name, "AccountId": self.account_id, "FunctionArn": function.function_arn}
        )
        spec["EventSourceArn"] = ""
        mapping = _SelfManagedKafkaMapping(spec)
        self._event_source_mappings[mapping.uuid] = mapping
        return mapping

    LambdaBackend.create_event_source_mapping = create  # type: ignore[method-assign]


class KafkaPoller(Worker):
    """Consumer `slot` of `slots` of a mapping's topic (Lambda runs several per mapping)."""

    def __init__(
        self,
        mapping: dict[str, Any],
        clients: Clients,
        runtime: LambdaRuntime,
        *,
        interval: float,
        slot: int = 0,
        slots: int = 1,
    ) -> None:
        super().__init__(interval)
        self.mapping_id = mapping["UUID"]
        self.name = f"kafka-{self.mapping_id[:8]}-{slot}"
        self._slot, self._slots = slot, slots
        self._function = mapping["FunctionArn"]
        self._servers = list(mapping["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"])
        self._topic = mapping["Topics"][0]
        config = mapping.get("SelfManagedKafkaEventSourceConfig") or {}
        self._group = config.get("ConsumerGroupId") or self.mapping_id
        self._batch_size = int(mapping.get("BatchSize", 100))
        self._earliest = mapping.get("StartingPosition", "LATEST") == "TRIM_HORIZON"
        self._clients = clients
        self._runtime = runtime
        self._consumer: Any = None

    def poll_once(self) -> bool:
        consumer = self._consumer or self._connect()
        polled = consumer.poll(timeout_ms=200, max_records=self._batch_size)
        if not polled:
            return False
        event = {
            "eventSource": "SelfManagedKafka",
            "bootstrapServers": ",".join(self._servers),
            "records": {
                f"{partition.topic}-{partition.partition}": [_record(record) for record in records]
                for partition, records in polled.items()
            },
        }
        invocation = self._runtime.invoke(self._function, event)
        if invocation.errored:
            for partition, records in polled.items():
                consumer.seek(partition, records[0].offset)
            self._stop.wait(RETRY_DELAY_S)
            return False
        from kafka.structs import OffsetAndMetadata

        consumer.commit({p: OffsetAndMetadata(records[-1].offset + 1, None, -1) for p, records in polled.items()})
        return True

    def _connect(self) -> Any:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self._servers,
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset="earliest" if self._earliest else "latest",
            max_poll_records=self._batch_size,
        )
        partitions = sorted(consumer.partitions_for_topic(self._topic) or ())
        consumer.assign([TopicPartition(self._topic, p) for p in partitions if p % self._slots == self._slot])
        self._consumer = consumer
        return consumer

    def stop(self) -> None:
        super().stop()
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:
                logger.exception("%s: closing the consumer failed", self.name)
            self._consumer = None


def _record(record: Any) -> dict[str, Any]:
    """A consumer record as Lambda's Kafka event carries it (key and value base64)."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": "CREATE_TIME" if record.timestamp_type == 0 else "LOG_APPEND_TIME",
        "key": None if record.key is None else base64.b64encode(record.key).decode(),
        "value": None if record.value is None else base64.b64encode(record.value).decode(),
        "headers": [{name: list(value)} for name, value in record.headers or []],
    }
