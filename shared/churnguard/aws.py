"""AWS clients, created on first use and reused across warm invocations.

Built on botocore directly: boto3 adds nothing the low-level clients need here, and importing it
costs a cold start some 70 ms (it pulls in s3transfer). `AWS_ENDPOINT_URL`, which the local
cloud sets, points every client at moto.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str) -> Any:
    from botocore.config import Config
    from botocore.session import get_session

    return get_session().create_client(
        service,
        config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10),
    )
