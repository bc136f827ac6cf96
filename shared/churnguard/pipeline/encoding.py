"""Lossless JSON for canonical records: one encoder for every sink, one decoder for JSON sources.

orjson writes str, int, float, bool, None, dict, list, tuple, datetime, date, time, UUID and enums
itself. Everything else goes through `default`, whose encodings are part of the data lake's
contract:

- datetimes are ISO-8601 with an offset; a naive datetime (PostgreSQL `timestamp`, MySQL
  `DATETIME`) is written as UTC, `+00:00`;
- Decimal is an exact string, `"12345678901234567890.000000000001"` (never a float);
- bytes, bytearray and memoryview are `{"$base64": "<standard base64>"}`;
- timedelta is an ISO-8601 duration in exact seconds, `"PT5400.25S"` (negative: `"-PT5S"`);
- sets are lists; IP addresses and networks are strings;
- connectors add their driver's types with `register_encoder` (MongoDB's ObjectId, Decimal128).

JSON documents read from a source (PostgreSQL json/jsonb, MySQL JSON) are parsed by `loads_exact`,
which keeps numbers that a double cannot hold (more than 15 significant digits, or integers past
64 bits) as the exact text the source sent. Float NaN and infinities become `null`: JSON has no
spelling for them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson

DUMPS_OPTIONS = orjson.OPT_NAIVE_UTC
BASE64_TAG = "$base64"

_Encoder = Callable[[Any], Any]


def _encode_bytes(value: bytes | bytearray | memoryview) -> dict[str, str]:
    return {BASE64_TAG: base64.b64encode(value).decode("ascii")}


def encode_duration(value: timedelta) -> str:
    """Exact seconds: `timedelta.total_seconds()` is a float and would round microseconds."""
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    seconds = Decimal(micros).scaleb(-6).normalize()
    return f"{sign}PT{seconds:f}S"


_ENCODERS: dict[type, _Encoder] = {
    Decimal: str,
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
    memoryview: _encode_bytes,
    timedelta: encode_duration,
    set: list,
    frozenset: list,
    ipaddress.IPv4Address: str,
    ipaddress.IPv6Address: str,
    ipaddress.IPv4Network: str,
    ipaddress.IPv6Network: str,
    ipaddress.IPv4Interface: str,
    ipaddress.IPv6Interface: str,
}


def register_encoder(kind: type, encoder: _Encoder) -> None:
    """Teaches the encoder a driver type; a connector calls this once, at import."""
    _ENCODERS[kind] = encoder


def default(value: Any) -> Any:
    """orjson's hook for the types it does not write itself; looked up by exact class (fast)."""
    encoder = _ENCODERS.get(value.__class__)
    if encoder is None:
        for kind, candidate in _ENCODERS.items():
            if isinstance(value, kind):
                encoder = candidate
                break
        else:
            raise TypeError(f"values of type {type(value).__name__} cannot be written to the data lake")
    return encoder(value)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=default, option=DUMPS_OPTIONS)


# A run of 16 or more digits (and points) is the only way to spell a number a double may not
# hold exactly; such text takes the exact path. Long digit strings inside JSON strings only cost
# the slower parser.
_LONG_NUMBER = re.compile(rb"[0-9.]{16,}")
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _exact_float(text: str) -> Any:
    mantissa = text.lower().partition("e")[0]
    digits = sum(ch.isdigit() for ch in mantissa.lstrip("-0."))
    return orjson.Fragment(text) if digits > 15 else float(text)


def _exact_int(text: str) -> Any:
    value = int(text)
    return value if _INT64_MIN <= value <= _UINT64_MAX else orjson.Fragment(text)


def loads_exact(text: str | bytes | bytearray | memoryview) -> Any:
    """Parses JSON from a source without rounding its numbers (see the module docstring)."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if _LONG_NUMBER.search(raw) is None:
        return orjson.loads(raw)
    return json.loads(raw, parse_float=_exact_float, parse_int=_exact_int)
