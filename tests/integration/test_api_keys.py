"""API keys end to end in-process: issue, authenticate through the authorizer, revoke."""

from __future__ import annotations

from typing import Any

from churnguard.admin import create_api_key
from tests.integration.conftest import LambdaContextStub, ManagementApi
from tests.support.handlers import load_handler_module


def authorize(authorizer: Any, header: str | None) -> dict[str, Any]:
    headers = {"authorization": header} if header is not None else {}
    event = {"version": "2.0", "type": "REQUEST", "routeArn": "arn", "headers": headers, "identitySource": [header]}
    return authorizer.lambda_handler(event, LambdaContextStub())  # type: ignore[no-any-return]


def test_issued_key_authenticates_until_revoked(api: ManagementApi, aws: dict[str, Any]) -> None:
    authorizer = load_handler_module("authorizer")
    created = api.call("POST", "/api/keys", body={"name": "ci"})
    assert created.status == 201
    key = created.body["api_key"]
    assert key.startswith("cg_") and created.body["prefix"] == key[:7]

    allowed = authorize(authorizer, f"Bearer {key}")
    assert allowed == {"isAuthorized": True, "context": {"organization_id": "org_a", "key_id": created.body["key_id"]}}

    listed = api.call("GET", "/api/keys").body["items"]
    assert [k["key_id"] for k in listed] == [created.body["key_id"]]
    assert "api_key" not in listed[0] and key not in str(listed)

    revoked = api.call("DELETE", f"/api/keys/{created.body['key_id']}")
    assert revoked.status == 200 and revoked.body["status"] == "revoked"
    assert authorize(authorizer, f"Bearer {key}")["context"] == {"organization_id": "", "auth_error": "invalid_api_key"}
    assert api.call("DELETE", f"/api/keys/{created.body['key_id']}").body["status"] == "revoked", (
        "revoking twice is harmless"
    )
    assert api.call("GET", "/api/keys").body["items"][0]["status"] == "revoked"


def test_authorizer_reasons(aws: dict[str, Any]) -> None:
    authorizer = load_handler_module("authorizer")
    assert authorize(authorizer, None)["context"]["auth_error"] == "missing_api_key"
    assert authorize(authorizer, "Bearer cg_" + "A" * 43)["context"]["auth_error"] == "invalid_api_key"
    assert authorize(authorizer, "Basic abc")["context"]["auth_error"] == "invalid_api_key"
    for result in (authorize(authorizer, None), authorize(authorizer, "Bearer x")):
        assert result["isAuthorized"] is True and result["context"]["organization_id"] == ""


def test_keys_are_scoped_to_their_organisation(api: ManagementApi, aws: dict[str, Any]) -> None:
    other = create_api_key(table_name=aws["table"], organization_id="org_b", name="b", dynamodb=aws["dynamodb"])
    assert api.call("GET", "/api/keys", org="org_a").body["items"] == []
    assert api.call("DELETE", f"/api/keys/{other.key_id}", org="org_a").status == 404
    assert api.call("POST", "/api/keys", org="org_a", body={"name": "x", "organization_id": "org_b"}).status == 403
    authorizer = load_handler_module("authorizer")
    assert authorize(authorizer, f"Bearer {other.api_key}")["context"]["organization_id"] == "org_b"


def test_only_the_hash_is_stored(api: ManagementApi, aws: dict[str, Any]) -> None:
    key = api.call("POST", "/api/keys", body={"name": "audit"}).body["api_key"]
    items = aws["dynamodb"].scan(TableName=aws["table"])["Items"]
    assert key not in str(items)


def test_admin_bootstrap_creates_the_organisation_once(aws: dict[str, Any]) -> None:
    first = create_api_key(table_name=aws["table"], organization_id="org_new", name="one", dynamodb=aws["dynamodb"])
    second = create_api_key(table_name=aws["table"], organization_id="org_new", name="two", dynamodb=aws["dynamodb"])
    assert first.api_key != second.api_key
    orgs = aws["dynamodb"].query(
        TableName=aws["table"],
        KeyConditionExpression="pk = :pk AND sk = :sk",
        ExpressionAttributeValues={":pk": {"S": "ORG#org_new"}, ":sk": {"S": "ORGANIZATION"}},
    )["Items"]
    assert len(orgs) == 1
