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
