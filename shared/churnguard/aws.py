"""AWS clients, created on first use and reused across warm invocations.

Creating clients lazily keeps them out of the cold-start path of code that never needs them.
`AWS_ENDPOINT_URL` (set by the local cloud) points every client at moto.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10),
    )
