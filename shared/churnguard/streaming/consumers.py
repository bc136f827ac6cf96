"""Continuous consumers: a Step Functions workflow loops time-budgeted turns of a stream's
consumer (Redis Streams, WebSocket feeds), and each turn forwards what it read to the ingest stream.

Redis: the consumer reads in the stream's consumer group (default: the stream id) as one named
consumer. A turn first re-reads the entries it was given but never acknowledged (a turn that
stopped between forwarding and XACK), then claims entries other consumers left pending longer than
`claim_idle_seconds` (XAUTOCLAIM), then reads new ones, blocking briefly when there are none. Entries are
acknowledged only after the ingest stream took them; an entry delivered more than
`max_deliveries` times is set aside in quarantine with the reason and acknowledged, so it cannot
stall the group. Forwarding again after a crash is harmless: the entry's identity (its key and id)
lands it once.

A turn ends the workflow when the stream was paused or deleted, or when another execution took
over; every `TURNS_PER_EXECUTION` turns it starts a fresh execution and hands over to it, so the
execution history stays small.
"""

from __future__ import annotations

import logging
import random
import socket as socket_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any, Protocol

import orjson

from churnguard.continuous import TURNS_PER_EXECUTION, ConsumerWorkflow, TurnOutcome
from churnguard.errors import NotFoundError
from churnguard.integrations import IntegrationService
from churnguard.models import IntegrationCredentials
from churnguard.netguard import allowed_addresses
from churnguard.pipeline.mapping import value_getter
from churnguard.store.activity import ActivityStore
from churnguard.store.streams import QuarantineItem, StreamStore
from churnguard.stream_models import StreamConfiguration, StreamStatus, StreamType
from churnguard.streaming.messages import ingest_identity
from churnguard.streaming.sources import IngestEvent, IngestWriter

logger = logging.getLogger(__name__)

CONSUMER_NAME = "churnguard"
BLOCK_MS = 1000
RECHECK_SECONDS = 5.0  # how often a turn asks whether the stream still wants it
MAX_ENTRY_BYTES = 900_000  # a Kinesis record holds 1 MiB, the envelope included


@dataclass
class TurnResult:
    forwarded: int = 0
    quarantined: int = 0
    lag_messages: int | None = None


class Consumer(Protocol):
    def turn(self, budget_seconds: float, still_wanted: Callable[[], bool]) -> TurnResult: ...


ProblemReport = Callable[[StreamConfiguration, str, int], None]


def _unreported(config: StreamConfiguration, problem: str, count: int) -> None:
    return None


def redis_identity(key: str, entry_id: str) -> str:
    return "r" + blake2b(f"{key}\x1f{entry_id}".encode(), digest_size=16).hexdigest()


def entry_payload(fields: dict[bytes, bytes]) -> bytes:
    """An entry's message: the value of its only field, else its fields as a JSON object."""
    if len(fields) == 1:
        return next(iter(fields.values()))
    return orjson.dumps(
        {name.decode("utf-8", "replace"): value.decode("utf-8", "replace") for name, value in fields.items()}
    )


