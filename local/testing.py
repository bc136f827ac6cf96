"""Helpers for tests that drive a `LocalCloud`: a manual clock and a bounded wait.

Background work (pollers, Step Functions, schedules) finishes "eventually"; tests wait for an
observable outcome with a deadline instead of sleeping for a guessed time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

T = TypeVar("T")


class ManualClock:
    """A clock for `LocalCloud(clock=...)` that moves only when a test moves it, never backwards."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance_to(self, when: datetime) -> None:
        with self._lock:
            self._now = max(self._now, when)


def wait_for(condition: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.1, what: str = "") -> T:
    """Polls `condition` until it returns something truthy, or fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or condition!r}")
        time.sleep(interval)
