"""The one retry policy, rate limiter and circuit breaker for every external call.

Sources (databases, SaaS APIs) and sinks (S3, the Analytics API) all call out through
`RetryPolicy.call`; connectors additionally go through a `Guard`, which adds the integration's
rate limit and circuit breaker. Time, sleep and randomness are injectable, so tests run the real
logic without waiting.

- Backoff is exponential with full jitter: attempt n sleeps uniform(0, min(cap, base * 2**n)).
  An error that says when to come back (`retry_after`, e.g. from an HTTP Retry-After header)
  is honoured instead, capped the same way.
- Attempts are bounded by `SyncConfiguration.retry_attempts` (retries after the first try) and,
  when the caller has a deadline (a Lambda's time budget), a sleep that would overrun it is not
  taken: the error goes up and Step Functions retries the task later.
- The circuit breaker's state lives in DynamoDB (`store.circuit_breakers`), so a source that is
  down stays "open" across Lambda invocations instead of every invocation hammering it again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from churnguard.errors import ChurnGuardError
from churnguard.models import SyncConfiguration

T = TypeVar("T")

DEFAULT_MAX_DELAY = 300.0


class RetryableError(Exception):
    """An error worth trying again; `retry_after` (seconds) when the other side said when."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CircuitOpenError(ChurnGuardError):
    """The integration's source failed repeatedly; calls are refused until `retry_after` passes."""

    status_code = 503
    code = "circuit_open"

    def __init__(self, integration_id: str, retry_after: float) -> None:
        super().__init__(
            "the source failed repeatedly; calls are paused before trying again",
            {"integration_id": integration_id, "retry_after_seconds": round(retry_after, 1)},
        )
        self.retry_after = retry_after


def is_retryable(exc: BaseException) -> bool:
    """RetryableError, or any error that says it is (`retryable = True`, e.g. TransientSourceError)."""
    return isinstance(exc, RetryableError) or getattr(exc, "retryable", False) is True


