"""Change data capture's turns and guardian (the consumer function), as its environment
configures them: the lake's sinks, the consumer workflow and the guardian's thresholds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_int, env_str, platform_settings, table_name
from churnguard.resilience import RetryPolicy
from churnguard.wiring.cdc import plain_integration_service
from churnguard.wiring.sinks import sinks

if TYPE_CHECKING:
    from churnguard.cdc.capture import ChangeCapture


def change_capture() -> ChangeCapture:
    from churnguard.cdc.capture import ChangeCapture, GuardianThresholds
    from churnguard.continuous import ConsumerWorkflow
    from churnguard.store.activity import ActivityStore
    from churnguard.store.cdc import CaptureStore
    from churnguard.store.integrations import IntegrationStore
    from churnguard.store.streams import StreamStore

    dynamodb = aws.client("dynamodb")
    retry = RetryPolicy(attempts=platform_settings().default_retry_attempts, base_delay=0.2, max_delay=2.0)
    return ChangeCapture(
        CaptureStore(dynamodb, table_name()),
        StreamStore(dynamodb, table_name()),
        IntegrationStore(dynamodb, table_name()),
        plain_integration_service(),
        sinks(retry),
        ConsumerWorkflow(aws.client("stepfunctions"), env_str("STREAM_CONSUMER_STATE_MACHINE_ARN")),
        activity=ActivityStore(dynamodb, table_name()),
        thresholds=GuardianThresholds(
            seconds_left=env_int("CDC_ALERT_HOURS_LEFT", 72) * 3600.0,
            retained_bytes=env_int("CDC_ALERT_RETAINED_GB", 10) * 1024**3,
        ),
    )
