"""Cold start of each handler: import it in a fresh interpreter, as Lambda's init phase does.

Reports the median of N runs per handler, next to a baseline measured in the same run (a fresh
interpreter importing boto3 alone, which every handler pays), and checks the bars:
management handler and authorizer at most 400 ms each; the authorizer imports neither the
Tracer nor any provider SDK.

    .venv/bin/python -m benchmarks.cold_start [--runs 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAR_MS = 400.0
HANDLERS = {
    "ManagementFunction": "functions/management_api/app.py",
    "AuthorizerFunction": "functions/authorizer/app.py",
}
HEAVY_MODULES = (
    "aws_lambda_powertools.tracing",
    "aws_xray_sdk",
    "stripe",
    "simple_salesforce",
    "hubspot",
    "pymysql",
    "psycopg2",
    "pymongo",
    "kafka",
    "redis",
)
ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "TABLE_NAME": "churnguard-bench",
    "KMS_KEY_ID": "arn:aws:kms:us-east-1:123456789012:key/bench",
}
PROBE = """
import importlib.util, json, sys, time
path = sys.argv[1]
started = time.perf_counter()
if path == "-":
    import boto3  # noqa: F401
else:
    spec = importlib.util.spec_from_file_location("handler", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
elapsed = (time.perf_counter() - started) * 1000
heavy = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
print(json.dumps({"ms": elapsed, "heavy": heavy}))
"""


def template_globals() -> dict[str, str]:
    """The literal environment variables template.yaml gives every function (Globals)."""
    from local.template import load_yaml

    variables = load_yaml(REPO / "template.yaml")["Globals"]["Function"]["Environment"]["Variables"]
    return {name: value for name, value in variables.items() if isinstance(value, str)}


def measure(target: str, runs: int) -> tuple[list[float], list[str]]:
    env = {**os.environ, **template_globals(), **ENVIRONMENT, "PYTHONPATH": str(REPO / "shared")}
    env.pop("AWS_ENDPOINT_URL", None)
    code = f"HEAVY = {HEAVY_MODULES!r}\n" + PROBE
    samples: list[float] = []
    heavy: list[str] = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", code, target], env=env, check=True, capture_output=True, text=True, cwd=REPO
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        samples.append(result["ms"])
        heavy = result["heavy"]
    return samples, heavy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    baseline, _ = measure("-", args.runs)
    baseline_ms = statistics.median(baseline)
    results = {"baseline_boto3_ms": round(baseline_ms, 1), "runs": args.runs, "bar_ms": BAR_MS, "handlers": {}}
    failed = False
    for name, path in HANDLERS.items():
        samples, heavy = measure(str(REPO / path), args.runs)
        median = statistics.median(samples)
        ok = median <= BAR_MS and (name != "AuthorizerFunction" or not heavy)
        failed |= not ok
        results["handlers"][name] = {
            "median_ms": round(median, 1),
            "min_ms": round(min(samples), 1),
            "max_ms": round(max(samples), 1),
            "ratio_to_baseline": round(median / baseline_ms, 2),
            "heavy_modules": heavy,
            "within_bar": ok,
        }
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"cold start, median of {args.runs} fresh interpreters (bar {BAR_MS:.0f} ms)")
        print(f"  baseline: import boto3             {baseline_ms:7.1f} ms")
        for name, r in results["handlers"].items():
            heavy_note = f"  heavy imports: {', '.join(r['heavy_modules'])}" if r["heavy_modules"] else ""
            verdict = "ok" if r["within_bar"] else "OVER BAR"
            print(
                f"  {name:<20} {r['median_ms']:7.1f} ms  (min {r['min_ms']:.1f}, max {r['max_ms']:.1f}, "
                f"x{r['ratio_to_baseline']:.2f} baseline)  {verdict}{heavy_note}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
