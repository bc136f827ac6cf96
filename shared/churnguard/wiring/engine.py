"""The sync engine, as this function's environment configures it: for the sync task, the
management API (connection tests, starts) and the event processor (re-reading an object)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import kms_key_id, platform_settings, table_name
from churnguard.crypto import CredentialCipher
from churnguard.integrations import IntegrationService
from churnguard.resilience import RetryPolicy
from churnguard.store.integrations import IntegrationStore
from churnguard.wiring.sinks import sinks

if TYPE_CHECKING:
    from churnguard.sync.engine import SyncEngine


def sync_engine() -> SyncEngine:
    from churnguard.store.activity import ActivityStore
    from churnguard.store.circuit_breakers import CircuitBreakerStore
    from churnguard.store.run_history import RunHistoryStore
    from churnguard.store.syncs import SyncStore
    from churnguard.sync.engine import SyncEngine

    dynamodb = aws.client("dynamodb")
    integrations = IntegrationStore(dynamodb, table_name())
    # The engine only reads credentials and stores renewed ones: no schedules to keep.
    credentials = IntegrationService(integrations, CredentialCipher(aws.client("kms"), kms_key_id()))
    retry = RetryPolicy(attempts=platform_settings().default_retry_attempts, base_delay=1.0, max_delay=30.0)
    return SyncEngine(
        syncs=SyncStore(dynamodb, table_name()),
        integrations=integrations,
        credentials=credentials.load_credentials,
        save_credentials=credentials.replace_credentials,
        breakers=CircuitBreakerStore(dynamodb, table_name()),
        sinks=sinks(retry),
        max_concurrent_syncs=platform_settings().max_concurrent_syncs_per_organization,
        activity=ActivityStore(dynamodb, table_name()),
        histories=RunHistoryStore(dynamodb, table_name()),
    )
