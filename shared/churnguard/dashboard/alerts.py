"""Alert rules, evaluated by a scheduled function every DashboardUpdateInterval seconds.

Each rule names a condition about a subject (an integration, or a provider's webhook endpoint).
While the condition holds there is exactly one alert for it: opened once (a conditional write on
ALERT_OPEN#<rule>#<subject>), acknowledged by a person if they like, and resolved automatically
when the condition clears. Every alert notifies once when it opens and once when it resolves, on
each channel (SNS, and the organisation's chat webhook if set): what was sent is recorded per
channel, so a failed channel is retried on the next evaluation without repeating the others.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol, get_args
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints

from churnguard.cdc_models import LogRisk
from churnguard.crypto import CredentialCipher
from churnguard.dashboard.service import DashboardService, IntegrationSummary
from churnguard.errors import ValidationFailedError
from churnguard.models import Model, StrictModel
from churnguard.netguard import BlockedAddressError, check_url
from churnguard.store.activity import ActivityStore, hour_key, total
from churnguard.store.alerts import AlertStore, OpenAlert
from churnguard.store.organizations import OrganizationStore

logger = logging.getLogger(__name__)

Rule = Literal[
    "sync_failed",
    "stale",
    "auth_failed",
    "dead_letters",
    "quota",
    "data_loss",
    "signature_failures",
    "stream_problems",
    "change_capture",
]
RULES: tuple[Rule, ...] = get_args(Rule)
AlertState = Literal["open", "acknowledged", "resolved"]
Severity = Literal["warning", "critical"]


class AlertSettingsUpdate(StrictModel):
    """PUT /api/dashboard/alert-settings. `chat_webhook_url` is write-only: set it to a URL,
    to null to remove it, or leave it out to keep the current one."""

    enabled_rules: list[Rule] = Field(default_factory=lambda: list(RULES))
    consecutive_failures: int = Field(default=3, ge=1, le=100, description="failed runs in a row that alert")
    data_loss_hours: int = Field(default=72, ge=1, le=720, description="alert when time to data loss is below")
    quota_percent: int = Field(default=80, ge=1, le=100, description="alert when provider quota use reaches")
    signature_failures_per_hour: int = Field(default=20, ge=1, le=1_000_000)
    chat_webhook_url: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        default=None,
        description="a Slack-compatible incoming webhook (https); stored encrypted, never shown again",
    )


class ChatWebhookSummary(Model):
    configured: bool
    host: str | None = Field(description="the webhook's host; its path (which holds its secret) is never shown")


class AlertSettings(Model):
    enabled_rules: list[Rule]
    consecutive_failures: int
    data_loss_hours: int
    quota_percent: int
    signature_failures_per_hour: int
    chat_webhook: ChatWebhookSummary
    version: int


class Alert(Model):
    alert_id: str
    rule: Rule
    subject: str = Field(description="the integration id, or webhook:<provider> for endpoint rules")
    integration_id: str | None
    severity: Severity
    message: str
    state: AlertState
    opened_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None


class AlertPage(Model):
    items: list[Alert]
    next_token: str | None = None


class Condition(Model):
    rule: Rule
    subject: str
    integration_id: str | None
    severity: Severity
    message: str


class Notifier(Protocol):
    """One channel: sends an alert's opening or resolution. Raises when it could not."""

    name: str

    def send(self, organization_id: str, alert: dict[str, Any], transition: Literal["opened", "resolved"]) -> None: ...


def new_alert_id(now: float) -> str:
    return f"alt_{int(now * 1000):012x}{secrets.token_hex(4)}"


def chat_context(organization_id: str) -> dict[str, str]:
    return {"organization_id": organization_id, "purpose": "alert_chat_webhook"}


def _check_chat_url(url: str) -> None:
    parts = urlsplit(url)
    problem = None
    if parts.scheme != "https":
        problem = "must be an https:// URL"
    else:
        try:
            check_url(url)
        except BlockedAddressError as exc:
            problem = str(exc)
    if problem is not None:
        raise ValidationFailedError(
            "the chat webhook URL is not allowed",
            {"fields": [{"field": "chat_webhook_url", "message": problem}]},
        )


