"""Change data capture's lifecycle (the management API) and what the API shows of it, as this
function's environment configures them; the capture itself is wiring.capture's."""

from __future__ import annotations

from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_str, kms_key_id, table_name

if TYPE_CHECKING:
    from churnguard.cdc.lifecycle import CaptureLifecycle
    from churnguard.cdc_models import CaptureView
    from churnguard.integrations import IntegrationService


def plain_integration_service() -> IntegrationService:
    from churnguard.crypto import CredentialCipher
    from churnguard.integrations import IntegrationService
    from churnguard.store.integrations import IntegrationStore

    return IntegrationService(
        IntegrationStore(aws.client("dynamodb"), table_name()), CredentialCipher(aws.client("kms"), kms_key_id())
    )


def capture_lifecycle() -> CaptureLifecycle:
    from churnguard.cdc.lifecycle import CaptureLifecycle
    from churnguard.continuous import ConsumerWorkflow
    from churnguard.store.cdc import CaptureStore

    return CaptureLifecycle(
        CaptureStore(aws.client("dynamodb"), table_name()),
        plain_integration_service(),
        ConsumerWorkflow(aws.client("stepfunctions"), env_str("STREAM_CONSUMER_STATE_MACHINE_ARN")),
    )


def capture_view(organization_id: str, integration_id: str) -> CaptureView | None:
    """What GET …/sync/status shows of the integration's change capture, if it has one."""
    from churnguard.cdc.views import capture_view as view
    from churnguard.store.cdc import CaptureStore
    from churnguard.store.streams import StreamStore

    dynamodb = aws.client("dynamodb")
    return view(
        CaptureStore(dynamodb, table_name()), StreamStore(dynamodb, table_name()), organization_id, integration_id
    )
