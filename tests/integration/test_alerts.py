"""Alert rules with an injectable clock: open, dedupe, acknowledge, resolve, and notify exactly
twice per channel, over SNS (moto, delivered to an SQS subscriber) and a chat webhook (a local
HTTP server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from churnguard.cdc_models import CapturePhase, CaptureState, GuardianReading, LogRisk
from churnguard.crypto import CredentialCipher
from churnguard.dashboard.alerts import (
    AlertEvaluator,
    AlertSettingsService,
    AlertSettingsUpdate,
    evaluation_times,
    organization_notifiers,
)
from churnguard.dashboard.service import DashboardService
from churnguard.models import ProviderName
from churnguard.runs import RunHistory, RunOutcome, SyncStatus
from churnguard.store.activity import ActivityStore
from churnguard.store.alerts import AlertStore
from churnguard.store.cdc import CaptureStore
from churnguard.store.organizations import OrganizationStore
from churnguard.store.webhooks import WebhookStore
from tests.integration.test_dashboard import failed_sync
from tests.integration.test_sync_postgres import create_customers, register
from tests.support.fake_api import FakeApi, Reply, Seen, route
from tests.support.sync import ORG, credentials, sync


class ChatWebhook(FakeApi):
    """A Slack-compatible incoming webhook: answers `status` to every post."""

    status = 200

    @route("POST", r"/services/T000/B000/(?P<token>\w+)")
    def post(self, seen: Seen, token: str) -> Reply:
        return Reply(self.status, b"ok")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def chat() -> Any:
    with ChatWebhook() as server:
        yield server


@pytest.fixture
def sns_messages(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The alert topic, with a queue subscribed to it: what SNS delivered, read back."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    monkeypatch.setenv("ALERT_TOPIC_ARN", topic)

    def received() -> list[dict[str, Any]]:
        found = []
        while True:
            batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return found
            for message in batch:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    return topic, received


def _evaluator(aws: dict[str, Any], harness: Any, clock: Clock, topic: str) -> AlertEvaluator:
    dynamodb, table = aws["dynamodb"], aws["table"]
    alerts = AlertStore(dynamodb, table)
    activity = ActivityStore(dynamodb, table, clock=clock)
    dashboard = DashboardService(
        integrations=harness.integrations,
        histories=harness.histories,
        breakers=harness.breakers,
        syncs=harness.syncs,
        webhooks=WebhookStore(dynamodb, table),
        activity=activity,
        alerts=alerts,
        captures=CaptureStore(dynamodb, table),
        clock=clock,
    )
    settings = AlertSettingsService(alerts, CredentialCipher(aws["kms"], aws["key_arn"]), allow_plain_http=True)
    organizations = OrganizationStore(dynamodb, table)
    organizations.ensure(ORG)
    return AlertEvaluator(
        dashboard=dashboard,
        alerts=alerts,
        settings=settings,
        activity=activity,
        organizations=organizations,
        notifiers=organization_notifiers(boto3.client("sns"), topic, alerts),
        clock=clock,
    )


def test_an_alert_opens_once_is_acknowledged_resolves_by_itself_and_notifies_exactly_twice(
    aws: dict[str, Any], api: Any, harness: Any, postgres: Any, chat: Any, sns_messages: Any
) -> None:
    topic, received = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    settings = api.call(
        "PUT",
        "/api/dashboard/alert-settings",
        org=ORG,
        body={"consecutive_failures": 2, "chat_webhook_url": f"{chat.url}/services/T000/B000/secrettoken"},
    )
    assert settings.status == 200, settings.body
    assert settings.body["chat_webhook"] == {"configured": True, "host": "127.0.0.1"}
    assert "secrettoken" not in settings.raw

    create_customers(postgres, rows=10)
    config = register(harness, postgres, mappings={"customer": f"{postgres.name}.customers"}, name="orders")
    engine = harness.engine()
    postgres.execute(f'ALTER TABLE "{postgres.name}".customers RENAME TO customers_moved')
    failed_sync(engine, config.integration_id)
    assert evaluator.evaluate(ORG) == (0, 0)  # one failure: below the threshold of 2
    failed_sync(engine, config.integration_id)

    assert evaluator.evaluate(ORG) == (1, 0)
    assert evaluator.evaluate(ORG) == (0, 0)  # still failing: the same alert, nothing new
    clock.now += 600
    assert evaluator.evaluate(ORG) == (0, 0)

    listed = api.call("GET", "/api/dashboard/alerts", org=ORG, query={"state": "open"}).body["items"]
    (alert,) = listed
    assert alert["rule"] == "sync_failed" and alert["integration_id"] == config.integration_id
    assert "the last 2 syncs failed" in alert["message"]
    assert api.call("GET", "/api/dashboard/metrics", org=ORG).body["open_alerts"] == 1

    acknowledged = api.call("POST", f"/api/dashboard/alerts/{alert['alert_id']}/acknowledge", org=ORG)
    assert acknowledged.status == 200 and acknowledged.body["state"] == "acknowledged"
    assert acknowledged.body["acknowledged_by"] == "key_000000000000"
    again = api.call("POST", f"/api/dashboard/alerts/{alert['alert_id']}/acknowledge", org=ORG)
    assert again.status == 409
    assert api.call("POST", f"/api/dashboard/alerts/{alert['alert_id']}/acknowledge", org="org_other").status == 404
    assert evaluator.evaluate(ORG) == (0, 0)  # acknowledged is still held: no second alert

    postgres.execute(f'ALTER TABLE "{postgres.name}".customers_moved RENAME TO customers')
    sync(engine, config.integration_id)
    assert evaluator.evaluate(ORG) == (0, 1)
    assert evaluator.evaluate(ORG) == (0, 0)

    resolved = api.call("GET", "/api/dashboard/alerts", org=ORG, query={"state": "resolved"}).body["items"]
    assert [a["alert_id"] for a in resolved] == [alert["alert_id"]]
    assert resolved[0]["resolved_at"] is not None

    notified = received()
    assert [m["transition"] for m in notified] == ["opened", "resolved"]
    assert all(m["alert"]["alert_id"] == alert["alert_id"] for m in notified)
    posts = [seen.json()["text"] for seen in chat.requests]
    assert len(posts) == 2
    assert posts[0].startswith("[ChurnGuard CRITICAL] orders") and posts[1].startswith("[ChurnGuard RESOLVED]")

    # The condition returns: a new alert opens (the old one stays resolved).
    postgres.execute(f'DROP TABLE "{postgres.name}".customers')
    failed_sync(engine, config.integration_id)
    failed_sync(engine, config.integration_id)
    assert evaluator.evaluate(ORG) == (1, 0)
    assert len(api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"]) == 2


def test_a_channel_that_fails_is_retried_without_repeating_the_others(
    aws: dict[str, Any], api: Any, harness: Any, postgres: Any, chat: Any, sns_messages: Any
) -> None:
    topic, received = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    api.call(
        "PUT",
        "/api/dashboard/alert-settings",
        org=ORG,
        body={"consecutive_failures": 1, "chat_webhook_url": f"{chat.url}/services/T000/B000/tok"},
    )
    config = register(harness, postgres, mappings={"customer": f"{postgres.name}.missing"}, name="ledger")
    failed_sync(harness.engine(), config.integration_id)

    chat.status = 500
    assert evaluator.evaluate(ORG) == (1, 0)
    assert len(received()) == 1 and len(chat.requests) == 1
    chat.status = 200
    evaluator.evaluate(ORG)
    assert received() == [] and len(chat.requests) == 2  # SNS not sent again; chat retried
    evaluator.evaluate(ORG)
    assert received() == [] and len(chat.requests) == 2


def test_stale_and_data_loss_rules_follow_the_clock(
    aws: dict[str, Any], api: Any, harness: Any, postgres: Any, sns_messages: Any
) -> None:
    topic, received = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    create_customers(postgres, rows=10)
    config = register(harness, postgres, status="active", sync_config={"sync_frequency": 3600})
    sync(harness.engine(), config.integration_id)
    assert evaluator.evaluate(ORG) == (0, 0)
    clock.now += 2.5 * 3600
    assert evaluator.evaluate(ORG) == (1, 0)
    (alert,) = api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"]
    assert alert["rule"] == "stale" and alert["severity"] == "warning"
    sync(harness.engine(clock=clock), config.integration_id)
    assert evaluator.evaluate(ORG) == (0, 1)
    assert [m["transition"] for m in received()] == ["opened", "resolved"]


def test_a_stripe_integration_near_the_end_of_event_retention_alerts(
    aws: dict[str, Any], api: Any, harness: Any, sns_messages: Any
) -> None:
    """Time to data loss under the threshold (72 h by default) opens a critical alert."""
    from churnguard.models import IntegrationConfiguration, ProviderName

    topic, _ = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    config = IntegrationConfiguration.model_validate(
        {
            "organization_id": ORG,
            "integration_name": "billing",
            "provider_name": ProviderName.STRIPE,
            "sync_config": {"sync_mode": "incremental"},
        }
    )
    harness.integrations.create(config, None)
    started = datetime.fromtimestamp(clock.now, UTC) - timedelta(days=28)
    outcome = RunOutcome(
        sync_id="syn_000000000001aaaaaaaaaaaa",
        status=SyncStatus.SUCCEEDED,
        trigger="manual",
        started_at=started,
        finished_at=started + timedelta(minutes=5),
        duration_seconds=300,
        records_read=1,
        records_written=1,
        records_rejected=0,
    )
    history = RunHistory(
        integration_id=config.integration_id,
        runs=[outcome],
        last_success_at=outcome.finished_at,
        last_success_started_at=started,
    )
    aws["dynamodb"].put_item(
        TableName=aws["table"],
        Item={
            "pk": {"S": f"ORG#{ORG}"},
            "sk": {"S": f"RUNSTATS#{config.integration_id}"},
            "doc": {"S": history.model_dump_json(exclude={"version"})},
            "version": {"N": "1"},
        },
    )
    item = api.call("GET", "/api/dashboard/integrations", org=ORG).body["items"][0]
    assert 47 * 3600 < item["health"]["time_to_data_loss_seconds"] < 48 * 3600
    assert evaluator.evaluate(ORG) == (1, 0)
    (alert,) = api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"]
    assert alert["rule"] == "data_loss" and "about 48 h" in alert["message"]


def test_alert_settings_validate_and_never_show_the_chat_url(api: Any, aws: dict[str, Any]) -> None:
    defaults = api.call("GET", "/api/dashboard/alert-settings", org=ORG)
    assert defaults.status == 200
    assert defaults.body["consecutive_failures"] == 3 and defaults.body["data_loss_hours"] == 72
    assert defaults.body["chat_webhook"] == {"configured": False, "host": None}
    assert set(defaults.body["enabled_rules"]) >= {"sync_failed", "stale", "data_loss", "signature_failures"}

    metadata = api.call(
        "PUT", "/api/dashboard/alert-settings", org=ORG, body={"chat_webhook_url": "https://169.254.169.254/hook"}
    )
    assert metadata.status == 422
    assert metadata.body["error"]["details"]["fields"][0]["field"] == "chat_webhook_url"
    assert api.call("PUT", "/api/dashboard/alert-settings", org=ORG, body={"consecutive_failures": 0}).status == 422
    assert api.call("PUT", "/api/dashboard/alert-settings", org=ORG, body={"enabled_rules": ["nope"]}).status == 422
    assert api.call("PUT", "/api/dashboard/alert-settings", org=ORG, body={"unknown": 1}).status == 422

    saved = api.call(
        "PUT",
        "/api/dashboard/alert-settings",
        org=ORG,
        body={"chat_webhook_url": "http://127.0.0.1:9/services/T1/B1/verysecret", "enabled_rules": ["stale"]},
    )
    assert saved.status == 200 and saved.body["enabled_rules"] == ["stale"]
    kept = api.call("PUT", "/api/dashboard/alert-settings", org=ORG, body={"data_loss_hours": 24})
    assert kept.body["chat_webhook"]["configured"] is True and kept.body["data_loss_hours"] == 24
    stored = aws["dynamodb"].get_item(
        TableName=aws["table"], Key={"pk": {"S": f"ORG#{ORG}"}, "sk": {"S": "ALERT_SETTINGS"}}
    )["Item"]
    assert "verysecret" not in json.dumps(stored)
    removed = api.call("PUT", "/api/dashboard/alert-settings", org=ORG, body={"chat_webhook_url": None})
    assert removed.body["chat_webhook"] == {"configured": False, "host": None}
    assert api.call("GET", "/api/dashboard/alert-settings", org="org_other").body["data_loss_hours"] == 72


def test_the_function_evaluates_every_interval() -> None:
    assert evaluation_times(120.0, 60) == [120.0]
    assert evaluation_times(125.0, 300) == []  # within the period that began at 0
    assert evaluation_times(305.0, 300) == [305.0]
    assert evaluation_times(0.0, 15) == [0.0, 15.0, 30.0, 45.0]
    assert AlertSettingsUpdate().consecutive_failures == 3


def test_signature_failures_spiking_on_an_endpoint_alert_and_resolve_an_hour_later(
    aws: dict[str, Any], api: Any, harness: Any, sns_messages: Any
) -> None:
    topic, received = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    activity = ActivityStore(aws["dynamodb"], aws["table"], clock=clock)
    activity.add(activity.hour_update(ORG, {"wh#stripe#refused_signature": 19, "refused_signature": 19}))
    assert evaluator.evaluate(ORG) == (0, 0)  # below 20 an hour
    activity.add(activity.hour_update(ORG, {"wh#stripe#refused_signature": 6, "refused_signature": 6}))
    assert evaluator.evaluate(ORG) == (1, 0)
    (alert,) = api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"]
    assert alert["rule"] == "signature_failures" and alert["subject"] == "webhook:stripe"
    assert alert["integration_id"] is None and "25 stripe webhook deliveries" in alert["message"]
    clock.now += 2 * 3600
    assert evaluator.evaluate(ORG) == (0, 1)
    assert [m["transition"] for m in received()] == ["opened", "resolved"]


def test_a_stream_that_quarantines_or_misses_sequence_numbers_alerts_and_resolves_an_hour_later(
    aws: dict[str, Any], api: Any, harness: Any, sns_messages: Any
) -> None:
    topic, received = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    activity = ActivityStore(aws["dynamodb"], aws["table"], clock=clock)
    activity.add(activity.hour_update(ORG, {"st#str_0123456789abcdef#quarantined": 2}))
    activity.add(activity.hour_update(ORG, {"st#str_0123456789abcdef#gaps": 1}))
    assert evaluator.evaluate(ORG) == (1, 0)
    (alert,) = api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"]
    assert alert["rule"] == "stream_problems" and alert["subject"] == "str_0123456789abcdef"
    assert "2 message(s) set aside in quarantine and 1 sequence number(s) missing" in alert["message"]
    clock.now += 2 * 3600
    assert evaluator.evaluate(ORG) == (0, 1)
    assert [m["transition"] for m in received()] == ["opened", "resolved"]


def test_a_real_time_database_whose_log_is_at_risk_or_lost_alerts(
    aws: dict[str, Any], api: Any, harness: Any, sns_messages: Any
) -> None:
    """The guardian's reading decides: at risk while the database holds too much for too long,
    critical for an hour after a lost position, and resolved once the figures are back."""
    topic, received = sns_messages
    clock = Clock()
    evaluator = _evaluator(aws, harness, clock, topic)
    config = harness.register(
        ProviderName.POSTGRESQL,
        "127.0.0.1:5432",
        credentials("reader", "secret-password", "app"),
        {"account": "public.accounts"},
        name="Billing database",
        sync_config={"sync_mode": "real_time"},
        status="active",
    )
    captures = CaptureStore(aws["dynamodb"], aws["table"])
    now = datetime.fromtimestamp(clock.now, UTC)

    def reading(risk: LogRisk, retained: int, left: float | None) -> GuardianReading:
        return GuardianReading(
            measured_at=now,
            retained_bytes=retained,
            safe_bytes=None,
            write_rate_bytes_per_second=None,
            seconds_left=left,
            risk=risk,
            detail="slot",
        )

    state = captures.save(
        CaptureState(
            organization_id=ORG,
            integration_id=config.integration_id,
            phase=CapturePhase.STREAMING,
            guardian=reading(LogRisk.AT_RISK, 12 * 1024**3, 3 * 3600.0),
        )
    )
    assert evaluator.evaluate(ORG) == (1, 0)
    (alert,) = api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"]
    assert alert["rule"] == "change_capture" and alert["severity"] == "critical"
    assert (
        alert["message"]
        == "Billing database: it holds 12.0 GiB of log for us; about 3 h until it would drop our position"
    )
    summary = api.call("GET", "/api/dashboard/integrations", org=ORG).body["items"][0]
    assert summary["health"]["time_to_data_loss_seconds"] == 3 * 3600.0
    assert summary["change_capture"]["retained_bytes"] == 12 * 1024**3

    state = captures.save(state.model_copy(update={"guardian": reading(LogRisk.OK, 1024, None)}))
    assert evaluator.evaluate(ORG) == (0, 1)
    activity = ActivityStore(aws["dynamodb"], aws["table"], clock=clock)
    activity.add(activity.hour_update(ORG, {f"cdc#{config.integration_id}#log_lost": 1}))
    assert evaluator.evaluate(ORG) == (1, 0)
    lost = [a for a in api.call("GET", "/api/dashboard/alerts", org=ORG).body["items"] if a["state"] == "open"]
    assert "no longer had our position" in lost[0]["message"]
    clock.now += 2 * 3600
    assert evaluator.evaluate(ORG) == (0, 1)
    assert [m["transition"] for m in received()] == ["opened", "resolved", "opened", "resolved"]


def test_every_integration_rule_names_its_condition() -> None:
    """The rules against summaries built the way the dashboard builds them."""
    from churnguard.dashboard.alerts import AlertSettings, ChatWebhookSummary, conditions
    from churnguard.dashboard.service import _summary
    from churnguard.models import IntegrationConfiguration
    from churnguard.resilience import BreakerState
    from churnguard.runs import QuotaUsage

    now = datetime.now(UTC)
    settings = AlertSettings(
        **AlertSettingsUpdate().model_dump(exclude={"chat_webhook_url"}),
        chat_webhook=ChatWebhookSummary(configured=False, host=None),
        version=0,
    )

    def config(name: str, **changes: Any) -> IntegrationConfiguration:
        return IntegrationConfiguration.model_validate(
            {
                "organization_id": ORG,
                "integration_name": name,
                "provider_name": "stripe",
                "status": "active",
                "created_at": now - timedelta(days=40),
                **changes,
            }
        )

    def succeeded(ago: timedelta) -> RunOutcome:
        return RunOutcome(
            sync_id=f"syn_{name}",
            status=SyncStatus.SUCCEEDED,
            trigger="schedule",
            started_at=now - ago,
            finished_at=now - ago,
            duration_seconds=1,
            records_read=1,
            records_written=1,
            records_rejected=0,
        )

    name = "x"
    fresh = RunHistory(
        integration_id="a", runs=[succeeded(timedelta(minutes=5))], last_success_at=now, last_success_started_at=now
    )
    old = RunHistory(
        integration_id="b",
        runs=[succeeded(timedelta(days=29))],
        last_success_at=now - timedelta(days=29),
        last_success_started_at=now - timedelta(days=29),
    )
    summaries = [
        _summary(config("refused", status="auth_failed"), fresh, None, 0, None, now),
        _summary(config("letters"), fresh, None, 3, None, now),
        _summary(
            config("spent"),
            fresh.model_copy(
                update={"quota": QuotaUsage(used=85, limit=100, what="daily API requests", observed_at=now)}
            ),
            None,
            0,
            None,
            now,
        ),
        _summary(config("expiring"), old, BreakerState(), 0, None, now),
        _summary(config("paused", status="paused"), old, None, 9, None, now),
    ]
    found = {
        (c.rule, next(s.integration_name for s in summaries if s.integration_id == c.subject))
        for c in conditions(summaries, {}, settings, now)
    }
    assert found == {
        ("auth_failed", "refused"),
        ("dead_letters", "letters"),
        ("quota", "spent"),
        ("stale", "expiring"),
        ("data_loss", "expiring"),
    }, "a paused integration raises nothing"
