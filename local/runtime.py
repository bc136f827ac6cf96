"""Runs each template function's real handler in this process, the way Lambda would.

Handlers are loaded from CodeUri + Handler by file path under a unique module name (several
functions have an `app.py`), once, and kept warm. Each invocation sees exactly its function's
environment: `os.environ` is replaced by a mapping that shows an invoking thread its function's
variables and everyone else the process environment. A per-thread view, rather than swapping the
real environment under a global lock, lets a handler that calls another function through moto
(`lambda.invoke` is served on another thread) proceed instead of deadlocking. Threads a handler
starts inherit its view, as they would inside a Lambda sandbox.

moto's `LambdaFunction._invoke_lambda` (its Docker path) is patched to call this runtime, so Step
Functions Lambda tasks and `lambda.invoke` run the same in-process handlers.

Invocations of one function run concurrently, as Lambda scales out: each runs in a sandbox of its
own (a separate copy of the handler module, so its module-level state, such as a Powertools batch
processor or a cached service, is its own), up to the function's concurrency; more wait for a free
sandbox. A function whose handler shares state through modules every copy imports (the management
API's routers hold the current request) is given a concurrency of 1 (`SERIAL_FUNCTIONS`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from moto.awslambda.models import LambdaBackend, LambdaFunction

from local.errors import LambdaInvocationError

logger = logging.getLogger("local.runtime")

# Variables of the process that a Lambda sandbox also has (with its own values).
_PASSTHROUGH = ("PATH", "LANG")
_FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

_thread_state = threading.local()


def _current_view() -> dict[str, str] | None:
    view: dict[str, str] | None = getattr(_thread_state, "environ", None)
    return view


class _ThreadEnviron(MutableMapping[str, str]):
    """`os.environ` that shows an invocation thread its function's environment and others the process's."""

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process

    def _target(self) -> MutableMapping[str, str]:
        view = _current_view()
        return self.process if view is None else view

    def __getitem__(self, key: str) -> str:
        return self._target()[key]

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"str expected, not {type(value).__name__}")
        self._target()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._target()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._target()))

    def __len__(self) -> int:
        return len(self._target())

    def copy(self) -> dict[str, str]:
        return dict(self._target())

    def __repr__(self) -> str:
        return f"environ({dict(self._target())!r})"


class _EnvironmentSwitch:
    """Installs the per-thread `os.environ` while at least one runtime is open (reference counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._original_start: Callable[[threading.Thread], None] | None = None

    def acquire(self) -> None:
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            os.environ = _ThreadEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003 - a view, by design
            self._original_start = original_start = threading.Thread.start

            def start_inheriting_environment(thread: threading.Thread) -> None:
                view = _current_view()
                if view is not None:
                    run = thread.run

                    def run_in_view() -> None:
                        _thread_state.environ = view
                        run()

                    thread.run = run_in_view  # type: ignore[method-assign]
                original_start(thread)

            threading.Thread.start = start_inheriting_environment  # type: ignore[method-assign,assignment]

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            if isinstance(os.environ, _ThreadEnviron):
                os.environ = os.environ.process  # type: ignore[assignment]  # noqa: B003 - restores the original
            if self._original_start is not None:
                threading.Thread.start = self._original_start  # type: ignore[method-assign,assignment]
                self._original_start = None


_environment_switch = _EnvironmentSwitch()


@dataclass
class LambdaContext:
    """The context object Lambda passes to Python handlers (the attributes Powertools reads)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class FunctionSpec:
    """One template function as the runtime needs it: where the code is and what it is given."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    variables: dict[str, str]
    memory_mb: int = 128
    timeout_s: int = 3
    runtime: str = "python3.11"
    role_arn: str = ""


DEFAULT_CONCURRENCY = 8
# Handlers whose requests pass through module state shared by every copy of the handler module.
SERIAL_FUNCTIONS = frozenset({"ManagementFunction"})


@dataclass
class _Sandbox:
    number: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    entry: Callable[[Any, Any], Any] | None = None


@dataclass
class _Function:
    spec: FunctionSpec
    environ: dict[str, str]
    concurrency: int = DEFAULT_CONCURRENCY
    sandboxes: list[_Sandbox] = field(default_factory=list)
    guard: threading.Condition = field(default_factory=threading.Condition)

    def acquire(self) -> _Sandbox:
        """A free sandbox (a new one while under the concurrency), else the first that frees up.
        A thread already in a sandbox of this function (a handler invoking itself through moto)
        re-enters it rather than wait for itself."""
        with self.guard:
            while True:
                for sandbox in self.sandboxes:
                    if sandbox.lock.acquire(blocking=False):
                        return sandbox
                if len(self.sandboxes) < self.concurrency:
                    sandbox = _Sandbox(len(self.sandboxes))
                    sandbox.lock.acquire()
                    self.sandboxes.append(sandbox)
                    return sandbox
                self.guard.wait(0.05)

    def release(self, sandbox: _Sandbox) -> None:
        with self.guard:
            sandbox.lock.release()
            self.guard.notify()


@dataclass
class Invocation:
    """What an invocation returned: the JSON payload, and whether it is a Lambda error document."""

    payload: Any
    errored: bool


class LambdaRuntime:
    """The in-process Lambda service of one local cloud."""

    def __init__(
        self,
        *,
        region: str,
        account_id: str,
        endpoint_url: str,
        search_paths: list[Path],
    ) -> None:
        self.region = region
        self.account_id = account_id
        self.endpoint_url = endpoint_url
        self._search_paths = [str(path) for path in search_paths]
        self._functions: dict[str, _Function] = {}
        self._aliases: dict[str, str] = {}
        self._opened = False

    def open(self) -> None:
        """Makes handlers importable and routes moto's Lambda invocations here."""
        for path in reversed(self._search_paths):
            if path not in sys.path:
                sys.path.insert(0, path)
        _environment_switch.acquire()
        _moto_bridge.attach(self)
        self._opened = True

    def close(self) -> None:
        if not self._opened:
            return
        self._opened = False
        _moto_bridge.detach(self)
        _environment_switch.release()

    def register(self, spec: FunctionSpec) -> None:
        concurrency = 1 if spec.logical_id in SERIAL_FUNCTIONS else DEFAULT_CONCURRENCY
        function = _Function(spec=spec, environ=self._environment(spec), concurrency=concurrency)
        self._functions[spec.name] = function
        for alias in (spec.logical_id, spec.arn):
            self._aliases[alias] = spec.name

    def knows(self, function: str) -> bool:
        return self._resolve_name(function) is not None

    def environment(self, function: str) -> dict[str, str]:
        """The environment the function's handler sees (a copy)."""
        return dict(self._function(function).environ)

    def invoke(self, function: str, event: Any) -> Invocation:
        """Runs the handler on this thread; errors come back as Lambda error documents."""
        target = self._function(function)
        spec = target.spec
        request_id = str(uuid.uuid4())
        delivered = json.loads(json.dumps(event))
        sandbox = target.acquire()
        try:
            previous = _current_view()
            _thread_state.environ = target.environ
            try:
                entry = sandbox.entry or self._load(target, sandbox)
                context = LambdaContext(
                    function_name=spec.name,
                    function_version="$LATEST",
                    invoked_function_arn=spec.arn,
                    memory_limit_in_mb=spec.memory_mb,
                    aws_request_id=request_id,
                    log_group_name=target.environ["AWS_LAMBDA_LOG_GROUP_NAME"],
                    log_stream_name=target.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
                    deadline=time.monotonic() + spec.timeout_s,
                )
                result = entry(delivered, context)
            except _LoadError as exc:
                return Invocation(exc.payload | {"requestId": request_id}, True)
            except (Exception, SystemExit) as exc:
                logger.error("%s raised %s: %s", spec.logical_id, type(exc).__name__, exc, exc_info=exc)
                return Invocation(_error_document(exc, request_id), True)
            finally:
                _thread_state.environ = previous
        finally:
            target.release(sandbox)
        try:
            return Invocation(json.loads(json.dumps(result)), False)
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            return Invocation({"errorType": "Runtime.MarshalError", "errorMessage": message}, True)

    def invoke_or_raise(self, function: str, event: Any) -> Any:
        invocation = self.invoke(function, event)
        if invocation.errored:
            raise LambdaInvocationError(self._function(function).spec.logical_id, invocation.payload)
        return invocation.payload

    def _resolve_name(self, function: str) -> str | None:
        if function in self._functions:
            return function
        return self._aliases.get(function)

    def _function(self, function: str) -> _Function:
        name = self._resolve_name(function)
        if name is None:
            raise KeyError(f"no function {function!r} in this local cloud")
        return self._functions[name]

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        process = os.environ.process if isinstance(os.environ, _ThreadEnviron) else os.environ
        environ = {key: process[key] for key in _PASSTHROUGH if key in process}
        environ.setdefault("LANG", "en_US.UTF-8")
        environ.update(spec.variables)
        stamp = datetime.now(UTC).strftime("%Y/%m/%d")
        environ.update(
            {
                "_HANDLER": spec.handler,
                "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
                "AWS_LAMBDA_FUNCTION_NAME": spec.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{stamp}/[$LATEST]{uuid.uuid4().hex}",
                "AWS_REGION": self.region,
                "AWS_DEFAULT_REGION": self.region,
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "TZ": ":UTC",
                **_FAKE_CREDENTIALS,
                "AWS_ENDPOINT_URL": self.endpoint_url,
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
        )
        return environ

    def _load(self, target: _Function, sandbox: _Sandbox) -> Callable[[Any, Any], Any]:
        """Imports the sandbox's copy of the handler module (its cold start) with the function's
        environment in view."""
        spec = target.spec
        module_path, _, attribute = spec.handler.rpartition(".")
        if not module_path:
            raise _LoadError("Runtime.MalformedHandlerName", f"Bad handler '{spec.handler}': not enough values")
        source = spec.code_dir.joinpath(*module_path.split(".")).with_suffix(".py")
        unique_name = f"_local_lambda_.{spec.logical_id}.{sandbox.number}.{module_path}"
        try:
            module = _import_file(unique_name, source, spec.code_dir)
        except Exception as exc:
            logger.error("cannot import %s for %s", source, spec.logical_id, exc_info=exc)
            raise _LoadError("Runtime.ImportModuleError", f"Unable to import module '{module_path}': {exc}") from exc
        entry: Callable[[Any, Any], Any] | None = getattr(module, attribute, None)
        if not callable(entry):
            raise _LoadError("Runtime.HandlerNotFound", f"Handler '{attribute}' missing on module '{module_path}'")
        sandbox.entry = entry
        return entry


class _LoadError(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.payload = {"errorType": error_type, "errorMessage": message}


def _import_file(unique_name: str, source: Path, code_dir: Path) -> ModuleType:
    """Imports `source` as `unique_name`, with its CodeUri importable while the module runs."""
    if not source.is_file():
        raise FileNotFoundError(f"No module file {source}")
    spec = importlib.util.spec_from_file_location(unique_name, source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {source}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique_name] = module
    sys.path.insert(0, str(code_dir))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(unique_name, None)
        raise
    finally:
        sys.path.remove(str(code_dir))
    return module


def _error_document(exc: BaseException, request_id: str) -> dict[str, Any]:
    """The error payload of the Python Lambda runtime for an exception raised by a handler."""
    if isinstance(exc, SystemExit):
        return {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: exited"}
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(traceback.extract_tb(exc.__traceback__)),
    }


class _MotoBridge:
    """Routes moto's Lambda invocations (Step Functions tasks, `lambda.invoke`) to the runtimes.

    moto also invokes a Kinesis mapping's function itself, one record per put and on the putting
    thread; for the runtimes' functions that is left to the local cloud's pollers, which deliver
    batches per shard in order as Lambda does (two deliveries of every record would otherwise race).
    """

    def __init__(self) -> None:
        self._runtimes: list[LambdaRuntime] = []
        self._lock = threading.Lock()
        self._original: Callable[..., tuple[str, bool, str]] | None = None
        self._original_kinesis: Callable[..., None] | None = None

    def attach(self, runtime: LambdaRuntime) -> None:
        with self._lock:
            self._runtimes.append(runtime)
            if self._original is None:
                self._original = original = LambdaFunction._invoke_lambda

                def invoke_in_process(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
                    owner = self._owner(function)
                    if owner is None:
                        return original(function, event)
                    if isinstance(event, (str, bytes)):
                        event = json.loads(event or "{}")
                    invocation = owner.invoke(function.function_name, event if event is not None else {})
                    return json.dumps(invocation.payload), invocation.errored, ""

                LambdaFunction._invoke_lambda = invoke_in_process  # type: ignore[method-assign,assignment]
                self._original_kinesis = original_kinesis = LambdaBackend.send_kinesis_message

                def kinesis_left_to_pollers(backend: LambdaBackend, function_name: str, **kwargs: Any) -> None:
                    function = backend.get_function(function_name)
                    if self._owner(function) is None:
                        original_kinesis(backend, function_name=function_name, **kwargs)

                LambdaBackend.send_kinesis_message = kinesis_left_to_pollers  # type: ignore[method-assign,assignment]

    def detach(self, runtime: LambdaRuntime) -> None:
        with self._lock:
            self._runtimes = [other for other in self._runtimes if other is not runtime]
            if not self._runtimes and self._original is not None:
                LambdaFunction._invoke_lambda = self._original  # type: ignore[method-assign]
                self._original = None
            if not self._runtimes and self._original_kinesis is not None:
                LambdaBackend.send_kinesis_message = self._original_kinesis  # type: ignore[method-assign]
                self._original_kinesis = None

    def _owner(self, function: LambdaFunction) -> LambdaRuntime | None:
        with self._lock:
            for runtime in self._runtimes:
                if (
                    runtime.region == function.region
                    and runtime.account_id == function.account_id
                    and function.function_name in runtime._functions
                ):
                    return runtime
        return None


_moto_bridge = _MotoBridge()
