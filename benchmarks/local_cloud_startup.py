"""How long `make dev` takes to serve: `python -m local` started fresh until the management API
answers, median of N runs, beside the interpreter's own start-up measured in the same run.

Bar: serving within 10 s of start on a machine where dependencies are installed.

    .venv/bin/python benchmarks/local_cloud_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

REPO = Path(__file__).resolve().parents[1]
BAR_SECONDS = 10.0
DEADLINE_SECONDS = 60.0


def interpreter_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def time_to_serving() -> float:
    """Seconds from spawning `python -m local` to a 200 from the public docs route."""
    with tempfile.TemporaryDirectory() as scratch:
        state = Path(scratch) / "dev.json"
        command = [
            sys.executable, "-m", "local",
            "--management-port", "0", "--webhook-port", "0", "--moto-port", "0",
            "--state-file", str(state),
        ]  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ}
        )
        try:
            while time.perf_counter() - started < DEADLINE_SECONDS:
                if process.poll() is not None:
                    raise RuntimeError(f"python -m local exited with {process.returncode}")
                if state.exists():
                    url = json.loads(state.read_text())["management_url"] + "/api/openapi.json"
                    try:
                        with urlopen(url, timeout=5) as response:  # noqa: S310 - a local http URL we started
                            if response.status == 200:
                                return time.perf_counter() - started
                    except (URLError, ConnectionError):
                        pass
                time.sleep(0.05)
            raise RuntimeError(f"not serving after {DEADLINE_SECONDS:.0f} s")
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    baseline = statistics.median(interpreter_start() for _ in range(args.runs))
    samples = [time_to_serving() for _ in range(args.runs)]
    median = statistics.median(samples)
    verdict = "ok" if median <= BAR_SECONDS else "OVER BAR"
    print(f"make dev start-up, median of {args.runs} runs (bar {BAR_SECONDS:.0f} s)")
    print(f"  baseline: bare interpreter start   {baseline:6.2f} s")
    print(
        f"  python -m local until serving      {median:6.2f} s  "
        f"(runs: {', '.join(f'{s:.2f}' for s in samples)}; x{median / baseline:.0f} baseline)  {verdict}"
    )
    return 0 if median <= BAR_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
