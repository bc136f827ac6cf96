"""`python -m local` (what `make dev` runs): the local cloud with a demo organisation and API key.

It starts the cloud from template.yaml, issues an API key for `org_demo`, writes the facts a
developer or script needs to `.local/dev.json` (mode 0600: it holds the key), prints them, and
serves until Ctrl-C or SIGTERM. A taken port is reported in one line with the flag that moves it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from local.cloud import LocalCloud
from local.errors import PortInUseError
from local.template import TemplateError

REPO = Path(__file__).resolve().parent.parent
DEMO_ORGANIZATION = "org_demo"
PORT_FLAGS = {"ManagementApi": "--management-port", "WebhookApi": "--webhook-port", "moto": "--moto-port"}


def _parameter(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected Key=Value, got {text!r}")
    return key, value


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=REPO / "template.yaml", help="SAM template to run")
    parser.add_argument("--management-port", type=int, default=8090, help="port of ManagementApi (0: any free)")
    parser.add_argument("--webhook-port", type=int, default=8080, help="port of WebhookApi (0: any free)")
    parser.add_argument("--moto-port", type=int, default=5000, help="port of the moto AWS endpoint (0: any free)")
    parser.add_argument("--state-file", type=Path, default=Path(".local/dev.json"), help="where to write the facts")
    parser.add_argument("--param", type=_parameter, action="append", default=[], help="template parameter Key=Value")
    parser.add_argument("--stack-name", default="churnguard-local", help="prefix of generated resource names")
    parser.add_argument("--region", default="us-east-1")
    return parser.parse_args(argv)


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Writes the state file atomically with mode 0600, since it holds an API key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(state, stream, indent=2)
        stream.write("\n")
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def _curl_example(cloud: LocalCloud, api_key: str) -> str | None:
    """A request a developer can paste: the first authorised GET route without path parameters."""
    routes = cloud.routes("ManagementApi")
    for route in routes:
        if route.method == "GET" and route.authorizer and "{" not in route.path:
            url = cloud.api_urls["ManagementApi"] + route.path
            return f'curl -H "Authorization: Bearer {api_key}" {url}'
    return None


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    stop = threading.Event()

    def request_stop(_signal: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    cloud = LocalCloud(
        args.template,
        ports={"ManagementApi": args.management_port, "WebhookApi": args.webhook_port},
        moto_port=args.moto_port,
        region=args.region,
        stack_name=args.stack_name,
        parameter_overrides=dict(args.param),
    )
    try:
        cloud.start()
    except PortInUseError as exc:
        flag = PORT_FLAGS.get(exc.owner)
        advice = f"choose another with {flag}" if flag else "stop whatever holds it"
        print(f"error: port {exc.port} ({exc.owner}) is already in use; {advice}", file=sys.stderr)
        return 2
    except TemplateError as exc:
        print(f"error: {args.template}: {exc}", file=sys.stderr)
        return 1
    try:
        return _serve(cloud, args, stop, started)
    finally:
        cloud.stop()


def _serve(cloud: LocalCloud, args: argparse.Namespace, stop: threading.Event, started: float) -> int:
    if "DataTable" not in cloud.resources:
        print(f"error: {args.template} has no DataTable resource to hold the demo API key", file=sys.stderr)
        return 1
    try:
        from churnguard.admin import create_api_key
    except ImportError as exc:
        print(f"error: cannot bootstrap the demo API key: {exc}", file=sys.stderr)
        return 1
    created = create_api_key(
        table_name=cloud.physical_id("DataTable"),
        organization_id=DEMO_ORGANIZATION,
        name="local-dev",
        dynamodb=cloud.boto3_client("dynamodb"),
    )
    management_url = cloud.api_urls.get("ManagementApi")
    webhooks_url = cloud.api_urls.get("WebhookApi")
    _write_state(
        args.state_file,
        {
            "management_url": management_url,
            "webhooks_url": webhooks_url,
            "aws_endpoint_url": cloud.aws_endpoint_url,
            "region": cloud.region,
            "organization_id": DEMO_ORGANIZATION,
            "api_key": created.api_key,
            "key_id": created.key_id,
            "stack_name": cloud.stack_name,
            "resources": {
                logical_id: {"type": summary["type"], "physical_id": summary["physical_id"]}
                for logical_id, summary in cloud.resources.items()
            },
        },
    )
    docs = [r.path for r in cloud.routes("ManagementApi") if r.method == "GET" and r.path.endswith("/docs")]
    lines = [
        f"management API  {management_url}" + (f"   (docs: {management_url}{docs[0]})" if docs else ""),
        *(
            [f"dashboard       {management_url}/dashboard   (sign in with the API key below)"]
            if any(r.path == "/dashboard" for r in cloud.routes("ManagementApi"))
            else []
        ),
        *([f"webhooks        {webhooks_url}"] if webhooks_url else []),
        f"AWS endpoint    {cloud.aws_endpoint_url}   (moto; region {cloud.region})",
        f"organisation    {DEMO_ORGANIZATION}",
        f"API key         {created.api_key}   (key id {created.key_id})",
        f"state file      {args.state_file}",
    ]
    example = _curl_example(cloud, created.api_key)
    if example:
        lines.append(f"try             {example}")
    lines.append(f"ready in {time.monotonic() - started:.1f}s; Ctrl-C stops")
    print("\n".join(lines), flush=True)
    while not stop.wait(0.5):
        pass
    print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