class AlertSettingsService:
    def __init__(self, alerts: AlertStore, cipher: CredentialCipher, *, allow_plain_http: bool = False) -> None:
        """`allow_plain_http`: the local cloud's chat webhook may be http:// to a private address."""
        self._alerts = alerts
        self._cipher = cipher
        self._allow_plain_http = allow_plain_http

    def get(self, organization_id: str) -> AlertSettings:
        document, envelope, version = self._alerts.settings(organization_id)
        return self._view(document, envelope, organization_id, version)

    def put(self, organization_id: str, update: AlertSettingsUpdate, fields_set: set[str]) -> AlertSettings:
        document, envelope, version = self._alerts.settings(organization_id)
        new_document = update.model_dump(exclude={"chat_webhook_url"})
        if "chat_webhook_url" in fields_set:
            url = update.chat_webhook_url
            if url is None:
                envelope = None
            else:
                self._check(url)
                envelope = self._cipher.encrypt({"url": url}, chat_context(organization_id))
                new_document["chat_webhook_host"] = urlsplit(url).hostname
        elif envelope is not None:
            new_document["chat_webhook_host"] = document.get("chat_webhook_host")
        self._alerts.save_settings(organization_id, new_document, envelope, version)
        return self._view(new_document, envelope, organization_id, version + 1)

    def chat_url(self, organization_id: str, envelope: dict[str, Any] | None) -> str | None:
        if envelope is None:
            return None
        return str(self._cipher.decrypt(envelope, chat_context(organization_id))["url"])

    def _check(self, url: str) -> None:
        if self._allow_plain_http and urlsplit(url).scheme == "http":
            _check_chat_url("https" + url[4:])
            return
        _check_chat_url(url)

    @staticmethod
    def _view(
        document: dict[str, Any], envelope: dict[str, Any] | None, organization_id: str, version: int
    ) -> AlertSettings:
        defaults = AlertSettingsUpdate().model_dump(exclude={"chat_webhook_url"})
        merged = {**defaults, **{k: v for k, v in document.items() if k in defaults}}
        return AlertSettings(
            **merged,
            chat_webhook=ChatWebhookSummary(
                configured=envelope is not None, host=document.get("chat_webhook_host") if envelope else None
            ),
            version=version,
        )


def conditions(
    summaries: Sequence[IntegrationSummary],
    hours: dict[str, dict[str, int]],
    settings: AlertSettings,
    now: datetime,
) -> list[Condition]:
    """What is wrong now, one condition per rule and subject."""
    found: list[Condition] = []
    enabled = set(settings.enabled_rules)

    def add(rule: Rule, subject: str, integration_id: str | None, severity: Severity, message: str) -> None:
        if rule in enabled:
            found.append(
                Condition(rule=rule, subject=subject, integration_id=integration_id, severity=severity, message=message)
            )

    for item in summaries:
        if item.health.state == "paused":
            continue
        name, subject = item.integration_name, item.integration_id
        health = {c.name: c for c in item.health.components}
        failures = item.consecutive_failures
        if failures >= settings.consecutive_failures:
            what = "the last sync failed" if failures == 1 else f"the last {failures} syncs failed"
            add("sync_failed", subject, subject, "critical", f"{name}: {what} ({item.last_error})")
        if item.health.stale:
            add("stale", subject, subject, "warning", f"{name} is stale: {health['freshness'].detail}")
        if item.status.value == "auth_failed":
            add(
                "auth_failed", subject, subject, "critical", f"{name}: the source refused the credentials; replace them"
            )
        if item.dead_letters:
            add(
                "dead_letters",
                subject,
                subject,
                "warning",
                f"{name}: {item.dead_letters} webhook event(s) wait in the dead-letter queue",
            )
        quota_known = health["quota"].score is not None
        if item.quota is not None and quota_known and item.quota.share * 100 >= settings.quota_percent:
            add("quota", subject, subject, "warning", f"{name}: {health['quota'].detail}")
        _data_loss_conditions(item, hours, settings, now, add)
    since = hour_key(now - timedelta(hours=1))
    providers = {name.split("#")[1] for counts in hours.values() for name in counts if name.startswith("wh#")}
    for provider in sorted(providers):
        refused = total(hours, f"wh#{provider}#refused_signature", since)
        if refused >= settings.signature_failures_per_hour:
            add(
                "signature_failures",
                f"webhook:{provider}",
                None,
                "warning",
                f"{refused} {provider} webhook deliveries failed signature verification in the last hour",
            )
    names = {item.integration_id: item.integration_name for item in summaries}
    streams = {name.split("#")[1] for counts in hours.values() for name in counts if name.startswith("st#")}
    for stream_id in sorted(streams):
        quarantined = total(hours, f"st#{stream_id}#quarantined", since)
        gaps = total(hours, f"st#{stream_id}#gaps", since)
        problems = [
            f"{quarantined} message(s) set aside in quarantine" if quarantined else "",
            f"{gaps} sequence number(s) missing from the feed" if gaps else "",
        ]
        if quarantined or gaps:
            what = " and ".join(problem for problem in problems if problem)
            add(
                "stream_problems",
                stream_id,
                stream_id,
                "warning",
                f"{names.get(stream_id, stream_id)}: {what} in the last hour",
            )
    return found


