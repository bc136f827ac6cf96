"""Streams' services as this function's environment configures them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_str, kms_key_id, platform_settings, table_name
from churnguard.resilience import RetryPolicy
from churnguard.wiring.sinks import sinks

if TYPE_CHECKING:
    from churnguard.streaming.processor import StreamProcessor
    from churnguard.streaming.service import StreamService


def stream_processor() -> StreamProcessor:
    from churnguard.store.activity import ActivityStore
    from churnguard.store.streams import StreamStore
    from churnguard.streaming.processor import StreamProcessor

    # Short: a batch that still fails is delivered again by its source, not retried here.
    retry = RetryPolicy(attempts=platform_settings().default_retry_attempts, base_delay=0.2, max_delay=2.0)
    dynamodb = aws.client("dynamodb")
    return StreamProcessor(
        StreamStore(dynamodb, table_name()), sinks(retry), activity=ActivityStore(dynamodb, table_name())
    )


def stream_service() -> StreamService:
    from churnguard.continuous import ConsumerWorkflow
    from churnguard.crypto import CredentialCipher
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.streams import StreamStore
    from churnguard.streaming.checks import source_problem
    from churnguard.streaming.mappings import LambdaSourceMappings, MappingSettings
    from churnguard.streaming.service import StreamService

    dynamodb = aws.client("dynamodb")
    mappings = LambdaSourceMappings(
        aws.client("lambda"),
        aws.client("secretsmanager"),
        MappingSettings(
            function_arn=env_str("STREAM_PROCESSOR_FUNCTION_ARN"),
            on_failure_arn=env_str("STREAM_FAILURE_QUEUE_ARN"),
            secret_prefix=env_str("STREAM_SECRET_PREFIX"),
            kafka_subnets=_listed("STREAM_KAFKA_SUBNETS"),
            kafka_security_groups=_listed("STREAM_KAFKA_SECURITY_GROUPS"),
        ),
    )
    return StreamService(
        StreamStore(dynamodb, table_name()),
        IntegrationStore(dynamodb, table_name()),
        CredentialCipher(aws.client("kms"), kms_key_id()),
        mappings,
        stream_processor(),
        consumers=ConsumerWorkflow(aws.client("stepfunctions"), env_str("STREAM_CONSUMER_STATE_MACHINE_ARN")),
        source_check=source_problem,
    )


def _listed(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())
