"""The dashboard's services, as this function's environment configures them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from churnguard import aws
from churnguard.config import env_str, kms_key_id, table_name
from churnguard.crypto import CredentialCipher
from churnguard.dashboard.alerts import AlertEvaluator, AlertSettingsService, organization_notifiers
from churnguard.dashboard.readiness import Dependency, ReadinessProbe
from churnguard.dashboard.service import DashboardService
from churnguard.netguard import private_networks_allowed
from churnguard.store.activity import ActivityStore
from churnguard.store.alerts import AlertStore
from churnguard.store.cdc import CaptureStore
from churnguard.store.circuit_breakers import CircuitBreakerStore
from churnguard.store.integrations import IntegrationStore
from churnguard.store.organizations import OrganizationStore
from churnguard.store.run_history import RunHistoryStore
from churnguard.store.syncs import SyncStore
from churnguard.store.webhooks import WebhookStore


def readiness_probe() -> ReadinessProbe:
    """Probes that need no more than the management function may already do: describe its
    table, list one key of the lake bucket, read one attribute of the webhook queue."""
    dynamodb, s3, sqs = aws.client("dynamodb"), aws.client("s3"), aws.client("sqs")
    table, bucket, queue_url = table_name(), env_str("DATA_LAKE_BUCKET"), env_str("WEBHOOK_QUEUE_URL")
    return ReadinessProbe(
        [
            Dependency("dynamodb", lambda: dynamodb.describe_table(TableName=table)),
            Dependency("s3", lambda: s3.list_objects_v2(Bucket=bucket, MaxKeys=1)),
            Dependency("queue", lambda: sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])),
        ]
    )


@dataclass(frozen=True)
class DashboardServices:
    dashboard: DashboardService
    alerts: AlertStore
    settings: AlertSettingsService
    activity: ActivityStore
    organizations: OrganizationStore


def dashboard_services() -> DashboardServices:
    dynamodb, table = aws.client("dynamodb"), table_name()
    alerts = AlertStore(dynamodb, table)
    activity = ActivityStore(dynamodb, table)
    return DashboardServices(
        dashboard=DashboardService(
            integrations=IntegrationStore(dynamodb, table),
            histories=RunHistoryStore(dynamodb, table),
            breakers=CircuitBreakerStore(dynamodb, table),
            syncs=SyncStore(dynamodb, table),
            webhooks=WebhookStore(dynamodb, table),
            activity=activity,
            alerts=alerts,
            captures=CaptureStore(dynamodb, table),
        ),
        alerts=alerts,
        # The local cloud (private networks allowed) may point the chat webhook at plain http.
        settings=AlertSettingsService(
            alerts, CredentialCipher(aws.client("kms"), kms_key_id()), allow_plain_http=private_networks_allowed()
        ),
        activity=activity,
        organizations=OrganizationStore(dynamodb, table),
    )


def alert_evaluator() -> AlertEvaluator:
    services = dashboard_services()
    return AlertEvaluator(
        dashboard=services.dashboard,
        alerts=services.alerts,
        settings=services.settings,
        activity=services.activity,
        organizations=services.organizations,
        notifiers=organization_notifiers(aws.client("sns"), os.environ.get("ALERT_TOPIC_ARN"), services.alerts),
    )
