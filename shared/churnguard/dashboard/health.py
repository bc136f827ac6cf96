"""The health score: 0–100 per integration, each component shown, and time to data loss.

    score = round(100 × Σ weight × component / Σ weight), over the components that apply

| component      | weight | 1.0 when                         | 0.0 when                        |
|----------------|--------|----------------------------------|---------------------------------|
| freshness      | 25     | last success within sync_frequency | 2 × sync_frequency ago (stale) |
| success        | 20     | every recent run succeeded       | none did (last 10 finished runs)|
| rejects        | 10     | no record rejected               | 10% or more rejected            |
| dead_letters   | 10     | none waiting                     | 10 or more waiting              |
| circuit        | 10     | breaker closed (half open: 0.5)  | breaker open                    |
| quota          | 10     | up to 80% of the daily allocation| all of it                       |
| authentication | 15     | credentials accepted             | the source refused them         |

Between the two ends a component is linear. Freshness applies to integrations that sync on a
schedule (active ones; an inactive integration syncs only when asked); success and rejects once a
run finished; quota where the provider reports it. The state: healthy from 80, degraded from 50,
failing below 50, or while the last run failed, the source refuses the credentials or the breaker
is open (no data arrives then); paused whatever the score.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field

from churnguard.models import IntegrationConfiguration, IntegrationStatus, Model
from churnguard.providers.registry import PROVIDERS
from churnguard.resilience import HALF_OPEN, OPEN, BreakerState
from churnguard.runs import RunHistory, SyncStatus, wants_schedule

HealthState = Literal["healthy", "degraded", "failing", "paused", "new"]
WEIGHTS = {
    "freshness": 25,
    "success": 20,
    "rejects": 10,
    "dead_letters": 10,
    "circuit": 10,
    "quota": 10,
    "authentication": 15,
}
RECENT = 10
BLOCKING = frozenset({"authentication", "circuit"})  # at zero, nothing syncs
HEALTHY_FROM, DEGRADED_FROM = 80, 50
STALE_FACTOR = 2
QUOTA_PRESSURE = 0.8
QUOTA_READING_LIFETIME = timedelta(days=1)
REJECTS_ZERO_AT = 0.10
DEAD_LETTERS_ZERO_AT = 10


class HealthComponent(Model):
    name: str
    weight: int
    score: float | None = Field(description="0–1; null when it does not apply to this integration")
    detail: str


class IntegrationHealth(Model):
    score: int = Field(ge=0, le=100)
    state: HealthState
    components: list[HealthComponent]
    stale: bool
    freshness_seconds: float | None = Field(description="seconds since the last successful sync")
    time_to_data_loss_seconds: float | None = Field(
        description="how long until a source that keeps changes for a while (Stripe events: 30 days) would "
        "start losing them if no sync succeeds; null where nothing expires; negative when already past"
    )


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}".replace(".0 ", " ")
    return f"{max(0, int(seconds))} s"


def _linear(value: float, good: float, bad: float) -> float:
    """1 at `good` or better, 0 at `bad` or worse, linear between."""
    if value <= good:
        return 1.0
    if value >= bad:
        return 0.0
    return (bad - value) / (bad - good)


def time_to_data_loss(config: IntegrationConfiguration, history: RunHistory, now: datetime) -> float | None:
    """Seconds until changes not yet synced start expiring at the source, for incremental syncs
    of a source that keeps changes for a limited time; None where nothing expires."""
    provider = PROVIDERS.get(config.provider_name.value)
    retention = provider.change_retention_seconds if provider else None
    if retention is None or config.sync_config.sync_mode.value == "full_sync":
        return None
    # Every change before the last successful run started was read; the oldest unread one
    # expires `retention` after that.
    since = history.last_success_started_at
    if since is None:
        return None
    return (since + timedelta(seconds=retention) - now).total_seconds()


def assess(
    config: IntegrationConfiguration,
    history: RunHistory,
    breaker: BreakerState | None,
    dead_letters: int,
    now: datetime,
) -> IntegrationHealth:
    components = [
        _freshness(config, history, now),
        _success(history),
        _rejects(history),
        HealthComponent(
            name="dead_letters",
            weight=WEIGHTS["dead_letters"],
            score=_linear(dead_letters, 0, DEAD_LETTERS_ZERO_AT),
            detail=f"{dead_letters} webhook event(s) in the dead-letter queue" if dead_letters else "none waiting",
        ),
        _circuit(breaker),
        _quota(history, now),
        HealthComponent(
            name="authentication",
            weight=WEIGHTS["authentication"],
            score=0.0 if config.status is IntegrationStatus.AUTHENTICATION_FAILED else 1.0,
            detail="the source refused the credentials; replace them"
            if config.status is IntegrationStatus.AUTHENTICATION_FAILED
            else "credentials accepted",
        ),
    ]
    applied = [c for c in components if c.score is not None]
    weight = sum(c.weight for c in applied)
    score = round(100 * sum(c.weight * (c.score or 0.0) for c in applied) / weight) if weight else 100
    age = _freshness_age(config, history, now)
    stale = age is not None and _scheduled(config) and age > STALE_FACTOR * config.sync_config.sync_frequency
    return IntegrationHealth(
        score=score,
        state=_state(
            config,
            history,
            score,
            blocked=history.consecutive_failures > 0 or any(c.score == 0.0 for c in components if c.name in BLOCKING),
        ),
        components=components,
        stale=stale,
        freshness_seconds=None if history.last_success_at is None else (now - history.last_success_at).total_seconds(),
        time_to_data_loss_seconds=time_to_data_loss(config, history, now),
    )


def organization_score(scores: list[int]) -> int:
    """The mean of the integrations' scores (paused ones left out); 100 with none."""
    return round(sum(scores) / len(scores)) if scores else 100


