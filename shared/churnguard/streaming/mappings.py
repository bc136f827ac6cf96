"""Lambda event source mappings of streams on the stream processor function.

A Kinesis mapping reports partial batch failures (the processor names the first record of a
shard it could not land, and Lambda resumes there), bisects a failing batch, gives up on a
record after bounded retries or age, and sends what it gave up on to the on-failure queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from churnguard.models import IntegrationCredentials
from churnguard.stream_models import StreamConfiguration, StreamType

MAXIMUM_RETRY_ATTEMPTS = 10
MAXIMUM_RECORD_AGE_SECONDS = 24 * 3600


@dataclass(frozen=True)
class MappingSettings:
    function_arn: str
    on_failure_arn: str


class LambdaSourceMappings:
    def __init__(self, lambda_client: Any, settings: MappingSettings) -> None:
        self._lambda = lambda_client
        self._settings = settings

    def create(self, config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str:
        if config.stream_type is not StreamType.KINESIS:
            raise ValueError(f"no event source mapping for {config.stream_type.value} streams")
        del credentials  # the processor's role reads the customer's stream; nothing to hand over
        response = self._lambda.create_event_source_mapping(
            FunctionName=self._settings.function_arn,
            EventSourceArn=config.topics[0],
            StartingPosition=config.connection_config.starting_position,
            BatchSize=config.batch_size,
            Enabled=True,
            BisectBatchOnFunctionError=True,
            MaximumRetryAttempts=MAXIMUM_RETRY_ATTEMPTS,
            MaximumRecordAgeInSeconds=MAXIMUM_RECORD_AGE_SECONDS,
            FunctionResponseTypes=["ReportBatchItemFailures"],
            DestinationConfig={"OnFailure": {"Destination": self._settings.on_failure_arn}},
        )
        mapping_id: str = response["UUID"]
        return mapping_id

    def set_enabled(self, mapping_id: str, enabled: bool) -> None:
        self._lambda.update_event_source_mapping(UUID=mapping_id, Enabled=enabled)

    def set_batch_size(self, mapping_id: str, batch_size: int) -> None:
        self._lambda.update_event_source_mapping(UUID=mapping_id, BatchSize=batch_size)

    def delete(self, mapping_id: str, stream_id: str) -> None:
        try:
            self._lambda.delete_event_source_mapping(UUID=mapping_id)
        except self._lambda.exceptions.ResourceNotFoundException:
            return
