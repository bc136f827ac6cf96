"""The Tracer is created on first use, not at import, and does nothing outside Lambda."""

from __future__ import annotations

import subprocess
import sys

from tests.support.handlers import REPO


def test_importing_tracing_does_not_import_the_tracer() -> None:
    probe = "import sys, churnguard.tracing; print('aws_lambda_powertools.tracing' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout.strip()
        == "False"
    )


def test_a_traced_block_runs_outside_lambda_without_a_daemon() -> None:
    from churnguard.tracing import traced, tracer

    ran = []
    with traced("sync_extract", sync_id="syn_1"):
        ran.append(True)
    assert ran == [True] and tracer().disabled
