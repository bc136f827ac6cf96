"""A PostgreSQL wire-protocol stub that refuses every password, for the one failure the local
server cannot show: it trusts local connections, so a wrong password would be accepted there.

It speaks just enough protocol for libpq: declines TLS, asks for a cleartext password, and
answers with SQLSTATE 28P01 as a real server configured for password authentication does.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104


def _read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


def _serve_one(conn: socket.socket) -> None:
    with conn:
        while True:
            (length,) = struct.unpack("!i", _read_exactly(conn, 4))
            body = _read_exactly(conn, length - 4)
            (code,) = struct.unpack("!i", body[:4])
            if code in {_SSL_REQUEST, _GSS_REQUEST}:
                conn.sendall(b"N")
                continue
            break  # the startup message
        conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
        _read_exactly(conn, 1)
        (length,) = struct.unpack("!i", _read_exactly(conn, 4))
        _read_exactly(conn, length - 4)  # the password, ignored
        fields = b"".join(
            tag + text + b"\0"
            for tag, text in (
                (b"S", b"FATAL"),
                (b"V", b"FATAL"),
                (b"C", b"28P01"),
                (b"M", b'password authentication failed for user "someone"'),
            )
        )
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 5) + fields + b"\0")


@contextmanager
def password_refusing_server() -> Iterator[int]:
    """Listens on 127.0.0.1 and yields the port; serves connections until the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            with contextlib.suppress(ConnectionError, OSError):
                _serve_one(conn)

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()
