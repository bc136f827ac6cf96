"""The queued webhook event: the one contract between the receiver, which writes it to SQS,
and the processor, which reads it back. Standard library only: the receiver's cold start."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MESSAGE_VERSION = 1


@dataclass(frozen=True)
class ProviderEvent:
    """One provider event as the receiver accepted it."""

    provider: str
    event_id: str
    event_type: str
    received_at: float
    payload: Any


@dataclass(frozen=True)
class QueuedEvent:
    organization_id: str
    integration_id: str
    endpoint_id: str
    event: ProviderEvent

    @property
    def event_key(self) -> str:
        return f"{self.endpoint_id}#{self.event.event_id}"

    def to_body(self) -> str:
        """The SQS message body: who it is for, what it is, and the provider's payload."""
        return json.dumps(
            {
                "v": MESSAGE_VERSION,
                "organization_id": self.organization_id,
                "integration_id": self.integration_id,
                "endpoint_id": self.endpoint_id,
                "provider": self.event.provider,
                "event_id": self.event.event_id,
                "event_type": self.event.event_type,
                "received_at": self.event.received_at,
                "payload": self.event.payload,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_body(cls, body: str) -> QueuedEvent:
        """Raises ValueError (or KeyError, TypeError) for a body `to_body` did not write."""
        message = json.loads(body)
        if message.get("v", MESSAGE_VERSION) != MESSAGE_VERSION:
            raise ValueError(f"a queued event of version {message.get('v')!r} is not one this processor reads")
        texts = ("organization_id", "integration_id", "endpoint_id", "provider", "event_id", "event_type")
        if not all(isinstance(message[name], str) for name in texts):
            raise TypeError("a queued event names its organisation, integration, endpoint and event as text")
        return cls(
            organization_id=message["organization_id"],
            integration_id=message["integration_id"],
            endpoint_id=message["endpoint_id"],
            event=ProviderEvent(
                provider=message["provider"],
                event_id=message["event_id"],
                event_type=message["event_type"],
                received_at=float(message["received_at"]),
                payload=message["payload"],
            ),
        )
