"""Known secret strings go in through every route; none may come out anywhere.

Searched: every API response, everything the handlers log (at DEBUG), and every raw DynamoDB item.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.integration.conftest import ManagementApi

SECRETS = {
    "access_token": "LEAKCHECK-access-token-a1b2c3d4e5",
    "refresh_token": "LEAKCHECK-refresh-token-f6g7h8i9",
    "api_key": "LEAKCHECK-api-key-j0k1l2m3n4o5",
    "api_secret": "LEAKCHECK-api-secret-p6q7r8s9",
    "username": "LEAKCHECK-username-t0u1v2",
    "password": "LEAKCHECK-password-w3x4y5z6",
    "client_secret": "LEAKCHECK-client-secret-zz99",
    "replacement": "LEAKCHECK-replacement-token-5544",
}


def test_no_secret_leaves_through_responses_logs_or_storage(
    api: ManagementApi,
    aws: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    api = ManagementApi()
    responses: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = api.call(method, path, **kwargs)
        responses.append(response.raw)
        return response

    oauth = {
        "credential_type": "oauth2",
        "access_token": SECRETS["access_token"],
        "refresh_token": SECRETS["refresh_token"],
        "custom_fields": {"client_id": "public-client-id", "client_secret": SECRETS["client_secret"]},
    }
    created = call(
        "POST",
        "/api/integrations",
        body={"integration_name": "Salesforce", "provider_name": "salesforce", "credentials": oauth},
    )
    integration_id = created.body["integration_id"]
    call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "Warehouse",
            "provider_name": "postgresql",
            "base_url": "db.internal:5432",
            "credentials": {
                "credential_type": "basic_auth",
                "username": SECRETS["username"],
                "password": SECRETS["password"],
                "custom_fields": {"database": "crm"},
            },
        },
    )
    call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "Stripe",
            "provider_name": "stripe",
            "credentials": {
                "credential_type": "api_key",
                "api_key": SECRETS["api_key"],
                "api_secret": SECRETS["api_secret"],
            },
        },
    )
    call(
        "POST",
        "/api/integrations",
        body={"integration_name": "Salesforce", "provider_name": "salesforce", "credentials": oauth},
    )
    call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "",
            "provider_name": "salesforce",
            "credentials": {**oauth, "unexpected": SECRETS["api_key"]},
        },
    )
    call(
        "POST",
        "/api/integrations",
        body={
            "integration_name": "x",
            "provider_name": "stripe",
            "credentials": {"credential_type": "api_key", "api_key": SECRETS["api_key"] * 400},
        },
    )
    call("POST", "/api/integrations", raw_body='{"credentials": {"api_key": "' + SECRETS["api_key"] + '"')
    call("POST", "/api/integrations", org=None, body={"credentials": {"api_key": SECRETS["api_key"]}})
    call(
        "PUT",
        f"/api/integrations/{integration_id}/credentials",
        body={"credential_type": "oauth2", "access_token": SECRETS["replacement"]},
    )
    call(
        "PUT",
        f"/api/integrations/{integration_id}/credentials",
        body={"credential_type": "oauth2", "access_token": SECRETS["replacement"], "bad": 1},
    )
    call(
        "PATCH",
        f"/api/integrations/{integration_id}",
        body={"tags": ["x"], "credentials": {"api_key": SECRETS["api_key"]}},
    )
    call("GET", f"/api/integrations/{integration_id}")
    call("GET", "/api/integrations")
    call("DELETE", f"/api/integrations/{integration_id}")
    assert len(responses) == 14 and all(responses[:-1]), "every call but the DELETE answered with a body"

    captured = capsys.readouterr()
    logs = captured.out + captured.err + "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert logs.count("request handled") >= 14, "the handler's own log lines were captured"
    items = str(aws["dynamodb"].scan(TableName=aws["table"])["Items"])
    assert "ORG#org_a" in items and "CREDENTIALS#" in items, "the scan sees the stored credentials"
    assert "public-client-id" not in items, "even non-secret credential fields are encrypted"
    for name, secret in SECRETS.items():
        for where, text in (("responses", "\n".join(responses)), ("logs", logs), ("dynamodb", items)):
            assert secret not in text, f"{name} leaked into {where}"
