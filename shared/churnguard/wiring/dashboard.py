"""The dashboard's services, as this function's environment configures them."""

from __future__ import annotations

from churnguard import aws
from churnguard.config import env_str, table_name
from churnguard.dashboard.readiness import Dependency, ReadinessProbe


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
