"""The local cloud's memory under a long run of management requests.

A local cloud (from template.yaml, in a child process, as `make dev` runs it) answers a mix like
the one a schema fuzzer sends: lists, invalid bodies, made-up API keys, integrations created and
deleted, unknown ids, the OpenAPI document. The child's resident memory is read from /proc after
the first 1,000 requests (the baseline) and after 20,000; the bar is that the second stays within
1.2x the first.

    .venv/bin/python -m benchmarks.local_cloud_memory [--requests 20000] [--baseline 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BAR = 1.2
CHILD = """
import json, os, sys
from pathlib import Path
from local.cloud import LocalCloud
from churnguard.admin import create_api_key
with LocalCloud(Path(sys.argv[1]), ports={"ManagementApi": 0, "WebhookApi": 0}, moto_port=0,
                stack_name="churnguard-memory") as cloud:
    key = create_api_key(table_name=cloud.resources["DataTable"]["physical_id"], organization_id="org_memory",
                         name="bench", dynamodb=cloud.boto3_client("dynamodb")).api_key
    print(json.dumps({"url": cloud.api_urls["ManagementApi"], "key": key}), flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the handlers' logs: nobody reads the pipe now
    sys.stdin.read()
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def one_request(session: requests.Session, url: str, key: str, n: int) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    kind = n % 10
    if kind < 3:
        session.get(f"{url}/api/integrations", headers=auth, timeout=30)
    elif kind < 5:
        session.post(f"{url}/api/integrations", headers=auth, json={"integration_name": "x" * (n % 50)}, timeout=30)
    elif kind == 5:
        made_up = {"Authorization": f"Bearer cg_{secrets.token_urlsafe(32)}"}
        session.get(f"{url}/api/integrations", headers=made_up, timeout=30)
    elif kind == 6:
        body = {"integration_name": f"m{n}", "provider_name": "postgresql", "base_url": "127.0.0.1:5432"}
        created = session.post(f"{url}/api/integrations", headers=auth, json=body, timeout=30).json()
        session.delete(f"{url}/api/integrations/{created['integration_id']}", headers=auth, timeout=30)
    elif kind == 7:
        session.get(f"{url}/api/openapi.json", timeout=30)
    elif kind == 8:
        session.get(f"{url}/api/integrations/int_{secrets.token_hex(10)}", headers=auth, timeout=30)
    else:
        session.post(f"{url}/api/keys", headers={**auth, "content-type": "text/plain"}, data=b"\xff", timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(REPO / "template.yaml")],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'shared'}"},
    )
    try:
        assert child.stdout is not None
        ready = json.loads(child.stdout.readline())
        session = requests.Session()
        started = time.monotonic()
        marks: list[tuple[int, float, float]] = []
        for n in range(args.requests):
            one_request(session, ready["url"], ready["key"], n)
            done = n + 1
            if done in (args.baseline, args.requests) or done % 5_000 == 0:
                marks.append((done, rss_mb(child.pid), time.monotonic() - started))
                print(f"  after {done:>6,} requests: RSS {marks[-1][1]:7.1f} MB ({marks[-1][2]:.0f} s)", flush=True)
        baseline = next(rss for done, rss, _ in marks if done == args.baseline)
        final = marks[-1][1]
        ratio = final / baseline
        verdict = "ok" if ratio <= BAR else "MISSED"
        print(
            f"local cloud RSS: {baseline:.1f} MB after {args.baseline:,} requests, {final:.1f} MB after "
            f"{args.requests:,}: {ratio:.2f}x (bar <= {BAR}x) {verdict}"
        )
        return 0 if ratio <= BAR else 1
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


if __name__ == "__main__":
    raise SystemExit(main())
