"""Operator commands. Bootstraps an organisation and its first API key, which the API cannot do
for itself since every API call needs a key.

    python -m churnguard.admin create-api-key --org org_123 --local
    python -m churnguard.admin create-api-key --org org_123 --stack churnguard-dev [--region eu-west-1]

The new key is printed alone on the last line, so scripts can take it with `tail -n 1`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from churnguard.api_keys import ApiKeyService
from churnguard.models import ORGANIZATION_ID_PATTERN, ApiKeyCreated
from churnguard.store.api_keys import ApiKeyStore
from churnguard.store.organizations import OrganizationStore

DEFAULT_STATE_FILE = Path(".local/dev.json")


class AdminError(Exception):
    """A problem the operator can fix; printed without a traceback."""


def create_api_key(*, table_name: str, organization_id: str, name: str, dynamodb: Any) -> ApiKeyCreated:
    """Creates the organisation if needed and issues it a key."""
    if not re.match(ORGANIZATION_ID_PATTERN, organization_id):
        raise AdminError(f"organisation id {organization_id!r} must match {ORGANIZATION_ID_PATTERN}")
    OrganizationStore(dynamodb, table_name).ensure(organization_id)
    return ApiKeyService(ApiKeyStore(dynamodb, table_name)).create(organization_id, name)


def _local_target(state_file: Path) -> tuple[str, Any]:
    import boto3

    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        raise AdminError(f"{state_file} not found: start the local cloud with `make dev` first") from None
    table = state["resources"]["DataTable"]["physical_id"]
    client = boto3.client(
        "dynamodb",
        endpoint_url=state["aws_endpoint_url"],
        region_name=state["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto accepts any credentials
    )
    return table, client


def _stack_target(stack: str, region: str | None) -> tuple[str, Any]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session(region_name=region)
    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        raise AdminError(f"cannot read stack {stack!r}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if "DataTableName" not in outputs:
        raise AdminError(f"stack {stack!r} has no DataTableName output; is it a ChurnGuard stack?")
    return outputs["DataTableName"], session.client("dynamodb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m churnguard.admin", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-api-key", help="create an organisation (if new) and an API key for it")
    create.add_argument("--org", required=True, help="organisation id, e.g. org_123")
    create.add_argument("--name", default="bootstrap", help="a label for the key")
    target = create.add_mutually_exclusive_group(required=True)
    target.add_argument("--local", action="store_true", help="the running local cloud (reads --state-file)")
    target.add_argument("--stack", help="a deployed CloudFormation stack name")
    create.add_argument("--state-file", type=Path, default=DEFAULT_STATE_FILE)
    create.add_argument("--region", help="AWS region of the stack (default: your AWS configuration)")
    args = parser.parse_args(argv)

    try:
        table, dynamodb = _local_target(args.state_file) if args.local else _stack_target(args.stack, args.region)
        created = create_api_key(table_name=table, organization_id=args.org, name=args.name, dynamodb=dynamodb)
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"organisation: {args.org}")
    print(f"key id: {created.key_id} (store the key now; it is not shown again)")
    print(created.api_key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
