"""CA bundles given as configuration: a path, or the PEM text itself (RDS, Atlas and corporate
TLS proxies publish theirs), which drivers and HTTP clients need as a file."""

from __future__ import annotations

import hashlib
import os
import tempfile


def ca_file(value: str) -> str:
    """A path to the CA bundle: `value` itself, or a private file holding the PEM text."""
    if not value.lstrip().startswith("-----BEGIN"):
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"churnguard-ca-{digest}.pem")
    if not os.path.exists(path):
        descriptor, staging = tempfile.mkstemp(prefix="churnguard-ca-", suffix=".pem")
        with os.fdopen(descriptor, "w") as handle:
            handle.write(value)
        os.replace(staging, path)
    return path