class RedisStreamConsumer:
    def __init__(
        self,
        config: StreamConfiguration,
        client: Any,
        writer: IngestWriter,
        store: StreamStore,
        clock: Callable[[], float] = time.time,
        report: ProblemReport | None = None,
    ) -> None:
        self._config = config
        self._report = report or _unreported
        self._redis = client
        self._writer = writer
        self._store = store
        self._clock = clock
        self._group = config.consumer_group

    def turn(self, budget_seconds: float, still_wanted: Callable[[], bool]) -> TurnResult:
        """Reads until the budget is spent, or until the stream is paused, deleted or taken over
        (asked every RECHECK_SECONDS)."""
        deadline = time.monotonic() + budget_seconds
        recheck = time.monotonic() + RECHECK_SECONDS
        result = TurnResult()
        for key in self._config.topics:
            self._ensure_group(key)
        # What this consumer was given and never acknowledged, then what others left behind.
        for key in self._config.topics:
            while self._deliver(key, self._read(key, "0"), result):
                pass
            self._deliver(key, self._claim(key), result)
        while time.monotonic() < deadline:
            if time.monotonic() >= recheck:
                if not still_wanted():
                    break
                recheck = time.monotonic() + RECHECK_SECONDS
            block = max(1, min(BLOCK_MS, int((deadline - time.monotonic()) * 1000)))
            read = self._redis.xreadgroup(
                self._group,
                CONSUMER_NAME,
                dict.fromkeys(self._config.topics, ">"),
                count=self._config.batch_size,
                block=block,
            )
            for key, entries in read or []:
                self._deliver(key.decode() if isinstance(key, bytes) else key, entries, result)
        result.lag_messages = self._lag()
        return result

    def _ensure_group(self, key: str) -> None:
        start = "0" if self._config.connection_config.starting_position == "TRIM_HORIZON" else "$"
        try:
            self._redis.xgroup_create(key, self._group, id=start, mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, key: str, start: str) -> list[Any]:
        read = self._redis.xreadgroup(self._group, CONSUMER_NAME, {key: start}, count=self._config.batch_size)
        return list(read[0][1]) if read else []

    def _claim(self, key: str) -> list[Any]:
        idle_ms = self._config.connection_config.claim_idle_seconds * 1000
        claimed = self._redis.xautoclaim(
            key, self._group, CONSUMER_NAME, min_idle_time=idle_ms, start_id="0-0", count=self._config.batch_size
        )
        return list(claimed[1])

    def _deliver(self, key: str, entries: list[Any], result: TurnResult) -> bool:
        """Forwards `entries` (quarantining those delivered too often), then acknowledges them."""
        if not entries:
            return False
        ids = [_text(entry_id) for entry_id, _ in entries]
        counts = self._delivery_counts(key, ids)
        limit = self._config.connection_config.max_deliveries
        now = self._clock()
        forward: list[IngestEvent] = []
        set_aside: list[QuarantineItem] = []
        for (_, fields), text_id in zip(entries, ids, strict=True):
            if not fields:  # an entry trimmed away while pending
                continue
            payload = entry_payload(fields)
            attempts = counts.get(text_id, 1)
            reason = None
            if attempts > limit:
                reason = f"delivered {attempts} times without being forwarded (max_deliveries {limit})"
            elif len(payload) > MAX_ENTRY_BYTES:
                reason = f"the entry is larger than {MAX_ENTRY_BYTES} bytes"
            if reason is not None:
                set_aside.append(
                    QuarantineItem(
                        self._config.stream_id,
                        key,
                        text_id,
                        redis_identity(key, text_id),
                        payload,
                        _arrival(text_id),
                        reason,
                        attempts,
                        now,
                    )
                )
                continue
            forward.append(
                IngestEvent(
                    self._config.organization_id,
                    self._config.stream_id,
                    redis_identity(key, text_id),
                    payload,
                    _arrival(text_id),
                    attempts,
                )
            )
        failures = [failure for failure in self._writer.put(forward) if failure is not None] if forward else []
        if failures:
            raise ForwardingFailed(f"{len(failures)} entries were not taken by the ingest stream: {failures[0]}")
        if set_aside:
            self._store.quarantine(set_aside)
            self._report(self._config, "quarantined", len(set_aside))
        self._redis.xack(key, self._group, *ids)
        result.forwarded += len(forward)
        result.quarantined += len(set_aside)
        return True

    def _delivery_counts(self, key: str, ids: list[str]) -> dict[str, int]:
        pending = self._redis.xpending_range(
            key, self._group, min=ids[0], max=ids[-1], count=len(ids) + 10, consumername=CONSUMER_NAME
        )
        return {_text(item["message_id"]): int(item["times_delivered"]) for item in pending}

    def _lag(self) -> int | None:
        total = 0
        for key in self._config.topics:
            for group in self._redis.xinfo_groups(key):
                if _text(group["name"]) == self._group:
                    lag = group.get("lag")
                    if lag is None:
                        return None
                    total += int(lag) + int(group.get("pending", 0))
        return total


