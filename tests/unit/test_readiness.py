"""The readiness probe: every dependency asked, a failing one named, and a flood of probes
answered from a short cache."""

from __future__ import annotations

from churnguard.dashboard.readiness import CACHE_SECONDS, Dependency, ReadinessProbe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_dependency_makes_the_platform_degraded_and_is_named() -> None:
    def refuse() -> None:
        raise ConnectionError("no route to host")

    probe = ReadinessProbe([Dependency("dynamodb", lambda: None), Dependency("queue", refuse)])
    readiness = probe.check()
    assert readiness.status == "degraded"
    assert readiness.checks == {"dynamodb": "ok", "queue": "unreachable"}


def test_probes_are_answered_from_the_cache_for_a_few_seconds() -> None:
    asked: list[str] = []
    clock = Clock()
    probe = ReadinessProbe([Dependency("s3", lambda: asked.append("s3"))], clock=clock)
    for _ in range(100):
        assert probe.check().status == "ready"
    assert asked == ["s3"]
    clock.now += CACHE_SECONDS
    probe.check()
    assert asked == ["s3", "s3"]