def _state(config: IntegrationConfiguration, history: RunHistory, score: int, *, blocked: bool) -> HealthState:
    if config.status is IntegrationStatus.PAUSED:
        return "paused"
    if blocked:
        return "failing"
    if not history.runs and score >= HEALTHY_FROM:
        return "new"
    if score >= HEALTHY_FROM:
        return "healthy"
    return "degraded" if score >= DEGRADED_FROM else "failing"


def _scheduled(config: IntegrationConfiguration) -> bool:
    return wants_schedule(config) and config.status not in {IntegrationStatus.PAUSED, IntegrationStatus.INACTIVE}


def _freshness_age(config: IntegrationConfiguration, history: RunHistory, now: datetime) -> float | None:
    """Seconds the data has been waiting: since the last success, or since the integration was
    created if it never synced."""
    if not _scheduled(config):
        return None
    return (now - (history.last_success_at or config.created_at)).total_seconds()


def _freshness(config: IntegrationConfiguration, history: RunHistory, now: datetime) -> HealthComponent:
    age = _freshness_age(config, history, now)
    frequency = config.sync_config.sync_frequency
    if age is None:
        return HealthComponent(
            name="freshness", weight=WEIGHTS["freshness"], score=None, detail="not synced on a schedule"
        )
    since = "last successful sync" if history.last_success_at else "created, never synced,"
    return HealthComponent(
        name="freshness",
        weight=WEIGHTS["freshness"],
        score=_linear(age, frequency, STALE_FACTOR * frequency),
        detail=f"{since} {_ago(age)} ago; syncs every {_ago(frequency)}, stale after {_ago(2 * frequency)}",
    )


def _finished(history: RunHistory) -> Sequence[SyncStatus]:
    return [r.status for r in history.runs if r.status in {SyncStatus.SUCCEEDED, SyncStatus.FAILED}][:RECENT]


def _success(history: RunHistory) -> HealthComponent:
    finished = _finished(history)
    if not finished:
        return HealthComponent(name="success", weight=WEIGHTS["success"], score=None, detail="no finished run yet")
    succeeded = finished.count(SyncStatus.SUCCEEDED)
    detail = f"{succeeded} of the last {len(finished)} runs succeeded"
    if history.consecutive_failures:
        detail += f"; the last {history.consecutive_failures} failed"
    return HealthComponent(name="success", weight=WEIGHTS["success"], score=succeeded / len(finished), detail=detail)


def _rejects(history: RunHistory) -> HealthComponent:
    recent = history.runs[:RECENT]
    written = sum(r.records_written for r in recent)
    rejected = sum(r.records_rejected for r in recent)
    if not written + rejected:
        return HealthComponent(name="rejects", weight=WEIGHTS["rejects"], score=None, detail="no records yet")
    rate = rejected / (written + rejected)
    return HealthComponent(
        name="rejects",
        weight=WEIGHTS["rejects"],
        score=_linear(rate, 0.0, REJECTS_ZERO_AT),
        detail=f"{rejected} of {written + rejected} records rejected in the last {len(recent)} runs ({rate:.1%})",
    )


def _circuit(breaker: BreakerState | None) -> HealthComponent:
    state = breaker.state if breaker else "closed"
    score = {OPEN: 0.0, HALF_OPEN: 0.5}.get(state, 1.0)
    detail = {
        OPEN: "open: the source failed repeatedly and calls are held back",
        HALF_OPEN: "half open: one call is testing whether the source recovered",
    }.get(state, "closed")
    return HealthComponent(name="circuit", weight=WEIGHTS["circuit"], score=score, detail=detail)


def _quota(history: RunHistory, now: datetime) -> HealthComponent:
    quota = history.quota
    if quota is None:
        return HealthComponent(
            name="quota", weight=WEIGHTS["quota"], score=None, detail="the provider reports no allocation"
        )
    if now - quota.observed_at > QUOTA_READING_LIFETIME:
        # Daily allocations roll over: a reading from more than a day ago says nothing about now.
        return HealthComponent(
            name="quota", weight=WEIGHTS["quota"], score=None, detail="no reading of the allocation in the last day"
        )
    return HealthComponent(
        name="quota",
        weight=WEIGHTS["quota"],
        score=_linear(quota.share, QUOTA_PRESSURE, 1.0),
        detail=f"{quota.used} of {quota.limit} {quota.what} used ({quota.share:.0%})",
    )
