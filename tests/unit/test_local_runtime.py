"""The in-process Lambda runtime: loading handlers, per-invocation environments, errors, context."""

from __future__ import annotations

import itertools
import os
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.errors import LambdaInvocationError
from local.runtime import FunctionSpec, LambdaRuntime

HANDLER = """
import os
import threading

LOADS = []
LOADS.append(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def handler(event, context):
    if event.get("raise"):
        raise KeyError(event["raise"])
    if event.get("unserialisable"):
        return {"value": object()}
    seen = {}
    if event.get("thread"):
        worker = threading.Thread(target=lambda: seen.update(os.environ))
        worker.start()
        worker.join()
    os.environ["WRITTEN_BY_HANDLER"] = "yes"
    return {
        "env": dict(os.environ),
        "thread_env": seen,
        "loads": list(LOADS),
        "module": __name__,
        "context": {
            "name": context.function_name,
            "arn": context.invoked_function_arn,
            "memory": context.memory_limit_in_mb,
            "version": context.function_version,
            "request_id": context.aws_request_id,
            "log_group": context.log_group_name,
            "remaining": context.get_remaining_time_in_millis(),
        },
    }
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(textwrap.dedent(text))
    return directory


def spec(logical_id: str, code_dir: Path, handler: str = "app.handler", **variables: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id=logical_id,
        name=f"stack-{logical_id.lower()}",
        arn=f"arn:aws:lambda:eu-west-1:123456789012:function:stack-{logical_id.lower()}",
        code_dir=code_dir,
        handler=handler,
        variables=variables,
        memory_mb=256,
        timeout_s=30,
    )


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[LambdaRuntime]:
    shared = write(tmp_path / "a", "app.py", HANDLER)
    write(tmp_path / "b", "app.py", HANDLER)
    write(tmp_path / "broken", "app.py", "raise RuntimeError('cannot import me')\n")
    runtime = LambdaRuntime(
        region="eu-west-1", account_id="123456789012", endpoint_url="http://127.0.0.1:1", search_paths=[]
    )
    runtime.open()
    runtime.register(spec("FnA", shared, ONLY_A="a", SHARED="a"))
    runtime.register(spec("FnB", tmp_path / "b", ONLY_B="b", SHARED="b"))
    runtime.register(spec("Broken", tmp_path / "broken"))
    runtime.register(spec("NoHandler", shared, handler="app.missing"))
    yield runtime
    runtime.close()


def test_each_invocation_sees_exactly_its_functions_environment(runtime: LambdaRuntime) -> None:
    os.environ["ONLY_IN_TEST_PROCESS"] = "1"
    try:
        a = runtime.invoke("FnA", {}).payload["env"]
        b = runtime.invoke("FnB", {}).payload["env"]
    finally:
        del os.environ["ONLY_IN_TEST_PROCESS"]
    assert (a["ONLY_A"], a["SHARED"], "ONLY_B" in a) == ("a", "a", False)
    assert (b["ONLY_B"], b["SHARED"], "ONLY_A" in b) == ("b", "b", False)
    assert "ONLY_IN_TEST_PROCESS" not in a
    assert a["AWS_LAMBDA_FUNCTION_NAME"] == "stack-fna"
    assert a["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert a["AWS_REGION"] == a["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert a["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1"
    assert a["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert a["AWS_ACCESS_KEY_ID"] == "testing"
    assert "ONLY_A" not in os.environ
    assert "WRITTEN_BY_HANDLER" not in os.environ


def test_environment_writes_persist_within_the_warm_function_only(runtime: LambdaRuntime) -> None:
    runtime.invoke("FnA", {})
    assert runtime.invoke("FnA", {}).payload["env"]["WRITTEN_BY_HANDLER"] == "yes"
    assert "WRITTEN_BY_HANDLER" not in runtime.environment("FnB")


def test_threads_started_by_a_handler_inherit_its_environment(runtime: LambdaRuntime) -> None:
    payload = runtime.invoke("FnA", {"thread": True}).payload
    assert payload["thread_env"]["ONLY_A"] == "a"
    assert payload["thread_env"]["AWS_LAMBDA_FUNCTION_NAME"] == "stack-fna"


def test_modules_are_per_function_loaded_once_and_kept_warm(runtime: LambdaRuntime) -> None:
    first = runtime.invoke("FnA", {}).payload
    second = runtime.invoke("FnA", {}).payload
    other = runtime.invoke("FnB", {}).payload
    assert first["module"] != other["module"]
    assert second["loads"] == ["stack-fna"]
    assert other["loads"] == ["stack-fnb"]


def test_context_object(runtime: LambdaRuntime) -> None:
    context = runtime.invoke("arn:aws:lambda:eu-west-1:123456789012:function:stack-fna", {}).payload["context"]
    assert context["name"] == "stack-fna"
    assert context["arn"] == "arn:aws:lambda:eu-west-1:123456789012:function:stack-fna"
    assert context["memory"] == 256
    assert context["version"] == "$LATEST"
    assert context["log_group"] == "/aws/lambda/stack-fna"
    assert context["request_id"]
    assert 0 < context["remaining"] <= 30_000


def test_handler_exception_becomes_a_lambda_error_document(runtime: LambdaRuntime) -> None:
    invocation = runtime.invoke("FnA", {"raise": "missing"})
    assert invocation.errored
    assert invocation.payload["errorType"] == "KeyError"
    assert invocation.payload["errorMessage"] == "'missing'"
    assert invocation.payload["stackTrace"]
    with pytest.raises(LambdaInvocationError) as raised:
        runtime.invoke_or_raise("FnA", {"raise": "x"})
    assert raised.value.payload["errorType"] == "KeyError"


@pytest.mark.parametrize(
    ("function", "event", "error_type"),
    [
        ("Broken", {}, "Runtime.ImportModuleError"),
        ("NoHandler", {}, "Runtime.HandlerNotFound"),
        ("FnA", {"unserialisable": True}, "Runtime.MarshalError"),
    ],
)
def test_runtime_errors(runtime: LambdaRuntime, function: str, event: dict[str, object], error_type: str) -> None:
    invocation = runtime.invoke(function, event)
    assert invocation.errored
    assert invocation.payload["errorType"] == error_type


def test_concurrent_invocations_of_different_functions_keep_their_environments(runtime: LambdaRuntime) -> None:
    results: dict[str, list[str]] = {"FnA": [], "FnB": []}

    def call(function: str) -> None:
        for _ in range(20):
            results[function].append(runtime.invoke(function, {}).payload["env"]["SHARED"])

    threads = [threading.Thread(target=call, args=(name,)) for name in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(results["FnA"]) == {"a"}
    assert set(results["FnB"]) == {"b"}


def test_unknown_function(runtime: LambdaRuntime) -> None:
    with pytest.raises(KeyError, match="no function"):
        runtime.invoke("Nope", {})


SLOW_HANDLER = """
import threading
import time

