"""Settings every function reads from its environment, parsed once and validated.

Template parameters become these environment variables; a missing or malformed value fails the
cold start loudly instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


class ConfigurationError(RuntimeError):
    """The function's environment is missing or has a malformed setting."""


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"environment variable {name} must be an integer") from exc


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise ConfigurationError(f"environment variable {name} must be true or false")


@dataclass(frozen=True)
class PlatformSettings:
    """The seed's platform-wide defaults, shared by every function."""

    environment: str
    default_retry_attempts: int
    default_batch_size: int
    webhook_rate_limit_per_minute: int
    webhook_unverified_per_source_per_minute: int
    webhook_unverified_per_endpoint_per_minute: int
    webhook_max_payload_size: int
    webhook_signature_validation: bool
    api_rate_limiting_enabled: bool
    dashboard_update_interval: int
    management_max_body_bytes: int
    max_concurrent_syncs_per_organization: int


@lru_cache(maxsize=1)
def platform_settings() -> PlatformSettings:
    return PlatformSettings(
        environment=os.environ.get("ENVIRONMENT", "dev"),
        default_retry_attempts=env_int("INTEGRATION_DEFAULT_RETRY_ATTEMPTS", 3),
        default_batch_size=env_int("INTEGRATION_DEFAULT_BATCH_SIZE", 1000),
        webhook_rate_limit_per_minute=env_int("WEBHOOK_RATE_LIMIT_PER_MINUTE", 1000),
        webhook_unverified_per_source_per_minute=env_int("WEBHOOK_UNVERIFIED_PER_SOURCE_PER_MINUTE", 60),
        webhook_unverified_per_endpoint_per_minute=env_int("WEBHOOK_UNVERIFIED_PER_ENDPOINT_PER_MINUTE", 600),
        webhook_max_payload_size=env_int("WEBHOOK_MAX_PAYLOAD_SIZE", 1_048_576),
        webhook_signature_validation=env_bool("WEBHOOK_SIGNATURE_VALIDATION", True),
        api_rate_limiting_enabled=env_bool("API_RATE_LIMITING_ENABLED", True),
        dashboard_update_interval=env_int("DASHBOARD_UPDATE_INTERVAL", 60),
        management_max_body_bytes=env_int("MANAGEMENT_MAX_BODY_BYTES", 262_144),
        max_concurrent_syncs_per_organization=env_int("MAX_CONCURRENT_SYNCS_PER_ORGANIZATION", 10),
    )


def table_name() -> str:
    return env_str("TABLE_NAME")


def kms_key_id() -> str:
    return env_str("KMS_KEY_ID")
