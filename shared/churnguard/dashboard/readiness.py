"""Readiness: whether the platform's own dependencies answer — the table, the data lake and the
webhook queue. Anyone may ask (a load balancer, an uptime check), so the answer holds no data about
any organisation, names no resource, and is cached for a few seconds: a flood of probes costs at
most one round of AWS calls per container per CACHE_SECONDS."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from churnguard.models import Model

logger = logging.getLogger(__name__)

CACHE_SECONDS = 10.0
CheckState = Literal["ok", "unreachable"]


class Readiness(Model):
    status: Literal["ready", "degraded"]
    checks: dict[str, CheckState]


@dataclass(frozen=True)
class Dependency:
    """One dependency and a cheap call that fails when it does not answer."""

    name: str
    probe: Callable[[], object]


class ReadinessProbe:
    def __init__(
        self,
        dependencies: Sequence[Dependency],
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dependencies = dependencies
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._answer: tuple[float, Readiness] | None = None

    def check(self) -> Readiness:
        now = self._clock()
        if self._answer is not None and now - self._answer[0] < self._cache_seconds:
            return self._answer[1]
        checks: dict[str, CheckState] = {}
        for dependency in self._dependencies:
            try:
                dependency.probe()
            except Exception as exc:  # any failure means not ready; the log says which
                logger.warning(
                    "readiness probe failed", extra={"dependency": dependency.name, "error": type(exc).__name__}
                )
                checks[dependency.name] = "unreachable"
            else:
                checks[dependency.name] = "ok"
        status: Literal["ready", "degraded"] = "ready" if all(v == "ok" for v in checks.values()) else "degraded"
        answer = Readiness(status=status, checks=checks)
        self._answer = (now, answer)
        return answer
