"""`python -m local` (what `make dev` runs) as a subprocess against the real template.yaml."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local.template import Template
from local.testing import wait_for

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
STATE_KEYS = {
    "management_url",
    "webhooks_url",
    "aws_endpoint_url",
    "region",
    "organization_id",
    "api_key",
    "key_id",
    "stack_name",
    "resources",
}


def start_cli(*args: str) -> subprocess.Popen[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    return subprocess.Popen(
        [sys.executable, "-m", "local", "--template", str(TEMPLATE), *args],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_serves_the_template_with_a_demo_key_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "dev.json"
    process = start_cli(
        "--management-port", "0", "--webhook-port", "0", "--moto-port", "0", "--state-file", str(state_file)
    )
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"python -m local exited with {process.returncode}: {process.stderr.read()}")  # type: ignore[union-attr]
            return state_file.exists()

        wait_for(ready, timeout=120, interval=0.2, what="the state file")
        state = json.loads(state_file.read_text())
        assert set(state) == STATE_KEYS
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        assert state["organization_id"] == "org_demo"
        assert state["region"] == "us-east-1"
        expected = Template.load(TEMPLATE, stack_name=state["stack_name"]).resources
        assert set(state["resources"]) == set(expected)
        for logical_id, summary in state["resources"].items():
            assert summary["type"] == expected[logical_id]["Type"]
            assert summary["physical_id"]
        assert state["webhooks_url"] is None or state["webhooks_url"].startswith("http://127.0.0.1:")
        integrations = f"{state['management_url']}/api/integrations"
        authorised = requests.get(integrations, headers={"Authorization": f"Bearer {state['api_key']}"}, timeout=30)
        assert authorised.status_code == 200, authorised.text
        assert requests.get(integrations, timeout=30).status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert state["management_url"] in stdout
    assert state["api_key"] in stdout
    assert "curl " in stdout
    assert state_file.exists()


@pytest.mark.parametrize("flag", ["--management-port", "--moto-port"])
def test_a_port_in_use_is_one_clear_line_and_exit_code_2(busy_port: int, flag: str, tmp_path: Path) -> None:
    ports = {"--management-port": "0", "--webhook-port": "0", "--moto-port": "0", flag: str(busy_port)}
    arguments = [item for pair in ports.items() for item in pair]
    process = start_cli(*arguments, "--state-file", str(tmp_path / "dev.json"))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert str(busy_port) in line
    assert flag in line
    assert not (tmp_path / "dev.json").exists()
