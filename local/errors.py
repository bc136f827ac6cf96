"""Errors of the local cloud that callers handle: the CLI turns them into one-line messages."""

from __future__ import annotations

from typing import Any


class PortInUseError(OSError):
    """A port the local cloud was told to listen on is taken by another process."""

    def __init__(self, port: int, owner: str) -> None:
        super().__init__(f"port {port} for {owner} is already in use")
        self.port = port
        self.owner = owner


class LambdaInvocationError(Exception):
    """A function raised (or could not be loaded); `payload` is the Lambda error document."""

    def __init__(self, function: str, payload: dict[str, Any]) -> None:
        super().__init__(f"{function} failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
        self.function = function
        self.payload = payload
