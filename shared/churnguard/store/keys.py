"""Key builders for the single-table layout documented in churnguard.store."""

from __future__ import annotations

ORGANIZATION_SK = "ORGANIZATION"
INTEGRATION_PREFIX = "INTEGRATION#"
INTEGRATION_NAME_PREFIX = "INTEGRATION_NAME#"
CREDENTIALS_PREFIX = "CREDENTIALS#"
APIKEY_PREFIX = "APIKEY#"
APIKEY_LOOKUP_SK = "APIKEY"


def org_pk(organization_id: str) -> str:
    return f"ORG#{organization_id}"


def key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def integration_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), INTEGRATION_PREFIX + integration_id)


def integration_name_key(organization_id: str, name: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), INTEGRATION_NAME_PREFIX + name.strip().casefold())


def credentials_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), CREDENTIALS_PREFIX + integration_id)


def api_key_key(organization_id: str, key_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), APIKEY_PREFIX + key_id)


def api_key_lookup_key(key_hash: str) -> dict[str, dict[str, str]]:
    return key(APIKEY_PREFIX + key_hash, APIKEY_LOOKUP_SK)


SYNC_PREFIX = "SYNC#"
SYNC_LOCK_PREFIX = "SYNC_LOCK#"
SYNC_CURSOR_PREFIX = "SYNC_CURSOR#"
CIRCUIT_PREFIX = "CIRCUIT#"


def sync_prefix(integration_id: str) -> str:
    return f"{SYNC_PREFIX}{integration_id}#"


def sync_key(organization_id: str, integration_id: str, sync_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), sync_prefix(integration_id) + sync_id)


def sync_lock_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), SYNC_LOCK_PREFIX + integration_id)


def sync_cursor_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), SYNC_CURSOR_PREFIX + integration_id)


def circuit_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), CIRCUIT_PREFIX + integration_id)


WEBHOOK_PREFIX = "WEBHOOK#"
DEADLETTER_PREFIX = "DEADLETTER#"
SINGLETON_SK = "-"


def webhook_key(organization_id: str, provider: str) -> dict[str, dict[str, str]]:
    """One endpoint per provider and organisation, found by the receiver in a single read."""
    return key(org_pk(organization_id), WEBHOOK_PREFIX + provider)


def webhook_event_key(organization_id: str, endpoint_id: str, event_id: str) -> dict[str, dict[str, str]]:
    """Dedupe claims get their own partition each, so a busy organisation has no hot key."""
    return key(f"WHEVENT#{organization_id}#{endpoint_id}#{event_id}", SINGLETON_SK)


def webhook_rate_key(subject: str, window: int) -> dict[str, dict[str, str]]:
    return key(f"WHRATE#{subject}#{window}", SINGLETON_SK)


def record_state_key(
    organization_id: str, integration_id: str, entity: str, ordering_key: str
) -> dict[str, dict[str, str]]:
    return key(f"RECSTATE#{organization_id}#{integration_id}#{entity}#{ordering_key}", SINGLETON_SK)


def deadletter_key(organization_id: str, message_key: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), DEADLETTER_PREFIX + message_key)


RUNSTATS_PREFIX = "RUNSTATS#"
ALERT_PREFIX = "ALERT#"
ALERT_OPEN_PREFIX = "ALERT_OPEN#"
ALERT_SETTINGS_SK = "ALERT_SETTINGS"
ORGANIZATION_INDEX_PK = "ORGANIZATIONS"


def run_history_key(organization_id: str, integration_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), RUNSTATS_PREFIX + integration_id)


def alert_key(organization_id: str, alert_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), ALERT_PREFIX + alert_id)


def open_alert_key(organization_id: str, rule: str, subject: str) -> dict[str, dict[str, str]]:
    """Held while an alert of `rule` about `subject` is open or acknowledged: one at a time."""
    return key(org_pk(organization_id), f"{ALERT_OPEN_PREFIX}{rule}#{subject}")


def alert_settings_key(organization_id: str) -> dict[str, dict[str, str]]:
    return key(org_pk(organization_id), ALERT_SETTINGS_SK)


def organization_index_key(organization_id: str) -> dict[str, dict[str, str]]:
    """The list of organisations the alert evaluator walks (one query, no scan)."""
    return key(ORGANIZATION_INDEX_PK, organization_id)
