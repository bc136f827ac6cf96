"""What every provider's parser shares: the event it yields and defensive JSON and form reading.

Parsing is defensive: bodies must be UTF-8, JSON may nest at most MAX_JSON_DEPTH levels (deeper
documents cannot be written to the lake and would only fail later), SOAP is parsed with
defusedxml (no DTDs, entities or external references). A malformed delivery is a ParseError,
which the receiver answers with 400 before anything is enqueued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from churnguard.jsontext import JsonTextError, loads_strict

MAX_JSON_DEPTH = 64
MAX_EVENTS_PER_DELIVERY = 1000
MAX_EVENT_ID_LENGTH = 200


class ParseError(Exception):
    """The delivery is authentic but not well-formed for its provider."""


@dataclass(frozen=True)
class InboundEvent:
    event_id: str
    event_type: str
    payload: Any


def utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("the body is not UTF-8") from None


def _check_depth(document: Any) -> None:
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ParseError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)


def load_json(body: bytes) -> Any:
    try:
        document = loads_strict(body)
    except RecursionError:
        raise ParseError(f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from None
    except JsonTextError as exc:
        raise ParseError(f"the body {exc}") from None
    _check_depth(document)
    return document


def required_id(value: Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise ParseError(f"{what} is missing")
    text = str(value)
    if len(text) > MAX_EVENT_ID_LENGTH:
        raise ParseError(f"{what} is too long")
    return text


def event_type_of(value: Any) -> str:
    return value[:200] if isinstance(value, str) and value else "unknown"


def event_objects(document: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(document, list) or not document:
        raise ParseError(f"{what} must be a non-empty JSON array of events")
    if len(document) > MAX_EVENTS_PER_DELIVERY:
        raise ParseError(f"a delivery may carry at most {MAX_EVENTS_PER_DELIVERY} events")
    if not all(isinstance(item, dict) for item in document):
        raise ParseError(f"every element of {what} must be an object")
    return document


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def form_to_nested(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`data[merges][FNAME]=Ann` → {"data": {"merges": {"FNAME": "Ann"}}} (Mailchimp's form shape)."""
    result: dict[str, Any] = {}
    for raw_key, value in pairs:
        head, _, rest = raw_key.partition("[")
        parts = [head] + [part.rstrip("]") for part in rest.split("[")] if rest else [head]
        if len(parts) > 8:
            raise ParseError("a form field nests too deeply")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ParseError("a form field is both a value and a group")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ParseError("a form field is both a value and a group")
        node[parts[-1]] = value
    return result


def lookup(document: Any, path: str) -> Any:
    """A dotted path into nested objects (`data.object.id`); None when absent."""
    node = document
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node
