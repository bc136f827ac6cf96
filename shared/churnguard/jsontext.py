"""Strict JSON text, as RFC 8259 and I-JSON (RFC 7493) define it, for bodies clients and providers send.

Python's `json` accepts more than JSON: `NaN` and `Infinity`, and `\\ud800` escapes that decode to a
lone surrogate, a string no UTF-8 encoder (DynamoDB, S3, orjson in the pipeline) can write. Such a
body must be refused where it arrives, with a 400, instead of being accepted and failing later,
half-written or in a dead-letter queue. Integers keep their exact value (orjson would turn ones past
64 bits into floats).
"""

from __future__ import annotations

import json
import re
from typing import Any

# A \uD800-\uDFFF escape: the only way a lone surrogate gets into valid UTF-8 JSON text.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonTextError(ValueError):
    """The bytes are not strict JSON text. The message is a predicate (\"is not UTF-8\") for the caller
    to name its subject, and never quotes the bytes."""


def _refuse_constant(name: str) -> Any:
    raise JsonTextError(f"holds {name}, which is not a JSON value")


def loads_strict(body: bytes) -> Any:
    """The JSON document `body` holds, or JsonTextError. RecursionError passes through for callers
    that report nesting on their own terms."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonTextError("is not UTF-8") from None
    try:
        document = json.loads(text, parse_constant=_refuse_constant)
    except JsonTextError:
        raise
    except ValueError as exc:
        raise JsonTextError(f"is not valid JSON (at character {getattr(exc, 'pos', 0)})") from None
    if _SURROGATE_ESCAPE.search(body):
        try:
            json.dumps(document, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonTextError("has an unpaired surrogate escape") from None
    return document
