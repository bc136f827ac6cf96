"""The receiver's cold start stays small: its import path loads no pydantic, SDK or Tracer.

Checked in a fresh interpreter by which modules the import loads (never by timing; the time is
in benchmarks/webhooks.py).
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.handlers import REPO

FORBIDDEN = ("pydantic", "stripe", "standardwebhooks", "cryptography", "defusedxml", "aws_xray_sdk", "orjson")
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""


def test_the_receiver_imports_nothing_heavy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "functions/webhook_receiver/app.py")],
        env={"PYTHONPATH": str(REPO / "shared"), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
        text=True,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    # `aws_lambda_powertools` always loads its small tracing module; the Tracer's cost is the X-Ray SDK.
    heavy = [name for name in loaded if name.split(".")[0] in FORBIDDEN]
    assert heavy == []
