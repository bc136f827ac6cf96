"""X-Ray tracing through the Powertools Tracer, created on first use: importing it (and the
X-Ray SDK) costs a cold start about 100 ms, which a function should pay only once it works.
Outside Lambda, and where POWERTOOLS_TRACE_DISABLED is set (the local cloud), it does nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer


@cache
def tracer() -> Tracer:
    from aws_lambda_powertools import Tracer

    return Tracer()


@contextmanager
def traced(name: str, **annotations: str) -> Iterator[None]:
    """A subsegment named `name` with searchable annotations (ids, never secrets)."""
    with tracer().provider.in_subsegment(name) as subsegment:
        for key, value in annotations.items():
            subsegment.put_annotation(key, value)
        yield