class WebSocketConsumer:
    """A turn of a WebSocket feed: connect (to the address the guard allowed) with the configured
    headers, send the subscribe messages, and after a reconnect the resume message with the last
    sequence landed; send heartbeats (pings are answered by the client); forward what arrives in
    batches; reconnect after a drop with exponential backoff and full jitter. With a
    `sequence_field`, a jump in sequence numbers is counted as a gap (an alert on the dashboard),
    never skipped silently; a replayed message lands once by its identity."""

    FLUSH_SECONDS = 1.0
    MAX_BACKOFF_SECONDS = 30.0

    def __init__(
        self,
        config: StreamConfiguration,
        credentials: IntegrationCredentials | None,
        writer: IngestWriter,
        store: StreamStore,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        report: ProblemReport | None = None,
    ) -> None:
        self._config = config
        self._report = report or _unreported
        self._credentials = credentials
        self._writer = writer
        self._store = store
        self._clock = clock
        self._sleep = sleep
        connection = config.connection_config
        self._sequence = value_getter(connection.sequence_field) if connection.sequence_field else None
        self._event_id = value_getter(config.event_id_field) if config.event_id_field else None

    def turn(self, budget_seconds: float, still_wanted: Callable[[], bool]) -> TurnResult:
        deadline = time.monotonic() + budget_seconds
        result = TurnResult()
        failures = 0
        recheck = time.monotonic() + RECHECK_SECONDS
        while time.monotonic() < deadline:
            # Each connection resumes from what has landed (a drop may have moved it).
            checkpoint = self._store.checkpoint(WEBSOCKET_SCOPE, self._config.stream_id)
            last = int(checkpoint.position) if checkpoint.position is not None else None
            try:
                self._session(deadline, last, checkpoint, result, still_wanted)
                break  # the budget ran out or the stream no longer wants this turn
            except (OSError, WebSocketProblem) as exc:
                failures += 1
                wait = min(self.MAX_BACKOFF_SECONDS, 0.5 * 2**failures) * random.random()  # noqa: S311 - jitter
                logger.warning("feed connection lost", extra={"stream_id": self._config.stream_id, "error": str(exc)})
                self._sleep(min(wait, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= recheck:
                if not still_wanted():
                    break
                recheck = time.monotonic() + RECHECK_SECONDS
        return result

    def _session(
        self,
        deadline: float,
        last: int | None,
        checkpoint: Any,
        result: TurnResult,
        still_wanted: Callable[[], bool],
    ) -> None:
        """One connection, until the budget ends or the stream no longer wants it; raises when
        the feed drops it (what arrived before is flushed by then)."""
        from websockets.exceptions import WebSocketException

        try:
            with connect_feed(self._config, self._credentials) as socket:
                for message in self._config.connection_config.subscribe_messages:
                    socket.send(_wire(message, last))
                resume = self._config.connection_config.resume_message
                if last is not None and resume is not None:
                    socket.send(_wire(resume, last))
                dropped = self._pump(socket, deadline, last, checkpoint, result, still_wanted)
        except WebSocketException as exc:
            dropped = exc
        if dropped is not None:
            raise WebSocketProblem(f"{type(dropped).__name__}: {dropped}") from None

    def _pump(
        self,
        socket: Any,
        deadline: float,
        last: int | None,
        checkpoint: Any,
        result: TurnResult,
        still_wanted: Callable[[], bool],
    ) -> Exception | None:
        """Receives and forwards in batches; what arrived before a drop is forwarded too (and
        the drop returned)."""
        from websockets.exceptions import WebSocketException

        pending: list[IngestEvent] = []
        newest = last
        dropped: Exception | None = None
        flush_at = time.monotonic() + self.FLUSH_SECONDS
        beat_at = time.monotonic() + self._config.connection_config.heartbeat_seconds
        recheck = time.monotonic() + RECHECK_SECONDS
        while time.monotonic() < deadline:
            try:
                raw = socket.recv(timeout=min(self.FLUSH_SECONDS, max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                raw = None
            except WebSocketException as exc:
                dropped = exc
                break
            if raw is not None:
                newest = self._take(raw, newest, pending)
            now = time.monotonic()
            if pending and (now >= flush_at or len(pending) >= self._config.batch_size):
                checkpoint = self._flush(pending, newest, checkpoint, result)
                last, pending, flush_at = newest, [], now + self.FLUSH_SECONDS
            if self._config.connection_config.heartbeat_message is not None and now >= beat_at:
                socket.send(_wire(self._config.connection_config.heartbeat_message, last))
                beat_at = now + self._config.connection_config.heartbeat_seconds
            if now >= recheck:
                if not still_wanted():
                    break
                recheck = now + RECHECK_SECONDS
        if pending:
            self._flush(pending, newest, checkpoint, result)
        return dropped

    def _take(self, raw: str | bytes, newest: int | None, pending: list[IngestEvent]) -> int | None:
        payload = raw.encode() if isinstance(raw, str) else raw
        body: Any = None
        if self._sequence is not None or self._event_id is not None:
            try:
                body = orjson.loads(payload)
            except orjson.JSONDecodeError:
                body = None
        if isinstance(body, dict) and self._sequence is not None:
            sequence = self._sequence(body)
            if isinstance(sequence, int) and not isinstance(sequence, bool):
                if newest is not None and sequence <= newest:
                    return newest  # a replay of what already landed
                if newest is not None and sequence > newest + 1:
                    missing = sequence - newest - 1
                    logger.warning(
                        "sequence gap in the feed",
                        extra={"stream_id": self._config.stream_id, "after": newest, "next": sequence},
                    )
                    # Recorded at once, where the metrics and the dashboard's alert read them.
                    self._store.add_stats(self._config.stream_id, self._clock(), {"sequence_gaps": missing}, None)
                    self._report(self._config, "gaps", missing)
                newest = sequence
        event_id = self._event_id(body) if isinstance(body, dict) and self._event_id is not None else None
        pending.append(
            IngestEvent(
                self._config.organization_id,
                self._config.stream_id,
                ingest_identity(payload, event_id),
                payload,
                self._clock(),
            )
        )
        return newest

    def _flush(self, pending: list[IngestEvent], newest: int | None, checkpoint: Any, result: TurnResult) -> Any:
        failures = [failure for failure in self._writer.put(pending) if failure is not None]
        if failures:
            raise ForwardingFailed(f"{len(failures)} messages were not taken by the ingest stream: {failures[0]}")
        result.forwarded += len(pending)
        if newest is None:
            return checkpoint
        return self._store.advance(WEBSOCKET_SCOPE, self._config.stream_id, checkpoint, str(newest))


WEBSOCKET_SCOPE = "websocket"


def connect_feed(config: StreamConfiguration, credentials: IntegrationCredentials | None) -> Any:
    """A WebSocket connection to the stream's feed, through an address the guard allowed, with the
    configured headers and the secret ones from the credentials (`header.<Name>`)."""
    from urllib.parse import urlsplit

    from websockets.sync.client import connect

    url = config.connection_config.url or ""
    parts = urlsplit(url)
    tls = parts.scheme == "wss"
    port = parts.port or (443 if tls else 80)
    (address, *_) = allowed_addresses(parts.hostname or "", port)
    sock = socket_module.create_connection((address, port), timeout=10)
    headers = dict(config.connection_config.headers)
    if credentials is not None:
        for name, secret in credentials.custom_fields.items():
            if name.startswith("header."):
                headers[name.removeprefix("header.")] = secret.get_secret_value()
    return connect(
        url,
        sock=sock,
        server_hostname=parts.hostname if tls else None,
        additional_headers=headers,
        open_timeout=10,
        ping_interval=20,
        ping_timeout=20,
        close_timeout=5,
        max_size=MAX_ENTRY_BYTES,
    )


class WebSocketProblem(Exception):
    """The feed refused or dropped the connection."""


def _wire(message: Any, last: int | None) -> str:
    """A configured message as sent: text as is, anything else as JSON; `{last_sequence}` filled in."""
    text = message if isinstance(message, str) else orjson.dumps(message).decode()
    if last is not None:
        text = text.replace("{last_sequence}", str(last))
    return text


class ForwardingFailed(Exception):
    """The ingest stream refused entries; the turn fails and its workflow retries it."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _arrival(entry_id: str) -> float:
    return int(entry_id.split("-", 1)[0]) / 1000


class ConsumerTurns:
    """One turn of a stream's consumer workflow: checks the stream still wants this execution,
    runs the consumer for the budget, records what it saw, and hands over to a fresh execution
    when this one has looped long enough."""

    def __init__(
        self,
        store: StreamStore,
        integrations: IntegrationService,
        writer: IngestWriter,
        workflow: ConsumerWorkflow,
        clock: Callable[[], float] = time.time,
        activity: ActivityStore | None = None,
    ) -> None:
        self._activity = activity
        self._store = store
        self._integrations = integrations
        self._writer = writer
        self._workflow = workflow
        self._clock = clock

    def turn(self, organization_id: str, stream_id: str, execution: str, iteration: int, budget: float) -> TurnOutcome:
        try:
            config = self._store.get(organization_id, stream_id)
        except NotFoundError:
            return TurnOutcome(False, iteration, reason="the stream was deleted")
        if config.consumer_execution != execution:
            return TurnOutcome(False, iteration, reason="another execution consumes this stream")
        if config.status is not StreamStatus.ACTIVE:
            return TurnOutcome(False, iteration, reason="the stream is paused")
        if iteration >= TURNS_PER_EXECUTION:
            self._hand_over(config)
            return TurnOutcome(False, iteration, reason="handed over to a fresh execution")
        started = time.perf_counter()
        result = self._consumer(config).turn(budget, lambda: self._wanted(organization_id, stream_id, execution))
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._store.add_stats(
            stream_id,
            self._clock(),
            {
                "forwarded": result.forwarded,
                "consumer_quarantined": result.quarantined,
                "turn_ms": round(elapsed_ms, 3),
            },
            None,
            gauges={} if result.lag_messages is None else {"lag_messages": result.lag_messages},
        )
        return TurnOutcome(True, iteration + 1, result.forwarded, result.quarantined)

    def _problem(self, config: StreamConfiguration, problem: str, count: int) -> None:
        """Counts a quarantine or a gap where the dashboard's stream_problems alert reads it."""
        if self._activity is not None:
            update = self._activity.hour_update(config.organization_id, {f"st#{config.stream_id}#{problem}": count})
            self._activity.add(update)

    def _wanted(self, organization_id: str, stream_id: str, execution: str) -> bool:
        try:
            config = self._store.get(organization_id, stream_id)
        except NotFoundError:
            return False
        return config.status is StreamStatus.ACTIVE and config.consumer_execution == execution

    def _hand_over(self, config: StreamConfiguration) -> None:
        execution = self._workflow.start(config.organization_id, config.stream_id)
        after = config.model_copy(update={"consumer_execution": execution, "version": config.version + 1})
        self._store.put(config, after)

    def _consumer(self, config: StreamConfiguration) -> Consumer:
        if config.stream_type is StreamType.REDIS_STREAMS:
            client = redis_client(config, self._credentials(config))
            return RedisStreamConsumer(config, client, self._writer, self._store, self._clock, self._problem)
        if config.stream_type is StreamType.WEBSOCKET:
            credentials = self._credentials(config)
            return WebSocketConsumer(config, credentials, self._writer, self._store, self._clock, report=self._problem)
        raise ValueError(f"no continuous consumer for {config.stream_type.value} streams")

    def _credentials(self, config: StreamConfiguration) -> IntegrationCredentials | None:
        """The stream's credentials (held by its integration), or None when it has none."""
        if not self._integrations.has_credentials(config.organization_id, config.stream_id):
            return None
        return self._integrations.load_credentials(config.organization_id, config.stream_id)


def redis_client(config: StreamConfiguration, credentials: IntegrationCredentials | None) -> Any:
    """A client of an address the guard allowed. Plain Redis connects to the address resolved here
    (DNS cannot rebind it); TLS (rediss) connects by name, so the certificate verifies against it,
    after the same check."""
    from urllib.parse import urlsplit

    import redis

    url = urlsplit(config.connection_config.url or "")
    port = url.port or 6379
    (address, *_) = allowed_addresses(url.hostname or "", port)
    tls = url.scheme == "rediss"
    password = credentials.password.get_secret_value() if credentials and credentials.password else None
    username = credentials.username.get_secret_value() if credentials and credentials.username else None
    database = int(url.path.strip("/")) if url.path.strip("/").isdigit() else 0
    return redis.Redis(
        host=(url.hostname or address) if tls else address,
        port=port,
        db=database,
        username=username,
        password=password,
        ssl=tls,
        socket_timeout=BLOCK_MS / 1000 + 10,
        socket_connect_timeout=5,
    )
