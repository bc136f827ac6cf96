"""A schema-driven fuzz run over every operation of the management API, through the local cloud.

schemathesis reads /api/openapi.json and sends generated requests (valid and invalid bodies,
query strings, path ids, undeclared methods, stateful sequences) with a fuzz tenant's key; the
run fails on any 5xx and on any response the document does not describe (status, content type,
headers, body schema), or on invalid data that was accepted. Bounded and deterministic: a fixed
seed and number of examples per operation (tests/e2e/schemathesis.toml), about 3,400 requests.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_the_management_api_answers_every_fuzzed_request_as_its_document_says(
    cloud: Any, new_tenant: Any, management_url: str
) -> None:
    tenant = new_tenant(f"org_fuzz_{uuid.uuid4().hex[:6]}")
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{management_url}/api/openapi.json",
        "--header",
        f"Authorization: Bearer {tenant.api_key}",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert " passed" in result.stdout and "generated" in result.stdout, report
    assert tenant.api_key not in result.stdout, "schemathesis filters the key from its report"