CALLS = []


def handler(event, context):
    started = time.monotonic()
    event["gate"] and time.sleep(event["gate"])
    CALLS.append(started)
    return {"module": __name__, "started": started, "ended": time.monotonic(), "calls_here": len(CALLS)}
"""


def test_invocations_of_one_function_run_at_once_each_in_a_sandbox_of_its_own(tmp_path: Path) -> None:
    code = write(tmp_path / "slow", "app.py", SLOW_HANDLER)
    runtime = LambdaRuntime(
        region="eu-west-1", account_id="123456789012", endpoint_url="http://127.0.0.1:1", search_paths=[]
    )
    runtime.open()
    try:
        runtime.register(spec("Slow", code))
        runtime.register(spec("ManagementFunction", code))
        for function, expected_sandboxes in (("Slow", 4), ("ManagementFunction", 1)):
            payloads: list[dict[str, float | str]] = []
            threads = [
                threading.Thread(
                    target=lambda f=function, into=payloads: into.append(runtime.invoke(f, {"gate": 0.3}).payload)
                )
                for _ in range(4)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len({p["module"] for p in payloads}) == expected_sandboxes, function
            spans = sorted((float(p["started"]), float(p["ended"])) for p in payloads)
            overlapping = any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))
            assert overlapping is (expected_sandboxes > 1), function
    finally:
        runtime.close()
