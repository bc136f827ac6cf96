"""The contract between the receiver and a provider's webhook.py: the delivery it is handed and
the scheme it answers with. Standard library only: the receiver's cold start."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from churnguard.inbound.parsing import InboundEvent


@dataclass(frozen=True)
class Delivery:
    """One request to an endpoint, as the receiver read it."""

    body: bytes
    headers: Mapping[str, str]  # names lower-cased
    query: Mapping[str, str]
    method: str
    uri: str  # scheme://host/path?query, as the provider called it
    now: float
    endpoint: Mapping[str, Any]  # the endpoint's stored options; never its secrets
    # The endpoint's signing secrets, decrypted only when a scheme asks for them.
    secrets: Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Acknowledgement:
    """The 2xx body a provider insists on instead of the receiver's JSON summary."""

    content_type: str
    body: str


def _no_problem(_endpoint: Mapping[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class WebhookScheme:
    """How one provider proves a delivery is its own and what events a delivery carries.

    `verify` raises SignatureError; `parse` raises ParseError for a malformed body, or
    SignatureError when the body itself names another sender (a Salesforce organisation)."""

    verify: Callable[[Delivery], None]
    parse: Callable[[Delivery], list[InboundEvent]]
    # Endpoints for this provider cannot be created without a shared signing secret.
    needs_secret: bool = True
    acknowledgement: Acknowledgement | None = None
    # The provider checks a URL with a GET (verified like a delivery) before it saves it.
    answers_validation_get: bool = False
    # What an endpoint for this provider must also set, as a message naming it (None: nothing).
    endpoint_problem: Callable[[Mapping[str, Any]], str | None] = _no_problem