@dataclass
class RetryPolicy:
    attempts: int
    base_delay: float
    max_delay: float = DEFAULT_MAX_DELAY
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random

    @classmethod
    def from_sync_config(
        cls,
        config: SyncConfiguration,
        *,
        max_delay: float = DEFAULT_MAX_DELAY,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> RetryPolicy:
        return cls(config.retry_attempts, float(config.retry_backoff), max_delay, sleep, clock)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        ceiling = min(self.max_delay, self.base_delay * (2.0**retry))
        return self.jitter() * ceiling

    def call(
        self,
        fn: Callable[[], T],
        *,
        retryable: Callable[[BaseException], bool] = is_retryable,
        deadline: float | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Runs `fn`, retrying what `retryable` accepts. `deadline` is on `clock`'s scale."""
        retry = 0
        while True:
            try:
                return fn()
            except Exception as exc:
                if on_error is not None:
                    on_error(exc)
                if retry >= self.attempts or not retryable(exc):
                    raise
                pause = self.delay(retry, getattr(exc, "retry_after", None))
                if deadline is not None and self.clock() + pause > deadline:
                    raise
                self.sleep(pause)
                retry += 1


@dataclass(frozen=True)
class ProviderLimits:
    """What a provider documents it serves one account: requests a minute, and at once. A
    connector declares its provider's; `SyncConfiguration` may override either."""

    requests_per_minute: int
    concurrent_requests: int
    source: str  # where the figures come from, for the README and the run's owner


class RateLimiter:
    """At most `requests_per_minute` calls (a token bucket; bursts up to `concurrent_requests`)
    and at most `concurrent_requests` in flight, within this process."""

    def __init__(
        self,
        requests_per_minute: int,
        concurrent_requests: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = requests_per_minute / 60.0
        self._capacity = float(max(1, min(concurrent_requests, requests_per_minute)))
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrent_requests)

    @classmethod
    def from_sync_config(
        cls,
        config: SyncConfiguration,
        default_limits: ProviderLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RateLimiter:
        """The integration's overrides, else the provider's documented limits."""
        return cls(
            config.requests_per_minute or default_limits.requests_per_minute,
            config.concurrent_requests or default_limits.concurrent_requests,
            clock=clock,
            sleep=sleep,
        )

    def _take(self) -> float:
        """Takes a token, or returns how long to wait for one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._slots:
            while (wait := self._take()) > 0:
                self._sleep(wait)
            yield


class BreakerStore(Protocol):
    def load(self, organization_id: str, integration_id: str) -> BreakerState: ...

    def record_failure(self, organization_id: str, integration_id: str, now: float, threshold: int) -> BreakerState: ...

    def acquire_probe(self, organization_id: str, integration_id: str, seen: BreakerState, now: float) -> bool: ...

    def close(self, organization_id: str, integration_id: str) -> BreakerState: ...


@dataclass(frozen=True)
class BreakerState:
    state: str = "closed"  # closed | open | half_open
    failures: int = 0
    changed_at: float = 0.0
    version: int = 0


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class UnsharedBreakerStore:
    """A breaker state held in memory for one connector: for testing an integration that is not
    saved yet, which has no breaker to share and must leave nothing behind."""

    def __init__(self) -> None:
        self._state = BreakerState()

    def load(self, organization_id: str, integration_id: str) -> BreakerState:
        return self._state

    def record_failure(self, organization_id: str, integration_id: str, now: float, threshold: int) -> BreakerState:
        failures = self._state.failures + 1
        state = OPEN if failures >= threshold else self._state.state
        self._state = BreakerState(state, failures, now, self._state.version + 1)
        return self._state

    def acquire_probe(self, organization_id: str, integration_id: str, seen: BreakerState, now: float) -> bool:
        self._state = BreakerState(HALF_OPEN, seen.failures, now, seen.version + 1)
        return True

    def close(self, organization_id: str, integration_id: str) -> BreakerState:
        self._state = BreakerState(version=self._state.version + 1)
        return self._state


@dataclass
class CircuitBreaker:
    """Per integration: opens after `failure_threshold` consecutive failed calls, refuses calls
    for `reset_timeout` seconds, then lets one probe through (half-open); a success closes it.

    The state is cached for `refresh_seconds`, so a healthy source costs no DynamoDB reads per
    call; only failures and state changes write, and those writes are conditional.
    """

    store: BreakerStore
    organization_id: str
    integration_id: str
    failure_threshold: int = 5
    reset_timeout: float = 60.0
    refresh_seconds: float = 5.0
    clock: Callable[[], float] = time.time
    _cached: BreakerState | None = field(default=None, init=False)
    _loaded_at: float = field(default=0.0, init=False)
    _probing: bool = field(default=False, init=False)

    def _state(self) -> BreakerState:
        now = self.clock()
        if self._cached is None or now - self._loaded_at >= self.refresh_seconds:
            self._cached = self.store.load(self.organization_id, self.integration_id)
            self._loaded_at = now
        return self._cached

    def before_call(self) -> None:
        """Raises CircuitOpenError while the breaker refuses calls."""
        state = self._state()
        if state.state == CLOSED or self._probing:
            return
        waited = self.clock() - state.changed_at
        if waited < self.reset_timeout:
            raise CircuitOpenError(self.integration_id, self.reset_timeout - waited)
        # Open long enough (or a probe that never reported back): one caller gets to probe.
        if self.store.acquire_probe(self.organization_id, self.integration_id, state, self.clock()):
            self._probing = True
            return
        self._cached = None
        raise CircuitOpenError(self.integration_id, self.reset_timeout)

    def record_success(self) -> None:
        state = self._state()
        if state.state != CLOSED or state.failures or self._probing:
            self._cached = self.store.close(self.organization_id, self.integration_id)
            self._loaded_at = self.clock()
        self._probing = False

    def record_failure(self) -> None:
        self._cached = self.store.record_failure(
            self.organization_id, self.integration_id, self.clock(), self.failure_threshold
        )
        self._loaded_at = self.clock()
        self._probing = False


@dataclass
class Guard:
    """Retry policy + rate limiter + circuit breaker: how a connector makes every external call."""

    retry: RetryPolicy
    limiter: RateLimiter
    breaker: CircuitBreaker
    retryable: Callable[[BaseException], bool] = is_retryable

    def call(self, fn: Callable[[], T], *, deadline: float | None = None, limited: bool = True) -> T:
        """`limited=False` for calls that are not new requests (fetching more rows of an open
        cursor): they still count for the breaker but not against the rate limit."""

        def attempt() -> T:
            self.breaker.before_call()
            try:
                if limited:
                    with self.limiter.slot():
                        result = fn()
                else:
                    result = fn()
            except Exception as exc:
                if self.retryable(exc) and not getattr(exc, "throttled", False):
                    self.breaker.record_failure()
                raise
            self.breaker.record_success()
            return result

        return self.retry.call(attempt, retryable=self.retryable, deadline=deadline)
