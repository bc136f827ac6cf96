"""Listening sockets bound up front, so a port conflict is reported before anything starts."""

from __future__ import annotations

import errno
import socket

from local.errors import PortInUseError


def bind_listener(host: str, port: int, owner: str) -> socket.socket:
    """A listening socket on host:port; `PortInUseError` (naming `owner`) when the port is taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(port, owner) from exc
        raise
    return listener
