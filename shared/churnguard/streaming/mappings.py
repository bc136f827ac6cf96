"""Lambda event source mappings of streams on the stream processor function.

A Kinesis mapping reports partial batch failures (the processor names the first record of a
shard it could not land, and Lambda resumes there), bisects a failing batch, gives up on a
record after bounded retries or age, and sends what it gave up on to the on-failure queue.

A Kafka mapping reads one topic in the consumer group named after the stream (or the configured
one), from a self-managed cluster (bootstrap servers, SASL/SCRAM or mTLS credentials in a Secrets
Manager secret the mapping reads, the VPC's subnets and security groups) or an MSK cluster. Lambda
commits a batch's offsets only after the processor returned, which is after the lake write.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from churnguard.models import IntegrationCredentials
from churnguard.stream_models import StreamConfiguration, StreamType

MAXIMUM_RETRY_ATTEMPTS = 10
MAXIMUM_RECORD_AGE_SECONDS = 24 * 3600


SASL_ACCESS = {"SASL_SCRAM_256": "SASL_SCRAM_256_AUTH", "SASL_SCRAM_512": "SASL_SCRAM_512_AUTH"}


@dataclass(frozen=True)
class MappingSettings:
    function_arn: str
    on_failure_arn: str
    secret_prefix: str  # <stack>/streams: the secrets' names, which the roles are scoped to
    kafka_subnets: tuple[str, ...] = field(default_factory=tuple)
    kafka_security_groups: tuple[str, ...] = field(default_factory=tuple)


class LambdaSourceMappings:
    def __init__(self, lambda_client: Any, secrets: Any, settings: MappingSettings) -> None:
        self._lambda = lambda_client
        self._secrets = secrets
        self._settings = settings

    def create(self, config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str:
        if config.stream_type is StreamType.KAFKA:
            return self._create_kafka(config, credentials)
        if config.stream_type is not StreamType.KINESIS:
            raise ValueError(f"no event source mapping for {config.stream_type.value} streams")
        # The processor's role reads the customer's stream (KinesisSourceStreamArns): no secret.
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

    def _create_kafka(self, config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str:
        connection = config.connection_config
        request: dict[str, Any] = {
            "FunctionName": self._settings.function_arn,
            "Topics": list(config.topics),
            "StartingPosition": connection.starting_position,
            "BatchSize": config.batch_size,
            "Enabled": True,
        }
        if connection.msk_cluster_arn:
            request["EventSourceArn"] = connection.msk_cluster_arn
            request["AmazonManagedKafkaEventSourceConfig"] = {"ConsumerGroupId": config.consumer_group}
        else:
            request["SelfManagedEventSource"] = {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": connection.bootstrap_servers}}
            request["SelfManagedKafkaEventSourceConfig"] = {"ConsumerGroupId": config.consumer_group}
        access: list[dict[str, str]] = []
        if not connection.msk_cluster_arn:  # an MSK mapping takes the cluster's own network
            access += [{"Type": "VPC_SUBNET", "URI": f"subnet:{subnet}"} for subnet in self._settings.kafka_subnets]
            access += [
                {"Type": "VPC_SECURITY_GROUP", "URI": f"security_group:{group}"}
                for group in self._settings.kafka_security_groups
            ]
        secret_arn = self._secret(config, credentials)
        if secret_arn is not None:
            kind = SASL_ACCESS.get(connection.security_protocol, "CLIENT_CERTIFICATE_TLS_AUTH")
            access.append({"Type": kind, "URI": secret_arn})
        if access:
            request["SourceAccessConfigurations"] = access
        try:
            response = self._lambda.create_event_source_mapping(**request)
        except Exception:
            self._drop_secret(config.stream_id)
            raise
        mapping_id: str = response["UUID"]
        return mapping_id

    def _secret(self, config: StreamConfiguration, credentials: IntegrationCredentials | None) -> str | None:
        """The Secrets Manager secret the mapping authenticates with, in the shape Lambda reads."""
        protocol = config.connection_config.security_protocol
        if protocol == "PLAINTEXT" or credentials is None:
            return None
        if protocol in SASL_ACCESS:
            if credentials.username is None or credentials.password is None:
                raise ValueError("SASL/SCRAM needs credentials with username and password")
            document = {
                "username": credentials.username.get_secret_value(),
                "password": credentials.password.get_secret_value(),
            }
        else:
            fields = credentials.custom_fields
            if "client_certificate" not in fields or "private_key" not in fields:
                raise ValueError("mTLS needs credentials.custom_fields client_certificate and private_key")
            document = {
                "certificate": fields["client_certificate"].get_secret_value(),
                "privateKey": fields["private_key"].get_secret_value(),
            }
        created = self._secrets.create_secret(
            Name=f"{self._settings.secret_prefix}/{config.stream_id}",
            SecretString=json.dumps(document),
            Description=f"Kafka credentials of stream {config.stream_id}",
        )
        secret_arn: str = created["ARN"]
        return secret_arn

    def _drop_secret(self, stream_id: str) -> None:
        try:
            self._secrets.delete_secret(
                SecretId=f"{self._settings.secret_prefix}/{stream_id}", ForceDeleteWithoutRecovery=True
            )
        except self._secrets.exceptions.ResourceNotFoundException:
            return

    def set_enabled(self, mapping_id: str, enabled: bool) -> None:
        self._lambda.update_event_source_mapping(UUID=mapping_id, Enabled=enabled)

    def set_batch_size(self, mapping_id: str, batch_size: int) -> None:
        self._lambda.update_event_source_mapping(UUID=mapping_id, BatchSize=batch_size)

    def delete(self, mapping_id: str, stream_id: str) -> None:
        with contextlib.suppress(self._lambda.exceptions.ResourceNotFoundException):
            self._lambda.delete_event_source_mapping(UUID=mapping_id)
        self._drop_secret(stream_id)
