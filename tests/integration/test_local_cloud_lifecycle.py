"""Starting and stopping local clouds: overrides, restart, two at once, port conflicts, errors."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from moto.awslambda.models import LambdaFunction

from local.cloud import LocalCloud
from local.errors import PortInUseError
from local.template import TemplateError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_cloud" / "template.yaml"
FREE = {"Api": 0, "OpenApi": 0}


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def stack() -> str:
    """A stack name of its own: other clouds of the test session may share moto's state."""
    return f"lc-{uuid.uuid4().hex[:8]}"


def test_overrides_stop_and_start_again() -> None:
    original_environ, original_invoke = os.environ, LambdaFunction._invoke_lambda
    cloud = LocalCloud(FIXTURE, ports=FREE, stack_name=stack(), parameter_overrides={"Stage": "prod"})
    cloud.start()
    try:
        assert cloud.resources["ProdOnlyTopic"]["type"] == "AWS::SNS::Topic"
        assert cloud.function_environment("EnvBFunction")["ONLY_B"] == "prod-b"
        assert cloud.function_environment("EchoFunction")["GREETING"] == "hello-prod"
        url = cloud.api_urls["Api"]
        assert requests.get(f"{url}/public", timeout=30).status_code == 200
        assert os.environ["MOTO_PORT"] == cloud.aws_endpoint_url.rsplit(":", 1)[1]
    finally:
        cloud.stop()
    cloud.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/public", timeout=5)
    name = stack()
    with LocalCloud(FIXTURE, ports=FREE, stack_name=name) as again:
        assert again.physical_id("NamedTable") == f"{name}-named"
        assert "ProdOnlyTopic" not in again.resources
    assert os.environ is original_environ
    assert LambdaFunction._invoke_lambda is original_invoke


def test_two_clouds_in_one_process_share_moto_and_stop_independently() -> None:
    with LocalCloud(FIXTURE, ports=FREE, stack_name=stack()) as first:
        second = LocalCloud(FIXTURE, ports=FREE, stack_name=stack()).start()
        try:
            assert os.environ["MOTO_PORT"] == second.aws_endpoint_url.rsplit(":", 1)[1]
            assert first.invoke("WorkerFunction", {"value": 1})["value"] == 2
            assert second.invoke("WorkerFunction", {"value": 2})["value"] == 4
        finally:
            second.stop()
        assert os.environ["MOTO_PORT"] == first.aws_endpoint_url.rsplit(":", 1)[1]
        tables = first.boto3_client("dynamodb").list_tables()["TableNames"]
        assert first.physical_id("RecordsTable") in tables
        assert requests.get(first.api_urls["Api"] + "/public", timeout=30).status_code == 200


@pytest.mark.parametrize("owner", ["Api", "moto"])
def test_a_port_in_use_fails_fast_and_leaves_nothing_running(busy_port: int, owner: str) -> None:
    ports = {**FREE, "Api": busy_port} if owner == "Api" else FREE
    moto_port = busy_port if owner == "moto" else 0
    with pytest.raises(PortInUseError) as raised:
        LocalCloud(FIXTURE, ports=ports, moto_port=moto_port, stack_name=stack()).start()
    assert (raised.value.port, raised.value.owner) == (busy_port, owner)
    with LocalCloud(FIXTURE, ports=FREE, stack_name=stack()) as cloud:
        assert cloud.resources


def test_a_template_error_names_the_problem_and_stops_cleanly(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n    Properties:\n      QueueName: !Ref Missing\n"
    )
    with pytest.raises(TemplateError, match="Queue: Ref to unknown parameter or resource Missing"):
        LocalCloud(template, stack_name=stack()).start()
    with LocalCloud(FIXTURE, ports=FREE, stack_name=stack()) as cloud:
        assert cloud.resources
