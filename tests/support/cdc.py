"""Change data capture tests' helpers: a capture on moto over a real database, and the checks
that compare what landed in the lake with the table."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3

from churnguard.cdc.capture import ChangeCapture, GuardianThresholds
from churnguard.cdc.lifecycle import CaptureLifecycle
from churnguard.continuous import ConsumerWorkflow
from churnguard.models import IntegrationConfiguration, IntegrationCredentials, ProviderName
from churnguard.store.activity import ActivityStore
from churnguard.store.cdc import CaptureStore
from churnguard.store.streams import StreamStore
from tests.support.sync import ORG, credentials


class Cdc:
    """A capture on the test's moto table and lake, and the integration it reads from `db`."""

    def __init__(
        self, harness: Any, db: Any, provider: ProviderName, thresholds: GuardianThresholds | None = None
    ) -> None:
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name=f"consumer-{db.name}",
            definition='{"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": true}}}',
            roleArn="arn:aws:iam::123456789012:role/sfn",
        )["stateMachineArn"]
        table = harness.dynamodb
        name = "churnguard-test-data"
        self.harness, self.db, self.provider = harness, db, provider
        self.checkpoints = StreamStore(table, name)
        self.captures = CaptureStore(table, name)
        self.activity = ActivityStore(table, name)
        self.capture = ChangeCapture(
            self.captures,
            self.checkpoints,
            harness.integrations,
            harness.service,
            [harness.lake],
            ConsumerWorkflow(sfn, machine),
            activity=self.activity,
            thresholds=thresholds or GuardianThresholds(),
        )
        self.lifecycle = CaptureLifecycle(self.captures, harness.service, ConsumerWorkflow(sfn, machine))
        self.config: IntegrationConfiguration | None = None

    def register(
        self, entities: dict[str, str], login: IntegrationCredentials | None = None, **sync: Any
    ) -> IntegrationConfiguration:
        """Registers and enables the integration (`login`: credentials other than the database's
        user and password)."""
        url = self.db.url
        user, password = self.db.login or (url.user, url.password)
        database = self.db.name if self.provider is ProviderName.MYSQL else url.database
        self.config = self.harness.register(
            self.provider,
            url.address,
            login or credentials(user, password, database),
            entities,
            sync_config={"sync_mode": "real_time", "batch_size": 500, **sync},
            status="active",
        )
        self.lifecycle.apply(self.config)
        return self.config

    @property
    def integration_id(self) -> str:
        assert self.config is not None
        return self.config.integration_id

    def turn(self, budget: float = 2.0) -> Any:
        state = self.captures.get(ORG, self.integration_id)
        assert state.consumer_execution is not None
        return self.capture.turn(ORG, self.integration_id, state.consumer_execution, 0, budget)

    def state(self) -> Any:
        return self.captures.get(ORG, self.integration_id)

    def records(self) -> list[dict[str, Any]]:
        return [r for r in self.harness.lake_records() if r["integration_id"] == self.integration_id]


def latest(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The lake's view of the table: the last change of each row, in cursor order."""
    state: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r["cursor"]):
        if record["operation"] == "delete":
            state.pop(record["record_id"], None)
        else:
            state[record["record_id"]] = record["data"]
    return state


def once_each(records: list[dict[str, Any]]) -> None:
    """No change landed twice: each (row, position) once, each dedupe key once."""
    versions = Counter((r["record_id"], r["cursor"]) for r in records)
    assert max(versions.values()) == 1, [v for v, n in versions.items() if n > 1][:5]
    assert len({r["dedupe_key"] for r in records}) == len(records)


def crashed_turn(cdc: Cdc, monkeypatch: Any, budget: float) -> None:
    """A turn that stops after its lake write and before its checkpoint write, as a function
    stopped there would."""
    import pytest

    from churnguard.store.cdc import CHECKPOINT_SCOPE

    advance = StreamStore.advance

    def crash(self: StreamStore, scope: str, *args: Any) -> Any:
        if scope == CHECKPOINT_SCOPE:
            raise RuntimeError("the function was stopped here")
        return advance(self, scope, *args)

    monkeypatch.setattr(StreamStore, "advance", crash)
    with pytest.raises(RuntimeError):
        cdc.turn(budget=budget)
    monkeypatch.setattr(StreamStore, "advance", advance)
