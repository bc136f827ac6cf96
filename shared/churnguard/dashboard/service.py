"""The dashboard's figures, from state the platform keeps as it works (see the README's table of
what each figure reads). No request scans the lake or the table: the integrations list is five
queries whatever the number of integrations and runs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import Field

from churnguard.cdc_models import CaptureState, CaptureSummary, LogRisk
from churnguard.dashboard.health import IntegrationHealth, assess, organization_score
from churnguard.models import IntegrationConfiguration, IntegrationStatus, Model
from churnguard.resilience import BreakerState
from churnguard.runs import EntityActivity, QuotaUsage, RunHistory, SyncRun, SyncRunView, SyncStatus, wants_schedule
from churnguard.store.activity import ActivityStore, hour_key, total
from churnguard.store.alerts import AlertStore
from churnguard.store.cdc import CaptureStore
from churnguard.store.circuit_breakers import CircuitBreakerStore
from churnguard.store.integrations import IntegrationStore
from churnguard.store.run_history import RunHistoryStore
from churnguard.store.syncs import SyncStore
from churnguard.store.webhooks import WebhookStore

RECENT_RUNS = 20
DAYS_SHOWN = 30
REFUSAL_REASONS = ("signature", "rate_limited", "malformed", "too_large", "unavailable")


class RunningSync(Model):
    sync_id: str
    started_at: datetime
    percent: float | None
    records_read: int
    estimated_total: int | None
    estimated_remaining_seconds: float | None
    status: SyncStatus


class IntegrationSummary(Model):
    integration_id: str
    integration_name: str
    provider_name: str
    integration_type: str
    status: IntegrationStatus
    sync_mode: str
    sync_frequency: int
    health: IntegrationHealth
    last_sync_at: datetime | None
    last_success_at: datetime | None
    last_sync_status: SyncStatus | None
    last_error: str
    next_sync_at: datetime | None = Field(description="when the schedule fires next (estimated); null if unscheduled")
    records_last_run: int | None
    error_rate: float | None = Field(description="share of the last 10 finished runs that failed")
    consecutive_failures: int
    circuit_breaker: str
    dead_letters: int
    quota: QuotaUsage | None
    running_sync_id: str | None
    change_capture: CaptureSummary | None = Field(
        default=None, description="a real-time database's change capture and the guardian's figures"
    )


class IntegrationSummaries(Model):
    items: list[IntegrationSummary]
    generated_at: datetime


class SyncCounts(Model):
    succeeded: int
    failed: int
    cancelled: int
    running: int


class WebhookCounts(Model):
    accepted: int
    duplicate: int
    ignored: int
    refused: dict[str, int] = Field(description="deliveries refused, by reason")


class DashboardMetrics(Model):
    generated_at: datetime
    integrations_by_status: dict[str, int]
    integrations_by_health: dict[str, int]
    health_score: int
    syncs_24h: SyncCounts
    records_written_24h: int
    records_written_7d: int
    records_rejected_24h: int
    webhooks_24h: WebhookCounts
    dead_letters: int
    open_alerts: int = Field(description="alerts not yet resolved: open or acknowledged")


class DayActivity(Model):
    day: str
    records_written: int
    records_rejected: int
    webhook_records: int
    syncs_succeeded: int
    syncs_failed: int
    sync_seconds: int


class RecentRun(Model):
    sync_id: str
    status: SyncStatus
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float | None
    records_read: int
    records_written: int
    records_rejected: int
    error: str | None


class EndpointActivity(Model):
    endpoint_id: str
    provider: str
    status: str
    last_24h: WebhookCounts
    events_ignored_total: int


class IntegrationDetail(Model):
    summary: IntegrationSummary
    running: RunningSync | None
    recent_runs: list[RecentRun]
    entities: dict[str, EntityActivity]
    days: list[DayActivity] = Field(description=f"the last {DAYS_SHOWN} days, oldest first")
    webhook_endpoint: EndpointActivity | None


class DashboardService:
    def __init__(
        self,
        *,
        integrations: IntegrationStore,
        histories: RunHistoryStore,
        breakers: CircuitBreakerStore,
        syncs: SyncStore,
        webhooks: WebhookStore,
        activity: ActivityStore,
        alerts: AlertStore,
        captures: CaptureStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._captures = captures
        self._integrations = integrations
        self._histories = histories
        self._breakers = breakers
        self._syncs = syncs
        self._webhooks = webhooks
        self._activity = activity
        self._alerts = alerts
        self._clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def summaries(self, organization_id: str) -> IntegrationSummaries:
        """Every integration's summary: six queries, whatever the number of integrations."""
        now = self.now()
        configs = self._integrations.all(organization_id)
        captures = (
            {state.integration_id: state for state in self._captures.for_organization(organization_id)}
            if self._captures is not None
            else {}
        )
        histories = self._histories.all(organization_id)
        breakers = self._breakers.all(organization_id)
        running = self._syncs.running_by_integration(organization_id, self._clock())
        dead = self._webhooks.deadletters_by_integration(organization_id)
        items = [
            _summary(
                config,
                histories.get(config.integration_id) or RunHistory(integration_id=config.integration_id),
                breakers.get(config.integration_id),
                dead.get(config.integration_id, 0),
                running.get(config.integration_id),
                now,
                captures.get(config.integration_id),
            )
            for config in sorted(configs, key=lambda c: c.integration_name.casefold())
        ]
        return IntegrationSummaries(items=items, generated_at=now)

    def metrics(self, organization_id: str) -> DashboardMetrics:
        summaries = self.summaries(organization_id)
        now = summaries.generated_at
        hours = self._activity.hours(organization_id, now - timedelta(days=7))
        day_ago = hour_key(now - timedelta(hours=23))
        by_status: dict[str, int] = {}
        by_health: dict[str, int] = {}
        for item in summaries.items:
            by_status[item.status.value] = by_status.get(item.status.value, 0) + 1
            by_health[item.health.state] = by_health.get(item.health.state, 0) + 1
        scored = [item.health.score for item in summaries.items if item.health.state != "paused"]
        return DashboardMetrics(
            generated_at=now,
            integrations_by_status=by_status,
            integrations_by_health=by_health,
            health_score=organization_score(scored),
            syncs_24h=SyncCounts(
                succeeded=total(hours, "syncs_succeeded", day_ago),
                failed=total(hours, "syncs_failed", day_ago),
                cancelled=total(hours, "syncs_cancelled", day_ago),
                running=sum(1 for item in summaries.items if item.running_sync_id),
            ),
            records_written_24h=total(hours, "records_written", day_ago),
            records_written_7d=total(hours, "records_written"),
            records_rejected_24h=total(hours, "records_rejected", day_ago),
            webhooks_24h=_webhook_counts(hours, "webhook_", "refused_", day_ago),
            dead_letters=sum(item.dead_letters for item in summaries.items),
            open_alerts=len([a for a in self._alerts.open_alerts(organization_id) if not a.resolving]),
        )

    def detail(self, organization_id: str, integration_id: str) -> IntegrationDetail:
        now = self.now()
        config = self._integrations.get(organization_id, integration_id)  # 404 for another organisation's
        history = self._histories.get(organization_id, integration_id)
        holder = self._syncs.lock_holder(organization_id, integration_id)
        live = holder is not None and holder[1] > self._clock()
        runs = self._syncs.recent(organization_id, integration_id, RECENT_RUNS)
        dead = self._webhooks.deadletters_by_integration(organization_id).get(integration_id, 0)
        summary = _summary(
            config,
            history,
            self._breakers.load(organization_id, integration_id),
            dead,
            holder[0] if holder and live else None,
            now,
            self._captures.find(organization_id, integration_id) if self._captures is not None else None,
        )
        running = None
        current = next((run for run in runs if holder and run.sync_id == holder[0]), None)
        if live and current is not None and current.status not in {SyncStatus.SUCCEEDED, SyncStatus.FAILED}:
            view = SyncRunView.of(current, now)
            running = RunningSync(
                sync_id=current.sync_id,
                started_at=current.started_at,
                percent=view.progress.percent,
                records_read=view.progress.records_read,
                estimated_total=view.progress.estimated_total,
                estimated_remaining_seconds=view.progress.estimated_remaining_seconds,
                status=current.status,
            )
        return IntegrationDetail(
            summary=summary,
            running=running,
            recent_runs=[_recent(run) for run in runs],
            entities=history.entities,
            days=self._days(organization_id, integration_id, now),
            webhook_endpoint=self._endpoint_activity(organization_id, integration_id, now),
        )

    def _days(self, organization_id: str, integration_id: str, now: datetime) -> list[DayActivity]:
        since = now - timedelta(days=DAYS_SHOWN - 1)
        found = self._activity.days(organization_id, integration_id, since)
        days = []
        for offset in range(DAYS_SHOWN):
            day = (since + timedelta(days=offset)).date().isoformat()
            counts = found.get(day, {})
            days.append(
                DayActivity(
                    day=day, **{name: counts.get(name, 0) for name in DayActivity.model_fields if name != "day"}
                )
            )
        return days

    def _endpoint_activity(self, organization_id: str, integration_id: str, now: datetime) -> EndpointActivity | None:
        endpoint = next(
            (e for e in self._webhooks.endpoints(organization_id) if e.doc.get("integration_id") == integration_id),
            None,
        )
        if endpoint is None:
            return None
        provider = endpoint.doc["provider"]
        hours = self._activity.hours(organization_id, now - timedelta(hours=23))
        prefix = f"wh#{provider}#"
        return EndpointActivity(
            endpoint_id=endpoint.doc["endpoint_id"],
            provider=provider,
            status=endpoint.doc.get("status", "active"),
            last_24h=_webhook_counts(hours, prefix, prefix + "refused_"),
            events_ignored_total=endpoint.events_ignored,
        )


