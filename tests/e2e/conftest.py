"""End-to-end fixtures: the local cloud started from the real template.yaml, on free ports."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from churnguard.admin import create_api_key

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Tenant:
    organization_id: str
    api_key: str
    key_id: str
    base_url: str

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        return requests.request(method, self.base_url + path, headers=headers, timeout=30, **kwargs)


class ShiftableClock:
    """Real time plus an offset a test can move forward, so schedules can come due at once."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def shift(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


@pytest.fixture(scope="session")
def schedule_clock() -> ShiftableClock:
    return ShiftableClock()


@pytest.fixture(scope="session")
def cloud(schedule_clock: ShiftableClock) -> Iterator[Any]:
    from local.cloud import LocalCloud

    # Failed webhook events come back after a second, and go to the DLQ after three attempts. The
    # 2,000-event burst arrives within a minute: the per-organisation rate limit (tested on its
    # own) is raised so every delivery is answered on its first try.
    overrides = {
        "WebhookQueueVisibilityTimeout": "1",
        "WebhookMaxReceiveCount": "3",
        "WebhookRateLimitPerMinute": "10000",
        # Each test has its own organisation; the cap has a test of its own at this value.
        "MaxConcurrentSyncsPerOrganization": "2",
        # Consumer turns end quickly, so a paused stream's last turn is short.
        "StreamConsumerTurnSeconds": "5",
    }
    with LocalCloud(
        REPO / "template.yaml",
        ports={"ManagementApi": 0, "WebhookApi": 0},
        moto_port=0,
        parameter_overrides=overrides,
        clock=schedule_clock,
    ) as running:
        yield running


@pytest.fixture(scope="session")
def management_url(cloud: Any) -> str:
    return str(cloud.api_urls["ManagementApi"])


@pytest.fixture(scope="session")
def new_tenant(cloud: Any, management_url: str) -> Any:
    """Bootstraps an organisation and its first key the way an operator does."""

    def make(organization_id: str) -> Tenant:
        created = create_api_key(
            table_name=cloud.resources["DataTable"]["physical_id"],
            organization_id=organization_id,
            name="e2e",
            dynamodb=cloud.boto3_client("dynamodb"),
        )
        return Tenant(organization_id, created.api_key, created.key_id, management_url)

    return make


def register_postgres(tenant: Tenant, entity_mappings: dict[str, str], **sync_config: Any) -> str:
    """Registers an active, incremental PostgreSQL integration on the test server; its id."""
    from tests.support.sync import POSTGRES_URL, DatabaseUrl

    url = DatabaseUrl.parse(POSTGRES_URL, 5432)
    created = tenant.request(
        "POST",
        "/api/integrations",
        json={
            "integration_name": f"Database {'/'.join(entity_mappings.values())}",
            "provider_name": "postgresql",
            "base_url": url.address,
            "status": "active",
            "entity_mappings": entity_mappings,
            "credentials": {
                "credential_type": "basic_auth",
                "username": url.user,
                "password": url.password or "trust-auth-ignores-this",
                "custom_fields": {"database": url.database},
            },
            "sync_config": {"sync_mode": "incremental", "sync_frequency": 3600, **sync_config},
        },
    )
    assert created.status_code == 201, created.text
    return str(created.json()["integration_id"])
