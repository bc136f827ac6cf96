"""An organisation as big as the dashboard's bar: integrations with their runs and histories,
written straight into the table as the platform stores them (for the call-count test and
benchmarks/dashboard.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from churnguard.models import IntegrationConfiguration, ProviderName
from churnguard.runs import RunHistory, StreamProgress, SyncRun
from churnguard.store.integrations import IntegrationStore
from churnguard.store.syncs import SyncStore


def seed_organization(dynamodb: Any, table: str, organization_id: str, *, integrations: int, runs_each: int) -> None:
    """Writes integrations, their runs and histories straight into the table, as the platform
    stores them, in batches (moto is the slow part)."""
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = []
    for index in range(integrations):
        config = IntegrationConfiguration.model_validate(
            {
                "organization_id": organization_id,
                "integration_name": f"source {index:03d}",
                "provider_name": ProviderName.POSTGRESQL,
                "base_url": "db.example.com:5432",
                "entity_mappings": {"customer": "public.customers"},
            }
        )
        items.append(IntegrationStore._integration_item(config))
        history = RunHistory(integration_id=config.integration_id)
        for number in range(runs_each):
            started = now - timedelta(hours=runs_each - number)
            run = SyncRun.model_validate(
                {
                    "sync_id": f"syn_{int(started.timestamp() * 1000):012x}{index:012x}",
                    "organization_id": organization_id,
                    "integration_id": config.integration_id,
                    "provider": "postgresql",
                    "mode": "incremental",
                    "sync_config": config.sync_config.model_dump(),
                    "status": "succeeded" if number % 7 else "failed",
                    "started_at": started,
                    "updated_at": started + timedelta(minutes=2),
                    "finished_at": started + timedelta(minutes=2),
                }
            )
            run.streams = [
                StreamProgress.model_validate(
                    {
                        "stream": {
                            "entity": "customer",
                            "source": "public.customers",
                            "primary_key": ["id"],
                            "cursor_field": "updated_at",
                            "sync_modes": ["incremental"],
                        },
                        "mode": "incremental",
                        "records_written": 100,
                    }
                )
            ]
            items.append(SyncStore(dynamodb, table)._run_item(run))
            history = history.with_run(run)
        items.append(
            {
                "pk": {"S": f"ORG#{organization_id}"},
                "sk": {"S": f"RUNSTATS#{config.integration_id}"},
                "doc": {"S": history.model_dump_json(exclude={"version"})},
                "version": {"N": "1"},
            }
        )
    for start in range(0, len(items), 25):
        dynamodb.batch_write_item(
            RequestItems={table: [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )
