"""Where records go, built once for syncs and webhooks alike."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from churnguard import aws
from churnguard.config import env_str
from churnguard.resilience import RetryPolicy

if TYPE_CHECKING:
    from churnguard.pipeline.sinks import Sink


def sinks(retry: RetryPolicy) -> list[Sink]:
    """Where records go: the data lake, and the Analytics API when one is configured (its token
    read once through Powertools Parameters, which caches it)."""
    from pydantic import SecretStr

    from churnguard.pipeline.sinks import AnalyticsApiSink, S3DataLakeSink

    written: list[Sink] = [S3DataLakeSink(aws.client("s3"), env_str("DATA_LAKE_BUCKET"), retry)]
    analytics_url = os.environ.get("ANALYTICS_API_URL", "")
    if analytics_url:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        secrets = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        token = secrets.get(env_str("ANALYTICS_API_TOKEN_SECRET"))
        written.append(AnalyticsApiSink(analytics_url, SecretStr(str(token)), retry))
    return written