def _data_loss_conditions(
    item: IntegrationSummary,
    hours: dict[str, dict[str, int]],
    settings: AlertSettings,
    now: datetime,
    add: Callable[[Rule, str, str | None, Severity, str], None],
) -> None:
    """Changes about to expire at the source before a sync reads them (data_loss); for a
    real-time database (change_capture), its log's position lost in the last hour, at risk, or
    the server not set up for change data capture."""
    name, subject = item.integration_name, item.integration_id
    capture = item.change_capture
    if capture is None:
        left = item.health.time_to_data_loss_seconds
        if left is not None and left < settings.data_loss_hours * 3600:
            when = (
                "changes may already be lost"
                if left <= 0
                else f"about {left / 3600:.0f} h until changes start to expire"
            )
            add("data_loss", subject, subject, "critical", f"{name}: no successful sync in time; {when} at the source")
        return
    lost = total(hours, f"cdc#{subject}#log_lost", hour_key(now - timedelta(hours=1)))
    left = item.health.time_to_data_loss_seconds
    retained = capture.retained_bytes
    if lost or capture.risk is LogRisk.LOST:
        add(
            "change_capture",
            subject,
            subject,
            "critical",
            f"{name}: the database no longer had our position in its log; every table was snapshotted again",
        )
    elif capture.risk is LogRisk.AT_RISK or (left is not None and left < settings.data_loss_hours * 3600):
        held = f"it holds {retained / 1024**3:.1f} GiB of log for us" if retained is not None else "its log grows"
        when = f"; about {left / 3600:.0f} h until it would drop our position" if left is not None else ""
        add("change_capture", subject, subject, "critical", f"{name}: {held}{when}")
    elif capture.problems:
        add(
            "change_capture",
            subject,
            subject,
            "warning",
            f"{name}: not set up for change data capture: {capture.problems[0]}",
        )