def _webhook_counts(hours: dict[str, dict[str, int]], prefix: str, refused: str, since: str = "") -> WebhookCounts:
    return WebhookCounts(
        accepted=total(hours, prefix + "accepted", since),
        duplicate=total(hours, prefix + "duplicate", since),
        ignored=total(hours, prefix + "ignored", since),
        refused={reason: total(hours, refused + reason, since) for reason in REFUSAL_REASONS},
    )


def _summary(
    config: IntegrationConfiguration,
    history: RunHistory,
    breaker: BreakerState | None,
    dead_letters: int,
    running_sync_id: str | None,
    now: datetime,
    capture: CaptureState | None = None,
) -> IntegrationSummary:
    finished = [r for r in history.runs if r.status in {SyncStatus.SUCCEEDED, SyncStatus.FAILED}][:10]
    last = history.runs[0] if history.runs else None
    health = assess(config, history, breaker, dead_letters, now)
    if capture is not None and capture.guardian is not None:
        # A real-time database loses changes when its log drops our position: the guardian's figure.
        left = 0.0 if capture.guardian.risk is LogRisk.LOST else capture.guardian.seconds_left
        health = health.model_copy(update={"time_to_data_loss_seconds": left})
    return IntegrationSummary(
        integration_id=config.integration_id,
        integration_name=config.integration_name,
        provider_name=config.provider_name.value,
        integration_type=(config.integration_type.value if config.integration_type else "api"),
        status=config.status,
        sync_mode=config.sync_config.sync_mode.value,
        sync_frequency=config.sync_config.sync_frequency,
        health=health,
        last_sync_at=last.finished_at if last else None,
        last_success_at=history.last_success_at,
        last_sync_status=last.status if last else None,
        last_error=(last.error or "") if last else "",
        next_sync_at=_next_sync(config, history, now),
        records_last_run=last.records_written if last else None,
        consecutive_failures=history.consecutive_failures,
        error_rate=round(sum(r.status is SyncStatus.FAILED for r in finished) / len(finished), 3) if finished else None,
        circuit_breaker=breaker.state if breaker else "closed",
        dead_letters=dead_letters,
        quota=history.quota,
        running_sync_id=running_sync_id,
        change_capture=CaptureSummary.of(capture) if capture is not None else None,
    )


def _next_sync(config: IntegrationConfiguration, history: RunHistory, now: datetime) -> datetime | None:
    """A rate schedule fires every sync_frequency from when it was set: counted from the last
    scheduled run if there is one, else from the integration's creation."""
    if not wants_schedule(config) or config.status is not IntegrationStatus.ACTIVE:
        return None
    period = max(60, math.ceil(config.sync_config.sync_frequency / 60) * 60)
    scheduled = next((r.started_at for r in history.runs if r.trigger == "schedule"), None)
    anchor = scheduled or config.created_at
    periods = max(1, math.ceil((now - anchor).total_seconds() / period))
    return anchor + timedelta(seconds=periods * period)


def _recent(run: SyncRun) -> RecentRun:
    finished = run.finished_at
    return RecentRun(
        sync_id=run.sync_id,
        status=run.status,
        trigger=run.trigger,
        started_at=run.started_at,
        finished_at=finished,
        duration_seconds=round((finished - run.started_at).total_seconds(), 3) if finished else None,
        records_read=run.records_read,
        records_written=run.records_written,
        records_rejected=run.records_rejected,
        error=run.errors[-1].message if run.status is SyncStatus.FAILED and run.errors else None,
    )