class AlertEvaluator:
    def __init__(
        self,
        *,
        dashboard: DashboardService,
        alerts: AlertStore,
        settings: AlertSettingsService,
        activity: ActivityStore,
        organizations: OrganizationStore,
        notifiers: Callable[[str, AlertSettingsService], Sequence[Notifier]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`notifiers(organization_id, settings)`: the channels of an organisation."""
        self._dashboard = dashboard
        self._alerts = alerts
        self._settings = settings
        self._activity = activity
        self._organizations = organizations
        self._notifiers = notifiers
        self._clock = clock

    def evaluate_all(self) -> dict[str, int]:
        totals = {"organizations": 0, "opened": 0, "resolved": 0}
        for organization_id in self._organizations.all():
            try:
                opened, resolved = self.evaluate(organization_id)
            except Exception:
                logger.exception("alert evaluation failed", extra={"organization_id": organization_id})
                continue
            totals["organizations"] += 1
            totals["opened"] += opened
            totals["resolved"] += resolved
        return totals

    def evaluate(self, organization_id: str) -> tuple[int, int]:
        """Opens alerts for new conditions, resolves those that cleared, sends what is due;
        returns (opened, resolved)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        settings = self._settings.get(organization_id)
        summaries = self._dashboard.summaries(organization_id).items
        hours = self._activity.hours(organization_id, now - timedelta(hours=2))
        current: dict[tuple[str, str], Condition] = {
            (c.rule, c.subject): c for c in conditions(summaries, hours, settings, now)
        }
        held = {(a.rule, a.subject): a for a in self._alerts.open_alerts(organization_id)}
        channels = self._notifiers(organization_id, self._settings)
        opened = resolved = 0
        for key, condition in current.items():
            if key in held:
                continue
            alert_id = new_alert_id(self._clock())
            document = {**condition.model_dump(mode="json"), "alert_id": alert_id, "opened_at": now.isoformat()}
            if self._alerts.open(organization_id, alert_id, document):
                opened += 1
                held[key] = OpenAlert(alert_id=alert_id, rule=condition.rule, subject=condition.subject)
        for key, alert in held.items():
            if key not in current and not alert.resolving:
                self._alerts.start_resolving(organization_id, alert, now.isoformat())
                held[key] = OpenAlert(alert.alert_id, alert.rule, alert.subject, resolving=True, sent=alert.sent)
                resolved += 1
        for alert in held.values():
            self._notify(organization_id, alert, channels)
        return opened, resolved

    def _notify(self, organization_id: str, alert: OpenAlert, channels: Sequence[Notifier]) -> None:
        """Sends what is due on each channel: the opening, then (once resolving) the resolution."""
        document: dict[str, Any] | None = None
        transitions: list[Literal["opened", "resolved"]] = ["opened", "resolved"] if alert.resolving else ["opened"]
        delivered = True
        for transition in transitions:
            for channel in channels:
                tag = f"{channel.name}:{transition}"
                if tag in alert.sent:
                    continue
                document = document or self._alerts.get(organization_id, alert.alert_id)
                try:
                    channel.send(organization_id, document, transition)
                except Exception as exc:
                    delivered = False
                    logger.warning(
                        "alert notification failed; retried at the next evaluation",
                        extra={"channel": channel.name, "alert_id": alert.alert_id, "error": type(exc).__name__},
                    )
                    continue
                self._alerts.mark_sent(organization_id, alert, tag)
        if alert.resolving and delivered:
            self._alerts.finish_resolving(organization_id, alert)


def alert_text(alert: dict[str, Any], transition: str) -> str:
    prefix = "RESOLVED" if transition == "resolved" else alert["severity"].upper()
    return f"[ChurnGuard {prefix}] {alert['message']}"


class SnsNotifier:
    name = "sns"

    def __init__(self, sns: Any, topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def send(self, organization_id: str, alert: dict[str, Any], transition: Literal["opened", "resolved"]) -> None:
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=alert_text(alert, transition)[:99],
            Message=json.dumps({"organization_id": organization_id, "transition": transition, "alert": alert}),
            MessageAttributes={
                "organization_id": {"DataType": "String", "StringValue": organization_id},
                "rule": {"DataType": "String", "StringValue": alert["rule"]},
            },
        )


class ChatWebhookNotifier:
    """Posts Slack-compatible JSON (`{"text": ...}`) to the organisation's chat webhook. The
    connection goes to an address the network guard resolved and allowed, so DNS cannot rebind
    it; no redirect is followed."""

    name = "chat"

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._timeout = timeout

    def send(self, organization_id: str, alert: dict[str, Any], transition: Literal["opened", "resolved"]) -> None:
        import urllib3

        from churnguard.netguard import allowed_addresses

        parts = urlsplit(self._url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = allowed_addresses(host, port)[0]
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        body = json.dumps({"text": alert_text(alert, transition)}).encode()
        headers = {"Content-Type": "application/json", "Host": parts.netloc}
        pool: Any
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                address, port, server_hostname=host, assert_hostname=host, timeout=self._timeout, retries=False
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=self._timeout, retries=False)
        try:
            response = pool.urlopen("POST", path, body=body, headers=headers, redirect=False)
        finally:
            pool.close()
        if not 200 <= response.status < 300:
            raise ConnectionError(f"the chat webhook answered HTTP {response.status}")


def organization_notifiers(
    sns: Any, topic_arn: str | None, alerts: AlertStore
) -> Callable[[str, AlertSettingsService], list[Notifier]]:
    """The channels of each organisation: the stack's SNS topic, and its chat webhook if set."""

    def channels(organization_id: str, settings: AlertSettingsService) -> list[Notifier]:
        found: list[Notifier] = []
        if topic_arn:
            found.append(SnsNotifier(sns, topic_arn))
        _, envelope, _ = alerts.settings(organization_id)
        url = settings.chat_url(organization_id, envelope)
        if url is not None:
            found.append(ChatWebhookNotifier(url))
        return found

    return channels


def evaluation_times(now: float, interval: int, invocation_period: int = 60) -> list[float]:
    """When an invocation at `now` (one per `invocation_period` seconds) evaluates: at once and
    every `interval` within its period when the interval is shorter; else only if a new
    interval period began since the previous invocation."""
    if interval < invocation_period:
        return [now + offset for offset in range(0, invocation_period - interval // 2, interval)]
    if int(now // interval) != int((now - invocation_period) // interval):
        return [now]
    return []
